//! The in-flight guard a response future carries.

use super::{peak_ewma::nanos, PeakEwma};
use crate::EndpointStats;
use std::sync::Arc;
use tokio::time::Instant;

/// Counts one call against its endpoint from the pick until the response future completes or
/// is dropped, whichever comes first: the count is released in `Drop`, so cancelled calls
/// (a timeout, a `select!` that lost) never leave an endpoint looking busy forever.
#[derive(Debug)]
pub(crate) struct InFlight {
    stats: Arc<EndpointStats>,
    /// Set when the policy measures latency: when the call started, and how to record it.
    timing: Option<(Instant, PeakEwma)>,
}

impl InFlight {
    pub(crate) fn start(stats: Arc<EndpointStats>, timing: Option<(Instant, PeakEwma)>) -> Self {
        stats.start_call();
        InFlight { stats, timing }
    }

    /// Records the outcome of a completed call and releases its in-flight count.
    pub(crate) fn complete(mut self, succeeded: bool) {
        if !succeeded {
            self.stats.record_failure();
        }
        if let Some((started, ewma)) = self.timing.take() {
            let now = Instant::now();
            let mut sample = nanos(now.saturating_duration_since(started));
            if !succeeded {
                sample = sample.max(ewma.penalty_ns);
            }
            self.stats.record_rtt(now, sample, ewma.decay_ns);
        }
    }
}

impl Drop for InFlight {
    /// Releases the in-flight count. A call dropped before completing (a timeout, a lost
    /// `select!`) still tells something about latency: the endpoint took at least this long.
    /// That lower bound may raise the estimate but never lowers it; otherwise an endpoint so
    /// slow that every call times out would never record a sample and would keep looking fast.
    fn drop(&mut self) {
        if let Some((started, ewma)) = self.timing.take() {
            let now = Instant::now();
            let at_least = nanos(now.saturating_duration_since(started));
            self.stats.raise_rtt(now, at_least, &ewma);
        }
        self.stats.end_call();
    }
}
