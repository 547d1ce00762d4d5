//! What a request must say about itself to be sent again: by a retry, or by the replica
//! router resending a failed read to the primary.

use http::Method;

/// A request that can be copied for another attempt, and that knows whether sending it twice
/// is safe.
///
/// Requests are not required to be `Clone` (tower's
/// [`Policy::clone_request`](tower::retry::Policy::clone_request) convention): `replay` may
/// return `None`, and then the request is sent once and never retried. It is implemented for
/// - plain values (integers, `String`, `&T`, `Arc<T>`, `Vec<T>`, `Bytes`, `()`, and pairs and
///   triples of them): copied, and not idempotent, because only the application knows what the
///   endpoint does with them;
/// - `http::Request<B>` with a cloneable body (`String`, `Bytes`, `Full<Bytes>`, `Empty`):
///   idempotent by method (RFC 9110 §9.2.2), by an [`Idempotent`] extension, or by an
///   `Idempotency-Key` header. A streaming body (hyper's `Incoming`) cannot be copied: collect
///   it into `Full<Bytes>` first;
/// - `reqwest::Request` (features `reqwest`, `reqwest-0_12`): copied with `try_clone`, which is `None` for a
///   streaming body; idempotent by method or an `Idempotency-Key` header.
///
/// For a type of your own, implement it (for a foreign type, wrap it in a newtype):
///
/// ```
/// use tower_lb::retry::Replay;
///
/// #[derive(Clone)]
/// enum Command { Get(String), Incr(String) }
///
/// impl Replay for Command {
///     fn replay(&self) -> Option<Self> {
///         Some(self.clone())
///     }
///     fn is_idempotent(&self) -> bool {
///         matches!(self, Command::Get(_))
///     }
/// }
/// assert!(!Command::Incr("hits".into()).is_idempotent());
/// ```
pub trait Replay: Sized {
    /// A copy to send on another attempt, or `None` if this request cannot be copied (it is
    /// then sent once).
    fn replay(&self) -> Option<Self>;

    /// Whether sending this request twice has the same effect as sending it once, so that it
    /// may be resent after a failure that it may have caused on a backend. `false` unless the
    /// type knows better.
    fn is_idempotent(&self) -> bool {
        false
    }
}

/// Marks an `http::Request` as safe to resend whatever its method (say, a `POST` the server
/// deduplicates), as a request extension.
///
/// ```
/// use tower_lb::retry::{Idempotent, Replay};
///
/// let mut request = http::Request::post("/orders").body(String::new()).unwrap();
/// assert!(!request.is_idempotent());
/// request.extensions_mut().insert(Idempotent);
/// assert!(request.is_idempotent());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

/// The methods RFC 9110 §9.2.2 defines as idempotent.
fn idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request header of draft-ietf-httpapi-idempotency-key-header: the server deduplicates.
fn has_idempotency_key(headers: &http::HeaderMap) -> bool {
    headers.contains_key("idempotency-key")
}

impl<B: Clone> Replay for http::Request<B> {
    fn replay(&self) -> Option<Self> {
        let mut copy = http::Request::new(self.body().clone());
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }

    fn is_idempotent(&self) -> bool {
        idempotent_method(self.method())
            || self.extensions().get::<Idempotent>().is_some()
            || has_idempotency_key(self.headers())
    }
}

/// A reqwest request of one major (`$reqwest`: the dependency's name).
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
macro_rules! replay_reqwest {
    ($reqwest:ident) => {
        impl Replay for $reqwest::Request {
            fn replay(&self) -> Option<Self> {
                self.try_clone()
            }

            fn is_idempotent(&self) -> bool {
                idempotent_method(self.method()) || has_idempotency_key(self.headers())
            }
        }
    };
}

#[cfg(feature = "reqwest")]
replay_reqwest!(reqwest);
#[cfg(feature = "reqwest-0_12")]
replay_reqwest!(reqwest_0_12);

/// Plain values are copied and are not idempotent: only the application knows what an
/// endpoint does with them.
macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {
        $(impl Replay for $ty {
            fn replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        })*
    };
}

replay_by_clone!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    Box<str>,
    http::Uri,
    bytes::Bytes,
);

impl<T: ?Sized> Replay for &T {
    fn replay(&self) -> Option<Self> {
        Some(*self)
    }
}

impl<T: ?Sized> Replay for std::sync::Arc<T> {
    fn replay(&self) -> Option<Self> {
        Some(std::sync::Arc::clone(self))
    }
}

/// A tuple (say, a session id and a statement) is copied field by field, and is idempotent
/// when every field says so.
macro_rules! replay_tuple {
    ($($name:ident),+) => {
        impl<$($name: Replay),+> Replay for ($($name,)+) {
            #[allow(non_snake_case)]
            fn replay(&self) -> Option<Self> {
                let ($($name,)+) = self;
                Some(($($name.replay()?,)+))
            }

            #[allow(non_snake_case)]
            fn is_idempotent(&self) -> bool {
                let ($($name,)+) = self;
                $($name.is_idempotent())&&+
            }
        }
    };
}

replay_tuple!(A, B);
replay_tuple!(A, B, C);

impl<T: Clone> Replay for Vec<T> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_copy_everything_and_know_their_methods() {
        let request = http::Request::put("http://127.0.0.1/a?b=c")
            .header("x-trace", "1")
            .extension(7u8)
            .body(bytes::Bytes::from_static(b"payload"))
            .unwrap();
        let copy = request.replay().unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), request.uri());
        assert_eq!(copy.headers()["x-trace"], "1");
        assert_eq!(copy.extensions().get::<u8>(), Some(&7));
        assert_eq!(copy.body(), request.body());

        let safe = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
        for method in safe.iter().chain(&["POST", "PATCH", "CONNECT"]) {
            let request = http::Request::builder().method(*method).body(()).unwrap();
            assert_eq!(request.is_idempotent(), safe.contains(method), "{method}");
        }
        let keyed = http::Request::post("/")
            .header("Idempotency-Key", "8e03978e")
            .body(())
            .unwrap();
        assert!(keyed.is_idempotent());
        assert!(!7u32.is_idempotent() && 7u32.replay() == Some(7));
    }
}
