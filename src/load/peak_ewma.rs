//! Peak-EWMA latency estimation (Finagle's, and tower's `load::PeakEwma`).

use std::time::Duration;

/// How a latency-aware policy wants calls measured: the settings of the peak-EWMA estimator.
///
/// Each endpoint's estimate jumps to any sample above it (so a slowdown shows at once) and
/// otherwise moves toward new samples with a weight that grows with the time since the last
/// update; between updates it decays toward zero with time constant `decay`, so an endpoint
/// that is avoided is eventually retried. A failed call counts as a sample of at least
/// `failure_penalty`: an endpoint that fails fast must not look fast.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::{load::PeakEwma, policy::P2c};
///
/// let ewma = PeakEwma::default()
///     .decay(Duration::from_secs(5))
///     .default_rtt(Duration::from_millis(10))
///     .failure_penalty(Duration::from_millis(500));
/// let policy = P2c::peak_ewma_with(ewma);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    /// `1 / decay` in nanoseconds: the pick path multiplies rather than divides.
    pub(crate) decay_rate: f64,
    pub(crate) default_ns: f64,
    pub(crate) penalty_ns: f64,
}

impl Default for PeakEwma {
    /// Decay 10 s, default RTT 30 ms (Finagle's defaults), failure penalty 1 s.
    fn default() -> Self {
        PeakEwma {
            decay_rate: 1.0 / nanos(Duration::from_secs(10)),
            default_ns: nanos(Duration::from_millis(30)),
            penalty_ns: nanos(Duration::from_secs(1)),
        }
    }
}

impl PeakEwma {
    /// The time constant over which an old estimate loses weight (default 10 s). A zero
    /// duration is raised to one nanosecond.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay_rate = 1.0 / nanos(decay).max(1.0);
        self
    }

    /// The latency assumed for an endpoint that has no measured call yet (default 30 ms).
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_ns = nanos(rtt);
        self
    }

    /// The least latency a failed call is recorded with (default 1 s).
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.penalty_ns = nanos(penalty);
        self
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}
