//! PostgreSQL through sqlx (feature `sqlx-postgres`): the router as a sqlx `Executor`, and
//! the probes the replica monitors use.
//!
//! - `session`: [`PgRouter`], its sessions and transactions (what a user holds);
//! - `executor`: the `Executor` impls, glue only (sqlx-core's `pool/executor.rs` shape);
//! - `statement`: one statement routed, run on a connection, accounted, resent if it may be;
//! - `rows`: a statement's results as the stream sqlx expects;
//! - `sqlstate`: what a server's error means for routing, and the router's errors in sqlx's;
//! - `position`: WAL positions, captured after a commit and read on a replica;
//! - `probes`: lag and role.

mod executor;
mod position;
mod probes;
mod rows;
mod session;
mod sqlstate;
mod statement;

pub use probes::{PgLagProbe, PgRoleProbe};
pub use session::{PgRouter, PgSession, PgTransaction};
pub use sqlstate::router_error;
