//! Per-endpoint load, shared by every snapshot that lists the endpoint.
//!
//! Membership changes build new snapshots, but an endpoint's counters must survive them (a
//! P2C pick must see the calls still in flight from before the change), so they live in one
//! [`EndpointStats`] behind an `Arc` that each snapshot, and each in-flight call, shares.

use crate::health::driver::HealthEvent;
use crate::load::PeakEwma;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The largest weight an endpoint may have.
///
/// Bounded because the weighted round-robin schedule holds one slot per unit of weight (after
/// dividing by the weights' common divisor): 4096 endpoints at the maximum weight make a
/// 16 MiB schedule, and no endpoint may be more than a thousand times another.
pub const MAX_WEIGHT: u32 = 1000;

/// With slow start, full weights are the configured ones × this, so that a ramp from 10 %
/// has integer steps even for weight 1.
pub(crate) const SLOW_START_SCALE: u32 = 10;

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
#[repr(align(64))]
pub struct EndpointStats {
    /// Calls started (= picks) and calls ended: in flight is their difference. Two monotonic
    /// counters cost one atomic increment per pick and one per completion, where an in-flight
    /// gauge plus a pick counter would cost three.
    started: AtomicU64,
    ended: AtomicU64,
    failures: AtomicU64,
    /// Peak-EWMA latency estimate in nanoseconds, as `f64` bits; 0 until the first sample.
    rtt_bits: AtomicU64,
    /// When `rtt_bits` was last written, in nanoseconds after the pool's epoch.
    rtt_at: AtomicU64,
    /// A stable hash of the endpoint's key: where it sits on a hash ring.
    key_hash: u64,
    /// The configured weight, and the weight policies balance by: the same, or scaled by
    /// [`SLOW_START_SCALE`] and ramping while the endpoint is slowly starting.
    weight: u16,
    effective_weight: AtomicU16,
    /// Consecutive failures and probation flags (see [`FAILURES`], [`PROBE`]).
    health: AtomicU32,
    /// What the policy wants accounted beyond these counters, shared by all the endpoints of a
    /// balancer; `None` when nothing is. Kept behind one pointer so this struct fits one cache
    /// line: with thousands of endpoints, the fewer lines a pick touches, the fewer misses.
    pool: Option<Arc<Pool>>,
}

/// Accounting shared by all the endpoints of one balancer.
#[derive(Debug)]
pub(crate) struct Pool {
    /// How calls are timed, when the policy measures latency.
    pub(crate) ewma: Option<PeakEwma>,
    /// The origin of all the endpoints' timestamps: one origin, so a pick converts the time
    /// once for every candidate.
    pub(crate) epoch: Instant,
    /// Calls in flight over the whole pool, when the policy needs the mean load (bounded-load
    /// consistent hashing). One more atomic per call, so kept only when asked for.
    pub(crate) in_flight: Option<PoolInFlight>,
    /// Where passive health reports go; `None` when health is off.
    pub(crate) health: Option<HealthSink>,
}

/// The response path's line to the health driver.
#[derive(Debug)]
pub(crate) struct HealthSink {
    /// Failures in a row that make an endpoint an outlier.
    pub(crate) consecutive_failures: u32,
    pub(crate) events: tokio::sync::mpsc::UnboundedSender<HealthEvent>,
}

/// A pool-wide in-flight counter, on a cache line of its own: every call on every thread
/// updates it.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct PoolInFlight(AtomicU64);

impl Pool {
    /// The accounting asked for; `None` if nothing is.
    pub(crate) fn new(
        latency: Option<PeakEwma>,
        count_in_flight: bool,
        health: Option<HealthSink>,
    ) -> Option<Arc<Pool>> {
        (latency.is_some() || count_in_flight || health.is_some()).then(|| {
            Arc::new(Pool {
                ewma: latency,
                epoch: Instant::now(),
                in_flight: count_in_flight.then(PoolInFlight::default),
                health,
            })
        })
    }
}

/// Bits of [`EndpointStats`]'s health word: consecutive failures below, probation flags above.
const FAILURES: u32 = (1 << 30) - 1;
/// The endpoint is on probation: the next completed call decides its fate.
const PROBE: u32 = 1 << 31;
/// A probation request has been sent and not yet completed.
const PROBE_CLAIMED: u32 = 1 << 30;

impl EndpointStats {
    /// Counters for a new endpoint of the given weight, all at zero.
    ///
    /// The weight is not checked here; the balancer validates it against [`MAX_WEIGHT`] before
    /// an endpoint joins.
    pub fn new(weight: u32) -> Self {
        Self::member(weight, 0, None)
    }

