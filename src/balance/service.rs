//! `tower::Service` for [`Balance`].

use super::{Balance, Inner, ResponseFuture};
use crate::endpoint::{EndpointStats, InFlight};
use crate::error::{BoxError, Error};
use crate::health::Classify;
use crate::policy::{Candidates, Pick, Policy};
use crate::pool::Snapshot;
use std::fmt::Debug;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

impl<K, S, P, L, C, Req> Service<Req> for Balance<K, S, P, L, C>
where
    K: Debug,
    P: Pick<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<L::Service as Service<Req>>::Response, <L::Service as Service<Req>>::Error>,
{
    type Response = <L::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<L::Service, Req, C>;

    /// Always ready: readiness is the picked endpoint's business, inside the response future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.call_avoiding(req, &[])
    }
}

impl<K, S, P, L, C> Balance<K, S, P, L, C>
where
    K: Debug,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
    C: Clone,
{
    /// `call`, steering clear of the endpoints in `avoid` (those a retry already failed on)
    /// unless every eligible endpoint is among them.
    pub(crate) fn call_avoiding<Req>(
        &mut self,
        req: Req,
        avoid: &[Arc<EndpointStats>],
    ) -> ResponseFuture<L::Service, Req, C>
    where
        P: Pick<Req>,
        L::Service: Service<Req>,
    {
        // Built in place rather than through `try_call_avoiding`'s `Result`: the response
        // future is large, and every move of it is on the request path.
        self.with_snapshot(|inner, snapshot| match pick(inner, snapshot, &req, avoid) {
            Ok((service, guard)) => ResponseFuture::called(
                service.oneshot(req),
                guard,
                inner.classify.clone(),
                inner.timeout,
            ),
            Err(error) => ResponseFuture::failed(error, inner.classify.clone()),
        })
    }

    /// A response future that fails at once with `error`, for a caller above that decided
    /// not to send the request (a write with no primary).
    pub(crate) fn fail_fast<Req>(&self, error: Error) -> ResponseFuture<L::Service, Req, C>
    where
        L::Service: Service<Req>,
    {
        ResponseFuture::failed(error, self.inner.classify.clone())
    }

    /// `call`, or, when there is no endpoint to pick, the balancer's error with the request
    /// handed back (for a caller that can send it elsewhere, such as a read falling back from
    /// the replicas to the primary).
    pub(crate) fn try_call<Req>(
        &mut self,
        req: Req,
    ) -> Result<ResponseFuture<L::Service, Req, C>, (Error, Req)>
    where
        P: Pick<Req>,
        L::Service: Service<Req>,
    {
        self.try_call_avoiding(req, &[])
    }

    fn try_call_avoiding<Req>(
        &mut self,
        req: Req,
        avoid: &[Arc<EndpointStats>],
    ) -> Result<ResponseFuture<L::Service, Req, C>, (Error, Req)>
    where
        P: Pick<Req>,
        L::Service: Service<Req>,
    {
        self.with_snapshot(|inner, snapshot| match pick(inner, snapshot, &req, avoid) {
            Ok((service, guard)) => Ok(ResponseFuture::called(
                service.oneshot(req),
                guard,
                inner.classify.clone(),
                inner.timeout,
            )),
            Err(error) => Err((error, req)),
        })
    }

    /// Picks an endpoint for `req` as `call` would, and hands out its service with the call
    /// counted against it, for a caller that uses the service its own way (a database pool
    /// handed to sqlx): the count ends when the lease is completed or dropped.
    ///
    /// Like a retry, the pick steers clear of the endpoints in `avoid` unless every eligible
    /// endpoint is among them: [`Lease::endpoint`] tells.
    ///
    /// Takes `&self` and reads the current snapshot directly, as a fresh handle's first call
    /// does: its callers share one handle (`&PgRouter`), so a per-handle cache would need a
    /// clone of the handle per lease, two more atomic writes on the balancer's count.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn lease<Req>(
        &self,
        req: &Req,
        avoid: &[Arc<EndpointStats>],
    ) -> Result<Lease<L::Service>, Error>
    where
        P: Pick<Req>,
    {
        let inner = &*self.inner;
        inner.start_waiting_drivers();
        pick(inner, &inner.pool.current().load(), req, avoid)
            .map(|(service, guard)| Lease { service, guard })
    }

    /// Runs `f` on the current snapshot, read through this handle's cache.
    #[inline]
    fn with_snapshot<R>(
        &mut self,
        f: impl FnOnce(&Inner<K, S, P, L, C>, &Snapshot<K, L::Service, P::Table>) -> R,
    ) -> R {
        let inner = &*self.inner;
        inner.start_waiting_drivers();
        let generation = inner.pool.generation();
        // One call of `f`, not one per case: called from three places, the pick was not
        // inlined, and its call saved and restored six registers on every request.
        let cached = match &self.cached {
            Some((cached_at, snapshot)) if *cached_at == generation => Some(snapshot),
            _ => None,
        };
        let first_call;
        let snapshot = match cached {
            Some(snapshot) => snapshot,
            None if self.called => {
                let snapshot = inner.pool.current().load_full();
                &self.cached.insert((generation, snapshot)).1
            }
            None => {
                self.called = true;
                first_call = inner.pool.current().load();
                &*first_call
            }
        };
        f(inner, snapshot)
    }
}

