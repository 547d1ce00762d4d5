//! Lag-aware exclusion: a background monitor measures every replica and holds out of reads
//! those too far behind, through the replica pool's [`exclude`](crate::Balance::exclude).

use super::nodes::Nodes;
use super::probing::{probe_rounds, Rounds};
use crate::background::DriverStatus;
use crate::error::BoxError;
use crate::pool::Excluder;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Notify;

pub use crate::background::BoxFuture;

/// How far a replica is behind its primary: in the bytes of a byte-addressed log
/// (PostgreSQL's WAL) or in transactions (MariaDB's and MySQL's GTIDs), and in time.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::replica::Lag;
///
/// let lag = Lag::new(0, Duration::from_secs(600));
/// assert_eq!(lag.bytes_behind, 0); // caught up, however long ago it last replayed
/// let lag = Lag::transactions(3, Duration::from_secs(1));
/// assert!(lag.is_behind());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// WAL bytes the primary has written that the replica has not replayed yet.
    pub bytes_behind: u64,
    /// Transactions the primary has committed that the replica has not applied yet.
    pub transactions_behind: u64,
    /// Time since the replica last replayed a transaction (or, for MySQL, how old the event
    /// it applies is). It grows on a quiet primary too, so it counts only while the replica
    /// is behind.
    pub since_last_replay: Duration,
}

impl Lag {
    /// A measurement in WAL bytes.
    pub fn new(bytes_behind: u64, since_last_replay: Duration) -> Self {
        Lag {
            bytes_behind,
            transactions_behind: 0,
            since_last_replay,
        }
    }

    /// A measurement in transactions (GTIDs).
    pub fn transactions(transactions_behind: u64, since_last_replay: Duration) -> Self {
        Lag {
            bytes_behind: 0,
            transactions_behind,
            since_last_replay,
        }
    }

    /// Whether the replica has anything left to apply.
    pub fn is_behind(&self) -> bool {
        self.bytes_behind > 0 || self.transactions_behind > 0
    }
}

/// Measures one replica's lag (PostgreSQL: [`PgLagProbe`](super::PgLagProbe), feature
/// `sqlx-postgres`). Any `Fn(&K) -> impl Future<Output = Result<Lag, E>>` is a probe too.
pub trait LagProbe<K>: Send + Sync + 'static {
    /// The lag of `replica`, or why it could not be measured (then it counts as unknown).
    fn lag(&self, replica: &K) -> BoxFuture<Result<Lag, BoxError>>;
}

impl<K, F, Fut, E> LagProbe<K> for F
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Lag, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn lag(&self, replica: &K) -> BoxFuture<Result<Lag, BoxError>> {
        let probe = self(replica);
        Box::pin(async move { probe.await.map_err(Into::into) })
    }
}

/// Settings of the lag monitor ([`ReplicaRouterBuilder::lag_monitor`](super::ReplicaRouterBuilder::lag_monitor)).
///
/// Every `interval` (default 1 s, at least 50 ms) each replica is probed, with a timeout (the
/// interval). A replica is held out of reads while
/// - its lag is unknown (the probe failed or timed out), or
/// - it is more than `max_bytes` behind (default 8 MiB), or more than `max_transactions`
///   (default 1 000, for GTID-based probes), or
/// - it is behind at all and has not replayed for longer than `max_lag` (default 1 s).
///
/// It returns as soon as a probe finds it within bounds. Time without replay alone never
/// excludes a replica: on a quiet primary it grows while the replica is caught up.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::replica::{Lag, LagMonitor};
///
/// let monitor = LagMonitor::new(|_replica: &&str| async {
///     Ok::<_, std::io::Error>(Lag::new(0, Duration::ZERO))
/// })
/// .every(Duration::from_millis(500))
/// .max_lag(Duration::from_millis(500))
/// .max_bytes(16 << 20);
/// # let _ = monitor;
/// ```
pub struct LagMonitor<K> {
    probe: Box<dyn LagProbe<K>>,
    interval: Duration,
    max_lag: Duration,
    max_bytes: u64,
    max_transactions: u64,
    rounds: Rounds,
    /// The lag gauges, when the router publishes metrics.
    #[cfg(feature = "metrics")]
    gauges: Option<LagGauges<K>>,
}

