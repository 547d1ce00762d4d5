//! What the endpoints of one balancer share: the latency settings and clock origin, the
//! optional pool-wide in-flight count, and the line to the health driver.

use super::HealthEvent;
use crate::load::PeakEwma;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::time::Instant;

/// Accounting shared by all the endpoints of one balancer; each endpoint's counters point
/// to it, so what a call must record is one pointer away from the counters it updates.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// How calls are timed, when the policy measures latency.
    pub(crate) ewma: Option<PeakEwma>,
    /// The origin of all the endpoints' timestamps: one origin, so a pick converts the time
    /// once for every candidate.
    pub(crate) epoch: Instant,
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
                epoch: Instant::now(),
                in_flight: count_in_flight.then(TotalInFlight::default),
                health,
            })
        })
    }
}
