//! PostgreSQL probes for the replica monitors: lag and role.

use super::sqlx;
use crate::error::BoxError;
use crate::replica::position::parse_lsn;
use crate::replica::{BoxFuture, Lag, LagProbe, Role, RoleProbe};
use sqlx::PgPool;
use crate::replica::probing::PoolsByKey;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Measures a PostgreSQL streaming replica's lag: WAL bytes the primary has written that the
/// replica has not replayed (`pg_wal_lsn_diff` of the primary's `pg_current_wal_lsn()` and the
/// replica's `pg_last_wal_replay_lsn()`, the replay position, never the receive position), and
/// the time since it last replayed a transaction (`pg_last_xact_replay_timestamp()`; since it
/// started, when it has replayed none since: a lower bound, and what makes a replica that
/// stopped replaying right after a restart count as lagging).
///
/// **A dead primary does not take the replicas down.** The primary is asked for its position
/// with a deadline of its own ([`primary_timeout`](Self::primary_timeout), 100 ms by
/// default), whatever its pool's `acquire_timeout`, while the replica is asked at the same
/// time. When the primary does not answer in time, the replica is judged from its own side:
/// against the higher of the primary's last known position and what the replica has
/// received (`pg_last_wal_receive_lsn()`). A replica that has replayed everything it got is
/// then 0 bytes behind and keeps serving reads; one that stops replaying WAL it has received
/// is behind and, once it has not replayed for the monitor's `max_lag`, lagging.
///
/// A node that is not in recovery and takes writes (a promoted replica) is never behind: a
/// primary is current by definition, and taking it out of the read set is the role
/// monitor's business, which does so only once it is in the write set (else reads, falling
/// back to the primary, would have no node in between). One not in recovery that is fenced
/// read-only (an old primary after a switchover) replays nothing: far behind.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::PgPool;
/// use tower_lb::replica::{LagMonitor, PgLagProbe};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let primary = PgPool::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let replica = PgPool::connect("postgres://postgres@127.0.0.1:5433/app").await?;
/// let probe = PgLagProbe::new(primary, [("replica-a", replica)])
///     .primary_timeout(Duration::from_millis(50));
/// let monitor = LagMonitor::new(probe).max_lag(Duration::from_millis(500));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgLagProbe<K> {
    primary: PgPool,
    replicas: PoolsByKey<K, PgPool>,
    primary_timeout: Duration,
    /// The highest position the primary has reported (0: none yet).
    primary_position: Arc<AtomicU64>,
}

impl<K: Eq + Hash> PgLagProbe<K> {
    /// Probes `replicas` (keyed as in the replica pool) against `primary`.
    pub fn new(primary: PgPool, replicas: impl IntoIterator<Item = (K, PgPool)>) -> Self {
        PgLagProbe {
            primary,
            replicas: PoolsByKey::new(replicas),
            primary_timeout: Duration::from_millis(100),
            primary_position: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How long a probe waits for the primary's position before it judges the replica from
    /// the replica's side (default 100 ms). Keep it well under the monitor's interval: the
    /// whole probe must answer within it.
    pub fn primary_timeout(mut self, timeout: Duration) -> Self {
        self.primary_timeout = timeout;
        self
    }
}

impl<K> LagProbe<K> for PgLagProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn lag(&self, replica: &K) -> BoxFuture<Result<Lag, BoxError>> {
        let primary = self.primary.clone();
        let replica = self.replicas.of(replica);
        let (timeout, known) = (self.primary_timeout, Arc::clone(&self.primary_position));
        Box::pin(async move {
            let replica = replica?;
            let written = async {
                let asked =
                    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&primary);
                let text: String = tokio::time::timeout(timeout, asked).await.ok()?.ok()?;
                let position = parse_lsn(&text)?;
                Some(known.fetch_max(position, Relaxed).max(position))
            };
            let replayed = sqlx::query_as::<_, (Option<String>, Option<String>, f64, bool)>(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
                 EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), \
                 pg_postmaster_start_time()))::float8, \
                 NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
            )
            .fetch_one(&replica);
            let (written, replayed) = tokio::join!(written, replayed);
            let (received, replayed, seconds, takes_writes) = replayed?;
            if takes_writes {
                // A primary (a promoted replica): never behind. The role monitor takes it out
                // of the read set as it takes it into writes, so that reads have a node all
                // through a promotion.
                return Ok(Lag::new(0, Duration::ZERO));
            }
            let received = received.as_deref().and_then(parse_lsn);
            let target = written.or_else(|| {
                let known = Some(known.load(Relaxed)).filter(|&p| p > 0);
                known.max(received)
            });
            let bytes = match (target, replayed.as_deref().and_then(parse_lsn)) {
                (Some(target), Some(replayed)) => target.saturating_sub(replayed),
                _ => u64::MAX, // not in recovery (promoted), or nothing to compare
            };
            let since = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
            Ok(Lag::new(bytes, since))
        })
    }
}

/// Finds a PostgreSQL node's role as libpq's `target_session_attrs=read-write` does: a node
/// is the primary if it is not in recovery (`pg_is_in_recovery()`) and its new transactions
/// may write (`transaction_read_only` off); any other node is a replica.
///
/// So a primary fenced for a switchover (`default_transaction_read_only = on`) leaves the
/// primary pool at the next probe, or at once when a write it refuses with SQLSTATE 25006
/// wakes the monitor. It then counts as a replica and may serve reads; pair the role monitor
/// with a [`LagMonitor`](crate::replica::LagMonitor) over [`PgLagProbe`], which holds out a node
/// that replays nothing.
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
    nodes: PoolsByKey<K, PgPool>,
}

impl<K: Eq + Hash> PgRoleProbe<K> {
    /// Probes `nodes`, keyed as in the pools.
    pub fn new(nodes: impl IntoIterator<Item = (K, PgPool)>) -> Self {
        PgRoleProbe {
            nodes: PoolsByKey::new(nodes),
        }
    }
}

impl<K> RoleProbe<K> for PgRoleProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>> {
        let pool = self.nodes.of(node);
        Box::pin(async move {
            let pool = pool?;
            let read_only: bool = sqlx::query_scalar(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool",
            )
            .fetch_one(&pool)
            .await?;
            Ok(if read_only {
                Role::Replica
            } else {
                Role::Primary
            })
        })
    }
}
