//! The balancer: a cloneable tower [`Service`](tower_service::Service) over a live set of
//! endpoints.

mod builder;
mod future;
mod layer;
mod service;

pub use builder::Builder;
pub use future::ResponseFuture;
pub use layer::BalanceLayer;

use crate::health::{EndpointState, ErrorsFail, Outlier};
use crate::{membership::Members, policy::Policy, snapshot::Snapshot, EndpointStats, Error};
use arc_swap::ArcSwap;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tower_layer::{Identity, Layer};

/// A load balancer over a set of endpoints, itself a tower `Service`.
///
/// - **Cheap to clone, shared state.** Clones share one pool, like `reqwest::Client`; hand one
///   to every task. No `Buffer` is needed in front of it.
/// - **Always ready.** `poll_ready` never waits on endpoints. `call` picks an endpoint from the
///   current snapshot with the policy `P` (which may look at the request), and the returned
///   [`ResponseFuture`] drives that endpoint's own `poll_ready` and `call`. So one busy endpoint
///   never blocks requests bound for another, and per-endpoint backpressure (an endpoint layer
///   such as `ConcurrencyLimitLayer`) still applies inside the future.
/// - **Fails fast.** With no endpoint to pick, the call resolves at once to
///   [`Error::NoEndpoints`]; it never pends forever.
/// - **Live membership.** [`insert`](Self::insert), [`remove`](Self::remove), or a
///   `tower::discover::Discover` stream given to the [builder](Builder::discover) change the pool
///   at runtime. A removed endpoint gets no new picks; its calls in flight complete.
///
/// Endpoint errors pass through unchanged, boxed as [`BoxError`](crate::BoxError).
///
/// `K` is the endpoint key, `S` the endpoint service, `P` the [`Policy`] and `L` the layer
/// that wraps each endpoint as it joins (see [`Builder::endpoint_layer`]).
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::P2c, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let backend = |port: u16| service_fn(move |path: &'static str| async move {
///     Ok::<_, BoxError>(format!("127.0.0.1:{port}{path}"))
/// });
/// let lb = Balance::builder(P2c::new())
///     .endpoints([8081, 8082].map(|port| (port, backend(port))))
///     .build()?;
///
/// let answer = lb.clone().oneshot("/hello").await?;
/// assert!(answer.ends_with("/hello"));
///
/// lb.insert(8083, backend(8083));
/// lb.remove(&8081)?;
/// assert_eq!(lb.snapshot().len(), 2);
/// # Ok(()) }
/// ```
pub struct Balance<K, S, P, L = Identity, C = ErrorsFail>
where
    P: Policy,
    L: Layer<S>,
{
    shared: Arc<Shared<K, S, P, L, C>>,
    /// This handle's own reference to the current snapshot, with the generation it was
    /// current at. A handle that is called again and again (behind `ServiceBuilder`, in a
    /// `Buffer` worker, in a `ready().await; call()` loop) then reads membership with one
    /// atomic load instead of an `arc-swap` guard, which costs two atomic read-modify-writes.
    /// Filled from the second call on, so a clone made for one `oneshot` never pays for it.
    cached: Option<(u64, SharedSnapshot<K, S, P, L>)>,
    called: bool,
}

type SharedSnapshot<K, S, P, L> = Arc<Snapshot<K, <L as Layer<S>>::Service, <P as Policy>::Table>>;

pub(crate) struct Shared<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    pub(crate) policy: P,
    pub(crate) layer: L,
    /// What counts as a failed call; cloned into each response future.
    pub(crate) classify: C,
    pub(crate) current: ArcSwap<Snapshot<K, L::Service, P::Table>>,
    /// Bumped after every publish of `current`, so handles can tell their cached snapshot is
    /// still the current one with a single load.
    pub(crate) generation: AtomicU64,
    members: Mutex<Members<K, L::Service>>,
    /// Why this balancer cannot serve at all (discovery could not be started); `None` normally.
    pub(crate) broken: Option<Error>,
    pub(crate) health: HealthConfig,
    /// Dropped with the last handle: tells the background drivers to stop.
    _stop_drivers: tokio::sync::watch::Sender<()>,
}

