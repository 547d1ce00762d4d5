//! Read or write: what a request does decides where it may go.

use super::SqlClassifier;

/// Whether a request only reads (a replica may serve it) or may write (the primary must).
///
/// As a request extension on an `http::Request` it is the caller's explicit intent, and wins
/// over any classifier.
///
/// ```
/// use tower_lb::replica::{Access, Classify, HttpMethods};
///
/// let mut request = http::Request::post("/search").body(()).unwrap();
/// assert_eq!(HttpMethods.classify(&request), Access::Write);
/// request.extensions_mut().insert(Access::Read); // a POST that only reads
/// assert_eq!(HttpMethods.classify(&request), Access::Read);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only reads: a fit replica may serve it.
    Read,
    /// May write, or is not surely a read: the primary serves it.
    Write,
}

/// Decides whether a request is a read or a write.
///
/// Built in: [`HttpMethods`] for `http::Request`, [`SqlClassifier`] for SQL text. A closure
/// `Fn(&Req) -> Access` is a classifier too.
pub trait Classify<Req>: Clone + Send + Sync + 'static {
    /// Where `req` may go.
    fn classify(&self, req: &Req) -> Access;
}

/// `GET`, `HEAD` and `OPTIONS` are reads, every other method a write (Rails' rule), unless the
/// request carries an [`Access`] extension.
///
/// ```
/// use tower_lb::replica::{Access, Classify, HttpMethods};
///
/// let get = http::Request::get("/users/1").body(()).unwrap();
/// assert_eq!(HttpMethods.classify(&get), Access::Read);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMethods;

impl<B> Classify<http::Request<B>> for HttpMethods {
    fn classify(&self, req: &http::Request<B>) -> Access {
        if let Some(intent) = req.extensions().get::<Access>() {
            return *intent;
        }
        match *req.method() {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => Access::Read,
            _ => Access::Write,
        }
    }
}

impl<Req: AsRef<str>> Classify<Req> for SqlClassifier {
    fn classify(&self, req: &Req) -> Access {
        SqlClassifier::classify(self, req.as_ref())
    }
}

impl<Req, F> Classify<Req> for F
where
    F: Fn(&Req) -> Access + Clone + Send + Sync + 'static,
{
    fn classify(&self, req: &Req) -> Access {
        self(req)
    }
}
