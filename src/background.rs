//! The background tasks a balancer runs (discovery, health), and their state as the
//! application sees it: a driver that stops for any reason is visible, never silent.

use crate::locks::lock;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// A boxed, sendable future, as the work the background drivers run returns it: an active
/// health check, a DNS resolution, a replica's lag or role probe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where one background driver of a balancer is, from [`Balance::stats`](crate::Balance::stats).
///
/// ```
/// use tower::service_fn;
/// use tower_lb::{policy::RoundRobin, Balance, DriverState};
///
/// // Built outside a runtime: health waits for the first call made inside one.
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }))
///     .build()?;
/// assert_eq!(lb.stats().health_driver, DriverState::WaitingForRuntime);
/// # Ok::<(), tower_lb::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u8)]
pub enum DriverState {
    /// The balancer's settings need no such task (no discovery stream; health off).
    NotNeeded,
    /// Built outside a tokio runtime: the task starts on the first call made inside one.
    WaitingForRuntime,
    /// Running.
    Running,
    /// Ended normally (a discovery stream that ended).
    Finished,
    /// Ended by a panic: its work (ejections, checks, discovery) has stopped. Logged at
    /// `error` level when it happens, with the panic's message (for example tokio's "timers
    /// are disabled": the health driver needs a runtime built with `enable_time`).
    Crashed,
}

impl DriverState {
    /// The state stored as `state as u8`.
    fn from_u8(value: u8) -> Self {
        [
            DriverState::NotNeeded,
            DriverState::WaitingForRuntime,
            DriverState::Running,
            DriverState::Finished,
        ]
        .into_iter()
        .find(|state| *state as u8 == value)
        .unwrap_or(DriverState::Crashed)
    }
}

/// One driver's state, shared by the task and the balancer.
#[derive(Debug, Clone)]
pub(crate) struct DriverStatus(Arc<AtomicU8>);

impl DriverStatus {
    pub(crate) fn new(state: DriverState) -> Self {
        DriverStatus(Arc::new(AtomicU8::new(state as u8)))
    }

    pub(crate) fn get(&self) -> DriverState {
        DriverState::from_u8(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, state: DriverState) {
        self.0.store(state as u8, Ordering::Relaxed);
    }

    /// `driver`, marked running from now on and, when it ends, finished; or crashed, with an
    /// `error!` event, if it panics. A panic is caught at the poll that raised it, so the
    /// task ends cleanly instead of leaving the runtime to swallow it.
    pub(crate) fn supervise<F>(
        &self,
        name: &'static str,
        driver: F,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.set(DriverState::Running);
        Supervised {
            driver: Box::pin(catch_panic(driver)),
            status: self.clone(),
            name,
            done: false,
        }
    }
}

struct Supervised<F> {
    driver: Pin<Box<CatchPanic<F>>>,
    status: DriverStatus,
    name: &'static str,
    done: bool,
}

impl<F: Future<Output = ()>> Future for Supervised<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let state = match this.driver.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) => DriverState::Finished,
            Poll::Ready(Err(panic)) => {
                tracing::error!(
                    driver = this.name,
                    %panic,
                    "background driver panicked and stopped; its work no longer happens"
                );
                DriverState::Crashed
            }
        };
        this.status.set(state);
        this.done = true;
        Poll::Ready(())
    }
}

pin_project_lite::pin_project! {
    /// A future whose panic, in any of its polls, is caught and becomes its output (the
    /// panic's message) instead of unwinding into the task.
    struct CatchPanic<F> {
        #[pin]
        future: F,
    }
}

