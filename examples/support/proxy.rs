//! A small HTTP reverse proxy on 127.0.0.1: the load balancer in front of a web tier, built
//! from hyper's server, hyper-util's client and a `Balance` with active checks, outlier
//! detection, retries and sticky sessions on a cookie the proxy hands out.
//!
//! Shared by `examples/reverse_proxy.rs` and `tests/reverse_proxy.rs` through `#[path]`.
#![allow(dead_code)] // each includer uses a different part

use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_lb::base_url::{BaseUrl, BaseUrlLayer};
use tower_lb::health::{check_fn, ActiveChecks, Outlier, ServerErrors};
use tower_lb::policy::ConsistentHash;
use tower_lb::retry::{RetryLayer, RetryPolicy};
use tower_lb::sticky::{Cookie, HashKey};
use tower_lb::{Balance, BoxError, EndpointSnapshot};

/// The cookie that keeps a client's session on one backend. The proxy sets it on a client's
/// first response; the backend behind it is the consistent hash of its value, so it needs no
/// table of sessions and survives a restart of the proxy.
pub const SESSION_COOKIE: &str = "lb-session";

/// A request body the proxy buffers at most; a larger one is refused with 413. Buffering is
/// what lets a failed request be sent again to another backend.
const MAX_BODY: usize = 1 << 20;

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1): a proxy must not
/// forward them.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A running proxy; dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    snapshot: Box<dyn Fn() -> Vec<EndpointSnapshot<String>> + Send + Sync>,
    _server: JoinSet<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `backends` (base URLs such as
    /// `http://127.0.0.1:8081`).
    pub async fn start<I>(backends: I) -> Result<Proxy, BoxError>
    where
        I: IntoIterator<Item = String>,
    {
        let client: Upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let mut endpoints = Vec::new();
        for url in backends {
            let base = BaseUrl::new(&url)?;
            let forward = BaseUrlLayer::new(base).layer(client.clone());
            endpoints.push((url, forward.and_then(buffer_response)));
        }

        let lb = Balance::builder(ConsistentHash::new(Cookie::new(SESSION_COOKIE)))
            .classify(ServerErrors) // a 5xx counts against its backend
            .timeout(Duration::from_secs(2)) // per attempt
            .outlier(Outlier::consecutive_failures(3).base_ejection(Duration::from_secs(1)))
            .health_check(
                ActiveChecks::new(healthz(client))
                    .every(Duration::from_millis(100))
                    .timeout(Duration::from_millis(250)),
            )
            .endpoints(endpoints)
            .build()?;
        // A GET is sent again after any failure, a POST only if it never reached a backend.
        let forward = ServiceBuilder::new()
            .layer(RetryLayer::new(
                RetryPolicy::new(3).backoff(Duration::from_millis(5), Duration::from_millis(50)),
            ))
            .service(lb.clone());

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let mut server = JoinSet::new();
        server.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, peer)) = listener.accept().await {
                let forward = forward.clone();
                connections.spawn(async move {
                    let handler = hyper::service::service_fn(move |request| {
                        proxy(forward.clone(), peer, request)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Proxy {
            addr,
            snapshot: Box::new(move || lb.snapshot()),
            _server: server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The pool as the balancer sees it: each backend's state and picks.
    pub fn snapshot(&self) -> Vec<EndpointSnapshot<String>> {
        (self.snapshot)()
    }
}

/// Forwards one client request. Never fails: an error becomes a 502 (or 413) response.
async fn proxy<S>(
    forward: S,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
        return Ok(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken",
        ));
    };
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.headers.append(
        "x-forwarded-for",
        HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is a header value"),
    );
    let mut request = Request::from_parts(parts, Full::new(body.to_bytes()));
    // A client without a session gets one now, and its first request already uses it, so
    // the session starts on the backend it will stay on.
    let new_session = Cookie::new(SESSION_COOKIE)
        .key(&request)
        .is_none()
        .then(|| {
            let cookie = format!("{SESSION_COOKIE}={:016x}", fastrand::u64(..));
            let value = HeaderValue::from_str(&cookie).expect("hex is a header value");
            request.headers_mut().append(header::COOKIE, value);
            cookie
        });

    let mut response = match forward.oneshot(request).await {
        Ok(response) => response,
        Err(error) => return Ok(answer(StatusCode::BAD_GATEWAY, &error.to_string())),
    };
    for name in HOP_BY_HOP {
        response.headers_mut().remove(name);
    }
    if let Some(cookie) = new_session {
        let set = format!("{cookie}; Path=/; HttpOnly");
        response.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&set).expect("hex is a header value"),
        );
    }
    Ok(response)
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

/// Reads the backend's whole response, so that a connection that breaks mid-body fails the
/// call (and is retried) instead of handing the client half a response.
async fn buffer_response(
    response: Response<Incoming>,
) -> Result<Response<Full<Bytes>>, UpstreamError> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(UpstreamError::Body)?;
    Ok(Response::from_parts(parts, Full::new(body.to_bytes())))
}

/// The active check: `GET /healthz` answers 2xx.
fn healthz(client: Upstream) -> impl tower_lb::health::HealthCheck<String> {
    check_fn(move |url: &String| {
        let (client, uri) = (client.clone(), format!("{url}/healthz"));
        async move {
            let response = client.get(uri.parse()?).await?;
            if response.status().is_success() {
                Ok::<_, BoxError>(())
            } else {
                Err(format!("/healthz answered {}", response.status()).into())
            }
        }
    })
}

/// What a backend call can fail with. A concrete type rather than `BoxError`, and its
/// `source` chain kept, so that the retry policy can see a refused connection.
#[derive(Debug)]
pub enum UpstreamError {
    Request(hyper_util::client::legacy::Error),
    Body(hyper::Error),
}

impl From<hyper_util::client::legacy::Error> for UpstreamError {
    fn from(error: hyper_util::client::legacy::Error) -> Self {
        UpstreamError::Request(error)
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Request(_) => f.write_str("the backend request failed"),
            UpstreamError::Body(_) => f.write_str("the backend's response body broke off"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Request(error) => Some(error),
            UpstreamError::Body(error) => Some(error),
        }
    }
}

/// What a client of the proxy saw over a run of requests.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered by each backend (the backends answer with their name).
    pub by_backend: BTreeMap<String, usize>,
    /// The backends that answered each session (one, while it stays sticky).
    pub by_session: BTreeMap<String, Vec<String>>,
    /// Requests that did not get a 2xx answer, with what went wrong.
    pub failures: Vec<String>,
}

