//! Building a [`Balance`].

use super::{Balance, Drivers, Inner, StartDrivers};
use crate::background::{DriverState, DriverStatus};
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
use crate::base_url::{BaseUrl, HttpEndpoint};
use crate::discover::{self, BoxDiscover};
use crate::endpoint::{Accounting, HealthSink};
use crate::error::{BoxError, Error};
use crate::health::{driver, ActiveChecks, ErrorsFail, MemberHealth, Outlier, SlowStart};
use crate::policy::Policy;
use crate::pool::{check_weight, Locality, Members, Pool, Zoning};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::discover::Discover;
use tower_layer::{Identity, Layer};

/// How many batches of ready discovery changes `build` applies itself.
const BUILD_BATCHES: usize = 64;

/// Configures a [`Balance`]: its endpoints, where more come from, and how each is wrapped.
///
/// ```
/// use std::time::Duration;
/// use tower::{limit::ConcurrencyLimitLayer, service_fn, ServiceBuilder};
/// use tower_lb::{policy::P2c, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let add = |n: u32| service_fn(move |x: u32| async move { Ok::<_, BoxError>(x + n) });
/// let lb = Balance::builder(P2c::new())
///     // Each endpoint gets its own limit of 16 calls in flight; each call 1 s at most.
///     .endpoint_layer(ServiceBuilder::new().concurrency_limit(16))
///     .timeout(Duration::from_secs(1))
///     .weighted_endpoint("a", add(0), 2)?
///     .endpoint("b", add(1))
///     .build()?;
/// # let _ = lb;
/// # Ok(()) }
/// ```
pub struct Builder<K, S, P, L = Identity, C = ErrorsFail> {
    policy: P,
    layer: L,
    classify: C,
    endpoints: Vec<(K, S, u32)>,
    discover: Option<BoxDiscover<K, S>>,
    health: HealthOptions<K>,
    timeout: Option<Duration>,
    zoning: Option<Zoning<K>>,
}

/// The builder's settings for its background drivers: health, and what they publish.
struct HealthOptions<K> {
    /// `None`: the default settings.
    outlier: Option<Outlier>,
    checks: Option<ActiveChecks<K>>,
    slow_start: Option<SlowStart>,
    panic_threshold: f64,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::telemetry::Metrics>,
}

/// Below this share of healthy endpoints, the balancer uses all of them (Envoy's default).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;

impl<K, S, P> Builder<K, S, P> {
    pub(crate) fn new(policy: P) -> Self {
        Builder {
            policy,
            layer: Identity::new(),
            classify: ErrorsFail,
            endpoints: Vec::new(),
            discover: None,
            health: HealthOptions {
                outlier: None,
                checks: None,
                slow_start: None,
                panic_threshold: DEFAULT_PANIC_THRESHOLD,
                #[cfg(feature = "metrics")]
                metrics: None,
            },
            timeout: None,
            zoning: None,
        }
    }
}

impl<K, S, P, L, C> Builder<K, S, P, L, C> {
    /// Adds an endpoint of weight 1. A later endpoint with the same key replaces it.
    pub fn endpoint(mut self, key: K, service: S) -> Self {
        self.endpoints.push((key, service, 1));
        self
    }

