//! Attempts, budget, backoff and the counters of what they decided.

use super::{RetryIf, RetrySafe};
use crate::replay::Replay;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};

/// How often and when to retry: attempts per request, a retry budget shared by all requests,
/// jittered exponential backoff, and a predicate ([`RetrySafe`] by default: a request that a
/// backend may have applied is resent only if it is idempotent).
///
/// Clones share the budget and the [`stats`](Self::stats); each request gets its own count
/// of attempts and backoff. It is also a `tower::retry::Policy`, for `tower::retry` in front
/// of any service.
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
pub struct RetryPolicy<F = RetrySafe> {
    attempts: usize,
    budget: Arc<TpsBudget>,
    min_backoff: Duration,
    max_backoff: Duration,
    /// The backoff before the next retry of this request.
    next_backoff: Duration,
    retry_if: F,
    counters: Arc<Counters>,
}

/// What the retry policies sharing one budget decided, since they were made
/// ([`RetryPolicy::stats`], [`Retry::stats`](super::Retry::stats)).
///
/// ```
/// use tower_lb::retry::RetryPolicy;
///
/// let stats = RetryPolicy::new(2).stats();
/// assert_eq!(stats.retries + stats.refused_by_budget, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Failures not retried because the budget was spent.
    pub refused_by_budget: u64,
    /// Failures not retried because the request had used all its attempts.
    pub attempts_exhausted: u64,
    /// Failures not retried because the predicate said no (by default: a request that may
    /// have been applied and is not idempotent).
    pub not_safe: u64,
    /// Requests sent once because they could not be copied ([`Replay::replay`] was `None`).
    pub not_replayable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    retries: AtomicU64,
    refused_by_budget: AtomicU64,
    attempts_exhausted: AtomicU64,
    not_safe: AtomicU64,
    not_replayable: AtomicU64,
    /// The same counts as metrics, when published.
    #[cfg(feature = "metrics")]
    published: Option<Published>,
}

/// What is counted, once each.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Retried,
    RefusedByBudget,
    AttemptsExhausted,
    NotSafe,
    NotReplayable,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Retried => &self.retries,
            Outcome::RefusedByBudget => &self.refused_by_budget,
            Outcome::AttemptsExhausted => &self.attempts_exhausted,
            Outcome::NotSafe => &self.not_safe,
            Outcome::NotReplayable => &self.not_replayable,
        };
        counter.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(published) = &self.published {
            published.count(outcome);
        }
    }
}

/// The retry counters as metrics ([`RetryPolicy::metrics`]).
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Published {
    retries: ::metrics::Counter,
    refused: [::metrics::Counter; 4],
}

#[cfg(feature = "metrics")]
impl Published {
    fn new(metrics: &crate::telemetry::Metrics) -> Self {
        use crate::telemetry::{RETRIES, RETRIES_REFUSED};
        crate::telemetry::describe();
        let refused = |reason: &str| metrics.counter(RETRIES_REFUSED, &[("reason", reason.into())]);
        Published {
            retries: metrics.counter(RETRIES, &[]),
            refused: ["budget", "attempts", "not_safe", "not_replayable"].map(refused),
        }
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Retried => &self.retries,
            Outcome::RefusedByBudget => &self.refused[0],
            Outcome::AttemptsExhausted => &self.refused[1],
            Outcome::NotSafe => &self.refused[2],
            Outcome::NotReplayable => &self.refused[3],
        };
        counter.increment(1);
    }
}

