//! What the front needs of a database it speaks through this sqlx major: the statement as
//! it can be sent again, the two ways to run one on a connection, where a write's position
//! is read, and what an error means for routing. Routing, running and accounting a
//! statement ([`statement`](super::statement)) and the `Executor` impls are written once,
//! over this trait.

use super::sqlx;
use crate::replica::position::UNREAD_POSITION;
use crate::replica::router::WriteMark;
use crate::replica::{Access, SqlClassifier};
use sqlx::{Database, Either, Execute, Pool};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub(super) type BoxStream<'a, T> = Pin<Box<dyn futures_core::Stream<Item = T> + Send + 'a>>;
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One result of a statement, as sqlx's `fetch_many` yields it.
pub(super) type Item<DB> =
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>;

/// A database the router's sqlx front speaks (public in a private module: named in the
/// `Executor` impls' bounds, implemented by the front alone).
pub trait FrontDatabase: Database {
    /// A statement taken apart so that it can be sent more than once.
    #[doc(hidden)]
    type Sendable<'q>: Execute<'q, Self> + Clone + Send + 'q;

    #[doc(hidden)]
    fn take<'q>(query: impl Execute<'q, Self>) -> Result<Self::Sendable<'q>, sqlx::Error>;

    #[doc(hidden)]
    fn text<'s>(statement: &'s Self::Sendable<'_>) -> &'s str;

    /// Whether `text` only reads, in this database's SQL dialect.
    #[doc(hidden)]
    fn classify(classifier: &SqlClassifier, text: &str) -> Access;

    #[doc(hidden)]
    fn fetch_many<'c, 'q: 'c>(
        connection: &'c mut Self::Connection,
        statement: Self::Sendable<'q>,
    ) -> BoxStream<'c, Item<Self>>;

    #[doc(hidden)]
    fn fetch_optional<'c, 'q: 'c>(
        connection: &'c mut Self::Connection,
        statement: Self::Sendable<'q>,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>>;

    /// The primary's position now (read after a write committed), if it can be read.
    #[doc(hidden)]
    fn current_position(primary: &Pool<Self>) -> BoxFuture<'_, Option<u64>>;

    /// Whether `replica` has applied its primary's changes up to `position`, waiting on the
    /// server at most `budget` for it if the database can (one round trip either way);
    /// `None` if it could not tell.
    #[doc(hidden)]
    fn reached(replica: &Pool<Self>, position: u64, budget: Duration) -> BoxFuture<'_, Option<bool>>;

    /// Waits on `connection`'s node until it has applied every write the cluster committed
    /// before the call (one round trip): for a pinned read on a multi-primary cluster,
    /// whose "primary" may be another node than the one that took the session's write.
    #[doc(hidden)]
    fn causal_barrier(connection: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    /// A write refused because the node is read-only.
    #[doc(hidden)]
    fn is_read_only(error: &sqlx::Error) -> bool;

    /// A read a replica failed that is worth sending to the primary.
    #[doc(hidden)]
    fn worth_resending(error: &sqlx::Error) -> bool;
}

/// In position mode, records the primary's position, read after the write committed, as the
/// position the writing session's reads must see. If it cannot be read, the session's reads
/// go to the primary until the cap (the highest position there is).
pub(super) async fn capture_position<DB: FrontDatabase, X>(
    primary: &Pool<DB>,
    mark: Option<&WriteMark<SqlClassifier, X>>,
) {
    let Some((positions, slot)) = mark.and_then(WriteMark::positions) else {
        return;
    };
    let position = DB::current_position(primary).await.unwrap_or(UNREAD_POSITION);
    positions.wrote(slot, position);
}