/// The most any replica is behind, as gauges (and each replica's, per endpoint): the last
/// lag measured of each replica still in the pool.
#[cfg(feature = "metrics")]
struct LagGauges<K> {
    metrics: crate::telemetry::Metrics,
    last: std::sync::Mutex<std::collections::HashMap<K, Lag>>,
}

#[cfg(feature = "metrics")]
impl<K: Clone + fmt::Debug + Eq + std::hash::Hash> LagGauges<K> {
    fn record(&self, key: &K, lag: Option<&Lag>, in_pool: &[K]) {
        use crate::telemetry::{LAG_BYTES, LAG_SECONDS, LAG_TRANSACTIONS};
        let mut last = crate::locks::lock(&self.last);
        match lag {
            Some(lag) => last.insert(key.clone(), *lag),
            None => last.remove(key), // unknown: not counted as any lag
        };
        last.retain(|key, _| in_pool.contains(key));
        let gauges = |labels: &[(&'static str, String)], lag: &Lag| {
            let seconds = lag.since_last_replay.as_secs_f64();
            let seconds = if lag.is_behind() { seconds } else { 0.0 };
            (self.metrics.router_gauge(LAG_SECONDS, labels)).set(seconds);
            (self.metrics.router_gauge(LAG_BYTES, labels)).set(lag.bytes_behind as f64);
            let transactions = lag.transactions_behind as f64;
            (self.metrics.router_gauge(LAG_TRANSACTIONS, labels)).set(transactions);
        };
        if let (Some(lag), Some(label)) = (lag, self.metrics.endpoint("replica", key)) {
            gauges(&[label], lag);
        }
        let most = last
            .values()
            .fold(Lag::new(0, Duration::ZERO), |most, lag| {
                let since = match lag.is_behind() {
                    false => Duration::ZERO,
                    true => lag.since_last_replay,
                };
                Lag {
                    bytes_behind: most.bytes_behind.max(lag.bytes_behind),
                    transactions_behind: most.transactions_behind.max(lag.transactions_behind),
                    since_last_replay: most.since_last_replay.max(since),
                }
            });
        gauges(&[], &most);
    }
}

/// The reasons the monitor gives for its exclusions.
pub(crate) const LAGGING: &str = "replica lagging";
pub(crate) const LAG_UNKNOWN: &str = "replica lag unknown";

impl<K> LagMonitor<K>
where
    K: Clone + fmt::Debug + Eq + std::hash::Hash + Send + Sync + 'static,
{
    /// Probes each replica with `probe`.
    pub fn new(probe: impl LagProbe<K>) -> Self {
        LagMonitor {
            probe: Box::new(probe),
            interval: Duration::from_secs(1),
            max_lag: Duration::from_secs(1),
            max_bytes: 8 << 20,
            max_transactions: 1000,
            rounds: Rounds::new(0),
            #[cfg(feature = "metrics")]
            gauges: None,
        }
    }

    /// Publishes each round's lag as gauges of the router's `metrics`.
    #[cfg(feature = "metrics")]
    pub(crate) fn published(mut self, metrics: Option<crate::telemetry::Metrics>) -> Self {
        self.gauges = metrics.map(|metrics| LagGauges {
            metrics,
            last: Default::default(),
        });
        self
    }

    /// How often each replica is probed (clamped to at least 50 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(50));
        self
    }

