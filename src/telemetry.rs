//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), so
//! that whatever recorder the application installs (Prometheus, StatsD, OpenTelemetry)
//! receives them.
//!
//! Nothing is published until a component is given a [`Metrics`]: a balancer through
//! [`Builder::metrics`](crate::Builder::metrics), a retry policy through
//! [`RetryPolicy::metrics`](crate::retry::RetryPolicy::metrics), a replica router through
//! [`ReplicaRouterBuilder::metrics`](crate::replica::ReplicaRouterBuilder::metrics). Its name
//! is the `pool` (or `router`) label; the endpoint's key becomes an `endpoint` (or `replica`)
//! label only with [`Metrics::per_endpoint`], since keys can be many.
//!
//! **The request path pays nothing.** Counts a balancer or router keeps anyway (atomics)
//! are published by a background task every [`Metrics::every`] (1 s by default) as absolute
//! values; only rare events (an ejection, a retry, a read waiting for a replica's replay)
//! reach the recorder when they happen.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tower_lb_picks_total` | counter | `pool` (+ `endpoint`) | calls sent to an endpoint |
//! | `tower_lb_failures_total` | counter | `pool` (+ `endpoint`) | calls the classifier counted as failed |
//! | `tower_lb_in_flight` | gauge | `pool` (+ `endpoint`) | calls in flight |
//! | `tower_lb_endpoints` | gauge | `pool`, `state` = `eligible` / `out_of_rotation` | endpoints a call may go to, and the others |
//! | `tower_lb_panic_mode` | gauge | `pool` | 1 while the pool is in panic mode |
//! | `tower_lb_ejections_total` | counter | `pool`, `reason` (+ `endpoint`) | endpoints taken out of rotation by health, and why |
//! | `tower_lb_returns_total` | counter | `pool` (+ `endpoint`) | endpoints back in rotation |
//! | `tower_lb_retries_total` | counter | `pool` | retries sent |
//! | `tower_lb_retries_refused_total` | counter | `pool`, `reason` = `budget` / `attempts` / `not_safe` / `not_replayable` | failures not retried |
//! | `tower_lb_router_writes_total` | counter | `router` | writes sent to the primary |
//! | `tower_lb_router_writes_refused_total` | counter | `router` | writes with no primary in rotation |
//! | `tower_lb_router_reads_total` | counter | `router`, `route` = `replica` / `pinned` / `behind` / `fallback` / `primary` | reads, by where they went and why |
//! | `tower_lb_router_reads_resent_total` | counter | `router` | reads a replica failed, sent again to the primary |
//! | `tower_lb_router_reads_refused_total` | counter | `router`, `reason` = `primary_read_share` / `no_replica` | reads shed |
//! | `tower_lb_replica_lag_seconds` | gauge | `router` (+ `replica`) | the most a replica is behind (since its last replay), per lag round |
//! | `tower_lb_replica_lag_bytes` | gauge | `router` (+ `replica`) | the most WAL bytes a replica is behind |
//! | `tower_lb_replica_lag_transactions` | gauge | `router` (+ `replica`) | the most transactions a replica is behind (GTID probes) |
//! | `tower_lb_replica_position_wait_seconds` | histogram | `router` | how long an own-read waited for a replica to replay its session's write |
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::{policy::P2c, telemetry::Metrics, Balance, BoxError};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! let recorder = DebuggingRecorder::new();
//! let snapshots = recorder.snapshotter();
//! metrics::set_global_recorder(recorder)?;
//!
//! let lb = Balance::builder(P2c::new())
//!     .endpoint("a", service_fn(|()| async { Ok::<_, BoxError>(()) }))
//!     .metrics(Metrics::new("api"))
//!     .build()?;
//! for _ in 0..3 {
//!     lb.clone().oneshot(()).await?;
//! }
//! tokio::time::sleep(std::time::Duration::from_secs(2)).await; // one publish at least
//! let picks = snapshots.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     (key.key().name() == "tower_lb_picks_total").then_some(value)
//! });
//! assert_eq!(picks, Some(DebugValue::Counter(3)));
//! # Ok(()) }
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const PICKS: &str = "tower_lb_picks_total";
pub(crate) const FAILURES: &str = "tower_lb_failures_total";
pub(crate) const IN_FLIGHT: &str = "tower_lb_in_flight";
pub(crate) const ENDPOINTS: &str = "tower_lb_endpoints";
pub(crate) const PANIC_MODE: &str = "tower_lb_panic_mode";
pub(crate) const EJECTIONS: &str = "tower_lb_ejections_total";
pub(crate) const RETURNS: &str = "tower_lb_returns_total";
pub(crate) const RETRIES: &str = "tower_lb_retries_total";
pub(crate) const RETRIES_REFUSED: &str = "tower_lb_retries_refused_total";
pub(crate) const WRITES: &str = "tower_lb_router_writes_total";
pub(crate) const WRITES_REFUSED: &str = "tower_lb_router_writes_refused_total";
pub(crate) const READS: &str = "tower_lb_router_reads_total";
pub(crate) const READS_RESENT: &str = "tower_lb_router_reads_resent_total";
pub(crate) const READS_REFUSED: &str = "tower_lb_router_reads_refused_total";
pub(crate) const LAG_SECONDS: &str = "tower_lb_replica_lag_seconds";
pub(crate) const LAG_BYTES: &str = "tower_lb_replica_lag_bytes";
pub(crate) const LAG_TRANSACTIONS: &str = "tower_lb_replica_lag_transactions";
pub(crate) const POSITION_WAIT: &str = "tower_lb_replica_position_wait_seconds";

