//! The balancer: a cloneable tower [`Service`](tower_service::Service) over a live set of
//! endpoints.

mod builder;
mod future;
mod layer;
#[cfg(feature = "metrics")]
mod publish;
mod service;
mod stats;
mod striped;

pub use builder::Builder;
pub use future::ResponseFuture;
pub use layer::BalanceLayer;
pub(crate) use service::Lease;
pub use stats::BalanceStats;

use crate::background::{DriverStatus, StartFn, StartOnRuntime};
use crate::error::Error;
use crate::health::driver::HealthPool;
use crate::health::ErrorsFail;
use crate::policy::Policy;
use crate::pool::{check_weight, EndpointSnapshot, Excluder, Snapshot};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;
use striped::StripedArc;
use tower_layer::{Identity, Layer};

/// A load balancer over a set of endpoints, itself a tower `Service`.
///
/// - **Cheap to clone, shared state.** Clones share one pool, like `reqwest::Client`; hand one
///   to every task, or clone one per request (`lb.clone().oneshot(req)`): a clone counts on a
///   reference count of its own thread's, so cores do not contend for one count. No `Buffer`
///   is needed in front of it.
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
    /// Striped by thread, so `lb.clone().oneshot(req)` does not make every request on every
    /// core write one reference count (see [`striped`]).
    inner: StripedArc<Inner<K, S, P, L, C>>,
    /// This handle's own reference to the current snapshot, with the generation it was
    /// current at. A handle that is called again and again (behind `ServiceBuilder`, in a
    /// `Buffer` worker, in a `ready().await; call()` loop) then reads membership with one
    /// atomic load instead of an `arc-swap` guard, which costs two atomic read-modify-writes.
    /// Filled from the second call on, so a clone made for one `oneshot` never pays for it.
    cached: Option<(u64, SharedSnapshot<K, S, P, L>)>,
    called: bool,
}

type SharedSnapshot<K, S, P, L> = Arc<Snapshot<K, <L as Layer<S>>::Service, <P as Policy>::Table>>;

/// What all the handles of one balancer share: the pool, and what the balancer adds on top
/// of it for each call.
pub(crate) struct Inner<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    /// Members, eligibility and the published snapshot; the drivers hold `Weak`s to it.
    pub(crate) pool: Arc<HealthPool<K, L::Service, P>>,
    /// Wraps every endpoint as it joins; shared with the discovery driver.
    layer: Arc<L>,
    /// What counts as a failed call; cloned into each response future.
    pub(crate) classify: C,
    /// How long a call may take ([`Builder::timeout`]).
    pub(crate) timeout: Option<std::time::Duration>,
    /// What the background drivers are doing.
    drivers: Drivers,
    /// Drivers waiting for a runtime (built outside one): the call path starts them.
    start_drivers: StartOnRuntime,
    /// Dropped with the last handle: tells the background drivers to stop.
    _stop_drivers: tokio::sync::watch::Sender<()>,
}

/// The state of each background driver.
#[derive(Debug, Clone)]
pub(crate) struct Drivers {
    pub(crate) health: DriverStatus,
    pub(crate) discovery: DriverStatus,
}

