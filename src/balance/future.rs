//! The response future of a [`Balance`](super::Balance) call.

use crate::endpoint::{EndpointStats, InFlight};
use crate::error::{BoxError, Error};
use crate::health::{Classify, ErrorsFail};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower::util::Oneshot;
use tower_service::Service;

pin_project! {
    /// Drives the picked endpoint's `poll_ready` and `call`, and accounts for the call's load.
    ///
    /// A named type rather than a boxed future: no allocation per request. Dropping it before
    /// it completes releases the endpoint's in-flight count at once.
    pub struct ResponseFuture<S, Req, C = ErrorsFail>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        classify: C,
        timeout: Option<Duration>,
        // Armed when the call first pends (creating a tokio timer needs the runtime, which
        // `call` may not run in). Boxed: it is only needed by calls that have a timeout and do
        // not answer at once, and inline it would make every future larger and `!Unpin`.
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Failed { error: Option<BoxError> },
        Called {
            #[pin]
            call: Oneshot<S, Req>,
            guard: Option<InFlight>,
        },
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn called(
        call: Oneshot<S, Req>,
        guard: InFlight,
        classify: C,
        timeout: Option<Duration>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                call,
                guard: Some(guard),
            },
            classify,
            timeout,
            deadline: None,
        }
    }

    pub(crate) fn failed(error: Error, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Failed {
                error: Some(error.into()),
            },
            classify,
            timeout: None,
            deadline: None,
        }
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    /// The endpoint this call went to, while it is in flight.
    pub(crate) fn endpoint(&self) -> Option<Arc<EndpointStats>> {
        match &self.kind {
            Kind::Called {
                guard: Some(guard), ..
            } => Some(Arc::clone(guard.stats())),
            _ => None,
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    // Small enough to be inlined into the caller's poll, the pending and failed cases being
    // out of line: a call that answers at once then hands its output straight back instead
    // of through memory (an output written field by field and read back whole stalls the
    // load). Pick bench, round robin: 30-35 ns over the floor out of line, 22-23 inlined.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Failed { error } => Poll::Ready(Err(take_error(error))),
            KindProj::Called { call, guard } => match call.poll(cx) {
                Poll::Ready(result) => {
                    // Completing releases the in-flight count now, not whenever the future
                    // is dropped.
                    if let Some(guard) = guard.take() {
                        let failed = this.classify.is_failure(result.as_ref());
                        if let Some(span) = this.classify.hold_off(result.as_ref()) {
                            guard.stats().hold_off(span);
                        }
                        guard.complete(!failed);
                    }
                    Poll::Ready(result.map_err(Into::into))
                }
                Poll::Pending => poll_deadline(guard, *this.timeout, this.deadline, cx).map(Err),
            },
        }
    }
}

/// A failed call's error, once.
#[cold]
fn take_error(error: &mut Option<BoxError>) -> BoxError {
    error
        .take()
        .expect("ResponseFuture polled after completion")
}

/// For a call that pends: the timeout's error once it runs out (the call then counted as a
/// failure), pending until then, and for ever without a timeout. The timer is armed on the
/// first pending poll.
#[inline(never)]
fn poll_deadline(
    guard: &mut Option<InFlight>,
    timeout: Option<Duration>,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<BoxError> {
    let Some(after) = timeout else {
        return Poll::Pending;
    };
    let deadline = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
    ready!(deadline.as_mut().poll(cx));
    if let Some(guard) = guard.take() {
        guard.complete(false);
    }
    Poll::Ready(Error::Timeout { after }.into())
}

impl<S, Req, C> std::fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
