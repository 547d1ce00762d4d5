//! What a database error means for routing (the database's own codes are in its
//! [`FrontDatabase`](super::database::FrontDatabase) impl), and how the router's own errors
//! travel inside sqlx's.

use super::sqlx;
use crate::error::Error;

/// Whether a failed statement is the statement's fault (an SQL error, a missing row, a type
/// mismatch) rather than the node's: only the node's faults count against it.
pub(crate) fn is_query_fault(error: &sqlx::Error) -> bool {
    !matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// The router's own error, as sqlx reports errors: an I/O error that never reached a node,
/// whose inner error is the router's ([`router_error`] gets it back).
pub(super) fn unavailable(error: Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, error))
}

/// The router's own error inside an error from a query through a
/// [`PgRouter`](crate::replica::PgRouter): [`Error::NoPrimary`] when no primary could take a write,
/// [`Error::PrimaryReadShare`] when a read was shed, and so on. `None` for an error from the
/// database or from sqlx itself (those are the node's or the statement's).
///
/// sqlx's `Executor` can only return a `sqlx::Error`, so the router's errors travel as an
/// `Io` error of kind `NotConnected` (the statement never reached a node) that wraps them.
///
/// ```
/// # #[cfg(feature = "sqlx-postgres")] // the example's pools are PostgreSQL's
/// use sqlx::postgres::PgPool;
/// # #[cfg(feature = "sqlx-postgres")]
/// use tower_lb::{policy::P2c, replica::{router_error, ReplicaRouter}, Balance, Error};
///
/// # #[cfg(not(feature = "sqlx-postgres"))] fn main() {}
/// # #[cfg(feature = "sqlx-postgres")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Lazy pools connect at their first use: nothing is reached here.
/// let node = || PgPool::connect_lazy("postgres://postgres@127.0.0.1:5432/app");
/// let primary = Balance::builder(P2c::new()).endpoint("primary", node()?).build()?;
/// let replicas = Balance::builder(P2c::new()).endpoint("replica", node()?).build()?;
/// let db = ReplicaRouter::builder(primary, replicas).build();
/// db.primary().exclude(&"primary", "switchover")?;
///
/// let error = sqlx::query("UPDATE accounts SET balance = 0").execute(&db).await.unwrap_err();
/// assert!(matches!(router_error(&error), Some(Error::NoPrimary { .. })));
/// # Ok(()) }
/// ```
pub fn router_error(error: &sqlx::Error) -> Option<&Error> {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::NotConnected => {
            io.get_ref()?.downcast_ref::<Error>()
        }
        _ => None,
    }
}
