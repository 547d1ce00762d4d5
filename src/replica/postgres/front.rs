//! The sqlx front: a router over `PgPool`s as a sqlx `Executor`.

use crate::balance::Lease;
use crate::endpoint::EndpointStats;
use crate::error::Error;
use crate::health::ErrorsFail;
use crate::policy::{Pick, Policy};
use crate::replica::position::parse_lsn;
use crate::replica::router::{Destination, WriteMark};
use crate::replica::{Access, ReplicaRouter, SqlClassifier, Token, WholeRouter};
use futures_core::Stream;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres};
use std::fmt::Debug;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Notify;
use tower_layer::Identity;

type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;
type SqlxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The sqlx front: a [`ReplicaRouter`] whose endpoints are `PgPool`s is a sqlx `Executor`, so
/// `sqlx::query("…").fetch_all(&db)` runs on the primary or a replica according to the
/// statement's text ([`SqlClassifier`]). Moving from one `PgPool` to a primary and replicas
/// changes the construction, not the queries.
///
/// - `&db` is the router-wide session (read-your-own-writes for everyone);
///   [`db.session(key)`](ReplicaRouter::session) narrows it to one user or request chain.
/// - [`db.begin()`](ReplicaRouter::begin) starts a transaction on the primary, on one
///   connection, from `BEGIN` to `COMMIT`; its commit starts the session's window.
/// - In position mode ([`read_your_writes_by_position`](super::super::ReplicaRouterBuilder::read_your_writes_by_position))
///   a write's commit position is captured right after it (one more round trip to the
///   primary), and the session's reads go to a replica only once it has replayed it (one
///   round trip to the replica per read that needs it). [`PgSession::token`] and
///   [`ReplicaRouter::session_with_token`] carry that state between application servers.
/// - Each statement counts as one call against the pool it ran on (load for P2C, failures
///   for outlier detection: connection-level errors only, not SQL errors).
/// - A read that a replica fails before its first row (a connection-level error, or a
///   cancellation in a conflict with recovery) is sent once more, to the primary
///   ([`RouterStats::retried_reads`](super::super::RouterStats::retried_reads)). A write is
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
pub type PgRouter<K, PP, RP, X = WholeRouter, C = ErrorsFail> =
    ReplicaRouter<K, PgPool, PP, RP, SqlClassifier, X, Identity, C>;

/// One session of a [`PgRouter`]: an `Executor` whose writes pin this session's reads to the
/// primary for the read-your-own-writes window ([`ReplicaRouter::session`]).
pub struct PgSession<'r, K, PP, RP, X, C>
where
    PP: Policy,
    RP: Policy,
{
    router: &'r PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
}

/// A transaction on the primary ([`ReplicaRouter::begin`]): derefs to sqlx's `Transaction`;
/// its commit starts the session's read-your-own-writes window.
pub struct PgTransaction<X> {
    transaction: sqlx::Transaction<'static, Postgres>,
    pool: PgPool,
    mark: Option<WriteMark<SqlClassifier, X>>,
}

impl<K, PP, RP, X, C> PgRouter<K, PP, RP, X, C>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
{
    /// The session `key` (a user id, a session cookie): an executor whose reads see this
    /// session's own writes.
    pub fn session(&self, key: impl Hash) -> PgSession<'_, K, PP, RP, X, C> {
        PgSession {
            router: self,
            slot: self.session_slot(key),
        }
    }

    /// The session `key`, carrying on from a [`Token`] another application server handed out
    /// (position mode; a token is untrusted and held at most for the router's cap).
    pub fn session_with_token(
        &self,
        key: impl Hash,
        token: &Token,
    ) -> PgSession<'_, K, PP, RP, X, C> {
        let session = self.session(key);
        if let (Some(slot), Some(positions)) = (session.slot, self.shared_positions()) {
            positions.adopt(slot, token);
        }
        session
    }

    /// Starts a transaction on the primary for the router-wide session.
    pub async fn begin(&self) -> Result<PgTransaction<X>, sqlx::Error> {
        begin(self, self.session_slot(())).await
    }
}