/// Where and how a component publishes its metrics: its name (the `pool` or `router` label),
/// whether per endpoint, and how often the counts it keeps anyway are published.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::telemetry::Metrics;
///
/// let metrics = Metrics::new("checkout").per_endpoint(true).every(Duration::from_secs(5));
/// # let _ = metrics;
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    pub(crate) name: Arc<str>,
    pub(crate) per_endpoint: bool,
    pub(crate) every: Duration,
}

impl Metrics {
    /// Metrics labelled `name`, per component (not per endpoint), published every second.
    pub fn new(name: impl AsRef<str>) -> Self {
        Metrics {
            name: Arc::from(name.as_ref()),
            per_endpoint: false,
            every: Duration::from_secs(1),
        }
    }

    /// Labels metrics with the endpoint's key as well (its `Debug` form, without quotes):
    /// one series per endpoint, so only for pools of bounded size.
    pub fn per_endpoint(mut self, per_endpoint: bool) -> Self {
        self.per_endpoint = per_endpoint;
        self
    }

    /// How often the counts are published (default 1 s, at least 10 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(10));
        self
    }

    fn name_label(&self, label: &'static str) -> ::metrics::Label {
        ::metrics::Label::new(label, self.name.to_string())
    }

    /// A counter of this pool's.
    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> ::metrics::Counter {
        ::metrics::counter!(name, self.labels("pool", labels))
    }

    /// A gauge of this pool's.
    pub(crate) fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> ::metrics::Gauge {
        ::metrics::gauge!(name, self.labels("pool", labels))
    }

    /// A counter of this router's.
    pub(crate) fn router_counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> ::metrics::Counter {
        ::metrics::counter!(name, self.labels("router", labels))
    }

    /// A gauge of this router's.
    pub(crate) fn router_gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> ::metrics::Gauge {
        ::metrics::gauge!(name, self.labels("router", labels))
    }

    /// A histogram of this router's.
    pub(crate) fn router_histogram(&self, name: &'static str) -> ::metrics::Histogram {
        ::metrics::histogram!(name, self.labels("router", &[]))
    }

    fn labels(
        &self,
        own: &'static str,
        labels: &[(&'static str, String)],
    ) -> Vec<::metrics::Label> {
        std::iter::once(self.name_label(own))
            .chain(
                labels
                    .iter()
                    .map(|(k, v)| ::metrics::Label::new(*k, v.clone())),
            )
            .collect()
    }

    /// The `endpoint` label of `key`, when per endpoint.
    pub(crate) fn endpoint(
        &self,
        label: &'static str,
        key: &impl Debug,
    ) -> Option<(&'static str, String)> {
        self.per_endpoint.then(|| (label, endpoint_label(key)))
    }

    /// Health took an endpoint out of rotation for `reason`.
    pub(crate) fn ejected(&self, key: &impl Debug, reason: &'static str) {
        let labels: Vec<_> = std::iter::once(("reason", reason.to_string()))
            .chain(self.endpoint("endpoint", key))
            .collect();
        self.counter(EJECTIONS, &labels).increment(1);
    }

    /// An endpoint came back into rotation.
    pub(crate) fn returned(&self, key: &impl Debug) {
        let labels: Vec<_> = self.endpoint("endpoint", key).into_iter().collect();
        self.counter(RETURNS, &labels).increment(1);
    }
}

/// A key as a label: its `Debug` form, without the quotes of a string key.
pub(crate) fn endpoint_label(key: &impl Debug) -> String {
    let text = format!("{key:?}");
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(unquoted) => unquoted.to_string(),
        None => text,
    }
}

/// Describes every metric once for the recorder (units and help texts).
pub(crate) fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        describe_counter!(PICKS, Unit::Count, "Calls sent to an endpoint.");
        describe_counter!(FAILURES, Unit::Count, "Calls counted as failed.");
        describe_gauge!(IN_FLIGHT, Unit::Count, "Calls in flight.");
        describe_gauge!(
            ENDPOINTS,
            Unit::Count,
            "Endpoints, by whether a call may go to them."
        );
        describe_gauge!(PANIC_MODE, "1 while the pool is in panic mode.");
        describe_counter!(
            EJECTIONS,
            Unit::Count,
            "Endpoints taken out of rotation by health."
        );
        describe_counter!(RETURNS, Unit::Count, "Endpoints back in rotation.");
        describe_counter!(RETRIES, Unit::Count, "Retries sent.");
        describe_counter!(RETRIES_REFUSED, Unit::Count, "Failures not retried.");
        describe_counter!(WRITES, Unit::Count, "Writes sent to the primary.");
        describe_counter!(
            WRITES_REFUSED,
            Unit::Count,
            "Writes with no primary in rotation."
        );
        describe_counter!(READS, Unit::Count, "Reads, by where they went and why.");
        describe_counter!(READS_RESENT, Unit::Count, "Reads resent to the primary.");
        describe_counter!(READS_REFUSED, Unit::Count, "Reads shed.");
        describe_gauge!(LAG_SECONDS, Unit::Seconds, "How far a replica is behind.");
        describe_gauge!(LAG_BYTES, Unit::Bytes, "WAL bytes a replica is behind.");
        describe_gauge!(
            LAG_TRANSACTIONS,
            Unit::Count,
            "Transactions a replica is behind."
        );
        describe_histogram!(
            POSITION_WAIT,
            Unit::Seconds,
            "Own-read waits for a replica's replay."
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_lose_their_quotes() {
        assert_eq!(endpoint_label(&"db-1"), "db-1");
        assert_eq!(endpoint_label(&7), "7");
        assert_eq!(endpoint_label(&("a", 1)), "(\"a\", 1)");
    }
}
