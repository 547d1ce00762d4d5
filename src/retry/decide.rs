//! Which failures may be retried.

use crate::error::{BoxError, Error};
use crate::replay::Replay;
use std::error::Error as StdError;

/// Decides whether a failed call may be retried.
///
/// The default, [`RetrySafe`], resends a request only when that cannot apply it twice. Any
/// `Fn(&Req, &Result<Res, E>) -> bool + Clone` is a predicate too.
pub trait RetryIf<Req, Res, E>: Clone {
    /// Whether `req`, which ended in `result`, should be tried again.
    fn retry(&self, req: &Req, result: &Result<Res, E>) -> bool;
}

/// Retries an idempotent request after any error, and any other request only after an error
/// that proves it never reached a backend (the default predicate of
/// [`RetryPolicy`](super::RetryPolicy)).
///
/// A request that timed out, or whose connection broke mid-call, may have been applied: a
/// `POST` is then not sent again, a `GET` or a `PUT` is. Whether a request is idempotent is
/// [`Replay::is_idempotent`]; whether an error proves it was never sent is [`NeverSent`].
///
/// ```
/// use tower_lb::{retry::{RetryIf, RetrySafe}, BoxError, Error};
///
/// let post = http::Request::post("/orders").body(String::new()).unwrap();
/// let get = http::Request::get("/orders").body(String::new()).unwrap();
/// let reset: Result<(), BoxError> =
///     Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
/// let refused: Result<(), BoxError> =
///     Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
/// let no_endpoint: Result<(), BoxError> = Err(Error::NoEndpoints.into());
///
/// assert!(RetrySafe.retry(&get, &reset), "idempotent: any failure");
/// assert!(!RetrySafe.retry(&post, &reset), "the backend may have applied it");
/// assert!(RetrySafe.retry(&post, &refused) && RetrySafe.retry(&post, &no_endpoint));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetrySafe;

impl<Req, Res, E> RetryIf<Req, Res, E> for RetrySafe
where
    Req: Replay,
    E: NeverSent,
{
    fn retry(&self, req: &Req, result: &Result<Res, E>) -> bool {
        match result {
            Ok(_) => false,
            Err(error) => req.is_idempotent() || error.never_sent(),
        }
    }
}

/// Retries every error: for requests that are all safe to send twice, whatever happened.
///
/// ```
/// use tower_lb::retry::{RetryErrors, RetryPolicy};
///
/// // Reads of a key-value store: resending one is harmless.
/// let policy = RetryPolicy::new(2).retry_if(RetryErrors);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

impl<Req, Res, E> RetryIf<Req, Res, E> for RetryErrors {
    fn retry(&self, _: &Req, result: &Result<Res, E>) -> bool {
        result.is_err()
    }
}

impl<Req, Res, E, F> RetryIf<Req, Res, E> for F
where
    F: Fn(&Req, &Result<Res, E>) -> bool + Clone,
{
    fn retry(&self, req: &Req, result: &Result<Res, E>) -> bool {
        self(req, result)
    }
}

/// An error that can tell whether the request it ended was never sent to a backend, so that
/// resending it cannot apply it twice.
///
/// Implemented for [`BoxError`], [`std::io::Error`], this crate's [`Error`] and (features
/// `reqwest`, `reqwest-0_12`) `reqwest::Error`, through [`never_sent`]. Implement it for an error type of your
/// own to let [`RetrySafe`] retry more.
pub trait NeverSent {
    /// `true` only when the request surely never reached a backend.
    fn never_sent(&self) -> bool;
}

impl NeverSent for BoxError {
    fn never_sent(&self) -> bool {
        never_sent(&**self)
    }
}

impl NeverSent for std::io::Error {
    fn never_sent(&self) -> bool {
        never_sent(self)
    }
}

impl NeverSent for Error {
    fn never_sent(&self) -> bool {
        never_sent(self)
    }
}

/// A reqwest error of one major (`$reqwest`: the dependency's name).
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
macro_rules! reqwest_never_sent {
    ($reqwest:ident) => {
        impl NeverSent for $reqwest::Error {
            fn never_sent(&self) -> bool {
                never_sent(self)
            }
        }
    };
}

#[cfg(feature = "reqwest")]
reqwest_never_sent!(reqwest);
#[cfg(feature = "reqwest-0_12")]
reqwest_never_sent!(reqwest_0_12);

/// Whether `error`, or any error in its `source` chain, proves that the request never reached
/// a backend:
/// - the balancer had no endpoint to send it to ([`Error::NoEndpoints`],
///   [`Error::AllUnhealthy`], [`Error::NoPick`]);
/// - the connection was refused (`io::ErrorKind::ConnectionRefused`, which is also what
///   reqwest and hyper-util carry in their chains);
/// - reqwest failed while connecting (`reqwest::Error::is_connect`, features `reqwest`,
///   `reqwest-0_12`).
///
/// A timeout, a reset connection or an unexpected end of the response prove nothing: the
/// backend may have applied the request.
///
/// ```
/// use tower_lb::retry::never_sent;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(never_sent(&refused));
/// let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert!(!never_sent(&timed_out));
/// ```
pub fn never_sent(error: &(dyn StdError + 'static)) -> bool {
    // Bounded: a cyclic chain of sources must not hang the caller.
    let mut cause = Some(error);
    for _ in 0..32 {
        let Some(error) = cause else { return false };
        if proves_not_sent(error) {
            return true;
        }
        // An `io::Error` wrapping another error reports the wrapped error's source, not the
        // wrapped error itself: step into it first.
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    false
}

fn proves_not_sent(error: &(dyn StdError + 'static)) -> bool {
    if let Some(error) = error.downcast_ref::<Error>() {
        return matches!(
            error,
            Error::NoEndpoints | Error::AllUnhealthy { .. } | Error::NoPick { .. }
        );
    }
    if let Some(error) = error.downcast_ref::<std::io::Error>() {
        return error.kind() == std::io::ErrorKind::ConnectionRefused;
    }
    #[cfg(feature = "reqwest")]
    if let Some(error) = error.downcast_ref::<reqwest::Error>() {
        return error.is_connect();
    }
    #[cfg(feature = "reqwest-0_12")]
    if let Some(error) = error.downcast_ref::<reqwest_0_12::Error>() {
        return error.is_connect();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error whose source is itself: the walk must end.
    #[derive(Debug)]
    struct Cyclic;
    impl fmt::Display for Cyclic {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cyclic")
        }
    }
    impl StdError for Cyclic {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&Cyclic)
        }
    }

    #[test]
    fn the_source_chain_is_searched_and_bounded() {
        let wrapped =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(never_sent(&wrapped));
        assert!(!never_sent(&Cyclic));
        assert!(!never_sent(&Error::Timeout {
            after: std::time::Duration::from_secs(1)
        }));
    }
}
