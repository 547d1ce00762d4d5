//! Endpoints that are a base URL: one HTTP client shared by the whole pool, each endpoint
//! rewriting a request's scheme, host and port (and prefixing a base path) to its server.
//!
//! - [`BaseUrl`]: the parsed base URL and the rewrite, shared by both kinds of endpoint.
//! - [`BaseUrlLayer`] / [`WithBaseUrl`]: for any `Service<http::Request<B>>` (hyper-util's
//!   legacy client, a `tower` HTTP stack).
//! - [`HttpEndpoint`] (feature `reqwest`): a `reqwest::Client` and a base URL, a
//!   `Service<reqwest::Request>`; [`Builder::http_endpoints`](crate::Builder::http_endpoints)
//!   makes a pool of them from a list of URLs.

use crate::error::Error;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use std::fmt;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// A server's base URL: scheme, host and port, and an optional path prefix.
///
/// Requests keep their own path and query, under the prefix: with the base
/// `http://127.0.0.1:8081/api`, a request for `/users?id=7` goes to
/// `http://127.0.0.1:8081/api/users?id=7`.
///
/// ```
/// use tower_lb::base_url::BaseUrl;
///
/// let base: BaseUrl = "http://127.0.0.1:8081/api/".parse()?;
/// let uri = base.rewrite(&"http://placeholder/users?id=7".parse().unwrap());
/// assert_eq!(uri.to_string(), "http://127.0.0.1:8081/api/users?id=7");
/// assert!("not a url".parse::<BaseUrl>().is_err());
/// # Ok::<(), tower_lb::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// Without a trailing `/`; empty for none.
    prefix: String,
}

impl BaseUrl {
    /// Parses `url`: an absolute `http` or `https` URL with a host, and no query or fragment.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] otherwise.
    pub fn new(url: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| invalid("no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("the scheme is not http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(invalid("a base URL has no query or fragment"));
        }
        Ok(BaseUrl {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// `uri` sent to this server: its path and query, under the base path.
    pub fn rewrite(&self, uri: &Uri) -> Uri {
        let path_and_query = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(if self.prefix.is_empty() {
            PathAndQuery::try_from(path_and_query)
                .unwrap_or_else(|_| PathAndQuery::from_static("/"))
        } else {
            // A prefix and a valid path and query make a valid path and query.
            PathAndQuery::try_from(format!("{}{path_and_query}", self.prefix))
                .unwrap_or_else(|_| PathAndQuery::from_static("/"))
        });
        Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        BaseUrl::new(url)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({self})")
    }
}

/// Sends each `http::Request` to a base URL (see [`BaseUrl`]), through any HTTP client
/// service.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_lb::base_url::BaseUrlLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// // A stand-in for an HTTP client: answers with the URI it was asked for.
/// let client = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::io::Error>(req.uri().to_string())
/// });
/// let endpoint = BaseUrlLayer::new("http://127.0.0.1:8081/v2".parse()?).layer(client);
/// let request = http::Request::get("/items?page=2").body(())?;
/// assert_eq!(endpoint.oneshot(request).await?, "http://127.0.0.1:8081/v2/items?page=2");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BaseUrlLayer {
    base: BaseUrl,
}

impl BaseUrlLayer {
    /// Sends every request to `base`.
    pub fn new(base: BaseUrl) -> Self {
        BaseUrlLayer { base }
    }
}

impl<S> Layer<S> for BaseUrlLayer {
    type Service = WithBaseUrl<S>;

    fn layer(&self, inner: S) -> WithBaseUrl<S> {
        WithBaseUrl {
            inner,
            base: self.base.clone(),
        }
    }
}

/// The service [`BaseUrlLayer`] makes.
#[derive(Debug, Clone)]
pub struct WithBaseUrl<S> {
    inner: S,
    base: BaseUrl,
}

impl<S> WithBaseUrl<S> {
    /// The base URL requests go to.
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }
}

impl<S, B> Service<http::Request<B>> for WithBaseUrl<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        *req.uri_mut() = self.base.rewrite(req.uri());
        self.inner.call(req)
    }
}