impl<K, PP, RP, X, C> PgSession<'_, K, PP, RP, X, C>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
{
    /// This session's consistency state, to hand to another application server (a cookie,
    /// a header): `None` in window mode or before the session writes.
    pub fn token(&self) -> Option<Token> {
        self.router.shared_positions()?.token(self.slot?)
    }

    /// Starts a transaction on the primary for this session.
    pub async fn begin(&self) -> Result<PgTransaction<X>, sqlx::Error> {
        begin(self.router, self.slot).await
    }
}

async fn begin<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
) -> Result<PgTransaction<X>, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
{
    let mark = router.start_write(slot);
    let lease = lease_primary(router)?;
    let pool = lease.service.clone();
    let begun = pool.begin().await;
    lease.complete(begun.as_ref().map_or_else(is_query_fault, |_| true));
    Ok(PgTransaction {
        transaction: begun?,
        pool,
        mark,
    })
}

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
    type Target = sqlx::Transaction<'static, Postgres>;

    fn deref(&self) -> &Self::Target {
        &self.transaction
    }
}

impl<X> std::ops::DerefMut for PgTransaction<X> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.transaction
    }
}

/// In position mode, records the primary's WAL position, read after the write committed
/// (never inside its transaction: that would be below the commit record), as the position
/// the writing session's reads must see. If it cannot be read, the session's reads go to the
/// primary until the cap (the highest position there is).
async fn capture_position<X>(primary: &PgPool, mark: Option<&WriteMark<SqlClassifier, X>>) {
    let Some((positions, slot)) = mark.and_then(WriteMark::positions) else {
        return;
    };
    let position: Result<String, _> =
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(primary)
            .await;
    let position = position
        .ok()
        .and_then(|text| parse_lsn(&text))
        .unwrap_or(u64::MAX);
    positions.wrote(slot, position);
}

/// How far `replica` has replayed (`pg_last_wal_replay_lsn()`, never the receive position).
async fn replayed(replica: &PgPool) -> Option<u64> {
    let position: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(replica)
        .await
        .ok()?;
    parse_lsn(&position?)
}

/// Whether a failed statement is the statement's fault (an SQL error, a missing row, a type
/// mismatch) rather than the node's: only the node's faults count against it.
fn is_query_fault(error: &sqlx::Error) -> bool {
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

/// Where a statement runs, and what to do when it ends.
struct Routed<X> {
    lease: Lease<PgPool>,
    mark: Option<WriteMark<SqlClassifier, X>>,
    /// For a write: wakes the role monitor if the node turns out to be read-only.
    reprobe: Option<Arc<Notify>>,
    /// A read on a replica, which the primary may serve instead if the replica fails it.
    on_replica: bool,
}

/// SQLSTATE 25006, `read_only_sql_transaction`: a write reached a node in recovery or fenced
/// read-only.
fn is_read_only(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("25006"))
}

impl<X> Routed<X> {
    fn read(lease: Lease<PgPool>, on_replica: bool) -> Self {
        Routed {
            lease,
            mark: None,
            reprobe: None,
            on_replica,
        }
    }

    /// Accounts for a statement that failed: against its node only for a connection-level
    /// error (not the statement's own); a write refused as read-only (SQLSTATE 25006) wakes
    /// the role monitor, since the node believed primary is not (any more).
    fn fail(self, error: &sqlx::Error) {
        if let (true, Some(reprobe)) = (is_read_only(error), &self.reprobe) {
            tracing::warn!("a write reached a read-only node: re-probing roles");
            reprobe.notify_one();
        }
        self.lease.complete(is_query_fault(error));
    }

    /// Accounts for a statement that succeeded; for a write in position mode, captures its
    /// position before the session's next read can be routed.
    async fn succeed(self) {
        let pool = self.lease.service.clone();
        self.lease.complete(true);
        capture_position(&pool, self.mark.as_ref()).await;
    }
}

/// The router's own error, as sqlx reports errors (an I/O error that never reached a node,
/// whose inner error is the router's: `get_ref()` and `downcast_ref::<Error>()` recover it).
fn unavailable(error: Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, error))
}

