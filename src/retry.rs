//! Retries that land elsewhere.
//!
//! - [`RetryLayer`] wraps a [`Balance`]: a failed call is retried on a
//!   *different* endpoint (the balancer steers each retry clear of the endpoints that request
//!   already failed on, unless no other is eligible).
//! - [`RetryPolicy`] is the policy: attempts, a retry budget and jittered backoff. It is also a
//!   `tower::retry::Policy`, for `tower::retry` in front of any service; there a retry is
//!   picked afresh but may land on the same endpoint.
//!
//! The budget caps retries at a share of the traffic (20 % plus 3 per second by default, like
//! Finagle and Envoy), so that when the whole pool is down, retries do not multiply the load on
//! it. Requests are cloned for each attempt: a request whose body cannot be cloned cannot be
//! retried, and does not compile here.

use crate::balance::Balance;
use crate::endpoint::EndpointStats;
use crate::error::BoxError;
use crate::health::{BoxFuture, Classify};
use crate::policy::Pick;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};
use tower_layer::Layer;

/// Retries failed calls through the balancer, within a budget, after a jittered backoff.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_lb::{policy::RoundRobin, retry::RetryPolicy, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
///     .build()?;
/// let client = ServiceBuilder::new()
///     .retry(RetryPolicy::new(2).backoff(Duration::from_millis(5), Duration::from_millis(100)))
///     .service(lb);
/// assert_eq!(client.oneshot(7).await?, 7);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryPolicy<F = RetryErrors> {
    attempts: usize,
    budget: Arc<TpsBudget>,
    min_backoff: Duration,
    max_backoff: Duration,
    /// The backoff before the next retry of this request.
    next_backoff: Duration,
    retry_if: F,
}

/// Retries every error (the default predicate of [`RetryPolicy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

/// Decides whether a failed call may be retried (for instance: only idempotent requests).
pub trait RetryIf<Req, Res, E>: Clone {
    /// Whether `req`, which ended in `result`, should be tried again.
    fn retry(&self, req: &Req, result: &Result<Res, E>) -> bool;
}

impl<Req, Res, E> RetryIf<Req, Res, E> for RetryErrors {
    fn retry(&self, _: &Req, result: &Result<Res, E>) -> bool {
        result.is_err()
    }
}

impl<Req, Res, E, F> RetryIf<Req, Res, E> for F
where
    F: Fn(&Req, &Result<Res, E>) -> bool + Clone,
{
    fn retry(&self, req: &Req, result: &Result<Res, E>) -> bool {
        self(req, result)
    }
}

impl RetryPolicy {
    /// Up to `attempts` retries per request, with the default budget (20 % of requests, plus 3
    /// per second, over 10 s) and backoff (25 ms doubling to 1 s, full jitter).
    pub fn new(attempts: usize) -> Self {
        RetryPolicy {
            attempts,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 3, 0.2)),
            min_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            next_backoff: Duration::from_millis(25),
            retry_if: RetryErrors,
        }
    }
}

impl<F> RetryPolicy<F> {
    /// Retries at most `percent` (0–1000 %) of requests, plus `min_per_sec` per second, counted
    /// over `ttl` (a new budget; clones of this policy share it).
    ///
    /// Any value is accepted and brought into the ranges tower's `TpsBudget` allows (which
    /// otherwise panics): `ttl` into 1–60 s, `percent` into 0–1000 (NaN counts as 0), and
    /// `min_per_sec` below `i32::MAX`.
    pub fn budget(mut self, ttl: Duration, min_per_sec: u32, percent: f32) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let min_per_sec = min_per_sec.min(i32::MAX as u32 - 1);
        let percent = if percent.is_finite() {
            percent.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        self.budget = Arc::new(TpsBudget::new(ttl, min_per_sec, percent));
        self
    }

    /// Backs off between `min` and `max`, doubling per retry, with full jitter.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self.next_backoff = min;
        self
    }

    /// Retries only what `retry_if` allows (say, idempotent methods).
    pub fn retry_if<G>(self, retry_if: G) -> RetryPolicy<G> {
        RetryPolicy {
            attempts: self.attempts,
            budget: self.budget,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            next_backoff: self.next_backoff,
            retry_if,
        }
    }
}