#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
pub use self::reqwest_endpoint::HttpEndpoint;

#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
mod reqwest_endpoint {
    use super::BaseUrl;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower_service::Service;

    /// One server of a pool: a shared `reqwest::Client` and the server's [`BaseUrl`]. A
    /// `Service<reqwest::Request>` that sends each request there, path and query kept.
    ///
    /// `C` is the client: `reqwest::Client` of reqwest 0.13 (feature `reqwest`) or 0.12
    /// (feature `reqwest-0_12`). Cheap to clone (the client is an `Arc`). Build a pool of them
    /// with [`Builder::http_endpoints`](crate::Builder::http_endpoints).
    ///
    /// ```
    /// use tower_lb::base_url::HttpEndpoint;
    ///
    /// let endpoint = HttpEndpoint::new(reqwest::Client::new(), "http://127.0.0.1:8081".parse()?);
    /// assert_eq!(endpoint.base().to_string(), "http://127.0.0.1:8081");
    /// # Ok::<(), tower_lb::Error>(())
    /// ```
    #[derive(Debug, Clone)]
    pub struct HttpEndpoint<C> {
        client: C,
        base: BaseUrl,
    }

    impl<C> HttpEndpoint<C> {
        /// Sends requests to `base` through `client`.
        pub fn new(client: C, base: BaseUrl) -> Self {
            HttpEndpoint { client, base }
        }

        /// The base URL requests go to.
        pub fn base(&self) -> &BaseUrl {
            &self.base
        }
    }

    /// The endpoint as a `Service` of one reqwest major (`$reqwest`: the dependency's name).
    macro_rules! http_endpoint_service {
        ($reqwest:ident) => {
            impl Service<$reqwest::Request> for HttpEndpoint<$reqwest::Client> {
                type Response = $reqwest::Response;
                type Error = $reqwest::Error;
                type Future = Pin<
                    Box<dyn Future<Output = Result<$reqwest::Response, $reqwest::Error>> + Send>,
                >;

                /// Always ready: reqwest's client pools its own connections.
                fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), $reqwest::Error>> {
                    Poll::Ready(Ok(()))
                }

                fn call(&mut self, mut req: $reqwest::Request) -> Self::Future {
                    let base = &self.base;
                    let url = req.url_mut();
                    // Each setter accepts what `BaseUrl` validated (http or https, a host, a port).
                    let _ = url.set_scheme(base.scheme.as_str());
                    let _ = url.set_host(Some(base.authority.host()));
                    let _ = url.set_port(base.authority.port_u16());
                    if !base.prefix.is_empty() {
                        let path = format!("{}{}", base.prefix, url.path());
                        url.set_path(&path);
                    }
                    Box::pin(self.client.execute(req))
                }
            }
        };
    }

    #[cfg(feature = "reqwest")]
    http_endpoint_service!(reqwest);
    #[cfg(feature = "reqwest-0_12")]
    http_endpoint_service!(reqwest_0_12);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_keep_path_and_query_under_the_prefix() {
        let cases = [
            (
                "http://127.0.0.1:1",
                "http://x/a/b?c=d",
                "http://127.0.0.1:1/a/b?c=d",
            ),
            ("http://127.0.0.1:1/", "http://x/", "http://127.0.0.1:1/"),
            ("https://[::1]:2/api", "http://x/a", "https://[::1]:2/api/a"),
            (
                "http://127.0.0.1:3/api/",
                "/v?x=1",
                "http://127.0.0.1:3/api/v?x=1",
            ),
        ];
        for (base, uri, expected) in cases {
            let base: BaseUrl = base.parse().unwrap();
            assert_eq!(base.rewrite(&uri.parse().unwrap()).to_string(), expected);
        }
        for bad in [
            "",
            "127.0.0.1:80",
            "ftp://127.0.0.1",
            "http://127.0.0.1/?q=1",
            "http://127.0.0.1/#f",
            "http:///path",
        ] {
            assert!(
                matches!(BaseUrl::new(bad), Err(Error::InvalidUrl { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
