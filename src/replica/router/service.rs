//! The tower front: a [`ReplicaRouter`] is a `Service` whose pools are called with the
//! request itself.

use super::future::{ReadRetry, ResponseFuture};
use super::ReplicaRouter;
use crate::error::{BoxError, Error};
use crate::health::Classify as FailureClassify;
use crate::policy::{HashKey, Pick};
use crate::replay::Replay;
use crate::replica::{Classify, Nodes, Role};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

impl<P, R, Cl, X, Req> Service<Req> for ReplicaRouter<P, R, Cl, X>
where
    P: Nodes,
    R: Nodes<Key = P::Key, Service = P::Service, Classify = P::Classify>,
    P::Policy: Pick<Req>,
    R::Policy: Pick<Req>,
    P::Service: Service<Req>,
    <P::Service as Service<Req>>::Error: Into<BoxError>,
    P::Classify: FailureClassify<
        <P::Service as Service<Req>>::Response,
        <P::Service as Service<Req>>::Error,
    >,
    Cl: Classify<Req>,
    X: HashKey<Req>,
    Req: Replay,
{
    type Response = <P::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<P, Cl, X, Req>;

    /// Always ready, like the pools.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        let access = shared.classify.classify(&req);
        let slot = match shared.sessions.mode {
            Some(_) => shared
                .session
                .key(&req)
                .and_then(|key| shared.sessions.slot(key)),
            None => None,
        };
        // The tower front cannot ask a replica how far it has replayed.
        let mut route = shared.decide(access, slot, false);
        let copy = route.may_resend().then(|| req.replay()).flatten();
        let (primary, replicas) = (&mut self.primary, &mut self.replicas);
        let mut req = Some(req);
        let call = shared.take(&mut route, |role| {
            let request = req.take().ok_or(Error::NoEndpoints)?;
            let call = match role {
                Role::Primary => primary.try_call(request),
                Role::Replica => replicas.try_call(request),
            };
            call.map_err(|(error, request)| {
                req = Some(request);
                error
            })
        });
        match call {
            Ok(call) if route.may_resend() => {
                // A read on a replica that fails is sent once more, to the primary.
                let retry = copy.map(|request| ReadRetry {
                    primary: self.primary.clone(),
                    shared: Arc::clone(&self.shared),
                    request,
                });
                ResponseFuture::new(call, None, retry)
            }
            Ok(call) => ResponseFuture::new(call, route.mark, None),
            Err(error) => ResponseFuture::new(self.primary.fail_fast(error), route.mark, None),
        }
    }
}