    /// Counters for a pool member: its key's hash, and the pool's shared accounting.
    pub(crate) fn member(weight: u32, key_hash: u64, pool: Option<Arc<Pool>>) -> Self {
        EndpointStats {
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rtt_bits: AtomicU64::new(0),
            rtt_at: AtomicU64::new(0),
            key_hash,
            weight: weight.min(u32::from(u16::MAX)) as u16,
            effective_weight: AtomicU16::new(weight.min(u32::from(u16::MAX)) as u16),
            health: AtomicU32::new(0),
            pool,
        }
    }

    /// A hash of the endpoint's key, the same in every process (SipHash with fixed keys, as
    /// the `hashring` crate uses); 0 for stats made with [`EndpointStats::new`].
    pub fn key_hash(&self) -> u64 {
        self.key_hash
    }

    /// The endpoint's configured weight (1 ..= [`MAX_WEIGHT`]).
    #[inline]
    pub fn weight(&self) -> u32 {
        u32::from(self.weight)
    }

    /// The weight load-balancing policies use: the configured weight, or, when the balancer
    /// has slow start, the configured weight × 10 scaled down while the endpoint ramps up.
    /// Only ratios between endpoints matter. (Consistent hashing places endpoints by their
    /// configured weight, so that slow start never moves keys.)
    #[inline]
    pub fn effective_weight(&self) -> u32 {
        u32::from(self.effective_weight.load(Ordering::Relaxed))
    }

    pub(crate) fn set_effective_weight(&self, weight: u32) {
        let weight = weight.clamp(1, u32::from(u16::MAX)) as u16;
        self.effective_weight.store(weight, Ordering::Relaxed);
    }

    /// Calls sent to this endpoint whose response futures have neither completed nor been dropped.
    #[inline]
    pub fn in_flight(&self) -> usize {
        // `ended` first: read in this order, `started` can only be the larger, as both only grow.
        let ended = self.ended.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        started.saturating_sub(ended) as usize
    }