    /// Adds endpoints of weight 1.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = (K, S)>) -> Self {
        self.endpoints.extend(
            endpoints
                .into_iter()
                .map(|(key, service)| (key, service, 1)),
        );
        self
    }

    /// Adds an endpoint with a weight (see [`MAX_WEIGHT`](crate::MAX_WEIGHT)).
    ///
    /// # Errors
    /// [`Error::InvalidWeight`] unless `1 <= weight <= MAX_WEIGHT`.
    pub fn weighted_endpoint(mut self, key: K, service: S, weight: u32) -> Result<Self, Error>
    where
        K: Debug,
    {
        check_weight(&key, weight)?;
        self.endpoints.push((key, service, weight));
        Ok(self)
    }

    /// Takes membership changes from a `tower::discover::Discover` stream as well.
    ///
    /// Changes that are ready at [`build`](Self::build) time are applied before it returns;
    /// later ones by a background task on the tokio runtime, which ends when the stream ends
    /// or the last handle to the balancer is dropped. Discovered endpoints have weight 1 and
    /// the zone of their key; for a registry's weights, zones and draining flags use
    /// [`discover_with_metadata`](Self::discover_with_metadata). A stream error is logged and
    /// skipped.
    ///
    /// ```
    /// use tower::{discover::ServiceList, service_fn, ServiceExt};
    /// use tower_lb::{policy::RoundRobin, Balance, BoxError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
    /// let services = (0..3).map(|i| service_fn(move |()| async move { Ok::<_, BoxError>(i) }));
    /// let lb = Balance::builder(RoundRobin::new())
    ///     .discover(ServiceList::new(services))
    ///     .build()?;
    /// assert_eq!(lb.snapshot().len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn discover<D>(mut self, discover: D) -> Self
    where
        D: Discover<Key = K, Service = S> + Send + 'static,
        D::Error: Into<BoxError>,
    {
        self.discover = Some(discover::boxed(discover));
        self
    }

    /// Takes membership changes from a `Discover` stream whose services come with their
    /// weight, zone and draining flag ([`Discovered`](crate::Discovered)), as a service
    /// registry knows them; an update (`Discovered::update()`) changes them on an endpoint
    /// without touching its load and health history. Otherwise as [`discover`](Self::discover).
    pub fn discover_with_metadata<D>(mut self, discover: D) -> Self
    where
        D: Discover<Key = K, Service = crate::Discovered<S>> + Send + 'static,
        D::Error: Into<BoxError>,
        S: 'static,
    {
        self.discover = Some(discover::boxed_with_metadata(discover));
        self
    }

    /// Prefers zones in the order of `locality`, the local zone first: traffic spills to the
    /// next zones as the local one's health drops, and fails over to them when it is down
    /// (the formula is on [`Locality`]). Each endpoint's zone is `zone_of(key)`, found once
    /// when it joins, from the builder, [`Balance::insert`] or discovery; an endpoint in a
    /// zone not listed comes after all listed zones.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{policy::P2c, Balance, Locality};
    ///
    /// let node = || service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) });
    /// let lb = Balance::builder(P2c::new())
    ///     .endpoints([(("eu-west-1a", 1), node()), (("eu-west-1a", 2), node()), (("eu-west-1b", 1), node())])
    ///     .locality(Locality::new(["eu-west-1a", "eu-west-1b"]), |&(zone, _)| zone)
    ///     .build()?;
    /// # let _ = lb;
    /// # Ok::<(), tower_lb::Error>(())
    /// ```
    pub fn locality<Z: AsRef<str>>(
        mut self,
        locality: Locality,
        zone_of: impl Fn(&K) -> Z + Send + Sync + 'static,
    ) -> Self {
        self.zoning = Some(Zoning::new(locality, zone_of));
        self
    }

    #[cfg(feature = "metrics")]
    /// Publishes the balancer's counts, ejections and returns through the `metrics` facade
    /// (feature `metrics`; the names are in [`telemetry`](crate::telemetry)).
    pub fn metrics(mut self, metrics: crate::telemetry::Metrics) -> Self {
        self.health.metrics = Some(metrics);
        self
    }

    /// Wraps every endpoint in `layer` as it joins the pool, from the builder, from
    /// [`Balance::insert`] or from discovery: a per-endpoint timeout, concurrency limit, or any
    /// `ServiceBuilder` stack.
    pub fn endpoint_layer<L2>(self, layer: L2) -> Builder<K, S, P, L2, C> {
        Builder {
            policy: self.policy,
            layer,
            classify: self.classify,
            endpoints: self.endpoints,
            discover: self.discover,
            health: self.health,
            timeout: self.timeout,
            zoning: self.zoning,
        }
    }

    /// What counts as a failed call (default [`ErrorsFail`]: every `Err`). For HTTP,
    /// [`ServerErrors`](crate::health::ServerErrors) also counts 5xx responses.
    ///
    /// The classifier is cloned into every response future, so keep it cheap to clone: a unit
    /// struct or a closure that captures nothing (not an `Arc`, whose count every request
    /// would then touch).
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{health::ServerErrors, policy::P2c, Balance};
    ///
    /// let lb = Balance::builder(P2c::new())
    ///     .classify(ServerErrors)
    ///     .endpoint("a", service_fn(|_: ()| async {
    ///         Ok::<_, std::io::Error>(http::Response::new(()))
    ///     }))
    ///     .build()?;
    /// # let _ = lb;
    /// # Ok::<(), tower_lb::Error>(())
    /// ```
    pub fn classify<C2>(self, classify: C2) -> Builder<K, S, P, L, C2> {
        Builder {
            policy: self.policy,
            layer: self.layer,
            classify,
            endpoints: self.endpoints,
            discover: self.discover,
            health: self.health,
            timeout: self.timeout,
            zoning: self.zoning,
        }
    }

    /// Fails a call that takes longer than `timeout` with [`Error::Timeout`], counted as a
    /// failure of its endpoint (for outlier detection and peak-EWMA). Behind a
    /// [`RetryLayer`](crate::retry::RetryLayer) it bounds each attempt. `Duration::MAX` means
    /// never; there is no timeout by default.
    ///
    /// Unlike `tower::timeout` in an [`endpoint_layer`](Self::endpoint_layer), which turns
    /// the endpoint's error into a `BoxError`, this keeps the endpoint's own error type, and
    /// with it the balancer's futures usable inside `tokio::spawn` (see the README's note on
    /// rust-lang/rust#102211). The timer is tokio's, started when the call is first polled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::{policy::P2c, Balance, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let slow = service_fn(|()| async {
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     Ok::<_, std::io::Error>("too late")
    /// });
    /// let lb = Balance::builder(P2c::new())
    ///     .timeout(Duration::from_millis(20))
    ///     .endpoint("slow", slow)
    ///     .build()
    ///     .unwrap();
    /// let error = lb.oneshot(()).await.unwrap_err();
    /// assert!(matches!(error.downcast_ref::<Error>(), Some(Error::Timeout { .. })));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks every endpoint actively, on a timer (see [`ActiveChecks`]), from a task on
    /// the tokio runtime (see [`build`](Self::build) for a balancer built outside one).
    pub fn health_check(mut self, checks: ActiveChecks<K>) -> Self {
        self.health.checks = Some(checks);
        self
    }

    /// Ramps up the weight of endpoints that join later, or come back into rotation (see
    /// [`SlowStart`]), stepped by a task on the tokio runtime.
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.health.slow_start = Some(slow_start);
        self
    }

    /// Passive outlier detection settings ([`Outlier::disabled`] turns it off).
    ///
    /// On by default with [`Outlier::default`], driven by a task on the tokio runtime (see
    /// [`build`](Self::build) for a balancer built outside one).
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_lb::{health::Outlier, policy::P2c, Balance, BoxError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
    /// let lb = Balance::builder(P2c::new())
    ///     .outlier(Outlier::consecutive_failures(3))
    ///     .endpoint("a", service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
    ///     .build()?;
    /// # let _ = lb;
    /// # Ok(()) }
    /// ```
    pub fn outlier(mut self, outlier: Outlier) -> Self {
        self.health.outlier = Some(outlier);
        self
    }

    /// Below this share of healthy endpoints (default 0.5), balance over all endpoints, healthy
    /// or not: when most of a pool looks unhealthy, the health signal is more likely wrong
    /// than the pool. 0 disables panic mode: with no healthy endpoint, calls then fail with
    /// [`Error::AllUnhealthy`]. Values are clamped to `0.0..=1.0`.
    pub fn panic_threshold(mut self, threshold: f64) -> Self {
        self.health.panic_threshold = crate::health::unit_fraction(threshold);
        self
    }
}

