//! Where a sticky session's key comes from: the part of a request that
//! [`ConsistentHash`](crate::policy::ConsistentHash) hashes onto its ring.
//!
//! A key extractor looks at a request and returns a key that borrows from it, so taking the
//! key costs no allocation. Requests without a key (no such header, no such cookie) go to the
//! hash policy's fallback policy instead.
//!
//! | extractor | key | request type |
//! |---|---|---|
//! | [`ClientIp`] | the client's IP address | `http::Request<B>` with a `SocketAddr` or `IpAddr` extension |
//! | [`Header`] | a header's raw value | `http::Request<B>` |
//! | [`Cookie`] | a cookie's value | `http::Request<B>` |
//! | [`key_fn`] | whatever the closure returns | any |

use http::header::{HeaderName, COOKIE};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};

pub use crate::policy::HashKey;

/// The client's IP address, from the request's extensions: a `SocketAddr` (as hyper-based
/// servers record the peer) or a plain `IpAddr` (as a proxy that parsed `X-Forwarded-For`
/// might record it). The port is ignored, so every connection from one client sticks together.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_lb::sticky::{ClientIp, HashKey};
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert("127.0.0.1:51234".parse::<SocketAddr>().unwrap());
/// assert_eq!(ClientIp.key(&request), Some("127.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientIp;

impl<B: 'static> HashKey<http::Request<B>> for ClientIp {
    type Key<'a>
        = IpAddr
    where
        B: 'a;

    fn key(&self, req: &http::Request<B>) -> Option<IpAddr> {
        let extensions = req.extensions();
        extensions
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .or_else(|| extensions.get::<IpAddr>().copied())
    }
}

/// The raw bytes of a request header (the first, if it repeats).
///
/// ```
/// use tower_lb::sticky::{Header, HashKey};
///
/// let request = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(Header::new("x-tenant").key(&request), Some(&b"acme"[..]));
/// assert_eq!(Header::new("x-other").key(&request), None);
/// ```
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// Keys on the header `name`.
    ///
    /// # Panics
    /// If `name` is not a valid header name; use [`Header::from_name`] with a checked
    /// `HeaderName` to handle that case.
    pub fn new(name: &'static str) -> Self {
        Header {
            name: HeaderName::from_static(name),
        }
    }

    /// Keys on the header `name`.
    pub fn from_name(name: HeaderName) -> Self {
        Header { name }
    }
}

impl<B: 'static> HashKey<http::Request<B>> for Header {
    type Key<'a>
        = &'a [u8]
    where
        B: 'a;

    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<&'a [u8]> {
        req.headers().get(&self.name).map(|value| value.as_bytes())
    }
}

/// The value of a cookie, from the request's `Cookie` headers.
///
/// ```
/// use tower_lb::sticky::{Cookie, HashKey};
///
/// let request = http::Request::builder()
///     .header("cookie", "theme=dark; session=s3cr3t")
///     .body(())
///     .unwrap();
/// assert_eq!(Cookie::new("session").key(&request), Some("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
pub struct Cookie {
    name: String,
}

impl Cookie {
    /// Keys on the cookie `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Cookie { name: name.into() }
    }
}

impl<B: 'static> HashKey<http::Request<B>> for Cookie {
    type Key<'a>
        = &'a str
    where
        B: 'a;

    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<&'a str> {
        req.headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|header| header.to_str().ok())
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| name.trim() == self.name)
            .map(|(_, value)| value.trim().trim_matches('"'))
    }
}

/// Keys on whatever `f` returns: any request type, any hashable key.
///
/// ```
/// use tower_lb::sticky::{key_fn, HashKey};
///
/// struct Query { tenant: u32, sql: String }
/// let by_tenant = key_fn(|q: &Query| Some(q.tenant));
/// let query = Query { tenant: 7, sql: "SELECT 1".into() };
/// assert_eq!(by_tenant.key(&query), Some(7));
/// ```
pub fn key_fn<F>(f: F) -> KeyFn<F> {
    KeyFn(f)
}

/// The extractor [`key_fn`] returns.
#[derive(Clone, Copy)]
pub struct KeyFn<F>(F);

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<Req, K, F> HashKey<Req> for KeyFn<F>
where
    F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    type Key<'a>
        = K
    where
        Req: 'a;

    fn key(&self, req: &Req) -> Option<K> {
        (self.0)(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_many_headers() {
        let request = http::Request::builder()
            .header("cookie", "a=1")
            .header("cookie", " b = 2 ; sid=\"xyz\"")
            .body(())
            .unwrap();
        assert_eq!(Cookie::new("sid").key(&request), Some("xyz"));
        assert_eq!(Cookie::new("a").key(&request), Some("1"));
        assert_eq!(Cookie::new("b").key(&request), Some("2"));
        assert_eq!(Cookie::new("missing").key(&request), None);
    }

    #[test]
    fn client_ip_falls_back_to_a_plain_ip() {
        let mut request = http::Request::new(());
        assert_eq!(ClientIp.key(&request), None);
        request
            .extensions_mut()
            .insert(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(ClientIp.key(&request), Some(IpAddr::from([127, 0, 0, 1])));
    }
}
