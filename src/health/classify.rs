//! What counts as a failed call.

use std::fmt;

/// Decides whether a completed call failed, for passive health (outlier detection) and the
/// failure counters.
///
/// The default, [`ErrorsFail`], counts every `Err`. An HTTP client usually wants 5xx responses
/// counted too: [`ServerErrors`]. Any `Fn(Result<&Response, &Error>) -> bool` works through
/// [`classify_fn`].
///
/// ```
/// use tower_lb::health::{Classify, ServerErrors};
///
/// let response = http::Response::builder().status(503).body(()).unwrap();
/// assert!(ServerErrors.is_failure(Ok::<_, &std::io::Error>(&response)));
/// ```
pub trait Classify<Response, Error>: Clone + Send + Sync + 'static {
    /// Whether this outcome is a failure of the endpoint.
    fn is_failure(&self, outcome: Result<&Response, &Error>) -> bool;
}

/// Every `Err` is a failure, every response a success. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsFail;

impl<Response, Error> Classify<Response, Error> for ErrorsFail {
    fn is_failure(&self, outcome: Result<&Response, &Error>) -> bool {
        outcome.is_err()
    }
}

/// Errors (a refused connection, a timeout) and `5xx` responses are failures: what Envoy and
/// gRPC count as an endpoint's fault.
///
/// ```
/// use tower_lb::health::{Classify, ServerErrors};
///
/// let ok = http::Response::builder().status(404).body(()).unwrap();
/// assert!(!ServerErrors.is_failure(Ok::<_, &std::io::Error>(&ok)), "a 4xx is the client's fault");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrors;

impl<B, Error> Classify<http::Response<B>, Error> for ServerErrors {
    fn is_failure(&self, outcome: Result<&http::Response<B>, &Error>) -> bool {
        outcome.map_or(true, |response| response.status().is_server_error())
    }
}

/// Classifies with a closure.
///
/// ```
/// use tower_lb::health::{classify_fn, Classify};
///
/// // An application protocol that reports overload in its own response.
/// let overloaded = classify_fn(|outcome: Result<&String, &std::io::Error>| {
///     outcome.map_or(true, |body| body.starts_with("OVERLOADED"))
/// });
/// assert!(overloaded.is_failure(Ok(&"OVERLOADED, try later".to_string())));
/// ```
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn(f)
}

/// The classifier [`classify_fn`] returns.
#[derive(Clone, Copy)]
pub struct ClassifyFn<F>(F);

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<Response, Error, F> Classify<Response, Error> for ClassifyFn<F>
where
    F: Fn(Result<&Response, &Error>) -> bool + Clone + Send + Sync + 'static,
{
    fn is_failure(&self, outcome: Result<&Response, &Error>) -> bool {
        (self.0)(outcome)
    }
}
