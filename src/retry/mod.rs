//! Retries that land elsewhere, and only when resending is safe.
//!
//! - [`RetryLayer`] wraps a [`Balance`]: a failed call is retried on a *different* endpoint
//!   (the balancer steers each retry clear of the endpoints that request already failed on,
//!   unless no other is eligible).
//! - [`RetryPolicy`] is the policy: attempts, a retry budget, jittered backoff, and what may be
//!   retried. It is also a `tower::retry::Policy`, for `tower::retry` in front of any service;
//!   there a retry is picked afresh but may land on the same endpoint.
//!
//! **What is retried.** A request that a backend may have received is resent only if it is
//! idempotent, because a timeout or a broken connection does not say whether the backend applied
//! it: an HTTP `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` or `DELETE` (RFC 9110 §9.2.2) is retried
//! after any failure; a `POST` or `PATCH` only after a failure that proves it was never sent (no
//! endpoint, connection refused). That is [`RetrySafe`], the default; [`Replay`] says how a
//! request is copied and whether it is idempotent, [`NeverSent`] what an error proves. A request
//! that cannot be copied (a streaming body) is sent once, never refused at compile time.
//!
//! **How much.** The budget caps retries at a share of the traffic (20 % plus 3 per second by
//! default, like Finagle and Envoy), so that when the whole pool is down, retries do not
//! multiply the load on it. [`RetryStats`] counts the retries made and those refused, and each
//! decision is a `debug` event.

mod decide;
mod future;
mod policy;

pub use crate::replay::{Idempotent, Replay};
pub use decide::{never_sent, NeverSent, RetryErrors, RetryIf, RetrySafe};
pub use future::ResponseFuture;
pub use policy::{RetryPolicy, RetryStats};

use crate::balance::Balance;
use crate::error::BoxError;
use crate::health::Classify;
use crate::policy::Pick;
use std::fmt::Debug;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Retries failed calls through a [`Balance`], each on an endpoint the
/// request has not failed on yet (see the [module](self)).
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::{policy::RoundRobin, retry::{RetryLayer, RetryPolicy}, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
///     .build()?;
/// let client = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::new(2)))
///     .service(lb);
/// assert_eq!(client.oneshot(7).await?, 7);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<F = RetrySafe> {
    policy: RetryPolicy<F>,
}

impl<F> RetryLayer<F> {
    /// Retries with `policy`.
    pub fn new(policy: RetryPolicy<F>) -> Self {
        RetryLayer { policy }
    }
}

impl<B, F: Clone> Layer<B> for RetryLayer<F> {
    type Service = Retry<B, F>;

    fn layer(&self, balance: B) -> Retry<B, F> {
        Retry {
            balance,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`RetryLayer`] makes: a balancer whose failed calls are retried elsewhere.
#[derive(Debug, Clone)]
pub struct Retry<B, F = RetrySafe> {
    balance: B,
    policy: RetryPolicy<F>,
}

impl<B, F> Retry<B, F> {
    /// What this layer's policy decided so far: retries made, refused by the budget, and
    /// failures that were not safe to resend.
    pub fn stats(&self) -> RetryStats {
        self.policy.stats()
    }
}

impl<K, S, P, L, C, F, Req> Service<Req> for Retry<Balance<K, S, P, L, C>, F>
where
    K: Debug,
    P: Pick<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<L::Service as Service<Req>>::Response, <L::Service as Service<Req>>::Error>,
    F: RetryIf<Req, <L::Service as Service<Req>>::Response, BoxError>,
    Req: Replay,
{
    type Response = <L::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<K, S, P, L, C, F, Req>;

    /// Always ready, like the balancer.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.balance.clone(), self.policy.clone(), req)
    }
}
