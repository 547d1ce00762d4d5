//! Membership from a `tower::discover::Discover` stream.
//!
//! The balancer drains every change that is ready when it is built (so a static
//! `ServiceList` is fully present before the first call), then hands the stream to a
//! background task on the tokio runtime. The task applies changes as they arrive, with or
//! without traffic, publishing one snapshot per batch of ready changes. It holds only a `Weak`
//! reference to the balancer and a stop signal that fires when the last handle is dropped, so
//! it never keeps a dropped balancer alive.

use crate::{balance::Shared, policy::Policy, BoxError};
use futures_core::Stream;
use pin_project_lite::pin_project;
use std::fmt::Debug;
use std::future::poll_fn;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use tower::discover::{Change, Discover};
use tower_layer::Layer;

/// A type-erased discovery stream.
pub(crate) type BoxDiscover<K, S> =
    Pin<Box<dyn Stream<Item = Result<Change<K, S>, BoxError>> + Send>>;

/// How many ready changes one batch takes at most, so that a stream that is always ready
/// cannot keep the driver (or `build`) from returning.
const MAX_BATCH: usize = 4096;

pin_project! {
    struct DiscoverStream<D> {
        #[pin]
        discover: D,
    }
}

impl<D> Stream for DiscoverStream<D>
where
    D: Discover,
    D::Error: Into<BoxError>,
{
    type Item = Result<Change<D::Key, D::Service>, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project()
            .discover
            .poll_discover(cx)
            .map(|change| change.map(|c| c.map_err(Into::into)))
    }
}

pub(crate) fn boxed<D>(discover: D) -> BoxDiscover<D::Key, D::Service>
where
    D: Discover + Send + 'static,
    D::Error: Into<BoxError>,
{
    Box::pin(DiscoverStream { discover })
}

/// The changes that were ready, and whether the stream has ended.
pub(crate) struct Batch<K, S> {
    pub(crate) changes: Vec<Change<K, S>>,
    pub(crate) ended: bool,
}

/// Takes up to [`MAX_BATCH`] ready changes; `Pending` only when none was ready.
pub(crate) fn poll_batch<K, S>(
    discover: &mut BoxDiscover<K, S>,
    cx: &mut Context<'_>,
) -> Poll<Batch<K, S>> {
    let mut changes = Vec::new();
    while changes.len() < MAX_BATCH {
        match discover.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(change))) => changes.push(change),
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "discovery stream returned an error; membership unchanged");
            }
            Poll::Ready(None) => {
                return Poll::Ready(Batch {
                    changes,
                    ended: true,
                })
            }
            Poll::Pending if changes.is_empty() => return Poll::Pending,
            Poll::Pending => break,
        }
    }
    Poll::Ready(Batch {
        changes,
        ended: false,
    })
}

/// The background driver: applies discovered changes until the stream ends or the balancer
/// is dropped.
pub(crate) async fn drive<K, S, P, L, C>(
    shared: Weak<Shared<K, S, P, L, C>>,
    mut discover: BoxDiscover<K, S>,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    loop {
        let batch = tokio::select! {
            _ = stop.changed() => None,
            batch = poll_fn(|cx| poll_batch(&mut discover, cx)) => Some(batch),
        };
        let (Some(batch), Some(shared)) = (batch, shared.upgrade()) else {
            tracing::debug!("balancer dropped; discovery stopped");
            return;
        };
        let ended = batch.ended;
        shared.apply(batch.changes);
        if ended {
            tracing::debug!("discovery stream ended; membership stays as it is");
            return;
        }
    }
}