/// Opens `sessions` sessions: one request each without a cookie; returns the cookies the
/// proxy set, and who answered.
pub async fn open_sessions(
    client: &reqwest::Client,
    proxy: &str,
    sessions: usize,
) -> Result<(Vec<String>, Tally), BoxError> {
    let mut cookies = Vec::with_capacity(sessions);
    let mut tally = Tally::default();
    for _ in 0..sessions {
        let response = client.get(format!("{proxy}/")).send().await?;
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .ok_or("the proxy set no session cookie")?
            .to_string();
        let backend = response.error_for_status()?.text().await?;
        tally.record(&cookie, Ok(backend));
        cookies.push(cookie);
    }
    Ok((cookies, tally))
}

/// Sends `requests` GETs through the proxy from `workers` concurrent clients, request `i`
/// in session `i % sessions.len()`; `sent` counts requests as they complete.
pub async fn load(
    client: &reqwest::Client,
    proxy: &str,
    sessions: &[String],
    requests: usize,
    workers: usize,
    sent: Arc<AtomicUsize>,
) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (client, proxy, sessions) = (client.clone(), proxy.to_string(), sessions.to_vec());
        let (next, sent) = (Arc::clone(&next), Arc::clone(&sent));
        tasks.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return tally;
                }
                let cookie = &sessions[i % sessions.len()];
                let answer = async {
                    let response = client
                        .get(format!("{proxy}/page/{i}"))
                        .header(header::COOKIE, cookie.as_str())
                        .send()
                        .await?;
                    response.error_for_status()?.text().await
                };
                tally.record(cookie, answer.await.map_err(|e| format!("{e:?}")));
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut total = Tally::default();
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally.expect("a load worker panicked"));
    }
    total
}

impl Tally {
    fn record(&mut self, session: &str, answer: Result<String, String>) {
        match answer {
            Ok(backend) => {
                *self.by_backend.entry(backend.clone()).or_default() += 1;
                let seen = self.by_session.entry(session.to_string()).or_default();
                if !seen.contains(&backend) {
                    seen.push(backend);
                }
            }
            Err(failure) => self.failures.push(failure),
        }
    }

    fn merge(&mut self, other: Tally) {
        for (backend, n) in other.by_backend {
            *self.by_backend.entry(backend).or_default() += n;
        }
        for (session, backends) in other.by_session {
            let seen = self.by_session.entry(session).or_default();
            for backend in backends {
                if !seen.contains(&backend) {
                    seen.push(backend);
                }
            }
        }
        self.failures.extend(other.failures);
    }

    /// Requests answered in all.
    pub fn answered(&self) -> usize {
        self.by_backend.values().sum()
    }
}
