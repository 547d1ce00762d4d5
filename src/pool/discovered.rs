//! What a service registry knows about an endpoint besides its service: weight, zone,
//! draining. Carried through `tower::discover::Change::Insert` as the inserted "service".

use std::fmt;
use std::sync::Arc;

/// An endpoint as a service registry describes it: its service, weight, zone and whether it
/// drains, for [`Builder::discover_with_metadata`](crate::Builder::discover_with_metadata).
///
/// Sent as `Change::Insert(key, Discovered::new(service)…)`, it adds the endpoint, or
/// replaces the one with the same key (a new service is a new endpoint: its counters start
/// afresh and the old one drains). Sent as `Change::Insert(key, Discovered::update()…)`, it
/// changes only what it sets on the endpoint with that key, which keeps its service, its
/// calls in flight, its load and latency estimates and its health history: a registry's
/// weight change, canary share or zone move costs the endpoint nothing else.
///
/// - **weight** (1 ..= [`MAX_WEIGHT`](crate::MAX_WEIGHT), default 1): as
///   [`Builder::weighted_endpoint`](crate::Builder::weighted_endpoint). A change that names
///   an invalid weight (or, for an update, an unknown key) is skipped and logged at `warn`;
///   the stream goes on.
/// - **zone**: the endpoint's zone for [`Builder::locality`](crate::Builder::locality), in
///   place of the one its key gives; ignored without locality.
/// - **draining**: while `true`, the endpoint gets no new calls (its calls in flight go on)
///   but stays a member, so `draining(false)` brings it back with its history. It is an
///   exclusion of its own ([`Excluder::Discovery`](crate::Excluder::Discovery)): the
///   application's [`readmit`](crate::Balance::readmit) does not end it.
///
/// ```
/// use tower::{discover::Change, service_fn, ServiceExt};
/// use tower_lb::{policy::WeightedRoundRobin, Balance, BoxError, Discovered};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let node = |name: &'static str| service_fn(move |()| async move { Ok::<_, BoxError>(name) });
/// let (registry, changes) = futures::channel::mpsc::unbounded::<Result<_, BoxError>>();
/// registry.unbounded_send(Ok(Change::Insert("a", Discovered::new(node("a")).weight(3))))?;
/// registry.unbounded_send(Ok(Change::Insert("b", Discovered::new(node("b")))))?;
/// let lb = Balance::builder(WeightedRoundRobin::new())
///     .discover_with_metadata(changes)
///     .build()?;
/// assert_eq!(lb.snapshot()[0].weight, 3);
///
/// // The registry drains "a": it keeps its history, and gets no new calls.
/// registry.unbounded_send(Ok(Change::Insert("a", Discovered::update().draining(true))))?;
/// tokio::task::yield_now().await;
/// for _ in 0..4 {
///     assert_eq!(lb.clone().oneshot(()).await?, "b");
/// }
/// # Ok(()) }
/// ```
pub struct Discovered<S> {
    pub(crate) service: Option<S>,
    pub(crate) weight: Option<u32>,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) draining: Option<bool>,
}

impl<S> Discovered<S> {
    /// A new endpoint (or a replacement for the one with its key): weight 1, the zone of its
    /// key, not draining, unless set.
    pub fn new(service: S) -> Self {
        Discovered {
            service: Some(service),
            weight: None,
            zone: None,
            draining: None,
        }
    }

    /// A change to the endpoint with this key, which keeps its service and history: only
    /// what is set changes.
    pub fn update() -> Self {
        Discovered {
            service: None,
            weight: None,
            zone: None,
            draining: None,
        }
    }

    /// Its weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Its zone.
    pub fn zone(mut self, zone: impl AsRef<str>) -> Self {
        self.zone = Some(Arc::from(zone.as_ref()));
        self
    }

    /// Whether it drains (no new calls) or serves.
    pub fn draining(mut self, draining: bool) -> Self {
        self.draining = Some(draining);
        self
    }

    /// The same description around `wrap(service)`: how the balancer's endpoint layer wraps a
    /// discovered service.
    pub(crate) fn map<T>(self, wrap: impl FnOnce(S) -> T) -> Discovered<T> {
        Discovered {
            service: self.service.map(wrap),
            weight: self.weight,
            zone: self.zone,
            draining: self.draining,
        }
    }
}

impl<S> fmt::Debug for Discovered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovered")
            .field("service", &self.service.as_ref().map(|_| ..))
            .field("weight", &self.weight)
            .field("zone", &self.zone)
            .field("draining", &self.draining)
            .finish()
    }
}
