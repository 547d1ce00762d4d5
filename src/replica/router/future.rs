//! The response future of a [`ReplicaRouter`](super::ReplicaRouter) call, and the mark a
//! write leaves for its session.

use super::Shared;
use crate::balance::{Balance, ResponseFuture as CallFuture};
use crate::error::BoxError;
use crate::health::Classify as FailureClassify;
use crate::policy::{Pick, Policy};
use crate::replica::position::SessionPositions;
use pin_project_lite::pin_project;
use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Pins the writing session when the write completes or is dropped (a dropped write may have
/// committed).
pub(crate) struct WriteMark<Cl, X> {
    pub(super) shared: Arc<Shared<Cl, X>>,
    pub(super) slot: usize,
}

impl<Cl, X> WriteMark<Cl, X> {
    /// In position mode: the table to record the write's position in, and the session's slot.
    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn positions(&self) -> Option<(&SessionPositions, usize)> {
        Some((self.shared.sessions.positions()?, self.slot))
    }
}

impl<Cl, X> Drop for WriteMark<Cl, X> {
    fn drop(&mut self) {
        if let Some(windows) = self.shared.sessions.windows() {
            windows.wrote(self.slot);
        }
    }
}

/// A copy of a read sent to a replica, to send to the primary if the replica fails it.
pub(super) struct ReadRetry<K, S, PP, L, C, Cl, X, Req>
where
    PP: Policy,
    L: Layer<S>,
{
    pub(super) primary: Balance<K, S, PP, L, C>,
    pub(super) shared: Arc<Shared<Cl, X>>,
    pub(super) request: Req,
}

pin_project! {
    /// The response future of a [`ReplicaRouter`] call: the chosen pool's call; for a write,
    /// the mark that starts its session's read-your-own-writes window; for a read on a
    /// replica, a copy to send to the primary if the replica fails it.
    pub struct ResponseFuture<K, S, PP, L, C, Cl, X, Req>
    where
        PP: Policy,
        L: Layer<S>,
        L::Service: Service<Req>,
    {
        #[pin]
        call: CallFuture<L::Service, Req, C>,
        write: Option<WriteMark<Cl, X>>,
        retry: Option<ReadRetry<K, S, PP, L, C, Cl, X, Req>>,
    }
}

impl<K, S, PP, L, C, Cl, X, Req> ResponseFuture<K, S, PP, L, C, Cl, X, Req>
where
    PP: Policy,
    L: Layer<S>,
    L::Service: Service<Req>,
{
    pub(super) fn new(
        call: CallFuture<L::Service, Req, C>,
        write: Option<WriteMark<Cl, X>>,
    ) -> Self {
        ResponseFuture {
            call,
            write,
            retry: None,
        }
    }

    /// If the call fails, sends this copy of the request to the primary.
    pub(super) fn or_retry(mut self, retry: ReadRetry<K, S, PP, L, C, Cl, X, Req>) -> Self {
        self.retry = Some(retry);
        self
    }
}

impl<K, S, PP, L, C, Cl, X, Req> Future for ResponseFuture<K, S, PP, L, C, Cl, X, Req>
where
    K: Debug,
    PP: Pick<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    C: FailureClassify<<L::Service as Service<Req>>::Response, <L::Service as Service<Req>>::Error>,
{
    type Output = Result<<L::Service as Service<Req>>::Response, BoxError>;

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
                shared.counters.retried_reads.fetch_add(1, Relaxed);
                tracing::debug!(%reason, "read failed on a replica: retried on the primary");
                if let Ok(call) = primary.try_call(request) {
                    this.call.set(call);
                    continue;
                }
            }
            // The write is over: start its window now rather than when the future is dropped.
            drop(this.write.take());
            return Poll::Ready(result);
        }
    }
}

impl<K, S, PP, L, C, Cl, X, Req> Debug for ResponseFuture<K, S, PP, L, C, Cl, X, Req>
where
    PP: Policy,
    L: Layer<S>,
    L::Service: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("replica::ResponseFuture")
            .field("write", &self.write.is_some())
            .field("may_retry", &self.retry.is_some())
            .finish_non_exhaustive()
    }
}