#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
impl<Client: Clone, P, L, C> Builder<String, HttpEndpoint<Client>, P, L, C> {
    /// Adds one [`HttpEndpoint`](crate::base_url::HttpEndpoint) per base URL, all sharing
    /// `client` (a `reqwest::Client`, features `reqwest` and `reqwest-0_12`), keyed by the
    /// URL as given.
    ///
    /// ```no_run
    /// use tower::ServiceExt;
    /// use tower_lb::{policy::P2c, Balance};
    ///
    /// # async fn app() -> Result<(), tower_lb::BoxError> {
    /// let lb = Balance::builder(P2c::peak_ewma())
    ///     .http_endpoints(&reqwest::Client::new(), ["http://127.0.0.1:8081", "http://127.0.0.1:8082"])?
    ///     .build()?;
    /// let request = reqwest::Request::new(reqwest::Method::GET, "http://any/hello".parse()?);
    /// let response = lb.oneshot(request).await?;
    /// # let _ = response; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for the first URL that is not a valid base URL.
    pub fn http_endpoints<U>(
        self,
        client: &Client,
        urls: impl IntoIterator<Item = U>,
    ) -> Result<Self, Error>
    where
        U: AsRef<str>,
    {
        let mut endpoints = Vec::new();
        for url in urls {
            let url = url.as_ref();
            let base = BaseUrl::new(url)?;
            endpoints.push((url.to_string(), HttpEndpoint::new(client.clone(), base)));
        }
        Ok(self.endpoints(endpoints))
    }
}