    /// How many times a policy has picked this endpoint.
    pub fn picks(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// How many calls to this endpoint have completed or been dropped.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
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
    #[inline]
    pub(crate) fn decayed_rtt_ns(&self, now_ns: u64, ewma: &PeakEwma) -> f64 {
        let rtt = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        if rtt <= 0.0 {
            return ewma.default_ns;
        }
        let elapsed = now_ns as f64 - self.rtt_at.load(Ordering::Relaxed) as f64;
        rtt * decay_factor(elapsed * ewma.decay_rate)
    }

    /// Folds one latency sample into the peak-EWMA estimate: a sample above the estimate
    /// replaces it (peak), a lower one is blended in with a weight that grows with the time
    /// since the last update.
    ///
    /// The two atomics are written without a lock; two completions racing here may lose one
    /// sample, which an estimate that is itself a smoothed approximation can afford. A lock
    /// per endpoint would put every completion on the same mutex.
    pub(crate) fn record_rtt(&self, now_ns: u64, sample_ns: f64, ewma: &PeakEwma) {
        let at = now_ns;
        let prior = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        let next = if prior < sample_ns {
            sample_ns
        } else {
            let elapsed = at as f64 - self.rtt_at.load(Ordering::Relaxed) as f64;
            let decay = decay_factor(elapsed * ewma.decay_rate);
            prior * decay + sample_ns * (1.0 - decay)
        };
        self.rtt_bits.store(next.to_bits(), Ordering::Relaxed);
        self.rtt_at.store(at, Ordering::Relaxed);
    }

    /// Raises the estimate to `at_least_ns` if it is below that, leaving it alone otherwise.
    fn raise_rtt(&self, now_ns: u64, at_least_ns: f64, ewma: &PeakEwma) {
        if at_least_ns > self.decayed_rtt_ns(now_ns, ewma) {
            self.rtt_bits
                .store(at_least_ns.to_bits(), Ordering::Relaxed);
            self.rtt_at.store(now_ns, Ordering::Relaxed);
        }
    }

    /// Counts a call as started; returns its start time, in nanoseconds after `epoch`, when
    /// calls are timed (`now_ns` is called only then, and reads the pick's clock).
    pub(crate) fn start_call(&self, now_ns: impl FnOnce() -> u64) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed);
        let Some(pool) = &self.pool else {
            return 0;
        };
        if let Some(total) = &pool.in_flight {
            total.0.fetch_add(1, Ordering::Relaxed);
        }
        match pool.ewma {
            Some(_) => now_ns(),
            None => 0,
        }
    }

    /// Records a completed call: a failure, and its latency when calls are timed. A failed
    /// call counts at least the failure penalty, so an endpoint that fails fast does not look
    /// fast.
    #[inline]
    pub(crate) fn complete_call(self: &Arc<Self>, started_ns: u64, succeeded: bool) {
        if !succeeded {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ewma) = self.pool.as_ref().and_then(|pool| pool.ewma.as_ref()) {
            let now = self.clock_ns(Instant::now());
            let mut sample = now.saturating_sub(started_ns) as f64;
            if !succeeded {
                sample = sample.max(ewma.penalty_ns);
            }
            self.record_rtt(now, sample, ewma);
        }
        self.track_health(succeeded);
        self.end_call();
    }

    /// Records a call dropped before it completed (a timeout, a lost `select!`). The endpoint
    /// took at least this long: that lower bound may raise the estimate but never lowers it.
    /// Otherwise an endpoint so slow that every call times out would never record a sample
    /// and would keep looking fast.
    #[inline]
    pub(crate) fn cancel_call(&self, started_ns: u64) {
        // A cancelled probe leaves the endpoint on probation, for the next request to claim.
        if self.health.load(Ordering::Relaxed) & PROBE_CLAIMED != 0 {
            self.health.fetch_and(!PROBE_CLAIMED, Ordering::Relaxed);
        }
        if let Some(ewma) = self.pool.as_ref().and_then(|pool| pool.ewma.as_ref()) {
            let now = self.clock_ns(Instant::now());
            let at_least = now.saturating_sub(started_ns) as f64;
            self.raise_rtt(now, at_least, ewma);
        }
        self.end_call();
    }

    /// Passive health: counts consecutive failures and reports an outlier at the threshold;
    /// on probation, reports the outcome of the probe instead.
    #[inline]
    fn track_health(self: &Arc<Self>, succeeded: bool) {
        // The common case first, on the line this call has just written anyway: a success
        // with no failures counted and no probation needs nothing else.
        let word = self.health.load(Ordering::Relaxed);
        if succeeded && word == 0 {
            return;
        }
        let Some(sink) = self.pool.as_ref().and_then(|pool| pool.health.as_ref()) else {
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

    #[inline]
    fn end_call(&self) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        if let Some(total) = self.pool.as_ref().and_then(|pool| pool.in_flight.as_ref()) {
            total.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Calls in flight over the whole pool, if the pool counts them.
    #[inline]
    pub(crate) fn pool_in_flight(&self) -> Option<u64> {
        let total = self.pool.as_ref()?.in_flight.as_ref()?;
        Some(total.0.load(Ordering::Relaxed))
    }

    /// `now` in this endpoint's timestamps: nanoseconds after its timing's epoch (0 for an
    /// untimed endpoint, which records no timestamps).
    #[inline]
    pub(crate) fn clock_ns(&self, now: Instant) -> u64 {
        let Some(pool) = &self.pool else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(pool.epoch);
        // Without `as_nanos`, whose u128 arithmetic costs more than the subtraction.
        elapsed.as_secs() * 1_000_000_000 + u64::from(elapsed.subsec_nanos())
    }

    /// Identifies the endpoint's timestamps' origin: equal for endpoints of one balancer.
    #[inline]
    pub(crate) fn pool_id(&self) -> *const Pool {
        self.pool.as_ref().map_or(std::ptr::null(), Arc::as_ptr)
    }

    #[cfg(test)]
    pub(crate) fn hold_in_flight(&self, n: usize) {
        let ended = self.ended.load(Ordering::Relaxed);
        self.started.store(ended + n as u64, Ordering::Relaxed);
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
    #[inline]
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

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_takes_peaks_and_decays() {
        let ewma = PeakEwma::default();
        let stats = EndpointStats::member(1, 0, Pool::new(Some(ewma), false, None));
        assert_eq!(
            stats.decayed_rtt_ns(stats.clock_ns(Instant::now()), &ewma),
            30e6,
            "the default rtt"
        );

        let now = || stats.clock_ns(Instant::now());
        stats.record_rtt(now(), 100e6, &ewma);
        assert_eq!(stats.decayed_rtt_ns(now(), &ewma), 100e6);

        // A lower sample right away barely moves a fresh peak ...
        stats.record_rtt(now(), 10e6, &ewma);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(100)));

        // ... but after one decay period the estimate has shrunk by e.
        tokio::time::advance(Duration::from_secs(10)).await;
        let decayed = stats.decayed_rtt_ns(now(), &ewma);
        assert!(
            (decayed - 100e6 / std::f64::consts::E).abs() < 1e3,
            "{decayed}"
        );

        // A higher sample is a new peak at once.
        stats.record_rtt(now(), 500e6, &ewma);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(500)));
    }
}
