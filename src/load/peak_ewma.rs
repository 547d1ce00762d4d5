//! Peak-EWMA latency estimation (Finagle's, and tower's `load::PeakEwma`): the settings, the
//! estimate each endpoint keeps, and its update rule, in one place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a latency-aware policy wants calls measured: the settings of the peak-EWMA estimator.
///
/// Each endpoint's estimate jumps to any sample above it (so a slowdown shows at once) and
/// otherwise moves toward new samples with a weight that grows with the time since the last
/// update; between updates it decays toward zero with time constant `decay`, so an endpoint
/// that is avoided is eventually retried. A failed call counts as a sample of at least
/// `failure_penalty`: an endpoint that fails fast must not look fast.
///
/// **Latency differences below `resolution` (1 ms by default) are noise.** Two endpoints
/// whose estimates differ by less are compared on their load per unit of weight alone, so
/// equally fast endpoints share traffic by their weights (at equal load, the weighted draw
/// of the two candidates decides); one that is slower by more than the resolution loses
/// traffic as its cost `rtt × (in flight + 1)` says. Without it, the jitter of identical
/// endpoints (a peak that one scheduler hiccup leaves for seconds) decided between them: a
/// 2 : 1 weighting gave the heavy endpoint 44–86 % of the picks.
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
    /// Estimates closer than this (in nanoseconds) count as equal.
    pub(crate) resolution_ns: f64,
    pub(crate) clock: LatencyClock,
}

/// The clock that times calls for [`PeakEwma`]: read twice per call, at the pick and at the
/// response, so its cost is most of a peak-EWMA pick's.
///
/// ```
/// use tower_lb::{load::{LatencyClock, PeakEwma}, policy::P2c};
///
/// let policy = P2c::peak_ewma_with(PeakEwma::default().clock(LatencyClock::Tsc));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LatencyClock {
    /// tokio's clock (the default): `tokio::time::Instant`, which follows
    /// `tokio::time::pause` and `advance`, so tests with paused time see the latencies they
    /// simulate. A read is `clock_gettime`, about 30 ns on a virtual machine.
    #[default]
    Tokio,
    /// The CPU's time-stamp counter, read through the [`quanta`] crate and calibrated against
    /// the monotonic clock once per process (where the CPU has no invariant TSC, quanta falls
    /// back to the monotonic clock). A read costs about 12 ns. It ignores tokio's paused
    /// clock: a test that simulates latency with paused time measures none.
    Tsc,
}