impl<K, S, P, L, C> Builder<K, S, P, L, C>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    S: Send + 'static,
    P: Policy,
    L: Layer<S> + Send + Sync + 'static,
    L::Service: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Builds the balancer, inside a tokio runtime or outside one.
    ///
    /// Background drivers (discovery still to come, outlier detection, active checks, slow
    /// start) run as tasks on the tokio runtime. Built inside one, they start at once; built
    /// outside (in a `OnceLock`, in `main` before the runtime), they start on the first call
    /// made inside a runtime, and until then [`Balance::stats`] reports them as
    /// [`DriverState::WaitingForRuntime`]. No setting is dropped.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for settings that can only be checked together.
    /// An empty pool is not an error: calls fail with [`Error::NoEndpoints`] until endpoints
    /// join.
    pub fn build(self) -> Result<Balance<K, S, P, L, C>, Error> {
        Ok(self.assemble())
    }

    pub(crate) fn assemble(self) -> Balance<K, S, P, L, C> {
        let outlier = self.health.outlier.unwrap_or_default();
        let health_events = outlier.enabled().then(tokio::sync::mpsc::unbounded_channel);
        let sink = health_events.as_ref().map(|(events, _)| HealthSink {
            consecutive_failures: outlier.consecutive_failures,
            events: events.clone(),
        });
        let accounting = Accounting::new(
            self.policy.latency(),
            self.policy.counts_total_in_flight(),
            sink,
        );
        let layer = Arc::new(self.layer);
        let mut members: Members<K, L::Service, MemberHealth> =
            Members::new(accounting, self.health.slow_start);
        if let Some(zoning) = self.zoning {
            members.set_zoning(zoning);
        }
        #[cfg(feature = "metrics")]
        let metrics = self.health.metrics.clone();
        #[cfg(feature = "metrics")]
        members.set_metrics(metrics.clone());
        for (key, service, weight) in self.endpoints {
            members.insert(key, layer.layer(service), weight);
        }
        let mut pending_discovery = None;
        if let Some(stream) = self.discover {
            let wrap = Arc::clone(&layer);
            let mut stream = discover::map_services(stream, move |service| wrap.layer(service));
            let mut cx = Context::from_waker(Waker::noop());
            let mut ended = false;
            // Bounded, so a stream that is always ready cannot keep `build` from returning;
            // whatever is left goes to the background driver.
            for _ in 0..BUILD_BATCHES {
                let Poll::Ready(batch) = discover::poll_batch(&mut stream, &mut cx) else {
                    break;
                };
                members.apply(batch.changes);
                if batch.ended {
                    ended = true;
                    break;
                }
            }
            if !ended {
                pending_discovery = Some(stream);
            }
        }
        members.ramp_joiners();
        let pool = Arc::new(Pool::new(self.policy, self.health.panic_threshold, members));
        let (stop, stopped) = tokio::sync::watch::channel(());
        let health_needed = health_events.is_some()
            || self.health.checks.is_some()
            || self.health.slow_start.is_some();
        let waiting = |needed| match needed {
            true => DriverState::WaitingForRuntime,
            false => DriverState::NotNeeded,
        };
        let discovery_needed = pending_discovery.is_some();
        #[cfg(feature = "metrics")]
        let publish_needed = metrics.is_some();
        #[cfg(not(feature = "metrics"))]
        let publish_needed = false;
        let drivers = Drivers {
            health: DriverStatus::new(waiting(health_needed)),
            discovery: DriverStatus::new(waiting(discovery_needed)),
        };
        let start = {
            let (weak, drivers) = (Arc::downgrade(&pool), drivers.clone());
            let (checks, events) = (self.health.checks, health_events.map(|(_, rx)| rx));
            move |runtime: &tokio::runtime::Handle| {
                #[cfg(feature = "metrics")]
                if let Some(metrics) = metrics {
                    runtime.spawn(super::publish::publish(
                        weak.clone(),
                        metrics,
                        stopped.clone(),
                    ));
                }
                if let Some(stream) = pending_discovery {
                    let drive = discover::drive(weak.clone(), stream, stopped.clone());
                    runtime.spawn(drivers.discovery.supervise("discovery", drive));
                }
                if health_needed {
                    let drive = driver::drive(weak, outlier, events, checks, stopped);
                    runtime.spawn(drivers.health.supervise("health", drive));
                }
            }
        };
        let start = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                start(&runtime);
                None
            }
            Err(_) if health_needed || discovery_needed || publish_needed => {
                tracing::debug!(
                    "built outside a tokio runtime: drivers start on the first call inside one"
                );
                Some(Box::new(start) as StartDrivers)
            }
            Err(_) => None,
        };
        let inner = Inner::new(
            pool,
            layer,
            self.classify,
            self.timeout,
            drivers,
            start,
            stop,
        );
        Balance::from_inner(Arc::new(inner))
    }
}

impl<K: Debug, S, P: Debug, L, C> Debug for Builder<K, S, P, L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("policy", &self.policy)
            .field(
                "endpoints",
                &self
                    .endpoints
                    .iter()
                    .map(|(k, _, w)| (k, w))
                    .collect::<Vec<_>>(),
            )
            .field("discover", &self.discover.is_some())
            .field("locality", &self.zoning.as_ref().map(|z| &z.locality))
            .finish()
    }
}