/// How the pool's health is judged.
#[derive(Debug, Clone)]
pub(crate) struct HealthConfig {
    pub(crate) outlier: Outlier,
    pub(crate) panic_threshold: f64,
}

/// A copy of one endpoint's state and counters, from [`Balance::snapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot<K> {
    /// The endpoint's key.
    pub key: K,
    /// Healthy, ejected, on probation or draining.
    pub state: EndpointState,
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
    fn new(key: &K, state: EndpointState, stats: &EndpointStats) -> Self {
        EndpointSnapshot {
            key: key.clone(),
            state,
            weight: stats.weight(),
            in_flight: stats.in_flight(),
            picks: stats.picks(),
            failures: stats.failures(),
            rtt_estimate: stats.rtt_estimate(),
        }
    }
}

impl<K, S, P> Balance<K, S, P>
where
    P: Policy,
{
    /// Starts building a balancer that picks with `policy`.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{policy::RoundRobin, Balance, BoxError};
    ///
    /// let lb = Balance::builder(RoundRobin::new())
    ///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }))
    ///     .build()
    ///     .unwrap();
    /// # let _ = lb;
    /// ```
    pub fn builder(policy: P) -> Builder<K, S, P> {
        Builder::new(policy)
    }
}

impl<K, S, P, L, C> Balance<K, S, P, L, C>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    /// Adds an endpoint of weight 1, or replaces the endpoint with the same key (the old one
    /// drains). The endpoint layer wraps it first.
    pub fn insert(&self, key: K, service: S) {
        let service = self.shared.layer.layer(service);
        let _ = self.shared.change(|members| {
            members.insert(key, service, 1);
            Ok(())
        });
    }

    /// Adds or replaces an endpoint with the given weight.
    ///
    /// # Errors
    /// [`Error::InvalidWeight`] unless `1 <= weight <= MAX_WEIGHT`; the pool is then unchanged.
    pub fn insert_weighted(&self, key: K, service: S, weight: u32) -> Result<(), Error> {
        crate::membership::check_weight(&key, weight)?;
        let service = self.shared.layer.layer(service);
        self.shared.change(|members| {
            members.insert(key, service, weight);
            Ok(())
        })
    }

    /// Removes an endpoint: it gets no new picks, and its calls in flight complete.
    ///
    /// # Errors
    /// [`Error::UnknownEndpoint`] if no endpoint has this key.
    pub fn remove(&self, key: &K) -> Result<(), Error> {
        self.shared.change(|members| members.remove(key))
    }

    /// A copy of every endpoint's state and counters: active ones in pool order, then draining
    /// ones.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{policy::RoundRobin, Balance, BoxError, EndpointState};
    ///
    /// let lb = Balance::builder(RoundRobin::new())
    ///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }))
    ///     .build()?;
    /// let snapshot = lb.snapshot();
    /// assert_eq!(snapshot[0].key, "a");
    /// assert_eq!(snapshot[0].state, EndpointState::Healthy);
    /// assert_eq!(snapshot[0].in_flight, 0);
    /// # Ok::<(), tower_lb::Error>(())
    /// ```
    pub fn snapshot(&self) -> Vec<EndpointSnapshot<K>> {
        let mut members = self.shared.members();
        members.forget_drained();
        let active = members
            .active
            .iter()
            .map(|m| EndpointSnapshot::new(&m.key, m.health.state, &m.stats));
        let draining = members
            .draining
            .iter()
            .map(|(key, stats)| EndpointSnapshot::new(key, EndpointState::Draining, stats));
        active.chain(draining).collect()
    }

    /// Whether the balancer is in panic mode: fewer than the panic threshold of its endpoints
    /// are healthy, so it balances over all of them.
    pub fn in_panic_mode(&self) -> bool {
        self.shared.members().panicking
    }

    /// How many times the balancer has entered panic mode.
    pub fn panic_mode_entries(&self) -> u64 {
        self.shared.members().panics
    }
}