impl Default for PeakEwma {
    /// Decay 10 s, default RTT 30 ms (Finagle's defaults), failure penalty 1 s, resolution
    /// 1 ms.
    fn default() -> Self {
        PeakEwma {
            decay_rate: 1.0 / nanos(Duration::from_secs(10)),
            default_ns: nanos(Duration::from_millis(30)),
            penalty_ns: nanos(Duration::from_secs(1)),
            resolution_ns: nanos(Duration::from_millis(1)),
            clock: LatencyClock::Tokio,
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

    /// The clock that times calls (default [`LatencyClock::Tokio`]).
    pub fn clock(mut self, clock: LatencyClock) -> Self {
        self.clock = clock;
        self
    }

    /// Latency differences below which two endpoints count as equally fast (default 1 ms;
    /// see above). `Duration::ZERO` compares every difference, as Finagle does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_lb::{load::PeakEwma, policy::P2c};
    ///
    /// // Sub-millisecond backends whose differences of 100 µs matter.
    /// let policy = P2c::peak_ewma_with(PeakEwma::default().resolution(Duration::from_micros(50)));
    /// # let _ = policy;
    /// ```
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.resolution_ns = nanos(resolution);
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

/// One endpoint's latency estimate: two atomics, written without a lock.
///
/// Timestamps are nanoseconds after an origin the caller chooses (one per balancer), so
/// the estimator itself never reads a clock: tests drive it with plain numbers.
#[derive(Debug, Default)]
pub(crate) struct RttEstimate {
    /// The estimate in nanoseconds, as `f64` bits; 0 until the first sample.
    bits: AtomicU64,
    /// When `bits` was last written.
    at: AtomicU64,
}

impl RttEstimate {
    /// The last estimate, undecayed; `None` before the first sample.
    pub(crate) fn last(&self) -> Option<Duration> {
        let ns = f64::from_bits(self.bits.load(Ordering::Relaxed));
        (ns > 0.0).then(|| Duration::from_nanos(ns as u64))
    }

    /// The estimate decayed to `now_ns`: it shrinks by `exp(-elapsed/decay)` since it was
    /// written, as in Finagle's and tower's peak EWMA. Reading it writes nothing.
    #[inline]
    pub(crate) fn decayed_ns(&self, now_ns: u64, ewma: &PeakEwma) -> f64 {
        let rtt = f64::from_bits(self.bits.load(Ordering::Relaxed));
        if rtt <= 0.0 {
            return ewma.default_ns;
        }
        let elapsed = now_ns as f64 - self.at.load(Ordering::Relaxed) as f64;
        rtt * decay_factor(elapsed * ewma.decay_rate)
    }

    /// Folds one sample in: a sample above the estimate replaces it (peak), a lower one is
    /// blended in with a weight that grows with the time since the last update.
    ///
    /// Two completions racing here may lose one sample, which an estimate that is itself a
    /// smoothed approximation can afford. A lock per endpoint would put every completion on
    /// the same mutex.
    pub(crate) fn record(&self, now_ns: u64, sample_ns: f64, ewma: &PeakEwma) {
        let prior = f64::from_bits(self.bits.load(Ordering::Relaxed));
        let next = if prior < sample_ns {
            sample_ns
        } else {
            let elapsed = now_ns as f64 - self.at.load(Ordering::Relaxed) as f64;
            let decay = decay_factor(elapsed * ewma.decay_rate);
            prior * decay + sample_ns * (1.0 - decay)
        };
        self.bits.store(next.to_bits(), Ordering::Relaxed);
        self.at.store(now_ns, Ordering::Relaxed);
    }

    /// Raises the estimate to `at_least_ns` if it is below that, leaving it alone otherwise:
    /// what a cancelled call teaches (it took at least this long).
    pub(crate) fn raise(&self, now_ns: u64, at_least_ns: f64, ewma: &PeakEwma) {
        if at_least_ns > self.decayed_ns(now_ns, ewma) {
            self.bits.store(at_least_ns.to_bits(), Ordering::Relaxed);
            self.at.store(now_ns, Ordering::Relaxed);
        }
    }
}

/// `exp(-x)` for `x = elapsed / decay`: how much of an estimate survives `elapsed`.
///
/// On the pick path `elapsed` is usually tiny next to the decay (milliseconds against
/// seconds), and there three terms of the series are exact to 2e-10, at a fraction of the
/// cost of `exp`, which would otherwise be a tenth of a peak-EWMA pick.
#[inline]
fn decay_factor(x: f64) -> f64 {
    let x = x.max(0.0);
    if x < 1e-3 {
        1.0 - x + x * x / 2.0
    } else {
        (-x).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_factor_matches_exp() {
        for x in [0.0f64, 1e-9, 1e-6, 5e-4, 9.99e-4, 1e-3, 0.5, 1.0, 20.0] {
            let exact = (-x).exp();
            assert!((decay_factor(x) - exact).abs() < 1e-9, "{x}");
        }
        assert_eq!(
            decay_factor(-5.0),
            1.0,
            "a clock that went backwards decays nothing"
        );
    }

    #[test]
    fn peak_ewma_takes_peaks_and_decays() {
        let ewma = PeakEwma::default();
        let rtt = RttEstimate::default();
        assert_eq!(rtt.decayed_ns(0, &ewma), 30e6, "the default rtt");

        rtt.record(0, 100e6, &ewma);
        assert_eq!(rtt.decayed_ns(0, &ewma), 100e6);

        // A lower sample right away barely moves a fresh peak ...
        rtt.record(0, 10e6, &ewma);
        assert_eq!(rtt.last(), Some(Duration::from_millis(100)));

        // ... but after one decay period the estimate has shrunk by e.
        let later = 10_000_000_000;
        let decayed = rtt.decayed_ns(later, &ewma);
        assert!(
            (decayed - 100e6 / std::f64::consts::E).abs() < 1e3,
            "{decayed}"
        );

        // A higher sample is a new peak at once.
        rtt.record(later, 500e6, &ewma);
        assert_eq!(rtt.last(), Some(Duration::from_millis(500)));

        // A lower bound below the estimate changes nothing; one above raises it.
        rtt.raise(later, 1e6, &ewma);
        assert_eq!(rtt.last(), Some(Duration::from_millis(500)));
        rtt.raise(later, 700e6, &ewma);
        assert_eq!(rtt.last(), Some(Duration::from_millis(700)));
    }
}
