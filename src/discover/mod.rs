//! Membership from a `tower::discover::Discover` stream.
//!
//! The balancer drains every change that is ready when it is built (so a static
//! `ServiceList` is fully present before the first call), then hands the stream to a
//! background task on the tokio runtime. The task applies changes as they arrive, with or
//! without traffic, publishing one snapshot per batch of ready changes. It holds only a `Weak`
//! handle to the pool and a stop signal that fires when the last handle to the balancer is
//! dropped, so it never keeps a dropped balancer alive.

use crate::error::BoxError;
use crate::policy::Policy;
use crate::pool::{Discovered, Pool};
use futures_core::Stream;
use pin_project_lite::pin_project;
use std::fmt::Debug;
use std::future::poll_fn;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use tower::discover::{Change, Discover};

/// A type-erased discovery stream, each inserted service with what discovery knows of it
/// (a plain `Discover` stream's: nothing, [`Discovered::new`]).
pub(crate) type BoxDiscover<K, S> =
    Pin<Box<dyn Stream<Item = Result<Change<K, Discovered<S>>, BoxError>> + Send>>;

/// How many ready changes one batch takes at most, so that a stream that is always ready
/// cannot keep the driver (or `build`) from returning.
const MAX_BATCH: usize = 4096;

pin_project! {
    struct DiscoverStream<D, F> {
        #[pin]
        discover: D,
        describe: F,
    }
}

impl<D, F, S> Stream for DiscoverStream<D, F>
where
    D: Discover,
    D::Error: Into<BoxError>,
    F: Fn(D::Service) -> Discovered<S>,
{
    type Item = Result<Change<D::Key, Discovered<S>>, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let describe = &*this.describe;
        this.discover.poll_discover(cx).map(|change| {
            change.map(|c| match c {
                Ok(Change::Insert(key, service)) => Ok(Change::Insert(key, describe(service))),
                Ok(Change::Remove(key)) => Ok(Change::Remove(key)),
                Err(error) => Err(error.into()),
            })
        })
    }
}

/// A plain `Discover` stream: each inserted service is a new endpoint of weight 1.
pub(crate) fn boxed<D>(discover: D) -> BoxDiscover<D::Key, D::Service>
where
    D: Discover + Send + 'static,
    D::Error: Into<BoxError>,
{
    Box::pin(DiscoverStream {
        discover,
        describe: Discovered::new,
    })
}

/// A `Discover` stream of [`Discovered`] endpoints: weight, zone and draining with them.
pub(crate) fn boxed_with_metadata<D, S>(discover: D) -> BoxDiscover<D::Key, S>
where
    D: Discover<Service = Discovered<S>> + Send + 'static,
    D::Error: Into<BoxError>,
    S: 'static,
{
    Box::pin(DiscoverStream {
        discover,
        describe: std::convert::identity,
    })
}

/// Turns each discovered service into `wrap(service)` (the balancer's endpoint layer), so
/// that what reaches the pool is what the pool stores.
pub(crate) fn map_services<K, S, T>(
    discover: BoxDiscover<K, S>,
    wrap: impl Fn(S) -> T + Send + 'static,
) -> BoxDiscover<K, T>
where
    K: 'static,
    S: 'static,
{
    struct Mapped<K, S, F> {
        inner: BoxDiscover<K, S>,
        wrap: F,
    }
    impl<K, S, T, F: Fn(S) -> T> Stream for Mapped<K, S, F> {
        type Item = Result<Change<K, Discovered<T>>, BoxError>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = &mut *self;
            this.inner.as_mut().poll_next(cx).map(|item| {
                item.map(|change| {
                    change.map(|change| match change {
                        Change::Insert(key, discovered) => {
                            Change::Insert(key, discovered.map(&this.wrap))
                        }
                        Change::Remove(key) => Change::Remove(key),
                    })
                })
            })
        }
    }
    // Unpin: the inner stream is boxed and `F` is only called, never pinned.
    impl<K, S, F> Unpin for Mapped<K, S, F> {}
    Box::pin(Mapped {
        inner: discover,
        wrap,
    })
}

/// The changes that were ready, and whether the stream has ended.
pub(crate) struct Batch<K, S> {
    pub(crate) changes: Vec<Change<K, Discovered<S>>>,
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

/// The background driver: applies discovered changes until the stream ends or the pool is
/// dropped.
pub(crate) async fn drive<K, S, P, R>(
    pool: Weak<Pool<K, S, P, R>>,
    mut discover: BoxDiscover<K, S>,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug,
    S: Clone,
    P: Policy,
    R: Default,
{
    loop {
        let batch = tokio::select! {
            _ = stop.changed() => None,
            batch = poll_fn(|cx| poll_batch(&mut discover, cx)) => Some(batch),
        };
        let (Some(batch), Some(pool)) = (batch, pool.upgrade()) else {
            tracing::debug!("balancer dropped; discovery stopped");
            return;
        };
        let ended = batch.ended;
        pool.apply(batch.changes);
        if ended {
            tracing::debug!("discovery stream ended; membership stays as it is");
            return;
        }
    }
}