impl<Req, Res, E, F> tower::retry::Policy<Req, Res, E> for RetryPolicy<F>
where
    Req: Clone,
    F: RetryIf<Req, Res, E>,
{
    type Future = tokio::time::Sleep;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        if !self.retry_if.retry(req, result) {
            self.budget.deposit();
            return None;
        }
        if self.attempts == 0 || !self.budget.withdraw() {
            return None;
        }
        self.attempts -= 1;
        let backoff = crate::time::scaled(self.next_backoff, fastrand::f64());
        self.next_backoff = self.next_backoff.saturating_mul(2).min(self.max_backoff);
        Some(tokio::time::sleep(backoff))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

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
pub struct RetryLayer<F = RetryErrors> {
    policy: RetryPolicy<F>,
}

impl<F> RetryLayer<F> {
    /// Retries with `policy`.
    pub fn new(policy: RetryPolicy<F>) -> Self {
        RetryLayer { policy }
    }
}

impl<B, F: Clone> tower_layer::Layer<B> for RetryLayer<F> {
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
pub struct Retry<B, F = RetryErrors> {
    balance: B,
    policy: RetryPolicy<F>,
}

impl<K, S, P, L, C, F, Req> tower_service::Service<Req> for Retry<Balance<K, S, P, L, C>, F>
where
    Balance<K, S, P, L, C>: tower_service::Service<Req, Error = BoxError>,
    K: Debug + Send + Sync + 'static,
    S: Send + 'static,
    P: Pick<Req>,
    L: Layer<S> + Send + Sync + 'static,
    L::Service: tower_service::Service<Req> + Clone + Send + Sync + 'static,
    <L::Service as tower_service::Service<Req>>::Future: Send,
    <L::Service as tower_service::Service<Req>>::Response: Send,
    <L::Service as tower_service::Service<Req>>::Error: Into<BoxError>,
    C: Classify<
        <L::Service as tower_service::Service<Req>>::Response,
        <L::Service as tower_service::Service<Req>>::Error,
    >,
    F: RetryIf<Req, <L::Service as tower_service::Service<Req>>::Response, BoxError>
        + Send
        + Sync
        + 'static,
    Req: Clone + Send + 'static,
{
    type Response = <L::Service as tower_service::Service<Req>>::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Req>::poll_ready(&mut self.balance, cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let mut balance = self.balance.clone();
        let mut policy = self.policy.clone();
        Box::pin(async move {
            let mut failed_on: Vec<Arc<EndpointStats>> = Vec::new();
            loop {
                let call = balance.call_avoiding(req.clone(), &failed_on);
                let endpoint = call.endpoint();
                let mut result = call.await;
                let Some(backoff) = tower::retry::Policy::retry(&mut policy, &mut req, &mut result)
                else {
                    return result;
                };
                failed_on.extend(endpoint);
                backoff.await;
            }
        })
    }
}

impl<F> fmt::Debug for RetryPolicy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("attempts", &self.attempts)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::Policy;

    #[tokio::test(start_paused = true)]
    async fn retries_errors_within_attempts_and_budget() {
        let mut policy = RetryPolicy::new(2).budget(Duration::from_secs(10), 0, 0.0);
        let mut failed: Result<(), ()> = Err(());
        // No floor and no percentage: the budget allows nothing.
        assert!(Policy::<(), (), ()>::retry(&mut policy, &mut (), &mut failed).is_none());

        let mut policy = RetryPolicy::new(2);
        assert!(policy.retry(&mut (), &mut failed).is_some());
        assert!(policy.retry(&mut (), &mut failed).is_some());
        assert!(
            policy.retry(&mut (), &mut failed).is_none(),
            "two attempts only"
        );
        let mut ok: Result<(), ()> = Ok(());
        assert!(RetryPolicy::new(2).retry(&mut (), &mut ok).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn only_what_the_predicate_allows() {
        let mut policy = RetryPolicy::new(3)
            .retry_if(|req: &&str, result: &Result<(), ()>| *req == "GET" && result.is_err());
        assert!(policy.retry(&mut "GET", &mut Err(())).is_some());
        assert!(policy.retry(&mut "POST", &mut Err(())).is_none());
    }
}
