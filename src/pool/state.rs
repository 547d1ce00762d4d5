//! Where an endpoint is in its life, and the copy of it an application can read.

use crate::endpoint::EndpointStats;
use crate::pool::exclusion::Exclusions;
use std::time::Duration;
use tokio::time::Instant;

/// Where an endpoint is in its life, as [`Balance::snapshot`](crate::Balance::snapshot)
/// reports it.
///
/// ```
/// use tower_lb::EndpointState;
///
/// let state = EndpointState::Healthy;
/// assert!(matches!(state, EndpointState::Healthy));
/// ```
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

/// How often health has taken an endpoint out of rotation, and why the last time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ejections {
    pub(crate) count: u64,
    pub(crate) last_reason: Option<&'static str>,
}

/// A copy of one endpoint's state and counters, from [`Balance::snapshot`](crate::Balance::snapshot).
///
/// ```
/// use tower::service_fn;
/// use tower_lb::{policy::RoundRobin, Balance, BoxError, EndpointState};
///
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }))
///     .build()?;
/// let a = &lb.snapshot()[0];
/// assert_eq!((a.key, a.state, a.excluded), ("a", EndpointState::Healthy, None));
/// assert_eq!((a.ejections, a.last_ejection), (0, None));
/// # Ok::<(), tower_lb::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot<K> {
    /// The endpoint's key.
    pub key: K,
    /// Healthy, ejected, on probation or draining.
    pub state: EndpointState,
    /// Why the endpoint is held out of rotation whatever its health, by the application
    /// ([`Balance::exclude`](crate::Balance::exclude)) or a replica monitor: the first
    /// reason, the application's before any monitor's; `None` when nobody excludes it.
    pub excluded: Option<&'static str>,
    /// Every owner's exclusion of the endpoint ([`Exclusions::by`]).
    pub exclusions: Exclusions,
    /// How many times health has taken the endpoint out of rotation since it joined
    /// (outlier ejections, a failed probation included, and active checks failing).
    pub ejections: u64,
    /// Why, the last time: "consecutive failures", "failure percentage", "success rate",
    /// "probation request failed" or "health checks failing".
    pub last_ejection: Option<&'static str>,
    /// The configured weight.
    pub weight: u32,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Times picked since the endpoint joined.
    pub picks: u64,
    /// Failed calls since the endpoint joined.
    pub failures: u64,
    /// The last peak-EWMA latency estimate, if a latency-aware policy has measured a call.
    pub rtt_estimate: Option<Duration>,
}

impl<K: Clone> EndpointSnapshot<K> {
    pub(crate) fn new(
        key: &K,
        state: EndpointState,
        exclusions: Exclusions,
        ejections: Ejections,
        stats: &EndpointStats,
    ) -> Self {
        EndpointSnapshot {
            key: key.clone(),
            state,
            excluded: exclusions.first(),
            exclusions,
            ejections: ejections.count,
            last_ejection: ejections.last_reason,
            weight: stats.weight(),
            in_flight: stats.in_flight(),
            picks: stats.picks(),
            failures: stats.failures(),
            rtt_estimate: stats.rtt_estimate(),
        }
    }
}
