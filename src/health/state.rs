//! The health state machine of one endpoint.

use tokio::time::Instant;

/// Where an endpoint is in its life, as [`Balance::snapshot`](crate::Balance::snapshot)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// In rotation.
    Healthy,
    /// Taken out of rotation by outlier detection until `until`; `ejections` is how many
    /// times in a row (the multiplier of the ejection time).
    Ejected {
        /// When the ejection ends and probation begins.
        until: Instant,
        /// The ejection count.
        ejections: u32,
    },
    /// Out of rotation until one probation request succeeds.
    Probation,
    /// Out of rotation: active health checks failed `fall` times in a row. Back after `rise`
    /// passed checks.
    Failing,
    /// Removed or replaced: no new picks; shown until its calls in flight have ended.
    Draining,
}

/// An endpoint's health, kept under the membership lock.
#[derive(Debug, Clone)]
pub(crate) struct MemberHealth {
    pub(crate) state: EndpointState,
    /// Ejections so far; decays by one per base ejection time spent healthy.
    pub(crate) ejections: u32,
    /// When `ejections` last changed.
    pub(crate) ejections_changed: Instant,
    /// Active checks passed and failed in a row.
    pub(crate) checks_passed: u32,
    pub(crate) checks_failed: u32,
    /// When the next active check is due, and whether one is running.
    pub(crate) next_check: Instant,
    pub(crate) checking: bool,
    /// When the slow-start ramp began, while ramping.
    pub(crate) ramp_from: Option<Instant>,
    /// Calls completed and failed at the last statistical sweep.
    pub(crate) swept: (u64, u64),
}

impl MemberHealth {
    pub(crate) fn new() -> Self {
        MemberHealth {
            state: EndpointState::Healthy,
            ejections: 0,
            ejections_changed: Instant::now(),
            checks_passed: 0,
            checks_failed: 0,
            next_check: Instant::now(),
            checking: false,
            ramp_from: None,
            swept: (0, 0),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.state == EndpointState::Healthy
    }
}
