//! MySQL and MariaDB through sqlx 0.9 (feature `sqlx-mysql`): the probes the replica
//! monitors use: lag by GTID, the role of a replicated node, and of a Galera node.

mod gtid;

pub(crate) use gtid::GtidPosition;
mod probes;

pub use probes::{GaleraRoleProbe, MySqlLagProbe, MySqlRoleProbe};
