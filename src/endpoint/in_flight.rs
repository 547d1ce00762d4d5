//! The in-flight guard a response future carries.

use super::EndpointStats;
use std::sync::Arc;

/// Counts one call against its endpoint from the pick until the response future completes or
/// is dropped, whichever comes first: a dropped guard releases the count, so cancelled calls
/// (a timeout, a `select!` that lost) never leave an endpoint looking busy forever.
///
/// Sixteen bytes: the response future is moved at least once per request, and everything the
/// completion needs besides the start time lives in the endpoint's [`EndpointStats`].
#[derive(Debug)]
pub(crate) struct InFlight {
    stats: Arc<EndpointStats>,
    /// When the call started, in nanoseconds after the accounting's epoch; 0 when untimed;
    /// [`COMPLETED`] once the outcome is recorded.
    started_ns: u64,
}

/// Marks a guard whose call has completed, so `Drop` has nothing left to do. No call starts
/// 584 years after its balancer was built.
const COMPLETED: u64 = u64::MAX;

impl InFlight {
    /// Starts counting a call; `now_ns` is called only if the endpoint's calls are timed.
    #[inline]
    pub(crate) fn start(stats: Arc<EndpointStats>, now_ns: impl FnOnce() -> u64) -> Self {
        let started_ns = stats.start_call(now_ns);
        InFlight { stats, started_ns }
    }

    /// The endpoint the call went to.
    #[inline]
    pub(crate) fn stats(&self) -> &Arc<EndpointStats> {
        &self.stats
    }

    /// Records the outcome of a completed call and releases its in-flight count.
    #[inline]
    pub(crate) fn complete(mut self, succeeded: bool) {
        self.stats.complete_call(self.started_ns, succeeded);
        self.started_ns = COMPLETED;
    }
}

impl Drop for InFlight {
    // Inlined, with the cancellation out of line: after `complete` the check folds away, so
    // a completed call pays no call into `drop` (16 instructions per request, measured).
    #[inline]
    fn drop(&mut self) {
        if self.started_ns != COMPLETED {
            self.cancel();
        }
    }
}

impl InFlight {
    /// Records the call as dropped before it completed.
    #[cold]
    #[inline(never)]
    fn cancel(&mut self) {
        self.stats.cancel_call(self.started_ns);
    }
}
