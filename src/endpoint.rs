//! Per-endpoint load, shared by every snapshot that lists the endpoint.
//!
//! Membership changes build new snapshots, but an endpoint's counters must survive them (a
//! P2C pick must see the calls still in flight from before the change), so they live in one
//! [`EndpointStats`] behind an `Arc` that each snapshot, and each in-flight call, shares.

use crate::load::PeakEwma;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The largest weight an endpoint may have.
///
/// Bounded because the weighted round-robin schedule holds one slot per unit of weight (after
/// dividing by the weights' common divisor): 4096 endpoints at the maximum weight make a
/// 16 MiB schedule, and no endpoint may be more than a thousand times another.
pub const MAX_WEIGHT: u32 = 1000;

/// Live load counters of one endpoint, read by the policies on every pick.
///
/// Counters are atomics, read and written without locks. The struct is aligned to its own
/// cache lines so two endpoints' counters, updated by calls on different threads, never share
/// one (false sharing would make every pick pay for every other thread's traffic).
///
/// Policies receive these through [`Candidates`](crate::policy::Candidates); an application
/// sees copies of them in [`Balance::snapshot`](crate::Balance::snapshot).
///
/// ```
/// use tower_lb::EndpointStats;
///
/// let stats = EndpointStats::new(3);
/// assert_eq!(stats.weight(), 3);
/// assert_eq!(stats.in_flight(), 0);
/// assert_eq!(stats.rtt_estimate(), None); // no call has completed yet
/// ```
#[derive(Debug)]
#[repr(align(128))]
pub struct EndpointStats {
    in_flight: AtomicUsize,
    picks: AtomicU64,
    failures: AtomicU64,
    /// Peak-EWMA latency estimate in nanoseconds, as `f64` bits; 0 until the first sample.
    rtt_bits: AtomicU64,
    /// When `rtt_bits` was last written, in nanoseconds after `born`.
    rtt_at: AtomicU64,
    born: Instant,
    weight: u32,
}

impl EndpointStats {
    /// Counters for a new endpoint of the given weight, all at zero.
    ///
    /// The weight is not checked here; the balancer validates it against [`MAX_WEIGHT`] before
    /// an endpoint joins.
    pub fn new(weight: u32) -> Self {
        EndpointStats {
            in_flight: AtomicUsize::new(0),
            picks: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rtt_bits: AtomicU64::new(0),
            rtt_at: AtomicU64::new(0),
            born: Instant::now(),
            weight,
        }
    }

    /// The endpoint's configured weight (1 ..= [`MAX_WEIGHT`]).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Calls sent to this endpoint whose response futures have neither completed nor been dropped.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How many times a policy has picked this endpoint.
    pub fn picks(&self) -> u64 {
        self.picks.load(Ordering::Relaxed)
    }

    /// How many calls to this endpoint have failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last peak-EWMA latency estimate, undecayed; `None` before the first measured call
    /// (only latency-aware policies measure calls).
    pub fn rtt_estimate(&self) -> Option<Duration> {
        let ns = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        (ns > 0.0).then(|| Duration::from_nanos(ns as u64))
    }

    /// The latency estimate decayed to `now`: the stored estimate shrinks by `exp(-elapsed/decay)`
    /// since it was written, as in Finagle's and tower's peak EWMA. Reading it writes nothing.
    pub(crate) fn decayed_rtt_ns(&self, now: Instant, decay_ns: f64, default_ns: f64) -> f64 {
        let rtt = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        if rtt <= 0.0 {
            return default_ns;
        }
        let elapsed =
            self.nanos_since_born(now) as f64 - self.rtt_at.load(Ordering::Relaxed) as f64;
        rtt * (-elapsed.max(0.0) / decay_ns).exp()
    }

    /// Folds one latency sample into the peak-EWMA estimate: a sample above the estimate
    /// replaces it (peak), a lower one is blended in with a weight that grows with the time
    /// since the last update.
    ///
    /// The two atomics are written without a lock; two completions racing here may lose one
    /// sample, which an estimate that is itself a smoothed approximation can afford. A lock
    /// per endpoint would put every completion on the same mutex.
    pub(crate) fn record_rtt(&self, now: Instant, sample_ns: f64, decay_ns: f64) {
        let at = self.nanos_since_born(now);
        let prior = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        let next = if prior < sample_ns {
            sample_ns
        } else {
            let elapsed = at as f64 - self.rtt_at.load(Ordering::Relaxed) as f64;
            let decay = (-elapsed.max(0.0) / decay_ns).exp();
            prior * decay + sample_ns * (1.0 - decay)
        };
        self.rtt_bits.store(next.to_bits(), Ordering::Relaxed);
        self.rtt_at.store(at, Ordering::Relaxed);
    }

    /// Raises the estimate to `at_least_ns` if it is below that, leaving it alone otherwise.
    pub(crate) fn raise_rtt(&self, now: Instant, at_least_ns: f64, ewma: &PeakEwma) {
        if at_least_ns > self.decayed_rtt_ns(now, ewma.decay_ns, ewma.default_ns) {
            self.rtt_bits
                .store(at_least_ns.to_bits(), Ordering::Relaxed);
            self.rtt_at
                .store(self.nanos_since_born(now), Ordering::Relaxed);
        }
    }

    pub(crate) fn start_call(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.picks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_call(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    pub(crate) fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn nanos_since_born(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.born).as_nanos() as u64
    }

    #[cfg(test)]
    pub(crate) fn hold_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_takes_peaks_and_decays() {
        let stats = EndpointStats::new(1);
        let decay = Duration::from_secs(10).as_nanos() as f64;
        let default = 30e6;
        assert_eq!(
            stats.decayed_rtt_ns(Instant::now(), decay, default),
            default
        );

        stats.record_rtt(Instant::now(), 100e6, decay);
        assert_eq!(stats.decayed_rtt_ns(Instant::now(), decay, default), 100e6);

        // A lower sample right away barely moves a fresh peak ...
        stats.record_rtt(Instant::now(), 10e6, decay);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(100)));

        // ... but after one decay period the estimate has shrunk by e.
        tokio::time::advance(Duration::from_secs(10)).await;
        let decayed = stats.decayed_rtt_ns(Instant::now(), decay, default);
        assert!(
            (decayed - 100e6 / std::f64::consts::E).abs() < 1e3,
            "{decayed}"
        );

        // A higher sample is a new peak at once.
        stats.record_rtt(Instant::now(), 500e6, decay);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(500)));
    }
}
