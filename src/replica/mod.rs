//! Read/write splitting: writes to the primary, reads to fit replicas, and a session's reads
//! on the primary right after it writes.
//!
//! [`ReplicaRouter`] is a tower `Service` over two [`Balance`](crate::Balance)s, one for the
//! primary (or primaries) and one for the replicas, each with its own policy and health.
//! [`Classify`] decides whether a request only reads ([`Access::Read`]) or may write
//! ([`Access::Write`]); explicit intent (an [`Access`] request extension) always wins. The
//! built-in classifiers are [`HttpMethods`] (Rails' rule for HTTP APIs) and
//! [`SqlClassifier`], a conservative classifier of PostgreSQL statement text: only a plain
//! read may go to a replica; anything it is not sure of goes to the primary. [`LagMonitor`]
//! holds replicas that fall behind out of reads, through the replica pool's
//! [`exclude`](crate::Balance::exclude). [`Reads`] says where reads go at all (replicas with
//! the primary as fallback, replicas only, or the primary).
//!
//! With a sqlx feature the router over `PgPool`s is a sqlx `Executor` (`PgRouter`), and
//! `PgHosts` builds one from a libpq multi-host URL. With `sqlx-mysql`, `MySqlLagProbe`,
//! `MySqlRoleProbe` and `GaleraRoleProbe` watch MariaDB replicas and Galera nodes.

mod classify;
mod lag;
#[cfg(feature = "sqlx-mysql")]
mod mysql;
mod nodes;
mod position;
mod probing;
mod role;
mod router;
mod session;
mod sql;
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-0_8",
    feature = "sqlx-mysql"
))]
mod sqlx_front;

pub use classify::{Access, Classify, HttpMethods};
pub use lag::{BoxFuture, Lag, LagMonitor, LagProbe};
#[cfg(feature = "sqlx-mysql")]
pub use mysql::{GaleraRoleProbe, MySqlLagProbe, MySqlRoleProbe};
pub use nodes::Nodes;
pub use position::{Token, TokenError, DEFAULT_POSITION_CAP};
pub use role::{Role, RoleMonitor, RoleProbe};
pub use router::{
    Reads, ReplicaRouter, ReplicaRouterBuilder, ResponseFuture, RouterStats, WholeRouter,
    DEFAULT_WINDOW,
};
pub use sql::SqlClassifier;
#[cfg(feature = "sqlx-0_8")]
pub use sqlx_front::sqlx_0_8;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
pub use sqlx_front::{router_error, RouterTransaction};
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-0_8"))]
pub use sqlx_front::{LoadBalanceHosts, PgRouter, PgUrlError, TargetSessionAttrs};
#[cfg(feature = "sqlx-mysql")]
pub use sqlx_front::{MySqlRouter, MySqlSession, MySqlTransaction};
#[cfg(feature = "sqlx-postgres")]
pub use sqlx_front::{
    PgHosts, PgHostsPrimary, PgHostsReplicas, PgHostsRouter, PgLagProbe, PgRoleProbe, PgTransaction,
};
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-0_8",
    feature = "sqlx-mysql"
))]
pub use sqlx_front::{PgSession, SqlxPool};
