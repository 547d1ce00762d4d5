//! What a sqlx user holds, whatever their sqlx major: the router as an executor
//! ([`PgRouter`]) and one session of it ([`PgSession`]). Neither holds a sqlx type; their
//! `Executor` impls and transactions are in each major's front.

use crate::policy::Pick;
use crate::replica::{Nodes, ReplicaRouter, SqlClassifier, Token, WholeRouter};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

/// The sqlx front: a [`ReplicaRouter`] whose endpoints are `PgPool`s is a sqlx `Executor`, so
/// `sqlx::query("…").fetch_all(&db)` runs on the primary or a replica according to the
/// statement's text ([`SqlClassifier`]). Moving from one `PgPool` to a primary and replicas
/// changes the construction, not the queries. sqlx 0.9's pools with the feature
/// `sqlx-postgres`, 0.8's with `sqlx-0_8` (the same router; its probes and transaction types
/// are in [`replica::sqlx_0_8`](crate::replica#modules)).
///
/// - `&db` is the router-wide session (read-your-own-writes for everyone);
///   [`db.session(key)`](ReplicaRouter::session) narrows it to one user or request chain.
/// - [`db.begin()`](ReplicaRouter::begin) starts a transaction on the primary, on one
///   connection, from `BEGIN` to `COMMIT`; its commit starts the session's window.
/// - In position mode ([`read_your_writes_by_position`](crate::replica::ReplicaRouterBuilder::read_your_writes_by_position))
///   a write's commit position is captured right after it (one more round trip to the
///   primary), and the session's reads go to a replica only once it has replayed it (one
///   round trip to the replica per read that needs it). [`PgSession::token`] and
///   [`ReplicaRouter::session_with_token`] carry that state between application servers.
/// - Each statement counts as one call against the pool it ran on (load for P2C, failures
///   for outlier detection: connection-level errors only, not SQL errors).
/// - A read that a replica fails before its first row (a connection-level error, or a
///   cancellation in a conflict with recovery) is sent once more, to the primary
///   ([`RouterStats::retried_reads`](crate::replica::RouterStats::retried_reads)). A write is
///   never sent again: it may have committed.
///
/// ```no_run
/// # #[cfg(feature = "sqlx-postgres")] // the example's pools are PostgreSQL's
/// use sqlx::postgres::PgPool;
/// # #[cfg(feature = "sqlx-postgres")]
/// use tower_lb::{policy::P2c, replica::ReplicaRouter, Balance};
///
/// # #[cfg(feature = "sqlx-postgres")]
/// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
/// let primary = PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let replica = PgPool::connect("postgres://postgres@127.0.0.1:5433/app").await?;
/// let db = ReplicaRouter::builder(
///     Balance::builder(P2c::new()).endpoint("primary", primary).build()?,
///     Balance::builder(P2c::new()).endpoint("replica", replica).build()?,
/// )
/// .build();
///
/// let user = 42;
/// sqlx::query("INSERT INTO posts (author) VALUES ($1)").bind(user).execute(&db.session(user)).await?;
/// // The same session reads its own write (from the primary, for the window).
/// let rows = sqlx::query("SELECT * FROM posts WHERE author = $1").bind(user).fetch_all(&db.session(user)).await?;
/// # let _ = rows; Ok(()) }
/// ```
///
/// `P` and `R` are the primary and replica pools: [`Balance`](crate::Balance)s of `PgPool`s.
pub type PgRouter<P, R = P, X = WholeRouter> = ReplicaRouter<P, R, SqlClassifier, X>;

/// The sqlx front over MySQL or MariaDB (feature `sqlx-mysql`): a [`ReplicaRouter`] whose
/// endpoints are `MySqlPool`s is a sqlx `Executor`, the same type and the same routing as
/// [`PgRouter`]. Statements are classified in MySQL's dialect (as by
/// [`SqlClassifier::mysql`], with the router's classifier's declared functions, whichever
/// dialect it was built for); in position mode, a write's position is the primary's GTID
/// in replication domain 0, and a replica serves the session once its `@@gtid_slave_pos`
/// has reached it. [`begin`](ReplicaRouter::begin) starts a
/// [`MySqlTransaction`](crate::replica::MySqlTransaction) on the primary.
///
/// Over a multi-primary Galera cluster (every node in the primary pool,
/// [`GaleraRoleProbe`](crate::replica::GaleraRoleProbe)), writes spread over the synced
/// nodes. A write that loses certification to another node's (MariaDB 1213, SQLSTATE
/// `40001`) comes back as that database error and is never sent again by the router: the
/// application decides whether to retry it. A write is never resent at all once sent (it
/// may have applied); one that never reached a node (its node left rotation while it waited
/// for a connection) goes to another primary. A session's reads after its write go to "the
/// primary", which may be another node than the one that took the write: build the router
/// with [`causal_reads`](crate::replica::ReplicaRouterBuilder::causal_reads) so that they
/// wait on their node for the cluster's writes (without it, 1.7–2.5 % of such reads missed
/// their write on a busy three-node cluster).
///
/// ```no_run
/// use sqlx::MySqlPool;
/// use tower_lb::{policy::P2c, replica::ReplicaRouter, Balance};
///
/// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
/// let primary = MySqlPool::connect("mysql://app:secret@127.0.0.1:3306/app").await?;
/// let replica = MySqlPool::connect("mysql://app:secret@127.0.0.1:3307/app").await?;
/// let db = ReplicaRouter::builder(
///     Balance::builder(P2c::new()).endpoint("primary", primary).build()?,
///     Balance::builder(P2c::new()).endpoint("replica", replica).build()?,
/// )
/// .build();
/// sqlx::query("INSERT INTO posts (author) VALUES (?)").bind(42).execute(&db.session(42)).await?;
/// let rows = sqlx::query("SELECT * FROM posts WHERE author = ?").bind(42).fetch_all(&db.session(42)).await?;
/// # let _ = rows; Ok(()) }
/// ```
#[cfg(feature = "sqlx-mysql")]
pub type MySqlRouter<P, R = P, X = WholeRouter> = ReplicaRouter<P, R, SqlClassifier, X>;