    /// How many rounds the monitor has finished, for [`ReplicaRouter::ready`](super::ReplicaRouter::ready).
    pub(crate) fn rounds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// How long a replica that is behind may go without replaying.
    pub fn max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }

    /// How many WAL bytes a replica may be behind.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How many transactions a replica may be behind (GTID-based probes such as
    /// [`MySqlLagProbe`](super::MySqlLagProbe)).
    pub fn max_transactions(mut self, max_transactions: u64) -> Self {
        self.max_transactions = max_transactions;
        self
    }

    /// Why `lag` keeps a replica out of reads, if it does.
    fn verdict(&self, lag: &Result<Lag, BoxError>) -> Option<&'static str> {
        match lag {
            Err(_) => Some(LAG_UNKNOWN),
            Ok(lag) if lag.bytes_behind > self.max_bytes => Some(LAGGING),
            Ok(lag) if lag.transactions_behind > self.max_transactions => Some(LAGGING),
            Ok(lag) if lag.is_behind() && lag.since_last_replay > self.max_lag => Some(LAGGING),
            Ok(_) => None,
        }
    }

    /// The monitor's task over the replica pool: ends when the pool's last handle is dropped.
    pub(crate) fn drive<R>(
        self,
        replicas: R::Weak,
        status: &DriverStatus,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        R: Nodes<Key = K>,
    {
        status.supervise("replica lag monitor", async move {
            let keys = || {
                Some(
                    R::upgrade(&replicas)?
                        .nodes()
                        .into_iter()
                        .map(|e| e.key)
                        .collect(),
                )
            };
            let probe = |key: &K| self.probe.lag(key);
            let apply = |key: &K, lag| {
                self.apply(&R::upgrade(&replicas)?, key, &lag);
                Some(())
            };
            probe_rounds(
                self.interval,
                &Notify::new(),
                keys,
                probe,
                apply,
                &self.rounds,
            )
            .await;
        })
    }

    /// Sets or lifts the monitor's own exclusion of `key`, leaving the application's and the
    /// role monitor's alone; logs each change.
    fn apply<R: Nodes<Key = K>>(&self, pool: &R, key: &K, lag: &Result<Lag, BoxError>) {
        let nodes = pool.nodes();
        #[cfg(feature = "metrics")]
        if let Some(gauges) = &self.gauges {
            let in_pool: Vec<K> = nodes.iter().map(|e| e.key.clone()).collect();
            gauges.record(key, lag.as_ref().ok(), &in_pool);
        }
        let Some(endpoint) = nodes.into_iter().find(|e| e.key == *key) else {
            return; // gone since the round began
        };
        let verdict = self.verdict(lag);
        let was = endpoint.exclusions.by(Excluder::LagMonitor);
        match (verdict, was, lag) {
            (Some(_), None, Ok(lag)) => {
                tracing::warn!(replica = ?key, ?lag, "replica out of reads: lagging")
            }
            (Some(_), None, Err(error)) => {
                tracing::warn!(replica = ?key, %error, "replica out of reads: lag unknown")
            }
            (None, Some(_), _) => tracing::info!(replica = ?key, "replica caught up"),
            _ => {}
        }
        let _ = pool.exclude_as(Excluder::LagMonitor, key, verdict);
    }
}

impl<K> fmt::Debug for LagMonitor<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagMonitor")
            .field("interval", &self.interval)
            .field("max_lag", &self.max_lag)
            .field("max_bytes", &self.max_bytes)
            .field("max_transactions", &self.max_transactions)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_without_replay_counts_only_while_behind() {
        let monitor =
            LagMonitor::new(|_: &u8| async { Ok::<_, BoxError>(Lag::new(0, Duration::ZERO)) })
                .max_lag(Duration::from_secs(1))
                .max_bytes(1000);
        let verdict =
            |bytes, secs| monitor.verdict(&Ok(Lag::new(bytes, Duration::from_secs(secs))));
        assert_eq!(verdict(0, 3600), None, "caught up on a quiet primary");
        assert_eq!(verdict(10, 0), None);
        assert_eq!(verdict(10, 2), Some(LAGGING));
        assert_eq!(verdict(1001, 0), Some(LAGGING));
        assert_eq!(monitor.verdict(&Err("down".into())), Some(LAG_UNKNOWN));
        let monitor = monitor.max_transactions(5);
        let verdict = |transactions, secs| {
            monitor.verdict(&Ok(Lag::transactions(
                transactions,
                Duration::from_secs(secs),
            )))
        };
        assert_eq!(verdict(0, 3600), None, "caught up, GTIDs");
        assert_eq!(verdict(5, 0), None);
        assert_eq!(verdict(6, 0), Some(LAGGING));
        assert_eq!(verdict(1, 2), Some(LAGGING));
    }
}
