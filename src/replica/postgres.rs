//! PostgreSQL adapters through sqlx (feature `sqlx-postgres`).

use super::router::{Destination, WriteMark};
use super::WholeRouter;
use super::{Access, BoxFuture, Lag, LagProbe, ReplicaRouter, Role, RoleProbe, SqlClassifier};
use crate::balance::Lease;
use crate::error::{BoxError, Error};
use crate::health::ErrorsFail;
use crate::policy::{Pick, Policy};
use futures_core::Stream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Identity;

type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;
type SqlxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Measures a PostgreSQL streaming replica's lag: WAL bytes the primary has written that the
/// replica has not replayed (`pg_wal_lsn_diff` of the primary's `pg_current_wal_lsn()` and the
/// replica's `pg_last_wal_replay_lsn()`, the replay position, never the receive position), and
/// the time since it last replayed a transaction (`pg_last_xact_replay_timestamp()`; since it
/// started, when it has replayed none since: a lower bound, and what makes a replica that
/// stopped replaying right after a restart count as lagging).
///
/// When the primary cannot be reached, the replica is measured against what it has received
/// (`pg_last_wal_receive_lsn()`), so a dead primary does not take the replicas out of reads
/// too. A node that is not in recovery (a promoted replica) has no replay position and counts
/// as far behind: it leaves the read set.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::PgPool;
/// use tower_lb::replica::{LagMonitor, PgLagProbe};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let primary = PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let replica = PgPool::connect("postgres://postgres@127.0.0.1:5433/app").await?;
/// let monitor = LagMonitor::new(PgLagProbe::new(primary, [("replica-a", replica)]))
///     .max_lag(Duration::from_millis(500));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgLagProbe<K> {
    primary: PgPool,
    replicas: HashMap<K, PgPool>,
}

impl<K: Eq + Hash> PgLagProbe<K> {
    /// Probes `replicas` (keyed as in the replica pool) against `primary`.
    pub fn new(primary: PgPool, replicas: impl IntoIterator<Item = (K, PgPool)>) -> Self {
        PgLagProbe {
            primary,
            replicas: replicas.into_iter().collect(),
        }
    }
}

impl<K> LagProbe<K> for PgLagProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn lag(&self, replica: &K) -> BoxFuture<Result<Lag, BoxError>> {
        let primary = self.primary.clone();
        let replica = self.replicas.get(replica).cloned();
        Box::pin(async move {
            let replica = replica.ok_or("no connection pool for this replica")?;
            let written: Option<String> = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
                .fetch_one(&primary)
                .await
                .ok();
            let (bytes, seconds): (f64, f64) = sqlx::query_as(
                "SELECT COALESCE(pg_wal_lsn_diff(COALESCE($1::pg_lsn, pg_last_wal_receive_lsn()), \
                 pg_last_wal_replay_lsn()), 1e18)::float8, \
                 EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), \
                 pg_postmaster_start_time()))::float8",
            )
            .bind(written)
            .fetch_one(&replica)
            .await?;
            let bytes = if bytes.is_finite() {
                bytes.max(0.0) as u64
            } else {
                u64::MAX
            };
            let since = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
            Ok(Lag::new(bytes, since))
        })
    }
}

/// Finds a PostgreSQL node's role with `pg_is_in_recovery()`: a node in recovery is a replica,
/// any other the primary.
///
/// ```no_run
/// use sqlx::PgPool;
/// use tower_lb::replica::{PgRoleProbe, RoleMonitor};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let db1 = PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let db2 = PgPool::connect("postgres://postgres@127.0.0.1:5433/app").await?;
/// let monitor = RoleMonitor::new(PgRoleProbe::new([("db-1", db1), ("db-2", db2)]));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgRoleProbe<K> {
    nodes: HashMap<K, PgPool>,
}

impl<K: Eq + Hash> PgRoleProbe<K> {
    /// Probes `nodes`, keyed as in the pools.
    pub fn new(nodes: impl IntoIterator<Item = (K, PgPool)>) -> Self {
        PgRoleProbe {
            nodes: nodes.into_iter().collect(),
        }
    }
}

impl<K> RoleProbe<K> for PgRoleProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>> {
        let pool = self.nodes.get(node).cloned();
        Box::pin(async move {
            let pool = pool.ok_or("no connection pool for this node")?;
            let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&pool)
                .await?;
            Ok(if in_recovery {
                Role::Replica
            } else {
                Role::Primary
            })
        })
    }
}

