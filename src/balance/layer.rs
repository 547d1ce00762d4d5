//! [`BalanceLayer`]: a balancer as a `tower::Layer` over a discovery stream.

use super::{Balance, Builder};
use crate::error::BoxError;
use crate::policy::Policy;
use std::fmt::Debug;
use std::hash::Hash;
use tower::discover::Discover;
use tower_layer::{Identity, Layer};

/// Turns a `tower::discover::Discover` stream into a [`Balance`] inside `ServiceBuilder`, like
/// tower's `MakeBalanceLayer`. For a fixed list, wrap it in `tower::discover::ServiceList`.
///
/// Discovery that must keep running starts on the tokio runtime (see [`Builder::build`]).
///
/// ```
/// use tower::{discover::ServiceList, service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::{policy::P2c, BalanceLayer, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let endpoints = ServiceList::new((0..4).map(|i| service_fn(move |x: u32| async move {
///     Ok::<_, BoxError>(x * i)
/// })));
/// let svc = ServiceBuilder::new()
///     .layer(BalanceLayer::new(P2c::new()))
///     .service(endpoints);
/// svc.oneshot(2).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BalanceLayer<P, L = Identity> {
    policy: P,
    endpoint_layer: L,
}

impl<P> BalanceLayer<P> {
    /// Balances with `policy`.
    pub fn new(policy: P) -> Self {
        BalanceLayer {
            policy,
            endpoint_layer: Identity::new(),
        }
    }
}

impl<P, L> BalanceLayer<P, L> {
    /// Wraps each discovered endpoint in `layer` (see [`Builder::endpoint_layer`]).
    pub fn endpoint_layer<L2>(self, layer: L2) -> BalanceLayer<P, L2> {
        BalanceLayer {
            policy: self.policy,
            endpoint_layer: layer,
        }
    }
}

impl<D, P, L> Layer<D> for BalanceLayer<P, L>
where
    D: Discover + Send + 'static,
    D::Key: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    D::Service: Send + 'static,
    D::Error: Into<BoxError>,
    P: Policy + Clone,
    L: Layer<D::Service> + Clone + Send + Sync + 'static,
    L::Service: Clone + Send + Sync + 'static,
{
    type Service = Balance<D::Key, D::Service, P, L>;

    fn layer(&self, discover: D) -> Self::Service {
        Builder::new(self.policy.clone())
            .endpoint_layer(self.endpoint_layer.clone())
            .discover(discover)
            .assemble()
    }
}
