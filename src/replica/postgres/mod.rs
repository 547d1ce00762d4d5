//! PostgreSQL adapters through sqlx (feature `sqlx-postgres`): the probes the replica
//! monitors use, and the sqlx front (the router as a sqlx `Executor`).

mod front;
mod probes;

pub use front::{PgRouter, PgSession, PgTransaction};
pub use probes::{PgLagProbe, PgRoleProbe};
