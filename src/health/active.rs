//! Active health checks: the balancer asks each endpoint whether it is well, on a timer,
//! whether or not there is traffic.

use crate::BoxError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::background::BoxFuture;

/// Checks one endpoint, known by its key. `Ok` means healthy.
///
/// Any async closure over the key is a check ([`check_fn`]); so is any tower `Service` that
/// takes the key ([`check_service`]); [`HttpCheck`](super::HttpCheck) (feature `reqwest`) GETs a
/// path on endpoints keyed by their base URL.
pub trait HealthCheck<K>: Send + Sync + 'static {
    /// Starts a check of the endpoint `key`.
    fn check(&self, key: &K) -> BoxFuture<Result<(), BoxError>>;
}

/// A check from an async closure.
///
/// ```
/// use tower_lb::health::{check_fn, HealthCheck};
///
/// // A TCP connect check.
/// let connects = check_fn(|addr: &std::net::SocketAddr| {
///     let addr = *addr;
///     async move { tokio::net::TcpStream::connect(addr).await.map(drop) }
/// });
/// # let _ = connects;
/// ```
pub fn check_fn<F>(f: F) -> CheckFn<F> {
    CheckFn(f)
}

/// The check [`check_fn`] returns.
#[derive(Clone, Copy)]
pub struct CheckFn<F>(F);

impl<F> fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckFn").finish_non_exhaustive()
    }
}

impl<K, F, Fut, E> HealthCheck<K> for CheckFn<F>
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn check(&self, key: &K) -> BoxFuture<Result<(), BoxError>> {
        let check = (self.0)(key);
        Box::pin(async move { check.await.map_err(Into::into) })
    }
}

/// A check from a tower `Service` that takes the endpoint's key; any response is healthy.
///
/// ```
/// use tower::service_fn;
/// use tower_lb::health::check_service;
///
/// let always_well = check_service(service_fn(|_key: String| async { Ok::<_, std::io::Error>(()) }));
/// # let _ = always_well;
/// ```
pub fn check_service<T>(service: T) -> CheckService<T> {
    CheckService(service)
}

/// The check [`check_service`] returns.
#[derive(Debug, Clone)]
pub struct CheckService<T>(T);

impl<K, T> HealthCheck<K> for CheckService<T>
where
    K: Clone + Send + 'static,
    T: tower_service::Service<K> + Clone + Send + Sync + 'static,
    T::Future: Send,
    T::Error: Into<BoxError>,
{
    fn check(&self, key: &K) -> BoxFuture<Result<(), BoxError>> {
        use tower::ServiceExt;
        let (service, key) = (self.0.clone(), key.clone());
        Box::pin(async move { service.oneshot(key).await.map(drop).map_err(Into::into) })
    }
}

/// Active health checking: a check, how often it runs, and how it decides.
///
/// Every `interval` (2 s, ± `jitter` 10 %) each endpoint is checked; a check that has not
/// answered within `timeout` (1 s) has failed. `fall` (3) failed checks in a row take an
/// endpoint out of rotation ([`EndpointState::Failing`](super::EndpointState::Failing)); `rise`
/// (2) passed checks in a row bring it back. A passed check also ends an outlier ejection
/// early.
///
/// ```
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_lb::{health::{check_fn, ActiveChecks}, policy::P2c, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let lb = Balance::builder(P2c::new())
///     .health_check(
///         ActiveChecks::new(check_fn(|_key: &&str| async { Ok::<_, std::io::Error>(()) }))
///             .every(Duration::from_secs(5))
///             .timeout(Duration::from_millis(500)),
///     )
///     .endpoint("a", service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
///     .build()?;
/// # let _ = lb;
/// # Ok(()) }
/// ```
pub struct ActiveChecks<K> {
    pub(crate) check: Arc<dyn HealthCheck<K>>,
    pub(crate) interval: Duration,
    pub(crate) jitter: f64,
    pub(crate) timeout: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
}

impl<K> ActiveChecks<K> {
    /// Runs `check` with the defaults: every 2 s, 1 s timeout, rise 2, fall 3, 10 % jitter.
    pub fn new(check: impl HealthCheck<K>) -> Self {
        ActiveChecks {
            check: Arc::new(check),
            interval: Duration::from_secs(2),
            jitter: 0.1,
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    /// How often each endpoint is checked (at least every millisecond).
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a check may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Passed checks in a row that bring an endpoint back (at least 1).
    pub fn rise(mut self, n: u32) -> Self {
        self.rise = n.max(1);
        self
    }

    /// Failed checks in a row that take an endpoint out (at least 1).
    pub fn fall(mut self, n: u32) -> Self {
        self.fall = n.max(1);
        self
    }

    /// The most random time added to or taken from each interval, as a fraction of it, so
    /// that the checks of many endpoints (and many clients) do not fire together.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = super::unit_fraction(fraction);
        self
    }

    /// The time to the next check: the interval, ± jitter (`random` in `0..1`).
    pub(crate) fn next_interval(&self, random: f64) -> Duration {
        crate::time::scaled(self.interval, 1.0 + self.jitter * (2.0 * random - 1.0))
    }
}

impl<K> fmt::Debug for ActiveChecks<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveChecks")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rise", &self.rise)
            .field("fall", &self.fall)
            .finish_non_exhaustive()
    }
}