/// `future`, with a panic caught at the poll that raised it, becoming its output.
fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic { future }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match catch_panic_now(|| future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// `start()`, or the message of its panic.
fn catch_panic_now<R>(start: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(AssertUnwindSafe(start))
        .map_err(|payload| panic_message(&*payload).to_owned())
}

/// Why work the application handed a driver gave no answer.
#[derive(Debug, PartialEq)]
pub(crate) enum NoAnswer {
    /// It panicked, while its future was made or polled; the panic's message.
    Panicked(String),
    /// It took longer than its time limit.
    TimedOut,
}

/// Runs work the application hands a driver (an active health check, a replica probe):
/// `start` makes its future now, and the future returned answers within `limit` or says why
/// not. A panic, in `start` or in any poll, is caught and becomes [`NoAnswer::Panicked`]: the
/// driver counts it as a failure and goes on, instead of losing the task (and, with it, the
/// answer something waits for) or crashing.
pub(crate) fn answer_within<F: Future>(limit: Duration, start: impl FnOnce() -> F) -> Answer<F> {
    match catch_panic_now(start) {
        Ok(future) => Answer::Running {
            within: tokio::time::timeout(limit, catch_panic(future)),
        },
        Err(panic) => Answer::Panicked { panic: Some(panic) },
    }
}

pin_project_lite::pin_project! {
    /// The future [`answer_within`] returns. Named rather than `async`, so that it does not
    /// borrow what `start` borrowed and can be spawned.
    #[project = AnswerProj]
    pub(crate) enum Answer<F> {
        Running { #[pin] within: tokio::time::Timeout<CatchPanic<F>> },
        Panicked { panic: Option<String> },
    }
}

impl<F: Future> Future for Answer<F> {
    type Output = Result<F::Output, NoAnswer>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.project() {
            AnswerProj::Running { within } => match ready!(within.poll(cx)) {
                Ok(answer) => answer.map_err(NoAnswer::Panicked),
                Err(_) => Err(NoAnswer::TimedOut),
            },
            AnswerProj::Panicked { panic } => {
                Err(NoAnswer::Panicked(panic.take().unwrap_or_default()))
            }
        })
    }
}

/// What a panic said, for the log: its message when it was a string (as `panic!` and
/// `expect` make it; tokio's "timers are disabled" when a runtime lacks `enable_time`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

impl<F> Drop for Supervised<F> {
    /// A driver dropped before it ended (the runtime shut down) is no longer running.
    fn drop(&mut self) {
        if !self.done {
            self.status.set(DriverState::Finished);
        }
    }
}

/// Starts background tasks on the tokio runtime, deferred to the first call made inside one
/// when they were set up outside (a balancer or router built in a `OnceLock`, or in `main`
/// before the runtime). One relaxed load per call once started.
pub(crate) struct StartOnRuntime {
    waiting: AtomicBool,
    start: Mutex<Option<StartFn>>,
}

/// What starts the tasks, given the runtime to spawn them on.
pub(crate) type StartFn = Box<dyn FnOnce(&tokio::runtime::Handle) + Send>;

impl StartOnRuntime {
    /// Holds `start` (if any) until [`start_if_waiting`](Self::start_if_waiting) runs inside a
    /// runtime.
    pub(crate) fn new(start: Option<StartFn>) -> Self {
        StartOnRuntime {
            waiting: AtomicBool::new(start.is_some()),
            start: Mutex::new(start),
        }
    }

    /// Runs `start` now inside a runtime, or holds it for the first call made inside one.
    pub(crate) fn now_or_later(start: StartFn) -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                start(&runtime);
                StartOnRuntime::new(None)
            }
            Err(_) => StartOnRuntime::new(Some(start)),
        }
    }

    /// Starts what is waiting, if this runs inside a runtime.
    #[inline]
    pub(crate) fn start_if_waiting(&self) {
        if self.waiting.load(Ordering::Relaxed) {
            self.start_now();
        }
    }

    #[cold]
    fn start_now(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut start = lock(&self.start);
        if let Some(start) = start.take() {
            tracing::debug!("first call inside a tokio runtime: starting the background tasks");
            start(&runtime);
        }
        self.waiting.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_message_reaches_the_log() {
        let caught = |f: fn()| std::panic::catch_unwind(f).expect_err("it panics");
        let literal = caught(|| panic!("timers are disabled"));
        let formatted = caught(|| panic!("{} of {}", 1, 2));
        let other = caught(|| std::panic::panic_any(7_u8));
        assert_eq!(panic_message(&*literal), "timers are disabled");
        assert_eq!(panic_message(&*formatted), "1 of 2");
        assert_eq!(panic_message(&*other), "a panic without a message");
    }

    #[tokio::test]
    async fn a_panic_in_the_driver_shows_as_crashed() {
        let status = DriverStatus::new(DriverState::WaitingForRuntime);
        let crashing = status.supervise("test", async {
            tokio::task::yield_now().await;
            panic!("boom");
        });
        assert_eq!(status.get(), DriverState::Running);
        tokio::spawn(crashing)
            .await
            .expect("the panic is caught inside the task");
        assert_eq!(status.get(), DriverState::Crashed);

        status.supervise("test", async {}).await;
        assert_eq!(status.get(), DriverState::Finished);

        let pending = status.supervise("test", std::future::pending());
        assert_eq!(status.get(), DriverState::Running);
        drop(pending);
        assert_eq!(status.get(), DriverState::Finished);
    }
}
