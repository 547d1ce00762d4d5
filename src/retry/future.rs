//! The response future of a [`Retry`](super::Retry) call.

use super::{RetryIf, RetryPolicy};
use crate::balance::{Balance, ResponseFuture as Attempt};
use crate::endpoint::EndpointStats;
use crate::error::BoxError;
use crate::health::Classify;
use crate::policy::{Pick, Policy};
use crate::replay::Replay;
use pin_project_lite::pin_project;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

pin_project! {
    /// Runs the attempts of one request: each on an endpoint the request has not failed on,
    /// with a backoff between them.
    ///
    /// A named future, not a boxed one: no allocation per request, and it is `Send` whenever
    /// the endpoint's future is, whatever the key type (a boxed `async` block would need
    /// `K: 'static`, which `&'static str` keys fail inside `tokio::spawn`).
    pub struct ResponseFuture<K, S, P, L, C, F, Req>
    where
        P: Policy,
        L: Layer<S>,
        L::Service: Service<Req>,
    {
        balance: Balance<K, S, P, L, C>,
        policy: RetryPolicy<F>,
        // The original, kept for the next attempt's copy; `None` once sent as is.
        request: Option<Req>,
        // Endpoints this request failed on, for the next attempt to steer clear of.
        failed_on: Vec<Arc<EndpointStats>>,
        #[pin]
        state: State<L::Service, Req, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
    {
        Calling {
            #[pin]
            attempt: Attempt<S, Req, C>,
            endpoint: Option<Arc<EndpointStats>>,
        },
        BackingOff {
            #[pin]
            sleep: Sleep,
        },
    }
}

impl<K, S, P, L, C, F, Req> ResponseFuture<K, S, P, L, C, F, Req>
where
    K: Debug,
    P: Pick<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    C: Clone,
    Req: Replay,
{
    pub(crate) fn new(
        mut balance: Balance<K, S, P, L, C>,
        policy: RetryPolicy<F>,
        req: Req,
    ) -> Self {
        let (send, keep) = match policy.replay(&req) {
            Some(copy) => (copy, Some(req)),
            None => (req, None),
        };
        let attempt = balance.call_avoiding(send, &[]);
        let endpoint = attempt.endpoint();
        ResponseFuture {
            balance,
            policy,
            request: keep,
            failed_on: Vec::new(),
            state: State::Calling { attempt, endpoint },
        }
    }
}

impl<K, S, P, L, C, F, Req> Future for ResponseFuture<K, S, P, L, C, F, Req>
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
    type Output = Result<<L::Service as Service<Req>>::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { attempt, endpoint } => {
                    let result = ready!(attempt.poll(cx));
                    let Some(request) = this.request.as_ref() else {
                        return Poll::Ready(result);
                    };
                    let Some(backoff) = this.policy.decide(request, &result) else {
                        return Poll::Ready(result);
                    };
                    this.failed_on.extend(endpoint.take());
                    let sleep = tokio::time::sleep(backoff);
                    this.state.set(State::BackingOff { sleep });
                }
                StateProj::BackingOff { sleep } => {
                    ready!(sleep.poll(cx));
                    let request = this.request.take().expect("kept while retries remain");
                    let send = match this.policy.replay(&request) {
                        Some(copy) => {
                            *this.request = Some(request);
                            copy
                        }
                        None => request,
                    };
                    let attempt = this.balance.call_avoiding(send, this.failed_on);
                    let endpoint = attempt.endpoint();
                    this.state.set(State::Calling { attempt, endpoint });
                }
            }
        }
    }
}

impl<K, S, P, L, C, F, Req> Debug for ResponseFuture<K, S, P, L, C, F, Req>
where
    P: Policy,
    L: Layer<S>,
    L::Service: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("retry::ResponseFuture")
            .field("failed_on", &self.failed_on.len())
            .finish_non_exhaustive()
    }
}
