//! The health word of [`EndpointStats`]: consecutive failures and the probation flags, in one
//! atomic on the line every completion writes anyway, so passive health costs a clean
//! success one load.

use super::{EndpointStats, HealthEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Consecutive failures, in the low bits.
const FAILURES: u32 = (1 << 30) - 1;
/// The endpoint is on probation: the next completed call decides its fate.
const PROBE: u32 = 1 << 31;
/// A probation request has been sent and not yet completed.
const PROBE_CLAIMED: u32 = 1 << 30;

impl EndpointStats {
    /// The endpoint asked for no calls for `span` (a `Retry-After`): tells the health driver,
    /// when there is one (outlier detection on).
    pub(crate) fn hold_off(self: &Arc<Self>, span: std::time::Duration) {
        if let Some(sink) = self.accounting.as_ref().and_then(|a| a.health.as_ref()) {
            let _ = sink.events.send(HealthEvent::HoldOff {
                endpoint: Arc::clone(self),
                span,
            });
        }
    }

    /// Passive health: counts consecutive failures and reports an outlier at the threshold;
    /// on probation, reports the outcome of the probe instead.
    #[inline]
    pub(super) fn track_health(self: &Arc<Self>, succeeded: bool) {
        // The common case first, on the line this call has just written anyway: a success
        // with no failures counted and no probation needs nothing else.
        let word = self.health.load(Ordering::Relaxed);
        if succeeded && word == 0 {
            return;
        }
        self.track_health_word(word, succeeded);
    }

    /// `track_health` past its fast path. Out of line, so the registers it needs are not
    /// saved and restored on every completion.
    #[inline(never)]
    fn track_health_word(self: &Arc<Self>, word: u32, succeeded: bool) {
        let Some(sink) = self.accounting.as_ref().and_then(|a| a.health.as_ref()) else {
            return;
        };
        if word & PROBE != 0 {
            // Only the call that clears the flag reports, if several raced (panic mode).
            if self
                .health
                .fetch_and(!(PROBE | PROBE_CLAIMED), Ordering::Relaxed)
                & PROBE
                != 0
            {
                let _ = sink.events.send(HealthEvent::ProbeDone {
                    endpoint: Arc::clone(self),
                    succeeded,
                });
            }
        } else if succeeded {
            self.health.fetch_and(!FAILURES, Ordering::Relaxed);
        } else if sink.consecutive_failures > 0 {
            let failures = (self.health.fetch_add(1, Ordering::Relaxed) & FAILURES) + 1;
            if failures == sink.consecutive_failures {
                let _ = sink.events.send(HealthEvent::Outlier(Arc::clone(self)));
            }
        }
    }

    /// A cancelled probe leaves the endpoint on probation, for the next request to claim.
    #[inline]
    pub(super) fn release_probe_claim(&self) {
        if self.health.load(Ordering::Relaxed) & PROBE_CLAIMED != 0 {
            self.health.fetch_and(!PROBE_CLAIMED, Ordering::Relaxed);
        }
    }

    /// Claims the one probation request, if the endpoint is on probation and nobody has.
    #[inline]
    pub(crate) fn try_claim_probe(&self) -> bool {
        let word = self.health.load(Ordering::Relaxed);
        word & PROBE != 0
            && word & PROBE_CLAIMED == 0
            && self
                .health
                .compare_exchange(
                    word,
                    word | PROBE_CLAIMED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Puts the endpoint on probation: the next completed call decides. Failures in a row
    /// start again from zero.
    pub(crate) fn enter_probation(&self) {
        self.health.store(PROBE, Ordering::Relaxed);
    }

    /// Clears the health word: no failures in a row, no probation. For every transition that
    /// starts the count afresh (ejected, restored, failing checks, an ejection the cap refused).
    pub(crate) fn clear_health(&self) {
        self.health.store(0, Ordering::Relaxed);
    }

    /// Failures in a row so far.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.health.load(Ordering::Relaxed) & FAILURES
    }
}