fn no_primary(reason: Error) -> sqlx::Error {
    unavailable(Error::NoPrimary {
        reason: Box::new(reason),
    })
}

fn lease_primary<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
) -> Result<Lease<PgPool>, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Policy,
{
    router.primary().lease(&(), &[]).map_err(|reason| {
        router.counted_write_without_primary(&reason);
        no_primary(reason)
    })
}

/// Picks the pool for a statement with `access` from the session in `slot`, as the tower
/// front does for a request; in position mode, asks replicas how far they have replayed.
async fn route<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    access: Access,
) -> Result<Routed<X>, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
{
    let (lease, on_replica) = match router.destination(access, slot) {
        Destination::Write(mark) => {
            return Ok(Routed {
                lease: lease_primary(router)?,
                mark,
                reprobe: router.role_waker(),
                on_replica: false,
            })
        }
        Destination::PinnedRead => (lease_primary(router)?, false),
        Destination::Read => match router.replicas().lease(&(), &[]) {
            Ok(lease) => {
                router.counted_replica_read();
                (lease, true)
            }
            Err(reason) => {
                router.fall_back(&reason).map_err(unavailable)?;
                (lease_primary(router)?, false)
            }
        },
        Destination::ReadAt(position) => match caught_up_replica(router, position).await {
            Some(lease) => {
                router.counted_replica_read();
                (lease, true)
            }
            None => {
                router.counted_read_behind();
                (lease_primary(router)?, false)
            }
        },
    };
    Ok(Routed::read(lease, on_replica))
}

/// Whether a read that failed on a replica is worth sending to the primary: the replica
/// failed (a connection-level error), or cancelled it in a conflict with recovery (SQLSTATE
/// 40001 on a standby), not the statement itself.
fn worth_resending(error: &sqlx::Error) -> bool {
    !is_query_fault(error)
        || matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("40001"))
}

/// A statement that can be sent twice. sqlx's `Execute` is consumed by the send, so a read
/// bound for a replica is taken apart into its text and arguments (which clone) first: if
/// the replica fails it, the copy goes to the primary.
#[derive(Clone)]
struct Resend<'q> {
    sql: &'q str,
    arguments: Option<PgArguments>,
    persistent: bool,
}

impl<'q> Resend<'q> {
    fn take(mut query: impl Execute<'q, Postgres>) -> Result<Self, sqlx::Error> {
        Ok(Resend {
            sql: query.sql(),
            persistent: query.persistent(),
            arguments: query.take_arguments().map_err(sqlx::Error::Encode)?,
        })
    }
}

impl<'q> Execute<'q, Postgres> for Resend<'q> {
    fn sql(&self) -> &'q str {
        self.sql
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        None // sqlx prepares it again, from its statement cache when persistent
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// A replica that has replayed `position`, asking each eligible one at most once.
async fn caught_up_replica<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    position: u64,
) -> Option<Lease<PgPool>>
where
    K: Debug,
    C: Clone,
    PP: Policy,
    RP: Pick<()>,
{
    let mut behind: Vec<Arc<EndpointStats>> = Vec::new();
    loop {
        let lease = router.replicas().lease(&(), &behind).ok()?;
        if behind
            .iter()
            .any(|asked| Arc::ptr_eq(asked, lease.endpoint()))
        {
            return None; // every eligible replica was asked
        }
        match replayed(&lease.service).await {
            Some(replayed) if replayed >= position => return Some(lease),
            _ => behind.push(Arc::clone(lease.endpoint())),
        }
    }
}

type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

/// A routed statement, its result stream, and for a read on a replica, the same read on the
/// primary, to run instead if the replica fails it before the first row.
struct Started<'e, X> {
    routed: Routed<X>,
    rows: BoxStream<'e, Item>,
    resend: Option<SqlxFuture<'e, Result<Started<'e, X>, sqlx::Error>>>,
}

