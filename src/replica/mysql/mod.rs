//! MySQL and MariaDB through sqlx 0.9 (feature `sqlx-mysql`): the probes the replica
//! monitors use, lag by GTID and role.

mod gtid;
mod probes;

pub use probes::{MySqlLagProbe, MySqlRoleProbe};
