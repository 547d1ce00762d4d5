//! Per-endpoint load, shared by every snapshot that lists the endpoint.
//!
//! Membership changes build new snapshots, but an endpoint's counters must survive them (a
//! P2C pick must see the calls still in flight from before the change), so they live in one
//! [`EndpointStats`] behind an `Arc` that each snapshot, and each in-flight call, shares.

mod accounting;
mod event;
mod health_word;
mod in_flight;

pub(crate) use accounting::{Accounting, HealthSink};
pub(crate) use event::HealthEvent;
pub(crate) use in_flight::InFlight;

use crate::load::{PeakEwma, RttEstimate};
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
    /// Peak-EWMA latency estimate, timestamped in nanoseconds after the accounting's epoch.
    rtt: RttEstimate,
    /// A stable hash of the endpoint's key: where it sits on a hash ring.
    key_hash: u64,
    /// The configured weight, and the weight policies balance by: the same, or scaled by
    /// [`SLOW_START_SCALE`] and ramping while the endpoint is slowly starting.
    weight: AtomicU16,
    effective_weight: AtomicU16,
    /// Consecutive failures and probation flags (see `health_word.rs`).
    health: AtomicU32,
    /// What the policy wants accounted beyond these counters, shared by all the endpoints of a
    /// balancer; `None` when nothing is. Kept behind one pointer so this struct fits one cache
    /// line: with thousands of endpoints, the fewer lines a pick touches, the fewer misses.
    accounting: Option<Arc<Accounting>>,
}

impl EndpointStats {
    /// Counters for a new endpoint of the given weight, all at zero.
    ///
    /// The weight is not checked here; the balancer validates it against [`MAX_WEIGHT`] before
    /// an endpoint joins.
    pub fn new(weight: u32) -> Self {
        Self::member(weight, 0, None)
    }

    /// Counters for a pool member: its key's hash, and the balancer's shared accounting.
    pub(crate) fn member(weight: u32, key_hash: u64, accounting: Option<Arc<Accounting>>) -> Self {
        EndpointStats {
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rtt: RttEstimate::default(),
            key_hash,
            weight: AtomicU16::new(weight.min(u32::from(u16::MAX)) as u16),
            effective_weight: AtomicU16::new(weight.min(u32::from(u16::MAX)) as u16),
            health: AtomicU32::new(0),
            accounting,
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
        u32::from(self.weight.load(Ordering::Relaxed))
    }

    /// A new configured weight (checked by the pool), from discovery: policies see it in the
    /// next snapshot.
    pub(crate) fn set_weight(&self, weight: u32) {
        let weight = weight.clamp(1, u32::from(u16::MAX)) as u16;
        self.weight.store(weight, Ordering::Relaxed);
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
        self.rtt.last()
    }

    /// The latency estimate decayed to `now_ns` (see [`RttEstimate::decayed_ns`]).
    #[inline]
    pub(crate) fn decayed_rtt_ns(&self, now_ns: u64, ewma: &PeakEwma) -> f64 {
        self.rtt.decayed_ns(now_ns, ewma)
    }

    /// Counts a call as started; returns its start time, in nanoseconds after `epoch`, when
    /// calls are timed (`now_ns` is called only then, and reads the pick's clock).
    #[inline]
    pub(crate) fn start_call(&self, now_ns: impl FnOnce() -> u64) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed);
        let Some(accounting) = &self.accounting else {
            return 0;
        };
        if let Some(total) = &accounting.in_flight {
            total.0.fetch_add(1, Ordering::Relaxed);
        }
        match accounting.ewma {
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
        if let Some(ewma) = self.accounting.as_ref().and_then(|a| a.ewma.as_ref()) {
            self.record_latency(started_ns, succeeded, ewma);
        }
        self.track_health(succeeded);
        self.end_call();
    }

    /// Folds a completed call's latency into the estimate. Out of line: inlined, its
    /// registers were saved and restored on every completion, timed or not.
    #[inline(never)]
    fn record_latency(&self, started_ns: u64, succeeded: bool, ewma: &PeakEwma) {
        let now = self.now_ns(Instant::now);
        let mut sample = now.saturating_sub(started_ns) as f64;
        if !succeeded {
            sample = sample.max(ewma.penalty_ns);
        }
        self.rtt.record(now, sample, ewma);
    }