/// A statement's result stream: routed first (which may take a round trip in position mode),
/// then streamed, then accounted against the node it ran on.
enum Rows<'e, X> {
    Routing(SqlxFuture<'e, Result<Started<'e, X>, sqlx::Error>>),
    Streaming {
        rows: BoxStream<'e, Item>,
        /// Taken when accounted: at the first error (after which sqlx drops the stream),
        /// else at the end.
        routed: Option<Routed<X>>,
        /// Dropped at the first row: a read half served is not sent again.
        resend: Option<SqlxFuture<'e, Result<Started<'e, X>, sqlx::Error>>>,
    },
    /// The replica failed the read: on the primary now; if that cannot start, the replica's
    /// error is the answer.
    Resending {
        started: SqlxFuture<'e, Result<Started<'e, X>, sqlx::Error>>,
        replica_error: Option<sqlx::Error>,
    },
    Finishing(SqlxFuture<'e, ()>),
    Done,
}

impl<'e, X> Rows<'e, X> {
    fn streaming(started: Started<'e, X>) -> Self {
        Rows::Streaming {
            rows: started.rows,
            routed: Some(started.routed),
            resend: started.resend,
        }
    }
}

impl<'e, X: Send + Sync + 'e> Stream for Rows<'e, X> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        loop {
            match &mut *self {
                Rows::Routing(routing) => match std::task::ready!(routing.as_mut().poll(cx)) {
                    Ok(started) => *self = Rows::streaming(started),
                    Err(error) => {
                        *self = Rows::Done;
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                Rows::Streaming {
                    rows,
                    routed,
                    resend,
                } => match std::task::ready!(rows.as_mut().poll_next(cx)) {
                    Some(Ok(item)) => {
                        *resend = None;
                        return Poll::Ready(Some(Ok(item)));
                    }
                    Some(Err(error)) => {
                        if let Some(routed) = routed.take() {
                            routed.fail(&error);
                        }
                        match resend.take() {
                            Some(started) if worth_resending(&error) => {
                                *self = Rows::Resending {
                                    started,
                                    replica_error: Some(error),
                                };
                            }
                            _ => return Poll::Ready(Some(Err(error))),
                        }
                    }
                    None => {
                        let routed = routed.take();
                        *self = Rows::Finishing(Box::pin(async move {
                            if let Some(routed) = routed {
                                routed.succeed().await;
                            }
                        }));
                    }
                },
                Rows::Resending {
                    started,
                    replica_error,
                } => match std::task::ready!(started.as_mut().poll(cx)) {
                    Ok(started) => *self = Rows::streaming(started),
                    Err(_) => {
                        let error = replica_error.take();
                        *self = Rows::Done;
                        return Poll::Ready(error.map(Err));
                    }
                },
                Rows::Finishing(finishing) => {
                    std::task::ready!(finishing.as_mut().poll(cx));
                    *self = Rows::Done;
                }
                Rows::Done => return Poll::Ready(None),
            }
        }
    }
}

fn fetch_many<'e, 'q: 'e, E, K, PP, RP, X, C>(
    router: &'e PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    query: E,
) -> BoxStream<'e, Item>
where
    E: 'q + Execute<'q, Postgres>,
    K: Debug + Send + Sync,
    C: Clone + Send + Sync,
    PP: Pick<()> + Send + Sync,
    PP::Table: Send + Sync,
    RP: Pick<()> + Send + Sync,
    RP::Table: Send + Sync,
    X: Send + Sync + 'static,
{
    let access = router.classifier().classify(query.sql());
    Box::pin(Rows::Routing(Box::pin(async move {
        let routed = route(router, slot, access).await?;
        if !routed.on_replica {
            return Ok(stream_on(routed, query, None));
        }
        let query = Resend::take(query)?;
        let again = query.clone();
        let resend: SqlxFuture<'e, _> = Box::pin(async move {
            let routed = Routed::read(resend_on_primary(router)?, false);
            Ok(stream_on(routed, again, None))
        });
        Ok(stream_on(routed, query, Some(resend)))
    })))
}

/// Starts streaming `query`'s rows where it was routed.
fn stream_on<'e, 'q: 'e, X>(
    routed: Routed<X>,
    query: impl Execute<'q, Postgres> + 'q,
    resend: Option<SqlxFuture<'e, Result<Started<'e, X>, sqlx::Error>>>,
) -> Started<'e, X> {
    let pool = routed.lease.service.clone();
    Started {
        rows: (&pool).fetch_many(query),
        routed,
        resend,
    }
}

