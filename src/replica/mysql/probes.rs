//! MariaDB probes for the replica monitors: lag by GTID, and role.

use super::gtid::GtidPosition;
use crate::error::BoxError;
use crate::locks::lock;
use crate::replica::probing::PoolsByKey;
use crate::replica::{BoxFuture, Lag, LagProbe, Role, RoleProbe};
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlPool, Row};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Measures a MariaDB replica's lag in transactions: the GTIDs the primary has written
/// (`@@gtid_binlog_pos`) that the replica has not applied (`@@gtid_slave_pos`), domain by
/// domain, and in time, from `SHOW SLAVE STATUS`.
///
/// `Seconds_Behind_Master` alone misleads, so it is only the time part: it has a resolution
/// of one second, reads 0 while hundreds of transactions behind, and is NULL whenever a
/// replication thread is stopped, even when caught up. **A stopped thread is never "0 s
/// behind"**: with the I/O or SQL thread not running, the time is unbounded, so the replica
/// leaves reads as soon as it is behind by one transaction (and stays in them while it is
/// caught up, since nothing is lost yet).
///
/// **A dead primary does not take the replicas down**: the primary is asked with a deadline
/// of its own ([`primary_timeout`](Self::primary_timeout), 100 ms by default) while the
/// replica is asked; without an answer the replica is judged against the later of the
/// primary's last known position and what it has received (`Gtid_IO_Pos`).
///
/// A node with no replication configured that takes writes (a primary, or a replica promoted
/// with `RESET SLAVE ALL`) is never behind: a primary is current by definition, and taking it
/// out of the read set is the role monitor's business, which does so only once it is in the
/// write set (else reads, falling back to the primary, would have no node in between). A
/// read-only node with no replication is cut off: far behind. The probing user needs the
/// `SLAVE MONITOR` privilege (`REPLICATION CLIENT` before MariaDB 10.5), which does not let
/// it write on a read-only replica. MySQL's own GTIDs (`uuid:1-42` sets) are not read.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::MySqlPool;
/// use tower_lb::replica::{LagMonitor, MySqlLagProbe};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let primary = MySqlPool::connect("mysql://app:secret@127.0.0.1:3306/app").await?;
/// let replica = MySqlPool::connect("mysql://app:secret@127.0.0.1:3307/app").await?;
/// let probe = MySqlLagProbe::new(primary, [("replica-a", replica)]);
/// let monitor = LagMonitor::new(probe).max_transactions(100).max_lag(Duration::from_secs(2));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct MySqlLagProbe<K> {
    primary: MySqlPool,
    replicas: PoolsByKey<K, MySqlPool>,
    primary_timeout: Duration,
    /// The latest position the primary has reported.
    primary_position: Arc<Mutex<GtidPosition>>,
}

impl<K: Eq + Hash> MySqlLagProbe<K> {
    /// Probes `replicas` (keyed as in the replica pool) against `primary`.
    pub fn new(primary: MySqlPool, replicas: impl IntoIterator<Item = (K, MySqlPool)>) -> Self {
        MySqlLagProbe {
            primary,
            replicas: PoolsByKey::new(replicas),
            primary_timeout: Duration::from_millis(100),
            primary_position: Arc::default(),
        }
    }

    /// How long a probe waits for the primary's position before it judges the replica from
    /// the replica's side (default 100 ms). Keep it well under the monitor's interval.
    pub fn primary_timeout(mut self, timeout: Duration) -> Self {
        self.primary_timeout = timeout;
        self
    }
}

/// What `SHOW SLAVE STATUS` says of a replica's replication, if it has any.
struct Replication {
    /// Both the I/O and the SQL thread run.
    running: bool,
    /// Neither runs (replication stopped, as on a promoted replica).
    stopped: bool,
    seconds_behind: Option<u64>,
    received: GtidPosition,
}

