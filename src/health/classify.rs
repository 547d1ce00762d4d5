//! What counts as a failed call.

use std::fmt;
use std::time::Duration;

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

    /// How long the endpoint asked not to be sent calls, if it did (HTTP's `Retry-After` on a
    /// 429 or 503): with outlier detection on, the endpoint is then held out of rotation for
    /// that long (at most the outlier settings' longest ejection), and comes back through
    /// probation. `None` by default.
    fn hold_off(&self, outcome: Result<&Response, &Error>) -> Option<Duration> {
        let _ = outcome;
        None
    }
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
/// gRPC count as an endpoint's fault. A 429 or 503 with `Retry-After: <seconds>` holds the
/// endpoint out of rotation for that long ([`Classify::hold_off`]).
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

    /// A 429 or 503 with `Retry-After` in seconds (an HTTP date is not read).
    fn hold_off(&self, outcome: Result<&http::Response<B>, &Error>) -> Option<Duration> {
        let response = outcome.ok()?;
        let status = response.status();
        if status != http::StatusCode::TOO_MANY_REQUESTS
            && status != http::StatusCode::SERVICE_UNAVAILABLE
        {
            return None;
        }
        let seconds = response.headers().get(http::header::RETRY_AFTER)?;
        let seconds: u64 = seconds.to_str().ok()?.trim().parse().ok()?;
        Some(Duration::from_secs(seconds))
    }
}

/// gRPC's failures: errors, HTTP `5xx` responses, and responses whose `grpc-status` is one
/// of the codes Envoy maps to a `5xx` (`UNKNOWN` 2, `DEADLINE_EXCEEDED` 4, `UNIMPLEMENTED` 12,
/// `INTERNAL` 13, `UNAVAILABLE` 14, `DATA_LOSS` 15). A gRPC server answers HTTP 200 whatever
/// the call's outcome, so [`ServerErrors`] would count a failing server as healthy.
///
/// The classifier sees the response's head: the `grpc-status` of a *trailers-only* response,
/// which is how servers (tonic, grpc-go, grpc-java) answer a call that fails before any
/// message, the common case for a unary call. A status sent in the trailers after messages
/// (a stream that fails midway) arrives after the call is accounted, and is not seen.
/// Client errors (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`, …) are the caller's,
/// not the endpoint's; `RESOURCE_EXHAUSTED` (8) is load shedding, not failure. An
/// `UNAVAILABLE` or `RESOURCE_EXHAUSTED` answer with `grpc-retry-pushback-ms` holds the
/// endpoint out of rotation for that long, as `Retry-After` does under [`ServerErrors`].
///
/// ```
/// use tower_lb::health::{Classify, GrpcStatus};
///
/// let answer = |status: &str| {
///     http::Response::builder().header("grpc-status", status).body(()).unwrap()
/// };
/// let outcome = |r: &http::Response<()>| GrpcStatus.is_failure(Ok::<_, &std::io::Error>(r));
/// assert!(outcome(&answer("14")), "UNAVAILABLE");
/// assert!(!outcome(&answer("5")), "NOT_FOUND is the caller's");
/// assert!(!outcome(&http::Response::new(())), "no status in the head: messages follow");
///
/// // A server pushing back: held out of rotation for that long (`Classify::hold_off`).
/// let pushback = http::Response::builder()
///     .header("grpc-status", "14")
///     .header("grpc-retry-pushback-ms", "250")
///     .body(())
///     .unwrap();
/// let held = GrpcStatus.hold_off(Ok::<_, &std::io::Error>(&pushback));
/// assert_eq!(held, Some(std::time::Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcStatus;

/// The gRPC codes that count as the endpoint's failure.
const GRPC_FAILURES: [u32; 6] = [2, 4, 12, 13, 14, 15];

impl<B, Error> Classify<http::Response<B>, Error> for GrpcStatus {
    fn is_failure(&self, outcome: Result<&http::Response<B>, &Error>) -> bool {
        let Ok(response) = outcome else {
            return true;
        };
        if response.status().is_server_error() {
            return true;
        }
        grpc_code(response).is_some_and(|code| GRPC_FAILURES.contains(&code))
    }

    /// gRPC's `grpc-retry-pushback-ms` on an `UNAVAILABLE` or `RESOURCE_EXHAUSTED` answer.
    fn hold_off(&self, outcome: Result<&http::Response<B>, &Error>) -> Option<Duration> {
        let response = outcome.ok()?;
        if !matches!(grpc_code(response)?, 8 | 14) {
            return None;
        }
        let millis = response.headers().get("grpc-retry-pushback-ms")?;
        let millis: u64 = millis.to_str().ok()?.trim().parse().ok()?;
        Some(Duration::from_millis(millis))
    }
}

/// The `grpc-status` of a trailers-only response.
fn grpc_code<B>(response: &http::Response<B>) -> Option<u32> {
    let status = response.headers().get("grpc-status")?;
    status.to_str().ok()?.trim().parse().ok()
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
