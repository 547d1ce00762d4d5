//! What a sqlx user holds: the router as an executor ([`PgRouter`]), one session of it
//! ([`PgSession`]), and a transaction on the primary ([`PgTransaction`]).

use super::position::capture_position;
use super::sqlstate::{is_query_fault, unavailable};
use crate::error::Error;
use crate::replica::router::WriteMark;
use crate::replica::{Access, ReplicaRouter, SqlClassifier, Token, WholeRouter};
use sqlx::{PgConnection, PgPool, Postgres};
use std::fmt::Debug;
use std::hash::Hash;

/// The sqlx front: a [`ReplicaRouter`] whose endpoints are `PgPool`s is a sqlx `Executor`, so
/// `sqlx::query("…").fetch_all(&db)` runs on the primary or a replica according to the
/// statement's text ([`SqlClassifier`]). Moving from one `PgPool` to a primary and replicas
/// changes the construction, not the queries.
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
/// use sqlx::postgres::PgPool;
/// use tower_lb::{policy::P2c, replica::ReplicaRouter, Balance};
///
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

mod sealed {
    use crate::policy::Pick;
    use crate::replica::Nodes;
    use sqlx::PgPool;

    /// A pool of PostgreSQL nodes, as the sqlx front needs each of the router's pools: a
    /// [`Balance`](crate::Balance) of `PgPool`s whose policy picks without a request.
    pub trait PgNodes: Nodes<Service = PgPool, Policy: Pick<()>> {}

    impl<N: Nodes<Service = PgPool, Policy: Pick<()>>> PgNodes for N {}
}
pub(super) use sealed::PgNodes;

/// One session of a [`PgRouter`]: an `Executor` whose writes pin this session's reads to the
/// primary for the read-your-own-writes window ([`ReplicaRouter::session`]).
pub struct PgSession<'r, P, R, X> {
    pub(super) router: &'r PgRouter<P, R, X>,
    pub(super) slot: Option<usize>,
}

/// A transaction on the primary ([`ReplicaRouter::begin`]): derefs to the connection it runs
/// on, so sqlx's usual `query(..).execute(&mut *tx)` runs inside it; its commit starts the
/// session's read-your-own-writes window.
pub struct PgTransaction<X> {
    transaction: sqlx::Transaction<'static, Postgres>,
    pool: PgPool,
    mark: Option<WriteMark<SqlClassifier, X>>,
}

impl<P: PgNodes, R: PgNodes, X> PgRouter<P, R, X> {
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

    /// Starts a transaction on the primary for the router-wide session.
    pub async fn begin(&self) -> Result<PgTransaction<X>, sqlx::Error> {
        begin(self, self.session_slot(())).await
    }
}

impl<P: PgNodes, R: PgNodes, X> PgSession<'_, P, R, X> {
    /// This session's consistency state, to hand to another application server (a cookie,
    /// a header): `None` in window mode or before the session writes.
    pub fn token(&self) -> Option<Token> {
        self.router.shared().sessions.positions()?.token(self.slot?)
    }

    /// Starts a transaction on the primary for this session.
    pub async fn begin(&self) -> Result<PgTransaction<X>, sqlx::Error> {
        begin(self.router, self.slot).await
    }
}

/// A transaction on a primary: routed as a write, begun on a connection of the primary the
/// route takes; if that primary leaves rotation before the transaction has begun, on
/// another one, or [`Error::NoPrimary`].
async fn begin<P: PgNodes, R: PgNodes, X>(
    router: &PgRouter<P, R, X>,
    slot: Option<usize>,
) -> Result<PgTransaction<X>, sqlx::Error> {
    let shared = router.shared();
    let mut route = shared.decide(Access::Write, slot, true);
    for _ in 0..MAX_BEGINS {
        let lease = shared
            .take(&mut route, |_| router.primary().lease(&(), &[]))
            .map_err(unavailable)?;
        let pool = lease.service.clone();
        let begun = tokio::select! {
            biased;
            begun = pool.begin() => begun,
            () = router.primary().out_of_rotation(lease.endpoint()) => continue,
        };
        lease.complete(begun.as_ref().map_or_else(is_query_fault, |_| true));
        return Ok(PgTransaction {
            transaction: begun?,
            pool,
            mark: route.mark.take(),
        });
    }
    Err(unavailable(Error::NodesLeftRotation { times: MAX_BEGINS }))
}

/// How many primaries a transaction may try to begin on, when they leave rotation under it.
const MAX_BEGINS: usize = 3;

impl<X> PgTransaction<X> {
    /// Commits; the session reads its own writes from now on (in position mode, once the
    /// commit's position is captured).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let PgTransaction {
            transaction,
            pool,
            mark,
        } = self;
        transaction.commit().await?;
        capture_position(&pool, mark.as_ref()).await;
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.transaction.rollback().await
    }
}

impl<X> std::ops::Deref for PgTransaction<X> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.transaction
    }
}

impl<X> std::ops::DerefMut for PgTransaction<X> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }
}

impl<P, R, X> Debug for PgSession<'_, P, R, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl<X> Debug for PgTransaction<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("marks_session", &self.mark.is_some())
            .finish_non_exhaustive()
    }
}
