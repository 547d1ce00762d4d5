//! The balancer, the retry layer and the built-in timeout inside `tokio::spawn`, for every
//! common key type. The point is that this file compiles: a future that is not `Send`, or
//! whose `Send` the compiler cannot prove for a key type (rust-lang/rust#102211), fails the
//! build here. The runs check that the calls do what they say.

use std::net::SocketAddr;
use std::time::Duration;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_lb::policy::{ConsistentHash, P2c};
use tower_lb::retry::{RetryErrors, RetryLayer, RetryPolicy};
use tower_lb::sticky::key_fn;
use tower_lb::{Balance, BoxError, Error};

/// An endpoint with a concrete error type: answers `n` with `n`, sleeps 10 s on 0, and fails
/// on 1 (the first time each endpoint sees it, so a retry elsewhere succeeds).
fn endpoint() -> impl Service<
    u32,
    Response = u32,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<u32, std::io::Error>> + Send,
> + Clone
       + Send
       + Sync {
    let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    service_fn(move |n: u32| {
        let fail = n == 1 && !failed_once.swap(true, std::sync::atomic::Ordering::Relaxed);
        async move {
            match n {
                0 => tokio::time::sleep(Duration::from_secs(10)).await,
                1 if fail => return Err(std::io::Error::other("first try fails")),
                _ => {}
            }
            Ok(n)
        }
    })
}

macro_rules! spawn_tests {
    ($($name:ident: $key:ty = $keys:expr;)*) => {$(
        mod $name {
            use super::*;

            fn keys() -> [$key; 2] {
                $keys
            }

            #[tokio::test(start_paused = true)]
            async fn balancer_and_timeout() {
                let lb = Balance::builder(P2c::new())
                    .timeout(Duration::from_secs(1))
                    .endpoints(keys().map(|key| (key, endpoint())))
                    .build()
                    .unwrap();
                let answer = tokio::spawn(lb.clone().oneshot(7)).await.unwrap();
                assert_eq!(answer.unwrap(), 7);
                let slow = tokio::spawn(async move { lb.oneshot(0).await }).await.unwrap();
                let error = slow.unwrap_err();
                assert_eq!(
                    error.downcast_ref::<Error>(),
                    Some(&Error::Timeout { after: Duration::from_secs(1) })
                );
            }

            #[tokio::test(start_paused = true)]
            async fn retry_layer() {
                let lb = Balance::builder(ConsistentHash::new(key_fn(|n: &u32| Some(*n))))
                    .timeout(Duration::from_secs(1))
                    .endpoints(keys().map(|key| (key, endpoint())))
                    .build()
                    .unwrap();
                let client = ServiceBuilder::new()
                    .layer(RetryLayer::new(RetryPolicy::new(2).retry_if(RetryErrors)))
                    .service(lb);
                let retried = tokio::spawn(client.clone().oneshot(1)).await.unwrap();
                // Each endpoint fails 1 once: the first try fails, the retry goes to the other
                // endpoint (not the sticky owner again) and fails, the second retry answers.
                assert_eq!(retried.unwrap(), 1);
                assert_eq!(client.stats().retries, 2);
                let mut direct = client.clone();
                let answer = tokio::spawn(async move { direct.call(5).await }).await.unwrap();
                assert_eq!(answer.unwrap(), 5);
            }

            #[tokio::test(start_paused = true)]
            async fn tower_retry() {
                let lb = Balance::builder(P2c::new())
                    .endpoints(keys().map(|key| (key, endpoint())))
                    .build()
                    .unwrap();
                let client = ServiceBuilder::new()
                    .retry(RetryPolicy::new(2).retry_if(RetryErrors))
                    .service(lb);
                let answer = tokio::spawn(client.oneshot(9)).await.unwrap();
                assert_eq!(answer.unwrap(), 9);
            }

            /// A `BoxError` endpoint: `oneshot` or `ready()` in a spawned task hits the
            /// compiler limitation; calling the always-ready handle directly does not.
            #[tokio::test(start_paused = true)]
            async fn box_error_endpoint_called_directly() {
                let boxed = service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
                let mut lb = Balance::builder(P2c::new())
                    .endpoints(keys().map(|key| (key, boxed)))
                    .build()
                    .unwrap();
                let answer = tokio::spawn(async move { lb.call(3).await }).await.unwrap();
                assert_eq!(answer.unwrap(), 3);
            }
        }
    )*};
}

spawn_tests! {
    static_str: &'static str = ["a", "b"];
    string: String = ["a".to_string(), "b".to_string()];
    u16_key: u16 = [8081, 8082];
    u64_key: u64 = [1, 2];
    socket_addr: SocketAddr = [
        SocketAddr::from(([127, 0, 0, 1], 8081)),
        SocketAddr::from(([127, 0, 0, 1], 8082)),
    ];
}