/// `SHOW SLAVE STATUS` of `pool`'s node: `None` when it replicates from nothing.
async fn replication(pool: &MySqlPool) -> Result<Option<Replication>, BoxError> {
    // Not preparable: the text protocol.
    let Some(row) = sqlx::raw_sql("SHOW SLAVE STATUS")
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let text = |row: &MySqlRow, column: &str| -> Result<String, BoxError> {
        Ok(row
            .try_get::<Option<String>, _>(column)?
            .unwrap_or_default())
    };
    let (io, sql) = (
        text(&row, "Slave_IO_Running")?,
        text(&row, "Slave_SQL_Running")?,
    );
    let seconds_behind: Option<u64> = row.try_get("Seconds_Behind_Master")?;
    Ok(Some(Replication {
        running: io == "Yes" && sql == "Yes",
        stopped: io == "No" && sql == "No",
        seconds_behind,
        received: GtidPosition::parse(&text(&row, "Gtid_IO_Pos")?)?,
    }))
}

impl<K> LagProbe<K> for MySqlLagProbe<K>
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
                    sqlx::query_scalar::<_, String>("SELECT @@gtid_binlog_pos").fetch_one(&primary);
                let text = tokio::time::timeout(timeout, asked).await.ok()?.ok()?;
                let position = GtidPosition::parse(&text).ok()?;
                let mut known = lock(&known);
                *known = known.max(&position);
                Some(position)
            };
            let applied = async {
                let (position, read_only): (String, i64) =
                    sqlx::query_as("SELECT @@gtid_slave_pos, @@read_only")
                        .fetch_one(&replica)
                        .await?;
                Ok::<_, BoxError>((replication(&replica).await?, position, read_only))
            };
            let (written, applied) = tokio::join!(written, applied);
            let (replication, applied, read_only) = applied?;
            let Some(replication) = replication else {
                return Ok(if read_only == 0 {
                    // A primary (a promoted replica): never behind. The role monitor takes it
                    // out of the read set as it takes it into writes, so that reads have a
                    // node all through a promotion.
                    Lag::transactions(0, Duration::ZERO)
                } else {
                    Lag::transactions(u64::MAX, Duration::MAX) // cut off from any primary
                });
            };
            let applied = GtidPosition::parse(&applied)?;
            let target = written.unwrap_or_else(|| lock(&known).max(&replication.received));
            let since = match (replication.running, replication.seconds_behind) {
                (true, Some(seconds)) => Duration::from_secs(seconds),
                _ => Duration::MAX, // a thread stopped: it will not catch up by itself
            };
            Ok(Lag::transactions(target.ahead_of(&applied), since))
        })
    }
}

/// Finds a MariaDB node's role: the primary is a node with `@@read_only` off that does not
/// replicate (no `SHOW SLAVE STATUS` row, or both its threads stopped, as on a replica an
/// operator promoted with `STOP SLAVE; SET GLOBAL read_only = 0`); any other node is a
/// replica. So a primary fenced with `read_only` for a switchover leaves the primary pool at
/// the next probe. The probing user needs `SLAVE MONITOR`.
///
/// ```no_run
/// use sqlx::MySqlPool;
/// use tower_lb::replica::{MySqlRoleProbe, RoleMonitor};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let db1 = MySqlPool::connect("mysql://app:secret@127.0.0.1:3306/app").await?;
/// let db2 = MySqlPool::connect("mysql://app:secret@127.0.0.1:3307/app").await?;
/// let monitor = RoleMonitor::new(MySqlRoleProbe::new([("db-1", db1), ("db-2", db2)]));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct MySqlRoleProbe<K> {
    nodes: PoolsByKey<K, MySqlPool>,
}

impl<K: Eq + Hash> MySqlRoleProbe<K> {
    /// Probes `nodes`, keyed as in the pools.
    pub fn new(nodes: impl IntoIterator<Item = (K, MySqlPool)>) -> Self {
        MySqlRoleProbe {
            nodes: PoolsByKey::new(nodes),
        }
    }
}

