//! gRPC through the balancer on real tonic servers on loopback: a server that fails every
//! call (HTTP 200, `grpc-status: 14`) is ejected under `GrpcStatus` and not under
//! `ServerErrors`, and a killed server costs no call when calls are retried.
//!
//! Messages are declared with prost's derive and served with tonic's own `server::Grpc`:
//! no protoc, no generated code.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;
use tower::{service_fn, ServiceExt};
use tower_lb::health::{Classify, GrpcStatus, Outlier, ServerErrors};
use tower_lb::policy::P2c;
use tower_lb::retry::{RetryLayer, RetryPolicy};
use tower_lb::{Balance, BoxError, EndpointState};

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(uint32, tag = "1")]
    n: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Pong {
    #[prost(uint32, tag = "1")]
    n: u32,
    #[prost(uint32, tag = "2")]
    server: u32,
}

const PATH: &str = "/test.Echo/Ping";

/// A gRPC server on a thread and runtime of its own: stopping it drops the runtime and every
/// connection with it, as a killed process would.
struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Answers `Ping { n }` with `Pong { n, server: id }`, or with `UNAVAILABLE` when `failing`.
    fn start(id: u32, failing: bool) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let ping = move |ping: tonic::Request<Ping>| async move {
                    match failing {
                        true => Err(tonic::Status::unavailable("draining")),
                        false => Ok(tonic::Response::new(Pong {
                            n: ping.into_inner().n,
                            server: id,
                        })),
                    }
                };
                let service = service_fn(move |request: http::Request<tonic::body::Body>| {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Pong, Ping>::default());
                    async move { Ok::<_, Infallible>(grpc.unary(service_fn(ping), request).await) }
                });
                let server = tonic::transport::Server::builder();
                tokio::select! {
                    _ = server.serve_with_incoming(service, incoming) => {}
                    _ = stopped => {}
                }
            });
        });
        Server {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy()
}

/// `calls` unary calls through `client`, one at a time: how many failed, and which server
/// answered each of the others.
async fn call<T>(client: T, calls: u32) -> (u32, Vec<u32>)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(client);
    let (mut failed, mut servers) = (0, Vec::new());
    for n in 0..calls {
        grpc.ready().await.map_err(Into::into).unwrap();
        let path = http::uri::PathAndQuery::from_static(PATH);
        let codec = ProstCodec::<Ping, Pong>::default();
        match grpc
            .unary(tonic::Request::new(Ping { n }), path, codec)
            .await
        {
            Ok(pong) => {
                assert_eq!(pong.get_ref().n, n);
                servers.push(pong.into_inner().server);
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                failed += 1;
            }
        }
    }
    (failed, servers)
}

/// Two good servers and one that answers every call `UNAVAILABLE`, behind P2C with outlier
/// detection after 3 consecutive failures, classified by `classify`: how many of 300 calls
/// failed, and the failing server's state at the end.
async fn failing_server_under<C>(classify: C) -> (u32, EndpointState)
where
    C: Classify<http::Response<tonic::body::Body>, tonic::transport::Error>,
{
    let servers = [
        Server::start(0, false),
        Server::start(1, false),
        Server::start(2, true),
    ];
    let lb = Balance::builder(P2c::new())
        .classify(classify)
        .outlier(Outlier::consecutive_failures(3))
        .endpoints(servers.iter().map(|s| (s.port, channel(s.port))))
        .build()
        .unwrap();
    let (failed, _) = call(lb.clone(), 300).await;
    let failing = lb.snapshot().into_iter().find(|e| e.key == servers[2].port);
    (failed, failing.unwrap().state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failing_every_call_is_ejected_under_grpc_status() {
    let (failed, state) = failing_server_under(GrpcStatus).await;
    println!("GrpcStatus: {failed} of 300 calls failed; the failing server is {state:?}");
    assert!(matches!(state, EndpointState::Ejected { .. }), "{state:?}");
    assert!(
        (3..=6).contains(&failed),
        "ejected after its 3rd failure: {failed}"
    );

    // HTTP's classifier sees 200s: the failing server stays in rotation.
    let (failed, state) = failing_server_under(ServerErrors).await;
    println!("ServerErrors: {failed} of 300 calls failed; the failing server is {state:?}");
    assert_eq!(state, EndpointState::Healthy);
    assert!(failed > 60, "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_costs_no_call_with_retries() {
    let mut servers = [
        Server::start(0, false),
        Server::start(1, false),
        Server::start(2, false),
    ];
    // Endpoints take a request whose body is bytes, so that a retry can send a copy.
    let endpoint = |port: u16| {
        let channel = channel(port);
        service_fn(move |request: http::Request<Bytes>| {
            let channel = channel.clone();
            async move {
                channel
                    .oneshot(request.map(|b| tonic::body::Body::new(Full::new(b))))
                    .await
            }
        })
    };
    let lb = Balance::builder(P2c::new())
        .classify(GrpcStatus)
        .endpoints(servers.iter().map(|s| (s.port, endpoint(s.port))))
        .build()
        .unwrap();
    let retried = tower::Layer::layer(&RetryLayer::new(RetryPolicy::new(2)), lb.clone());
    // In front, the call's body is read into bytes (a unary call's one message).
    let client = service_fn(move |request: http::Request<tonic::body::Body>| {
        let retried = retried.clone();
        async move {
            let (head, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            retried.oneshot(http::Request::from_parts(head, body)).await
        }
    });

    let (failed, before) = call(client.clone(), 300).await;
    assert_eq!(failed, 0);
    assert!(before.contains(&2), "server 2 took calls: {before:?}");
    // Killed between two calls; the next ones go once its connection has seen the server
    // go. A call racing the teardown can fail with hyper's `Canceled` ("connection closed"),
    // which hyper-util deems never sent but this crate cannot tell from the outside (it has
    // no hyper dependency to downcast to): seen once in about ten runs, a known limitation.
    servers[2].kill();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (failed, after) = call(client, 600).await;
    println!("after the kill: {failed} of 600 calls failed");
    assert_eq!(failed, 0);
    assert!(!after.contains(&2));
    let dead = lb.snapshot().into_iter().find(|e| e.key == servers[2].port);
    assert!(
        dead.unwrap().failures > 0,
        "calls to the dead server were retried elsewhere"
    );
}
