//! The key a hash policy hashes: what a request contributes to its own placement.
//!
//! The trait lives here, beside the policy that consumes keys; the extractors that produce
//! them from HTTP requests (client IP, header, cookie) live above, in [`sticky`](crate::sticky).

use std::hash::Hash;

/// Takes the sticky key out of a request.
///
/// ```
/// use tower_lb::sticky::{Header, HashKey};
///
/// let request = http::Request::builder()
///     .header("x-user", "alice")
///     .body(())
///     .unwrap();
/// let key = Header::new("x-user").key(&request);
/// assert_eq!(key, Some(&b"alice"[..]));
/// ```
pub trait HashKey<Req>: Send + Sync + 'static {
    /// The key; it may borrow from the request.
    type Key<'a>: Hash
    where
        Req: 'a;

    /// The request's key, or `None` when it has none.
    fn key<'a>(&self, req: &'a Req) -> Option<Self::Key<'a>>;
}