impl<K> RoleProbe<K> for MySqlRoleProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>> {
        let pool = self.nodes.of(node);
        Box::pin(async move {
            let pool = pool?;
            let read_only: i64 = sqlx::query_scalar("SELECT @@read_only")
                .fetch_one(&pool)
                .await?;
            let replicates = replication(&pool).await?.is_some_and(|r| !r.stopped);
            Ok(if read_only == 0 && !replicates {
                Role::Primary
            } else {
                Role::Replica
            })
        })
    }
}

/// Finds a Galera node's role in a multi-primary cluster (MariaDB with `galera-4`): every
/// node that is synced with the cluster takes writes, so each is a primary; a node that is
/// not (joining, a donor, cut off from the cluster's primary component, or fenced with
/// `read_only`) is not. Put every node in the primary pool, and writes spread over the
/// synced ones.
///
/// A node is the primary when `wsrep_ready` is `ON`, `wsrep_local_state` is 4 (`Synced`),
/// `wsrep_cluster_status` is `Primary` and `@@read_only` is off. Otherwise the probe answers
/// with an error naming the state, so the role monitor takes the node out of writes ("role
/// unknown": a node that answers 1047 `WSREP has not yet prepared node for application use`
/// must not be sent any), and it returns at the first probe that finds it synced again. A
/// node with `read_only` on is a replica. `SHOW GLOBAL STATUS` is read, which needs no
/// privilege and answers while the node refuses queries.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::MySqlPool;
/// use tower_lb::replica::{GaleraRoleProbe, RoleMonitor};
///
/// # async fn pools() -> Result<(), sqlx::Error> {
/// let nodes = [
///     ("galera-1", MySqlPool::connect("mysql://app:secret@127.0.0.1:3306/app").await?),
///     ("galera-2", MySqlPool::connect("mysql://app:secret@127.0.0.1:3307/app").await?),
///     ("galera-3", MySqlPool::connect("mysql://app:secret@127.0.0.1:3308/app").await?),
/// ];
/// let monitor = RoleMonitor::new(GaleraRoleProbe::new(nodes)).every(Duration::from_millis(500));
/// # let _ = monitor; Ok(()) }
/// ```
#[derive(Debug)]
pub struct GaleraRoleProbe<K> {
    nodes: PoolsByKey<K, MySqlPool>,
}

impl<K: Eq + Hash> GaleraRoleProbe<K> {
    /// Probes `nodes`, keyed as in the pools.
    pub fn new(nodes: impl IntoIterator<Item = (K, MySqlPool)>) -> Self {
        GaleraRoleProbe {
            nodes: PoolsByKey::new(nodes),
        }
    }
}

impl<K> RoleProbe<K> for GaleraRoleProbe<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>> {
        let pool = self.nodes.of(node);
        Box::pin(async move {
            let pool = pool?;
            // SHOW STATUS answers while the node refuses queries (1047) as it joins, so the
            // probe can say why; the text protocol, as it is not preparable everywhere.
            let rows = sqlx::raw_sql("SHOW GLOBAL STATUS LIKE 'wsrep\\_%'")
                .fetch_all(&pool)
                .await?;
            let status: Vec<(String, String)> = rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let of = |name: &str| {
                status
                    .iter()
                    .find(|(variable, _)| variable.eq_ignore_ascii_case(name))
                    .map_or("", |(_, value)| value.as_str())
            };
            let synced = of("WSREP_READY") == "ON"
                && of("WSREP_LOCAL_STATE") == "4"
                && of("WSREP_CLUSTER_STATUS") == "Primary";
            if !synced {
                return Err(format!(
                    "Galera node not synced: state {:?}, cluster {:?}, ready {:?}",
                    of("WSREP_LOCAL_STATE_COMMENT"),
                    of("WSREP_CLUSTER_STATUS"),
                    of("WSREP_READY")
                )
                .into());
            }
            let read_only: i64 = sqlx::query_scalar("SELECT @@read_only")
                .fetch_one(&pool)
                .await?;
            Ok(match read_only {
                0 => Role::Primary,
                _ => Role::Replica,
            })
        })
    }
}
