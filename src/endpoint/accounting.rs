//! What the endpoints of one balancer share: the latency settings and clock origin, the
//! optional pool-wide in-flight count, and the line to the health driver.

use super::HealthEvent;
use crate::load::{LatencyClock, PeakEwma};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::time::Instant;

/// Accounting shared by all the endpoints of one balancer; each endpoint's counters point
/// to it, so what a call must record is one pointer away from the counters it updates.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// How calls are timed, when the policy measures latency.
    pub(crate) ewma: Option<PeakEwma>,
    /// The clock of all the endpoints' timestamps, and their origin: one origin, so a pick
    /// converts the time once for every candidate.
    pub(crate) clock: Timestamps,
    /// Calls in flight over the whole balancer, when the policy needs the mean load
    /// (bounded-load consistent hashing). One more atomic per call, so kept only when asked.
    pub(crate) in_flight: Option<TotalInFlight>,
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

/// A balancer-wide in-flight counter, on a cache line of its own: every call on every
/// thread updates it.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct TotalInFlight(pub(crate) AtomicU64);

impl Accounting {
    /// The accounting asked for; `None` if nothing is.
    pub(crate) fn new(
        latency: Option<PeakEwma>,
        count_in_flight: bool,
        health: Option<HealthSink>,
    ) -> Option<Arc<Accounting>> {
        (latency.is_some() || count_in_flight || health.is_some()).then(|| {
            Arc::new(Accounting {
                ewma: latency,
                clock: Timestamps::new(latency.map_or(LatencyClock::Tokio, |ewma| ewma.clock)),
                in_flight: count_in_flight.then(TotalInFlight::default),
                health,
            })
        })
    }
}

/// Nanoseconds since an origin, on the clock a [`LatencyClock`] names.
#[derive(Debug)]
pub(crate) enum Timestamps {
    Tokio { epoch: Instant },
    Tsc { clock: quanta::Clock, epoch: u64 },
}

impl Timestamps {
    fn new(clock: LatencyClock) -> Self {
        match clock {
            LatencyClock::Tokio => Timestamps::Tokio {
                epoch: Instant::now(),
            },
            LatencyClock::Tsc => {
                let clock = quanta::Clock::new();
                let epoch = clock.raw();
                Timestamps::Tsc { clock, epoch }
            }
        }
    }

    /// Now, in nanoseconds after the origin; `tokio_now` is read only on tokio's clock (a
    /// pick passes the time it has already read).
    #[inline]
    pub(crate) fn now_ns(&self, tokio_now: impl FnOnce() -> Instant) -> u64 {
        match self {
            Timestamps::Tokio { epoch } => {
                let elapsed = tokio_now().saturating_duration_since(*epoch);
                // Without `as_nanos`, whose u128 arithmetic costs more than the subtraction.
                elapsed.as_secs() * 1_000_000_000 + u64::from(elapsed.subsec_nanos())
            }
            Timestamps::Tsc { clock, epoch } => clock.delta_as_nanos(*epoch, clock.raw()),
        }
    }
}