/// Spawns the drivers of a balancer built outside a runtime, once there is one.
pub(crate) type StartDrivers = StartFn;

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
        let service = self.inner.layer.layer(service);
        self.inner.pool.insert(key, service, 1);
    }

    /// Adds or replaces an endpoint with the given weight.
    ///
    /// # Errors
    /// [`Error::InvalidWeight`] unless `1 <= weight <= MAX_WEIGHT`; the pool is then unchanged.
    pub fn insert_weighted(&self, key: K, service: S, weight: u32) -> Result<(), Error> {
        check_weight(&key, weight)?;
        let service = self.inner.layer.layer(service);
        self.inner.pool.insert(key, service, weight);
        Ok(())
    }

    /// Removes an endpoint: it gets no new picks, and its calls in flight complete.
    ///
    /// # Errors
    /// [`Error::UnknownEndpoint`] if no endpoint has this key.
    pub fn remove(&self, key: &K) -> Result<(), Error> {
        self.inner.pool.remove(key)
    }

    /// Holds an endpoint out of rotation for `reason` until [`readmit`](Self::readmit),
    /// whatever its health: for a monitor of your own (a replica that lags, a host in
    /// maintenance). It gets no new picks, not even in panic mode, and does not count towards
    /// the panic threshold; its calls in flight complete, and health keeps tracking it.
    /// Excluding it again replaces the reason. The replica monitors keep exclusions of
    /// their own ([`Excluder`](crate::Excluder)): this one is the application's, and
    /// neither lifts the other's.
    ///
    /// # Errors
    /// [`Error::UnknownEndpoint`] if no endpoint has this key.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{policy::RoundRobin, Balance, BoxError};
    ///
    /// let echo = || service_fn(|x: u8| async move { Ok::<_, BoxError>(x) });
    /// let lb = Balance::builder(RoundRobin::new())
    ///     .endpoints([("a", echo()), ("b", echo())])
    ///     .build()?;
    /// lb.exclude(&"a", "replica lag over 500 ms")?;
    /// assert_eq!(lb.snapshot()[0].excluded, Some("replica lag over 500 ms"));
    /// lb.readmit(&"a")?;
    /// assert_eq!(lb.snapshot()[0].excluded, None);
    /// # Ok::<(), tower_lb::Error>(())
    /// ```
    pub fn exclude(&self, key: &K, reason: &'static str) -> Result<(), Error> {
        self.exclude_as(Excluder::Application, key, Some(reason))
    }

    /// Ends the application's [`exclude`](Self::exclude)sion: the endpoint is eligible again
    /// if it is healthy and no monitor excludes it.
    ///
    /// # Errors
    /// [`Error::UnknownEndpoint`] if no endpoint has this key.
    pub fn readmit(&self, key: &K) -> Result<(), Error> {
        self.exclude_as(Excluder::Application, key, None)
    }

    /// Resolves once `endpoint` leaves rotation (see [`Pool::out_of_rotation`](crate::pool::Pool)).
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) async fn out_of_rotation(&self, endpoint: &Arc<crate::endpoint::EndpointStats>) {
        self.inner.pool.out_of_rotation(endpoint).await
    }

    /// Sets (`Some(reason)`) or lifts (`None`) `owner`'s exclusion of an endpoint, leaving
    /// every other owner's as it is: for the replica monitors.
    pub(crate) fn exclude_as(
        &self,
        owner: Excluder,
        key: &K,
        reason: Option<&'static str>,
    ) -> Result<(), Error> {
        self.inner.pool.exclude(owner, key, reason)
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
        self.inner.pool.endpoints()
    }

    /// Whether the balancer is in panic mode: fewer than the panic threshold of its endpoints
    /// are healthy, so it balances over all of them.
    pub fn in_panic_mode(&self) -> bool {
        self.inner.pool.panicking()
    }

    /// How many times the balancer has entered panic mode.
    pub fn panic_mode_entries(&self) -> u64 {
        self.inner.pool.panic_entries()
    }

    /// Pool-wide figures: endpoints, eligible ones, calls in flight, panic mode, and whether
    /// the background drivers are running (see [`BalanceStats`]).
    pub fn stats(&self) -> BalanceStats {
        let (in_flight, panic_mode, panic_mode_entries) = self.inner.pool.totals();
        let current = self.inner.pool.current().load();
        BalanceStats {
            endpoints: current.members,
            eligible: current.eligible,
            in_flight,
            panic_mode,
            panic_mode_entries,
            health_driver: self.inner.drivers.health.get(),
            discovery_driver: self.inner.drivers.discovery.get(),
        }
    }
}

impl<K, S, P, L, C> Inner<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    pub(crate) fn new(
        pool: Arc<HealthPool<K, L::Service, P>>,
        layer: Arc<L>,
        classify: C,
        timeout: Option<std::time::Duration>,
        drivers: Drivers,
        start_drivers: Option<StartDrivers>,
        stop_drivers: tokio::sync::watch::Sender<()>,
    ) -> Self {
        Inner {
            pool,
            layer,
            classify,
            timeout,
            drivers,
            start_drivers: StartOnRuntime::new(start_drivers),
            _stop_drivers: stop_drivers,
        }
    }

    /// Starts drivers that were waiting for a runtime, if this call runs inside one.
    #[inline]
    pub(crate) fn start_waiting_drivers(&self) {
        self.start_drivers.start_if_waiting();
    }
}

impl<K, S, P, L, C> Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    /// The first handle on `inner`, with no snapshot cached yet.
    pub(crate) fn from_inner(inner: Arc<Inner<K, S, P, L, C>>) -> Self {
        Self::with_inner(StripedArc::new(inner))
    }

    /// A handle on `inner` with no snapshot cached yet.
    fn with_inner(inner: StripedArc<Inner<K, S, P, L, C>>) -> Self {
        Balance {
            inner,
            cached: None,
            called: false,
        }
    }
}

/// A handle that does not keep a balancer alive, for a background task above it (a replica
/// lag monitor) that must end with the balancer's last handle.
pub struct WeakBalance<K, S, P, L, C>(std::sync::Weak<Inner<K, S, P, L, C>>)
where
    P: Policy,
    L: Layer<S>;

impl<K, S, P, L, C> Debug for WeakBalance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakBalance").finish_non_exhaustive()
    }
}

impl<K, S, P, L, C> WeakBalance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    /// The balancer, while any handle to it lives.
    pub(crate) fn upgrade(&self) -> Option<Balance<K, S, P, L, C>> {
        self.0.upgrade().map(Balance::from_inner)
    }
}

impl<K, S, P, L, C> Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    pub(crate) fn downgrade(&self) -> WeakBalance<K, S, P, L, C> {
        WeakBalance(Arc::downgrade(self.inner.shared()))
    }
}

impl<K, S, P, L, C> Clone for Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
    fn clone(&self) -> Self {
        Balance::with_inner(self.inner.clone())
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
            .field("policy", self.inner.pool.policy())
            .field("endpoints", &self.inner.pool.current().load().keys)
            .finish()
    }
}