/// The primary, for a read that a replica failed.
fn resend_on_primary<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
) -> Result<Lease<PgPool>, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Policy,
{
    router.counted_retried_read();
    tracing::debug!("read failed on a replica: sent again to the primary");
    lease_primary(router)
}

/// Runs `query` where it was routed, and accounts for it.
async fn fetch_optional_on<'q, X>(
    routed: Routed<X>,
    query: impl Execute<'q, Postgres> + 'q,
) -> Result<Option<PgRow>, sqlx::Error> {
    let pool = routed.lease.service.clone();
    let row = (&pool).fetch_optional(query).await;
    match &row {
        Ok(_) => routed.succeed().await,
        Err(error) => routed.fail(error),
    }
    row
}

fn fetch_optional<'e, 'q: 'e, E, K, PP, RP, X, C>(
    router: &'e PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    query: E,
) -> SqlxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Postgres>,
    K: Debug + Send + Sync,
    C: Clone + Send + Sync,
    PP: Pick<()> + Send + Sync,
    PP::Table: Send + Sync,
    RP: Pick<()> + Send + Sync,
    RP::Table: Send + Sync,
    X: Send + Sync + 'static,
{
    let access = router.classifier().classify(query.sql());
    Box::pin(async move {
        let routed = route(router, slot, access).await?;
        if !routed.on_replica {
            return fetch_optional_on(routed, query).await;
        }
        let query = Resend::take(query)?;
        let again = query.clone();
        match fetch_optional_on(routed, query).await {
            Err(error) if worth_resending(&error) => match resend_on_primary(router) {
                Ok(lease) => fetch_optional_on(Routed::<X>::read(lease, false), again).await,
                Err(_) => Err(error),
            },
            row => row,
        }
    })
}

/// Preparing and describing run on the primary, which knows every table a replica does.
fn primary_pool<K, PP, RP, X, C>(router: &PgRouter<K, PP, RP, X, C>) -> Result<PgPool, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Policy,
{
    let lease = lease_primary(router)?;
    let pool = lease.service.clone();
    lease.complete(true);
    Ok(pool)
}

macro_rules! executor {
    ($ty:ty, $router:expr, $slot:expr) => {
        impl<'c, K, PP, RP, X, C> Executor<'c> for $ty
        where
            K: Debug + Send + Sync + 'static,
            PP: Pick<()> + Send + Sync + 'static,
            PP::Table: Send + Sync,
            RP: Pick<()> + Send + Sync + 'static,
            RP::Table: Send + Sync,
            X: Send + Sync + 'static,
            C: Clone + Send + Sync + 'static,
        {
            type Database = Postgres;

            fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                fetch_many($router(self), $slot(self), query)
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> SqlxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                fetch_optional($router(self), $slot(self), query)
            }

            fn prepare_with<'e, 'q: 'e>(
                self,
                sql: &'q str,
                parameters: &'e [PgTypeInfo],
            ) -> SqlxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
            where
                'c: 'e,
            {
                let pool = primary_pool($router(self));
                Box::pin(async move { (&pool?).prepare_with(sql, parameters).await })
            }

            fn describe<'e, 'q: 'e>(
                self,
                sql: &'q str,
            ) -> SqlxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
            where
                'c: 'e,
            {
                let pool = primary_pool($router(self));
                Box::pin(async move { (&pool?).describe(sql).await })
            }
        }
    };
}

executor!(
    &'c PgRouter<K, PP, RP, X, C>,
    |router: &'c PgRouter<K, PP, RP, X, C>| router,
    |router: &'c PgRouter<K, PP, RP, X, C>| router.session_slot(())
);
executor!(
    &'c PgSession<'c, K, PP, RP, X, C>,
    |session: &'c PgSession<'c, K, PP, RP, X, C>| session.router,
    |session: &'c PgSession<'c, K, PP, RP, X, C>| session.slot
);

impl<K, PP, RP, X, C> Debug for PgSession<'_, K, PP, RP, X, C>
where
    PP: Policy,
    RP: Policy,
{
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