    /// Records a call dropped before it completed (a timeout, a lost `select!`). The endpoint
    /// took at least this long: that lower bound may raise the estimate but never lowers it.
    /// Otherwise an endpoint so slow that every call times out would never record a sample
    /// and would keep looking fast.
    #[inline]
    pub(crate) fn cancel_call(&self, started_ns: u64) {
        self.release_probe_claim();
        if let Some(ewma) = self.accounting.as_ref().and_then(|a| a.ewma.as_ref()) {
            let now = self.now_ns(Instant::now);
            let at_least = now.saturating_sub(started_ns) as f64;
            self.rtt.raise(now, at_least, ewma);
        }
        self.end_call();
    }

    #[inline]
    fn end_call(&self) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        if let Some(total) = self.accounting.as_ref().and_then(|a| a.in_flight.as_ref()) {
            total.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Calls in flight over the whole balancer, if it counts them.
    #[inline]
    pub(crate) fn total_in_flight(&self) -> Option<u64> {
        let total = self.accounting.as_ref()?.in_flight.as_ref()?;
        Some(total.0.load(Ordering::Relaxed))
    }

    /// Now in this endpoint's timestamps: nanoseconds after its clock's origin (0 for an
    /// untimed endpoint, which records no timestamps). On tokio's clock, `tokio_now` is the
    /// time; on the TSC it is not read.
    #[inline]
    pub(crate) fn now_ns(&self, tokio_now: impl FnOnce() -> Instant) -> u64 {
        match &self.accounting {
            Some(accounting) => accounting.clock.now_ns(tokio_now),
            None => 0,
        }
    }

    /// Identifies the endpoint's timestamps' origin: equal for endpoints of one balancer.
    #[inline]
    pub(crate) fn accounting_id(&self) -> *const Accounting {
        self.accounting
            .as_ref()
            .map_or(std::ptr::null(), Arc::as_ptr)
    }

    /// Folds a latency sample in directly, as a completed call would.
    #[cfg(test)]
    pub(crate) fn record_rtt(&self, now_ns: u64, sample_ns: f64, ewma: &PeakEwma) {
        self.rtt.record(now_ns, sample_ns, ewma);
    }

    #[cfg(test)]
    pub(crate) fn hold_in_flight(&self, n: usize) {
        let ended = self.ended.load(Ordering::Relaxed);
        self.started.store(ended + n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fit_one_cache_line() {
        assert_eq!(std::mem::size_of::<EndpointStats>(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn timed_calls_feed_the_estimate_and_cancelled_ones_can_only_raise_it() {
        let ewma = PeakEwma::default();
        let stats = Arc::new(EndpointStats::member(
            1,
            0,
            Accounting::new(Some(ewma), false, None),
        ));
        let now = || stats.now_ns(Instant::now);
        assert_eq!(stats.decayed_rtt_ns(now(), &ewma), 30e6, "the default rtt");

        let started = stats.start_call(now);
        tokio::time::advance(Duration::from_millis(100)).await;
        stats.complete_call(started, true);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(100)));
        assert_eq!(stats.in_flight(), 0);

        let started = stats.start_call(now);
        tokio::time::advance(Duration::from_millis(40)).await;
        stats.cancel_call(started);
        assert_eq!(
            stats.rtt_estimate(),
            Some(Duration::from_millis(100)),
            "a shorter cancelled call teaches nothing"
        );
        let started = stats.start_call(now);
        tokio::time::advance(Duration::from_millis(250)).await;
        stats.cancel_call(started);
        assert_eq!(stats.rtt_estimate(), Some(Duration::from_millis(250)));
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn the_tsc_clock_times_calls_in_real_time() {
        let ewma = PeakEwma::default().clock(crate::load::LatencyClock::Tsc);
        let stats = Arc::new(EndpointStats::member(
            1,
            0,
            Accounting::new(Some(ewma), false, None),
        ));
        let no_tokio = || -> Instant { unreachable!("the TSC clock reads no tokio time") };
        let started = stats.start_call(|| stats.now_ns(no_tokio));
        std::thread::sleep(Duration::from_millis(20));
        let Some(accounting) = &stats.accounting else {
            unreachable!("a timed endpoint has accounting")
        };
        let elapsed = accounting.clock.now_ns(no_tokio) - started;
        // Slept 20 ms: at least that, and not wildly more on a loaded machine.
        assert!(
            (20_000_000..2_000_000_000).contains(&elapsed),
            "{elapsed} ns"
        );
        stats.complete_call(started, true);
        let rtt = stats.rtt_estimate().expect("a sample");
        assert!(rtt >= Duration::from_millis(20), "{rtt:?}");
    }
}
