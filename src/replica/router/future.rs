//! The response future of a [`ReplicaRouter`](super::ReplicaRouter) call, and the mark a
//! write leaves for its session.

use super::route::Route;
use super::Shared;
use crate::balance::ResponseFuture as CallFuture;
use crate::error::BoxError;
use crate::health::Classify as FailureClassify;
use crate::policy::Pick;
use crate::replica::position::SessionPositions;
use crate::replica::Nodes;
use pin_project_lite::pin_project;
use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

/// Pins the writing session when the write completes or is dropped (a dropped write may have
/// committed), unless the write was never handed to a node.
pub(crate) struct WriteMark<Cl, X> {
    pub(super) shared: Arc<Shared<Cl, X>>,
    pub(super) slot: usize,
    /// The write provably never reached a node (no primary to take it, no connection to
    /// it): it changed nothing, so it must not pin the session's reads to the primary (that
    /// would send them to the primary that is not there).
    pub(super) never_sent: bool,
}

impl<Cl, X> WriteMark<Cl, X> {
    /// Drops the mark of a write that never reached a node, without pinning the session.
    pub(crate) fn never_sent(mut self) {
        self.never_sent = true;
    }

    /// In position mode: the table to record the write's position in, and the session's slot.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn positions(&self) -> Option<(&SessionPositions, usize)> {
        Some((self.shared.sessions.positions()?, self.slot))
    }
}

impl<Cl, X> Drop for WriteMark<Cl, X> {
    fn drop(&mut self) {
        if self.never_sent {
            return;
        }
        if let Some(windows) = self.shared.sessions.windows() {
            windows.wrote(self.slot);
        }
    }
}

/// A copy of a read sent to a replica, to send to the primary if the replica fails it.
pub(super) struct ReadRetry<P, Cl, X, Req> {
    pub(super) primary: P,
    pub(super) shared: Arc<Shared<Cl, X>>,
    pub(super) request: Req,
}

pin_project! {
    /// The response future of a [`ReplicaRouter`](super::ReplicaRouter) call: the chosen
    /// pool's call; for a write, the mark that starts its session's read-your-own-writes
    /// window; for a read on a replica, a copy to send to the primary if the replica fails
    /// it. (Only what the request's end needs of its route: a write is as large as before
    /// the route existed.)
    pub struct ResponseFuture<P, Cl, X, Req>
    where
        P: Nodes,
        P::Service: Service<Req>,
    {
        #[pin]
        call: CallFuture<P::Service, Req, P::Classify>,
        mark: Option<WriteMark<Cl, X>>,
        retry: Option<ReadRetry<P, Cl, X, Req>>,
    }
}

impl<P, Cl, X, Req> ResponseFuture<P, Cl, X, Req>
where
    P: Nodes,
    P::Service: Service<Req>,
{
    pub(super) fn new(
        call: CallFuture<P::Service, Req, P::Classify>,
        mark: Option<WriteMark<Cl, X>>,
        retry: Option<ReadRetry<P, Cl, X, Req>>,
    ) -> Self {
        ResponseFuture { call, mark, retry }
    }
}

impl<P, Cl, X, Req> Future for ResponseFuture<P, Cl, X, Req>
where
    P: Nodes,
    P::Policy: Pick<Req>,
    P::Service: Service<Req>,
    <P::Service as Service<Req>>::Error: Into<BoxError>,
    P::Classify: FailureClassify<
        <P::Service as Service<Req>>::Response,
        <P::Service as Service<Req>>::Error,
    >,
{
    type Output = Result<<P::Service as Service<Req>>::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = ready!(this.call.as_mut().poll(cx));
            if let (Err(reason), Some(retry)) = (&result, this.retry.take()) {
                let ReadRetry {
                    mut primary,
                    shared,
                    request,
                } = retry;
                // Its route: a read on a replica (the tower front never reads at a position).
                let mut route = Route::<Cl, X>::read_on_replica();
                if shared.resend(&mut route, reason) {
                    let mut request = Some(request);
                    let call = shared.take(&mut route, |_| {
                        let request = request.take().ok_or(crate::Error::NoEndpoints)?;
                        primary.try_call(request).map_err(|(error, _)| error)
                    });
                    if let Ok(call) = call {
                        this.call.set(call);
                        continue;
                    }
                }
            }
            // The write is over: start its window now rather than when the future is dropped.
            drop(this.mark.take());
            return Poll::Ready(result);
        }
    }
}

impl<P, Cl, X, Req> Debug for ResponseFuture<P, Cl, X, Req>
where
    P: Nodes,
    P::Service: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("replica::ResponseFuture")
            .field("write", &self.mark.is_some())
            .field("may_retry", &self.retry.is_some())
            .finish_non_exhaustive()
    }
}