/// One session of a [`MySqlRouter`] (the same type as [`PgSession`]).
#[cfg(feature = "sqlx-mysql")]
pub type MySqlSession<'r, P, R, X> = PgSession<'r, P, R, X>;

mod sealed {
    pub trait Sealed {}
}
pub(super) use sealed::Sealed;

/// A `PgPool` of one of the sqlx majors the router speaks (0.9's with the feature
/// `sqlx-postgres`, 0.8's with `sqlx-0_8`): what [`ReplicaRouter::begin`] begins a
/// transaction on, and in which sqlx's types it answers. Sealed.
///
/// ```no_run
/// # #[cfg(feature = "sqlx-postgres")] // the example's pools are PostgreSQL's
/// use sqlx::postgres::PgPool;
/// # #[cfg(feature = "sqlx-postgres")]
/// use tower_lb::replica::{PgTransaction, SqlxPool};
///
/// // sqlx 0.9's transactions are this crate's `PgTransaction`.
/// # #[cfg(feature = "sqlx-postgres")]
/// fn is_0_9<X>(_: Option<<PgPool as SqlxPool>::Transaction<X>>) -> Option<PgTransaction<X>> {
///     None
/// }
/// # #[cfg(feature = "sqlx-postgres")]
/// # let _ = is_0_9::<()>;
/// ```
pub trait SqlxPool: Sealed + Clone + Send + Sync + 'static {
    /// A transaction on one of these pools ([`PgTransaction`](crate::replica::PgTransaction)
    /// for sqlx 0.9's, `replica::sqlx_0_8::PgTransaction` for 0.8's).
    type Transaction<X>;
    /// This major's `sqlx::Error`.
    type Error;

    #[doc(hidden)]
    fn begin<P, R, X>(
        router: &PgRouter<P, R, X>,
        slot: Option<usize>,
    ) -> impl Future<Output = Result<Self::Transaction<X>, Self::Error>> + Send + '_
    where
        P: Nodes<Service = Self, Policy: Pick<()>>,
        R: Nodes,
        X: Send + Sync + 'static;
}

/// One session of a [`PgRouter`]: an `Executor` whose writes pin this session's reads to the
/// primary for the read-your-own-writes window ([`ReplicaRouter::session`]).
pub struct PgSession<'r, P, R, X> {
    pub(super) router: &'r PgRouter<P, R, X>,
    pub(super) slot: Option<usize>,
}

impl<P: Nodes, R: Nodes, X> PgRouter<P, R, X> {
    /// The session `key` (a user id, a session cookie): an executor whose reads see this
    /// session's own writes.
    pub fn session(&self, key: impl Hash) -> PgSession<'_, P, R, X> {
        PgSession {
            router: self,
            slot: self.session_slot(key),
        }
    }

    /// The session `key`, carrying on from a [`Token`] another application server handed out
    /// (position mode; a token is untrusted and held at most for the router's cap).
    pub fn session_with_token(&self, key: impl Hash, token: &Token) -> PgSession<'_, P, R, X> {
        let session = self.session(key);
        if let (Some(slot), Some(positions)) = (session.slot, self.shared().sessions.positions()) {
            positions.adopt(slot, token);
        }
        session
    }

    /// Starts a transaction on the primary for the router-wide session: a `PgTransaction`
    /// or a `MySqlTransaction` (`replica::sqlx_0_8`'s for sqlx 0.8's pools), both a
    /// [`RouterTransaction`](crate::replica#reexports) of the pools' database.
    pub async fn begin(
        &self,
    ) -> Result<<P::Service as SqlxPool>::Transaction<X>, <P::Service as SqlxPool>::Error>
    where
        P: Nodes<Policy: Pick<()>>,
        P::Service: SqlxPool,
        X: Send + Sync + 'static,
    {
        P::Service::begin(self, self.session_slot(())).await
    }
}

impl<P: Nodes, R: Nodes, X> PgSession<'_, P, R, X> {
    /// This session's consistency state, to hand to another application server (a cookie,
    /// a header): `None` in window mode or before the session writes.
    pub fn token(&self) -> Option<Token> {
        self.router.shared().sessions.positions()?.token(self.slot?)
    }

    /// Starts a transaction on the primary for this session.
    pub async fn begin(
        &self,
    ) -> Result<<P::Service as SqlxPool>::Transaction<X>, <P::Service as SqlxPool>::Error>
    where
        P: Nodes<Policy: Pick<()>>,
        P::Service: SqlxPool,
        X: Send + Sync + 'static,
    {
        P::Service::begin(self.router, self.slot).await
    }
}

impl<P, R, X> Debug for PgSession<'_, P, R, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}