/// The sqlx front: a [`ReplicaRouter`] whose endpoints are `PgPool`s is a sqlx `Executor`, so
/// `sqlx::query("…").fetch_all(&db)` runs on the primary or a replica according to the
/// statement's text ([`SqlClassifier`]). Moving from one `PgPool` to a primary and replicas
/// changes the construction, not the queries.
///
/// - `&db` is the router-wide session (read-your-own-writes for everyone);
///   [`db.session(key)`](ReplicaRouter::session) narrows it to one user or request chain.
/// - [`db.begin()`](ReplicaRouter::begin) starts a transaction on the primary, on one
///   connection, from `BEGIN` to `COMMIT`; its commit starts the session's window.
/// - Each statement counts as one call against the pool it ran on (load for P2C, failures
///   for outlier detection: connection-level errors only, not SQL errors).
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
    let Destination::Write(mark) = router.destination(Access::Write, slot) else {
        unreachable!("a write's destination is the primary");
    };
    let lease = lease_primary(router)?;
    let begun = lease.service.begin().await;
    lease.complete(begun.as_ref().map_or_else(is_query_fault, |_| true));
    Ok(PgTransaction {
        transaction: begun?,
        mark,
    })
}

impl<X> PgTransaction<X> {
    /// Commits; the session reads its own writes from now on.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let PgTransaction { transaction, mark } = self;
        let committed = transaction.commit().await;
        drop(mark);
        committed
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
}

impl<X> Routed<X> {
    fn finish(self, succeeded: bool) {
        self.lease.complete(succeeded);
        drop(self.mark);
    }
}

fn no_primary(reason: Error) -> sqlx::Error {
    let error = Error::NoPrimary {
        reason: Box::new(reason),
    };
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, error))
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
    router.primary().clone().lease(&()).map_err(|reason| {
        router.counted_write_without_primary(&reason);
        no_primary(reason)
    })
}

/// Picks the pool for `sql` from the session in `slot`, as the tower front does for a request.
fn route<K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    sql: &str,
) -> Result<Routed<X>, sqlx::Error>
where
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
{
    let access = router.classifier().classify(sql);
    let (lease, mark) = match router.destination(access, slot) {
        Destination::Write(mark) => (lease_primary(router)?, mark),
        Destination::PinnedRead => (lease_primary(router)?, None),
        Destination::Read => match router.replicas().clone().lease(&()) {
            Ok(lease) => {
                router.counted_replica_read();
                (lease, None)
            }
            Err(reason) => {
                router.counted_fallback(&reason);
                (lease_primary(router)?, None)
            }
        },
    };
    Ok(Routed { lease, mark })
}

type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

/// A statement's result stream, accounted against the node it runs on when it ends.
struct Accounted<'e, X> {
    rows: BoxStream<'e, Item>,
    routed: Option<Routed<X>>,
    succeeded: bool,
}

impl<X> Stream for Accounted<'_, X> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let item = std::task::ready!(self.rows.as_mut().poll_next(cx));
        match &item {
            Some(Err(error)) if !is_query_fault(error) => self.succeeded = false,
            Some(_) => {}
            None => {
                if let Some(routed) = self.routed.take() {
                    routed.finish(self.succeeded);
                }
            }
        }
        Poll::Ready(item)
    }
}

/// A stream of one error.
struct Failed(Option<sqlx::Error>);

impl Stream for Failed {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Item>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

fn fetch_many<'e, 'q: 'e, E, K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    query: E,
) -> BoxStream<'e, Item>
where
    E: 'q + Execute<'q, Postgres>,
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
    X: Send + Sync + 'static,
{
    match route(router, slot, query.sql()) {
        Err(error) => Box::pin(Failed(Some(error))),
        Ok(routed) => {
            let pool = routed.lease.service.clone();
            Box::pin(Accounted {
                rows: (&pool).fetch_many(query),
                routed: Some(routed),
                succeeded: true,
            })
        }
    }
}

fn fetch_optional<'e, 'q: 'e, E, K, PP, RP, X, C>(
    router: &PgRouter<K, PP, RP, X, C>,
    slot: Option<usize>,
    query: E,
) -> SqlxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Postgres>,
    K: Debug,
    C: Clone,
    PP: Pick<()>,
    RP: Pick<()>,
    X: Send + Sync + 'static,
{
    let routed = route(router, slot, query.sql());
    Box::pin(async move {
        let routed = routed?;
        let pool = routed.lease.service.clone();
        let row = (&pool).fetch_optional(query).await;
        routed.finish(row.as_ref().map_or_else(is_query_fault, |_| true));
        row
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
