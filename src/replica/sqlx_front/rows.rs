//! A statement's results as the stream sqlx's `Executor::fetch_many` returns.
//!
//! The statement runs in one async function that owns its connection and borrows it for
//! sqlx's row stream (an async block may hold both); each result goes through a one-slot
//! channel to [`Rows`], which polls that function whenever it has nothing to hand on. So
//! results stream one at a time, as from a `PgPool`, with no task spawned.

use futures_core::Stream;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pin_project! {
    /// The results `produce` sends, as a stream that ends when it returns.
    pub(super) struct Rows<F, T> {
        #[pin]
        produce: Option<F>,
        results: mpsc::Receiver<T>,
    }
}

impl<F: Future<Output = ()>, T> Rows<F, T> {
    /// The stream of what `produce` sends on the sender it is made with.
    pub(super) fn new(produce: impl FnOnce(mpsc::Sender<T>) -> F) -> Self {
        let (sender, results) = mpsc::channel(1);
        Rows {
            produce: Some(produce(sender)),
            results,
        }
    }
}

impl<F: Future<Output = ()>, T> Stream for Rows<F, T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut this = self.project();
        loop {
            if let Ok(result) = this.results.try_recv() {
                return Poll::Ready(Some(result));
            }
            let Some(produce) = this.produce.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            match produce.poll(cx) {
                // Done: hand on what it sent last, then end.
                Poll::Ready(()) => this.produce.set(None),
                // Waiting for the database, or for room to send (which taking a result
                // makes, waking this task).
                Poll::Pending => {
                    return match this.results.try_recv() {
                        Ok(result) => Poll::Ready(Some(result)),
                        Err(_) => Poll::Pending,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_stream_one_at_a_time_and_end_with_the_producer() {
        let mut rows = Box::pin(Rows::new(|sender| async move {
            for i in 0..5 {
                tokio::task::yield_now().await;
                if sender.send(i).await.is_err() {
                    return;
                }
            }
        }));
        let mut seen = Vec::new();
        while let Some(i) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            seen.push(i);
        }
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }
}
