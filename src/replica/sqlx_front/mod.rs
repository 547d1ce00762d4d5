//! The sqlx front: the router as a sqlx `Executor` over PostgreSQL pools, for each supported
//! sqlx major (features `sqlx-postgres` for sqlx 0.9, `sqlx-0_8` for 0.8), and over MySQL and
//! MariaDB pools (`sqlx-mysql`, sqlx 0.9), with PostgreSQL's probes for the replica monitors
//! (MySQL's are in `replica::mysql`, which holds no front).
//!
//! The front is written once. What holds no sqlx type is compiled once:
//! - `session`: [`PgRouter`], [`PgSession`] (what a user holds) and [`SqlxPool`], through
//!   which `begin` reaches the major of the router's pools;
//! - `rows`: a statement's results as a stream;
//! - `hosts`: a libpq multi-host URL taken apart, one single-host URL per node.
//!
//! The files in `front/` are compiled once per major, each time against that major's sqlx:
//! `sqlx_0_9.rs` and `sqlx_0_8.rs` are their roots, with the little that differs between
//! majors (how a statement's text is held, the signatures of `prepare` and `describe`):
//! - `front/database`: what the front needs of each database (`FrontDatabase`), so that the
//!   rest is written once for all of them;
//! - `front/executor`: the `Executor` impls, glue only (sqlx-core's `pool/executor.rs` shape);
//! - `front/statement`: one statement routed, run on a connection, accounted, resent if it may be;
//! - `front/transaction`: [`PgTransaction`], on the primary;
//! - `front/sqlstate`: what a server's error means for routing, and the router's errors in sqlx's;
//! - `front/postgres`: PostgreSQL's statements, WAL positions and SQLSTATEs (`FrontDatabase`);
//! - `front/mysql`: MySQL's and MariaDB's, with GTID positions and Galera's causal reads
//!   (sqlx 0.9 only);
//! - `front/probes`: lag and role;
//! - `front/connect`: [`PgHosts`], a router from a multi-host URL.

#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-0_8"))]
mod hosts;
mod rows;
mod session;
#[cfg(feature = "sqlx-0_8")]
pub mod sqlx_0_8;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
mod sqlx_0_9;

#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-0_8"))]
pub use hosts::{LoadBalanceHosts, PgUrlError, TargetSessionAttrs};
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-0_8"))]
pub use session::PgRouter;
use session::Sealed;
#[cfg(feature = "sqlx-mysql")]
pub use session::{MySqlRouter, MySqlSession};
pub use session::{PgSession, SqlxPool};
#[cfg(feature = "sqlx-mysql")]
pub use sqlx_0_9::MySqlTransaction;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
pub use sqlx_0_9::{router_error, RouterTransaction};
#[cfg(feature = "sqlx-postgres")]
pub use sqlx_0_9::{
    PgHosts, PgHostsPrimary, PgHostsReplicas, PgHostsRouter, PgLagProbe, PgRoleProbe, PgTransaction,
};

/// The front's files, declared in the root of each major's front (`use … as sqlx;` there
/// names the major they compile against), and what it offers.
macro_rules! sqlx_front_modules {
    (postgres: #[$postgres:meta]) => {
        // Loaded once per major, by design: each time against another sqlx.
        #[$postgres]
        #[path = "front/connect.rs"]
        #[allow(clippy::duplicate_mod)]
        mod connect;
        #[path = "front/database.rs"]
        #[allow(clippy::duplicate_mod)]
        mod database;
        #[path = "front/executor.rs"]
        #[allow(clippy::duplicate_mod)]
        mod executor;
        #[$postgres]
        #[path = "front/postgres.rs"]
        #[allow(clippy::duplicate_mod)]
        mod postgres;
        #[$postgres]
        #[path = "front/probes.rs"]
        #[allow(clippy::duplicate_mod)]
        mod probes;
        #[path = "front/sqlstate.rs"]
        #[allow(clippy::duplicate_mod)]
        mod sqlstate;
        #[path = "front/statement.rs"]
        #[allow(clippy::duplicate_mod)]
        mod statement;
        #[path = "front/transaction.rs"]
        #[allow(clippy::duplicate_mod)]
        mod transaction;

        #[$postgres]
        pub use connect::{PgHosts, PgHostsPrimary, PgHostsReplicas, PgHostsRouter};
        #[$postgres]
        pub use probes::{PgLagProbe, PgRoleProbe};
        pub use sqlstate::router_error;
        pub use transaction::RouterTransaction;

        /// A transaction on a PostgreSQL primary ([`PgRouter::begin`](crate::replica::PgRouter)).
        #[$postgres]
        pub type PgTransaction<X> = transaction::RouterTransaction<X, sqlx::Postgres>;
    };
}
use sqlx_front_modules;
