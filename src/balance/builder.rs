//! Building a [`Balance`].

use super::{apply_changes, Balance, Shared};
use crate::{
    discover::{self, BoxDiscover},
    endpoint::Pool,
    membership::{check_weight, Members},
    policy::Policy,
    BoxError, Error,
};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
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
///     // Each endpoint gets its own limit of 16 calls in flight and a 1 s timeout.
///     .endpoint_layer(
///         ServiceBuilder::new()
///             .concurrency_limit(16)
///             .timeout(Duration::from_secs(1)),
///     )
///     .weighted_endpoint("a", add(0), 2)?
///     .endpoint("b", add(1))
///     .build()?;
/// # let _ = lb;
/// # Ok(()) }
/// ```
pub struct Builder<K, S, P, L = Identity> {
    policy: P,
    layer: L,
    endpoints: Vec<(K, S, u32)>,
    discover: Option<BoxDiscover<K, S>>,
}

impl<K, S, P> Builder<K, S, P> {
    pub(crate) fn new(policy: P) -> Self {
        Builder {
            policy,
            layer: Identity::new(),
            endpoints: Vec::new(),
            discover: None,
        }
    }
}

impl<K, S, P, L> Builder<K, S, P, L> {
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
    /// or the last handle to the balancer is dropped. Discovered endpoints have weight 1.
    /// A stream error is logged and skipped.
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

    /// Wraps every endpoint in `layer` as it joins the pool, from the builder, from
    /// [`Balance::insert`] or from discovery: a per-endpoint timeout, concurrency limit, or any
    /// `ServiceBuilder` stack.
    pub fn endpoint_layer<L2>(self, layer: L2) -> Builder<K, S, P, L2> {
        Builder {
            policy: self.policy,
            layer,
            endpoints: self.endpoints,
            discover: self.discover,
        }
    }
}

impl<K, S, P, L> Builder<K, S, P, L>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    S: Send + 'static,
    P: Policy,
    L: Layer<S> + Send + Sync + 'static,
    L::Service: Clone + Send + Sync + 'static,
{
    /// Builds the balancer.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] when a discovery stream still has changes to come and there is no
    /// tokio runtime to run it on. An empty pool is not an error: calls fail with
    /// [`Error::NoEndpoints`] until endpoints join.
    pub fn build(self) -> Result<Balance<K, S, P, L>, Error> {
        let (balance, broken) = self.assemble();
        match broken {
            None => Ok(balance),
            Some(error) => Err(error),
        }
    }

    /// Builds the balancer even when discovery cannot start; such a balancer reports why from
    /// `poll_ready` and from every call.
    pub(crate) fn assemble(self) -> (Balance<K, S, P, L>, Option<Error>) {
        let pool = Pool::for_policy(self.policy.latency(), self.policy.counts_total_in_flight());
        let mut members = Members::new(pool);
        for (key, service, weight) in self.endpoints {
            members.insert(key, self.layer.layer(service), weight);
        }
        let mut pending_discovery = None;
        if let Some(mut stream) = self.discover {
            let mut cx = Context::from_waker(Waker::noop());
            let mut ended = false;
            // Bounded, so a stream that is always ready cannot keep `build` from returning;
            // whatever is left goes to the background driver.
            for _ in 0..BUILD_BATCHES {
                let Poll::Ready(batch) = discover::poll_batch(&mut stream, &mut cx) else {
                    break;
                };
                apply_changes(&self.layer, &mut members, batch.changes);
                if batch.ended {
                    ended = true;
                    break;
                }
            }
            if !ended {
                pending_discovery = Some(stream);
            }
        }
        let (broken, driver) = match pending_discovery {
            None => (None, None),
            Some(stream) => match tokio::runtime::Handle::try_current() {
                Err(_) => (Some(Error::NoRuntime), None),
                Ok(runtime) => (None, Some((runtime, stream))),
            },
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let stop_tx = driver.is_some().then_some(stop_tx);
        let shared = Arc::new(Shared::new(
            self.policy,
            self.layer,
            members,
            broken.clone(),
            stop_tx,
        ));
        if let Some((runtime, stream)) = driver {
            runtime.spawn(discover::drive(Arc::downgrade(&shared), stream, stop_rx));
        }
        (Balance::from_shared(shared), broken)
    }
}

impl<K: Debug, S, P: Debug, L> Debug for Builder<K, S, P, L> {
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
            .finish()
    }
}
