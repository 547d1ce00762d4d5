//! PostgreSQL probes for the replica monitors: lag and role.

use crate::error::BoxError;
use crate::replica::{BoxFuture, Lag, LagProbe, Role, RoleProbe};
use sqlx::PgPool;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

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

/// Finds a PostgreSQL node's role as libpq's `target_session_attrs=read-write` does: a node
/// is the primary if it is not in recovery (`pg_is_in_recovery()`) and its new transactions
/// may write (`transaction_read_only` off); any other node is a replica.
///
/// So a primary fenced for a switchover (`default_transaction_read_only = on`) leaves the
/// primary pool at the next probe, or at once when a write it refuses with SQLSTATE 25006
/// wakes the monitor. It then counts as a replica and may serve reads; pair the role monitor
/// with a [`LagMonitor`](super::super::LagMonitor) over [`PgLagProbe`], which holds out a node
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