impl RetryPolicy {
    /// Up to `attempts` retries per request, with the default budget (20 % of requests, plus 3
    /// per second, over 10 s), backoff (25 ms doubling to 1 s, full jitter) and predicate
    /// ([`RetrySafe`]).
    pub fn new(attempts: usize) -> Self {
        RetryPolicy {
            attempts,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 3, 0.2)),
            min_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            next_backoff: Duration::from_millis(25),
            retry_if: RetrySafe,
            counters: Arc::default(),
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
    /// `Duration::MAX` is accepted (it means: wait forever before retrying).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self.next_backoff = min;
        self
    }

    /// Retries only what `retry_if` allows: [`RetryErrors`](super::RetryErrors) for requests
    /// that are all safe to resend, or any `Fn(&Req, &Result<Res, E>) -> bool + Clone`.
    pub fn retry_if<G>(self, retry_if: G) -> RetryPolicy<G> {
        RetryPolicy {
            attempts: self.attempts,
            budget: self.budget,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            next_backoff: self.next_backoff,
            retry_if,
            counters: self.counters,
        }
    }

    /// Publishes what the policy decides through the `metrics` facade (feature `metrics`):
    /// `tower_lb_retries_total` and `tower_lb_retries_refused_total` labelled with the name
    /// ([`telemetry`](crate::telemetry)). Clones made from this one on share them; its
    /// counts so far are kept.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: crate::telemetry::Metrics) -> Self {
        let was = &*self.counters;
        let copy = |counter: &AtomicU64| AtomicU64::new(counter.load(Relaxed));
        self.counters = Arc::new(Counters {
            retries: copy(&was.retries),
            refused_by_budget: copy(&was.refused_by_budget),
            attempts_exhausted: copy(&was.attempts_exhausted),
            not_safe: copy(&was.not_safe),
            not_replayable: copy(&was.not_replayable),
            published: Some(Published::new(&metrics)),
        });
        self
    }

    /// What this policy and its clones decided so far.
    pub fn stats(&self) -> RetryStats {
        let c = &*self.counters;
        RetryStats {
            retries: c.retries.load(Relaxed),
            refused_by_budget: c.refused_by_budget.load(Relaxed),
            attempts_exhausted: c.attempts_exhausted.load(Relaxed),
            not_safe: c.not_safe.load(Relaxed),
            not_replayable: c.not_replayable.load(Relaxed),
        }
    }

    /// Whether to retry `req` after `result`, and after how long.
    pub(crate) fn decide<Req, Res, E>(
        &mut self,
        req: &Req,
        result: &Result<Res, E>,
    ) -> Option<Duration>
    where
        F: RetryIf<Req, Res, E>,
    {
        let counters = &*self.counters;
        if !self.retry_if.retry(req, result) {
            if result.is_err() {
                counters.count(Outcome::NotSafe);
                tracing::debug!("not retried: the request may have been applied");
            }
            self.budget.deposit();
            return None;
        }
        if self.attempts == 0 {
            counters.count(Outcome::AttemptsExhausted);
            return None;
        }
        if !self.budget.withdraw() {
            counters.count(Outcome::RefusedByBudget);
            tracing::debug!("not retried: the retry budget is spent");
            return None;
        }
        self.attempts -= 1;
        counters.count(Outcome::Retried);
        let backoff = crate::time::scaled(self.next_backoff, fastrand::f64());
        self.next_backoff = self.next_backoff.saturating_mul(2).min(self.max_backoff);
        tracing::debug!(?backoff, attempts_left = self.attempts, "retrying");
        Some(backoff)
    }

    /// A copy of `req` for an attempt, counting a request that cannot be copied.
    pub(crate) fn replay<Req: Replay>(&self, req: &Req) -> Option<Req> {
        let copy = req.replay();
        if copy.is_none() {
            self.counters.count(Outcome::NotReplayable);
        }
        copy
    }
}

impl<Req, Res, E, F> tower::retry::Policy<Req, Res, E> for RetryPolicy<F>
where
    Req: Replay,
    F: RetryIf<Req, Res, E>,
{
    type Future = tokio::time::Sleep;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        self.decide(req, result).map(tokio::time::sleep)
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.replay(req)
    }
}

impl<F> fmt::Debug for RetryPolicy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("attempts", &self.attempts)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryErrors;
    use tower::retry::Policy;

    #[tokio::test(start_paused = true)]
    async fn retries_errors_within_attempts_and_budget() {
        let mut policy =
            RetryPolicy::new(2)
                .retry_if(RetryErrors)
                .budget(Duration::from_secs(10), 0, 0.0);
        let mut failed: Result<(), ()> = Err(());
        // No floor and no percentage: the budget allows nothing.
        assert!(Policy::<(), (), ()>::retry(&mut policy, &mut (), &mut failed).is_none());
        assert_eq!(policy.stats().refused_by_budget, 1);

        let mut policy = RetryPolicy::new(2).retry_if(RetryErrors);
        assert!(policy.retry(&mut (), &mut failed).is_some());
        assert!(policy.retry(&mut (), &mut failed).is_some());
        assert!(
            policy.retry(&mut (), &mut failed).is_none(),
            "two attempts only"
        );
        let stats = policy.stats();
        assert_eq!((stats.retries, stats.attempts_exhausted), (2, 1));
        let mut ok: Result<(), ()> = Ok(());
        assert!(RetryPolicy::new(2)
            .retry_if(RetryErrors)
            .retry(&mut (), &mut ok)
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn only_what_the_predicate_allows() {
        let mut policy = RetryPolicy::new(3)
            .retry_if(|req: &&str, result: &Result<(), ()>| *req == "GET" && result.is_err());
        assert!(policy.retry(&mut "GET", &mut Err(())).is_some());
        assert!(policy.retry(&mut "POST", &mut Err(())).is_none());
        assert_eq!(policy.stats().not_safe, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_only_idempotent_or_unsent_requests_are_retried() {
        let mut policy = RetryPolicy::new(5);
        let reset =
            || -> Result<(), std::io::Error> { Err(std::io::ErrorKind::ConnectionReset.into()) };
        let refused =
            || -> Result<(), std::io::Error> { Err(std::io::ErrorKind::ConnectionRefused.into()) };
        assert!(policy.retry(&mut 1u32, &mut reset()).is_none());
        assert!(policy.retry(&mut 1u32, &mut refused()).is_some());
        let mut get = http::Request::get("/").body(String::new()).unwrap();
        assert!(policy.retry(&mut get, &mut reset()).is_some());
        assert!(Policy::<_, (), std::io::Error>::clone_request(&mut policy, &get).is_some());
    }
}
