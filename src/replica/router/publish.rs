//! A router's metrics (feature `metrics`): the counts it keeps anyway, published by a
//! background task every interval; the request path pays nothing.

use super::stats::Counters;
use crate::telemetry::{self, Metrics};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Weak;

/// Which of the router's counts a metric follows.
type Count = fn(&Counters) -> &AtomicU64;

/// Publishes the router's counts every `metrics.every` until the router is dropped.
pub(super) async fn publish(counters: Weak<Counters>, metrics: Metrics) {
    telemetry::describe();
    let counter = |name, labels: &[(&'static str, &str)]| {
        let labels: Vec<_> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        metrics.router_counter(name, &labels)
    };
    let read = |route| counter(telemetry::READS, &[("route", route)]);
    let refused = |reason| counter(telemetry::READS_REFUSED, &[("reason", reason)]);
    let published: [(Count, ::metrics::Counter); 10] = [
        (|c| &c.writes, counter(telemetry::WRITES, &[])),
        (
            |c| &c.writes_without_primary,
            counter(telemetry::WRITES_REFUSED, &[]),
        ),
        (|c| &c.replica_reads, read("replica")),
        (|c| &c.pinned_reads, read("pinned")),
        (|c| &c.reads_behind, read("behind")),
        (|c| &c.fallback_reads, read("fallback")),
        (|c| &c.primary_reads, read("primary")),
        (|c| &c.retried_reads, counter(telemetry::READS_RESENT, &[])),
        (|c| &c.shed_reads, refused("primary_read_share")),
        (|c| &c.reads_without_replica, refused("no_replica")),
    ];
    let mut ticks = tokio::time::interval(metrics.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(counters) = counters.upgrade() else {
            return;
        };
        for (count, metric) in &published {
            metric.absolute(count(&counters).load(Relaxed));
        }
    }
}