impl<K, S, P, L, C> Shared<K, S, P, L, C>
where
    K: Clone + Eq + Hash + Debug,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    pub(crate) fn new(
        policy: P,
        layer: L,
        classify: C,
        mut members: Members<K, L::Service>,
        broken: Option<Error>,
        health: HealthConfig,
        stop_drivers: tokio::sync::watch::Sender<()>,
    ) -> Self {
        let current = ArcSwap::from_pointee(members.snapshot(&policy, health.panic_threshold));
        Shared {
            policy,
            layer,
            classify,
            current,
            generation: AtomicU64::new(0),
            members: Mutex::new(members),
            broken,
            health,
            _stop_drivers: stop_drivers,
        }
    }

    fn members(&self) -> MutexGuard<'_, Members<K, L::Service>> {
        // A panic while the lock was held cannot leave the list half-changed (every change is
        // one Vec operation), so a poisoned lock is safe to keep using.
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a batch of membership changes and publishes one new snapshot for all of them.
    pub(crate) fn change<T>(
        &self,
        apply: impl FnOnce(&mut Members<K, L::Service>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut members = self.members();
        let outcome = apply(&mut members)?;
        self.publish(&mut members);
        Ok(outcome)
    }

    /// Applies a change that may leave the pool as it was; publishes only if it did not.
    pub(crate) fn update(&self, apply: impl FnOnce(&mut Members<K, L::Service>) -> bool) {
        let mut members = self.members();
        if apply(&mut members) {
            self.publish(&mut members);
        }
    }

    fn publish(&self, members: &mut Members<K, L::Service>) {
        let snapshot = members.snapshot(&self.policy, self.health.panic_threshold);
        self.current.store(Arc::new(snapshot));
        // After the store, with Release: a handle that sees the new generation also sees the
        // new snapshot.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes the member list without publishing: for bookkeeping no pick depends on.
    pub(crate) fn with_members<T>(
        &self,
        change: impl FnOnce(&mut Members<K, L::Service>) -> T,
    ) -> T {
        change(&mut self.members())
    }

    /// Applies discovered changes as one batch. A removal of an unknown key is logged, not an
    /// error: discovery streams may repeat themselves.
    pub(crate) fn apply(&self, changes: Vec<tower::discover::Change<K, S>>) {
        let _ = self.change(|members| {
            apply_changes(&self.layer, members, changes);
            Ok(())
        });
    }

    /// Reads the member list (the health driver's timers).
    pub(crate) fn inspect<T>(&self, read: impl FnOnce(&Members<K, L::Service>) -> T) -> T {
        read(&self.members())
    }
}

impl<K, S, P, L, C> Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    /// A new handle on `shared`, with no snapshot cached yet.
    pub(crate) fn from_shared(shared: Arc<Shared<K, S, P, L, C>>) -> Self {
        Balance {
            shared,
            cached: None,
            called: false,
        }
    }
}

impl<K, S, P, L, C> Clone for Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    fn clone(&self) -> Self {
        Balance::from_shared(Arc::clone(&self.shared))
    }
}

impl<K, S, P, L, C> Debug for Balance<K, S, P, L, C>
where
    K: Debug,
    P: Policy + Debug,
    L: Layer<S>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("policy", &self.shared.policy)
            .field("endpoints", &self.shared.current.load().keys)
            .finish()
    }
}

pub(crate) fn apply_changes<K, S, L>(
    layer: &L,
    members: &mut Members<K, L::Service>,
    changes: Vec<tower::discover::Change<K, S>>,
) where
    K: Eq + Hash + Debug,
    L: Layer<S>,
{
    use tower::discover::Change;
    for change in changes {
        match change {
            Change::Insert(key, service) => members.insert(key, layer.layer(service), 1),
            Change::Remove(key) => {
                if let Err(error) = members.remove(&key) {
                    tracing::debug!(%error, "discovery removed an endpoint not in the pool");
                }
            }
        }
    }
}