/// An endpoint's service, handed out by [`Balance::lease`] with one call counted against the
/// endpoint until [`complete`](Self::complete) (or drop, which counts as cancelled).
///
/// Public in a private module: the replica router's [`Nodes`](crate::replica::Nodes) trait
/// names it, and nothing outside the crate can.
#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]
pub struct Lease<S> {
    pub(crate) service: S,
    guard: InFlight,
}

impl<S> std::fmt::Debug for Lease<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl<S> Lease<S> {
    /// The endpoint the lease counts against.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn endpoint(&self) -> &Arc<EndpointStats> {
        self.guard.stats()
    }

    /// Ends the call: its outcome feeds load accounting and outlier detection.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn complete(self, succeeded: bool) {
        self.guard.complete(succeeded);
    }
}

/// Whether `endpoint` is one of `avoid` (the endpoints a retried request failed on).
fn avoids(avoid: &[Arc<EndpointStats>], endpoint: &Arc<EndpointStats>) -> bool {
    avoid.iter().any(|a| Arc::ptr_eq(a, endpoint))
}

/// A retry's pick among `endpoints` (one zone's part): the policy's choice unless it is to be
/// avoided; then up to two fresh picks (random policies usually move on), then the next
/// endpoint not to be avoided (deterministic ones, like a sticky hash, would pick the same
/// again). `None` when every one of them is to be avoided.
fn steer_clear(
    picked: usize,
    endpoints: &[Arc<EndpointStats>],
    avoid: &[Arc<EndpointStats>],
    mut pick_again: impl FnMut() -> Option<usize>,
) -> Option<usize> {
    let avoided = |i: usize| avoids(avoid, &endpoints[i]);
    if !avoided(picked) {
        return Some(picked);
    }
    for _ in 0..2 {
        match pick_again() {
            Some(i) if i < endpoints.len() && !avoided(i) => return Some(i),
            _ => {}
        }
    }
    (1..endpoints.len())
        .map(|step| (picked + step) % endpoints.len())
        .find(|&i| !avoided(i))
}

/// For a retry whose drawn zone holds only endpoints it failed on: the policy's pick, steered
/// clear of those, in the first other zone (traffic zones in order, then the reserve) that
/// has one it has not failed on.
#[cold]
fn spill<K, S, P, L, C, Req>(
    inner: &Inner<K, S, P, L, C>,
    snapshot: &Snapshot<K, L::Service, P::Table>,
    req: &Req,
    avoid: &[Arc<EndpointStats>],
) -> Option<usize>
where
    K: Debug,
    P: Pick<Req>,
    L: Layer<S>,
{
    let index = snapshot.parts().find_map(|(part, table)| {
        let endpoints = &snapshot.stats[part.clone()];
        let candidates = Candidates::new(endpoints);
        let pick = || inner.pool.policy().pick(req, table, &candidates);
        let picked = pick().filter(|&i| i < endpoints.len())?;
        Some(part.start + steer_clear(picked, endpoints, avoid, pick)?)
    })?;
    tracing::debug!(endpoint = ?snapshot.keys[index], "a retry spills to another zone");
    Some(index)
}

/// Picks an endpoint from `snapshot` for `req` and starts counting a call against it; with
/// nothing to pick, the reason.
#[inline]
fn pick<K, S, P, L, C, Req>(
    inner: &Inner<K, S, P, L, C>,
    snapshot: &Snapshot<K, L::Service, P::Table>,
    req: &Req,
    avoid: &[Arc<EndpointStats>],
) -> Result<(L::Service, InFlight), Error>
where
    K: Debug,
    P: Pick<Req>,
    L: Layer<S>,
    L::Service: Clone,
{
    let eligible = snapshot.eligible;
    // An endpoint on probation takes exactly one request, whichever comes first (not a retry
    // of a request it failed).
    let on_probation = snapshot.probation();
    let probe = snapshot.stats[on_probation.clone()]
        .iter()
        .position(|endpoint| !avoids(avoid, endpoint) && endpoint.try_claim_probe())
        .map(|offset| on_probation.start + offset);
    let share = snapshot.share();
    let part = share.as_ref().map_or(0..0, |(part, _)| part.clone());
    let candidates = Candidates::new(&snapshot.stats[part.clone()]);
    let index = match (probe, share) {
        (Some(probe), _) => {
            tracing::debug!(endpoint = ?snapshot.keys[probe], "probation request");
            probe
        }
        (None, None) if snapshot.members == 0 => return Err(Error::NoEndpoints),
        (None, None) => {
            let endpoints = snapshot.members;
            return Err(Error::AllUnhealthy { endpoints });
        }
        (None, Some((_, table))) => {
            match inner.pool.policy().pick(req, table, &candidates) {
                Some(index) if index < part.len() && avoid.is_empty() => part.start + index,
                Some(index) if index < part.len() => {
                    let again = || inner.pool.policy().pick(req, table, &candidates);
                    match steer_clear(index, &snapshot.stats[part.clone()], avoid, again) {
                        Some(clear) => part.start + clear,
                        // Every candidate of the drawn zone failed this request: another
                        // zone's, or (none left anywhere) the policy's choice.
                        None => spill(inner, snapshot, req, avoid).unwrap_or(part.start + index),
                    }
                }
                _ => return Err(Error::NoPick { eligible }),
            }
        }
    };
    tracing::trace!(endpoint = ?snapshot.keys[index], eligible, "picked");
    let endpoint = &snapshot.stats[index];
    let guard = InFlight::start(Arc::clone(endpoint), || candidates.now_ns(endpoint));
    Ok((snapshot.services[index].clone(), guard))
}
