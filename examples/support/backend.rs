//! In-process HTTP backends on 127.0.0.1 for the examples and integration tests: each can be
//! slowed down, told to fail, stopped, and started again on the same port.
//!
//! Shared by `examples/` and `tests/` through `#[path]`, so it is one file, not a crate.
#![allow(dead_code)] // each includer uses a different part

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What a backend does with each request; shared with its handle, changed at any time.
#[derive(Debug, Default)]
pub struct Behaviour {
    delay_us: AtomicU64,
    failing: AtomicBool,
    /// Drops each connection after reading its request, with no response: a server that
    /// crashed mid-request, after it may have applied it.
    dying: AtomicBool,
    hits: AtomicU64,
    posts: AtomicU64,
}

/// A running (or stopped) loopback HTTP backend. Answers every path with its name, after its
/// current delay, with 200 or, while failing, 500.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    behaviour: Arc<Behaviour>,
    tasks: Option<JoinSet<()>>,
}

impl Backend {
    /// Starts a backend on a free loopback port.
    pub async fn start(name: impl Into<String>) -> std::io::Result<Backend> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let mut backend = Backend {
            name: name.into(),
            addr: listener.local_addr()?,
            behaviour: Arc::default(),
            tasks: None,
        };
        backend.serve(listener);
        Ok(backend)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.behaviour
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn set_failing(&self, failing: bool) {
        self.behaviour.failing.store(failing, Ordering::Relaxed);
    }

    pub fn set_dying(&self, dying: bool) {
        self.behaviour.dying.store(dying, Ordering::Relaxed);
    }

    /// `POST` requests this backend has received since it was created.
    pub fn posts(&self) -> u64 {
        self.behaviour.posts.load(Ordering::Relaxed)
    }

    /// Requests this backend has received since it was created.
    pub fn hits(&self) -> u64 {
        self.behaviour.hits.load(Ordering::Relaxed)
    }

    /// Closes the listener and every open connection, as a crashed server would.
    pub fn stop(&mut self) {
        self.tasks = None; // dropping a JoinSet aborts its tasks
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let behaviour = Arc::clone(&self.behaviour);
        let name = Bytes::from(self.name.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (behaviour, name) = (Arc::clone(&behaviour), name.clone());
                connections.spawn(async move {
                    let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (behaviour, name) = (Arc::clone(&behaviour), name.clone());
                        async move {
                            behaviour.hits.fetch_add(1, Ordering::Relaxed);
                            if req.method() == hyper::Method::POST {
                                behaviour.posts.fetch_add(1, Ordering::Relaxed);
                            }
                            if behaviour.dying.load(Ordering::Relaxed) {
                                // An error from the service makes hyper close the connection.
                                return Err(std::io::Error::other("crashed mid-request"));
                            }
                            let delay = behaviour.delay_us.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_micros(delay)).await;
                            }
                            let status = if behaviour.failing.load(Ordering::Relaxed) {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            let mut response = Response::new(Full::new(name));
                            *response.status_mut() = status;
                            // What the backend was asked for, for tests of URL rewriting.
                            let asked = req.uri().path_and_query().map_or("/", |p| p.as_str());
                            if let Ok(value) = hyper::header::HeaderValue::from_str(asked) {
                                response.headers_mut().insert("x-uri", value);
                            }
                            Ok::<_, std::io::Error>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
                // Reap finished connections so a long run does not accumulate them.
                while connections.try_join_next().is_some() {}
            }
        });
        self.tasks = Some(tasks);
    }
}

/// Starts `n` backends named `b0`, `b1`, ...
pub async fn start_many(n: usize) -> std::io::Result<Vec<Backend>> {
    let mut backends = Vec::with_capacity(n);
    for i in 0..n {
        backends.push(Backend::start(format!("b{i}")).await?);
    }
    Ok(backends)
}

/// An endpoint that GETs `url` through `client` and answers with the body; a non-2xx status
/// is an error.
pub fn text_endpoint(
    client: &reqwest::Client,
    url: String,
) -> impl tower::Service<
    (),
    Response = String,
    Error = reqwest::Error,
    Future = impl std::future::Future<Output = Result<String, reqwest::Error>> + Send,
> + Clone
       + Send
       + Sync {
    let client = client.clone();
    tower::service_fn(move |()| {
        let request = client.get(&url);
        async move { request.send().await?.error_for_status()?.text().await }
    })
}

/// An endpoint that GETs `url` through `client` and answers with the status and body, 5xx
/// included (for a `ServerErrors` classifier to judge).
pub fn status_endpoint(
    client: &reqwest::Client,
    url: String,
) -> impl tower::Service<
    (),
    Response = http::Response<String>,
    Error = reqwest::Error,
    Future = impl std::future::Future<Output = Result<http::Response<String>, reqwest::Error>> + Send,
> + Clone
       + Send
       + Sync {
    let client = client.clone();
    tower::service_fn(move |()| {
        let request = client.get(&url);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body = response.text().await?;
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            Ok(answer)
        }
    })
}

/// Sends a `reqwest::Request` to `base` (the crate's `HttpEndpoint`: scheme, host and port
/// replaced, path kept) and answers with the body of a 2xx response.
#[cfg(feature = "reqwest")]
pub fn reqwest_endpoint(
    client: reqwest::Client,
    base: &str,
) -> impl tower::Service<
    reqwest::Request,
    Response = String,
    Error = reqwest::Error,
    Future = impl std::future::Future<Output = Result<String, reqwest::Error>> + Send,
> + Clone
       + Send
       + Sync {
    use tower::ServiceExt;
    let base = tower_lb::base_url::BaseUrl::new(base).expect("a valid base URL");
    tower_lb::base_url::HttpEndpoint::new(client, base).and_then(
        |response: reqwest::Response| async move { response.error_for_status()?.text().await },
    )
}

/// The same for `http::Request<String>`: the crate's `BaseUrlLayer` rewrites the URI, then
/// the request is converted to reqwest at the edge.
pub fn http_endpoint(
    client: reqwest::Client,
    base: &str,
) -> impl tower::Service<
    http::Request<String>,
    Response = String,
    Error = reqwest::Error,
    Future = impl std::future::Future<Output = Result<String, reqwest::Error>> + Send,
> + Clone
       + Send
       + Sync {
    use tower::Layer;
    let base = tower_lb::base_url::BaseUrl::new(base).expect("a valid base URL");
    tower_lb::base_url::BaseUrlLayer::new(base).layer(tower::service_fn(
        move |request: http::Request<String>| {
            let request = reqwest::Request::try_from(request).expect("an absolute URI");
            let sent = client.execute(request);
            async move { sent.await?.error_for_status()?.text().await }
        },
    ))
}
