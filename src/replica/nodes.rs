//! [`Nodes`]: what the replica router needs of a pool of database nodes.
//!
//! The router is generic over its two pools as tower's `Retry<P, S>` is over its policy and
//! service: one type parameter each, with the balancer's own parameters (key, service,
//! policy, endpoint layer, failure classifier) behind this trait's associated types.

use crate::balance::{Balance, Lease, ResponseFuture, WeakBalance};
use crate::endpoint::EndpointStats;
use crate::error::Error;
use crate::policy::{Pick, Policy};
use crate::pool::{EndpointSnapshot, Excluder};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use tower_layer::Layer;
use tower_service::Service;

/// A pool's call on one of its nodes.
type Call<N, Req> = ResponseFuture<<N as Nodes>::Service, Req, <N as Nodes>::Classify>;

mod sealed {
    pub trait Sealed {}
}

/// A pool of nodes the [`ReplicaRouter`](super::ReplicaRouter) routes to: a
/// [`Balance`], whatever its policy, endpoint layer and failure classifier. Sealed: the
/// router relies on the balancer's picks, leases and exclusions, so only `Balance`
/// implements it; use it to name a router's pools in your own bounds.
///
/// ```
/// use tower_lb::replica::Nodes;
///
/// fn keys<N: Nodes>(nodes: &N) -> usize {
///     nodes.nodes().len()
/// }
/// let lb = tower_lb::Balance::builder(tower_lb::policy::P2c::new())
///     .endpoint("db-1", tower::service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }))
///     .build()?;
/// assert_eq!(keys(&lb), 1);
/// # Ok::<(), tower_lb::Error>(())
/// ```
pub trait Nodes: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The endpoint key.
    type Key: Clone + Debug + Eq + Hash + Send + Sync + 'static;
    /// The endpoint service, as the pool calls it (after its endpoint layer).
    type Service: Clone + Send + Sync + 'static;
    /// The pool's policy.
    type Policy: Policy;
    /// What counts as a failed call.
    type Classify: Clone + Send + Sync + 'static;
    #[doc(hidden)]
    type Weak: Send + Sync + 'static;

    /// Every node's state and counters ([`Balance::snapshot`]).
    fn nodes(&self) -> Vec<EndpointSnapshot<Self::Key>>;

    #[doc(hidden)]
    fn exclude_as(
        &self,
        owner: Excluder,
        key: &Self::Key,
        reason: Option<&'static str>,
    ) -> Result<(), Error>;

    #[doc(hidden)]
    fn lease<Req>(
        &self,
        req: &Req,
        avoid: &[Arc<EndpointStats>],
    ) -> Result<Lease<Self::Service>, Error>
    where
        Self::Policy: Pick<Req>;

    #[doc(hidden)]
    fn try_call<Req>(&mut self, req: Req) -> Result<Call<Self, Req>, (Error, Req)>
    where
        Self::Policy: Pick<Req>,
        Self::Service: Service<Req>;

    #[doc(hidden)]
    fn fail_fast<Req>(&self, error: Error) -> Call<Self, Req>
    where
        Self::Service: Service<Req>;

    #[doc(hidden)]
    fn out_of_rotation(
        &self,
        endpoint: &Arc<EndpointStats>,
    ) -> impl std::future::Future<Output = ()> + Send;

    #[doc(hidden)]
    fn downgrade(&self) -> Self::Weak;

    #[doc(hidden)]
    fn upgrade(weak: &Self::Weak) -> Option<Self>;
}

impl<K, S, P, L, C> sealed::Sealed for Balance<K, S, P, L, C>
where
    P: Policy,
    L: Layer<S>,
{
}

impl<K, S, P, L, C> Nodes for Balance<K, S, P, L, C>
where
    K: Clone + Debug + Eq + Hash + Send + Sync + 'static,
    S: Send + 'static,
    P: Policy,
    L: Layer<S> + Send + Sync + 'static,
    L::Service: Clone + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    type Key = K;
    type Service = L::Service;
    type Policy = P;
    type Classify = C;
    type Weak = WeakBalance<K, S, P, L, C>;

    fn nodes(&self) -> Vec<EndpointSnapshot<K>> {
        self.snapshot()
    }

    fn exclude_as(
        &self,
        owner: Excluder,
        key: &K,
        reason: Option<&'static str>,
    ) -> Result<(), Error> {
        Balance::exclude_as(self, owner, key, reason)
    }

    fn lease<Req>(
        &self,
        req: &Req,
        avoid: &[Arc<EndpointStats>],
    ) -> Result<Lease<L::Service>, Error>
    where
        P: Pick<Req>,
    {
        Balance::lease(self, req, avoid)
    }

    fn try_call<Req>(
        &mut self,
        req: Req,
    ) -> Result<ResponseFuture<L::Service, Req, C>, (Error, Req)>
    where
        P: Pick<Req>,
        L::Service: Service<Req>,
    {
        Balance::try_call(self, req)
    }

    fn fail_fast<Req>(&self, error: Error) -> ResponseFuture<L::Service, Req, C>
    where
        L::Service: Service<Req>,
    {
        Balance::fail_fast(self, error)
    }

    fn out_of_rotation(
        &self,
        endpoint: &Arc<EndpointStats>,
    ) -> impl std::future::Future<Output = ()> + Send {
        Balance::out_of_rotation(self, endpoint)
    }

    fn downgrade(&self) -> Self::Weak {
        Balance::downgrade(self)
    }

    fn upgrade(weak: &Self::Weak) -> Option<Self> {
        weak.upgrade()
    }
}
