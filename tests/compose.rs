//! `Balance` inside `ServiceBuilder` with tower's own middleware around and inside it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::retry::Policy as RetryPolicy;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_lb::policy::RoundRobin;
use tower_lb::{Balance, BoxError};

/// Retries an error up to `attempts` more times.
#[derive(Clone)]
struct Attempts(usize);

impl<Req: Clone, Res> RetryPolicy<Req, Res, BoxError> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Self::Future> {
        (result.is_err() && self.0 > 0).then(|| {
            self.0 -= 1;
            std::future::ready(())
        })
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

#[tokio::test]
async fn composes_with_buffer_concurrency_limit_timeout_and_retry() {
    let calls: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
    let endpoint = |i: usize| {
        let calls = Arc::clone(&calls);
        service_fn(move |x: u32| {
            calls[i].fetch_add(1, Ordering::Relaxed);
            async move {
                match i {
                    0 => Err(std::io::Error::other("endpoint 0 is broken")),
                    _ => Ok(x * 2),
                }
            }
        })
    };
    let lb = Balance::builder(RoundRobin::new().with_rng(0))
        .endpoints((0..2).map(|i| (i, endpoint(i))))
        // Per-endpoint middleware, applied as each endpoint joins.
        .endpoint_layer(
            ServiceBuilder::new()
                .concurrency_limit(4)
                .timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .buffer(32)
        .concurrency_limit(8)
        .timeout(Duration::from_secs(5))
        .retry(Attempts(1))
        .service(lb.clone());

    // One request at a time, so round robin's alternation is exact: whenever a first try lands
    // on the broken endpoint, the retry goes to the other, and every request succeeds.
    for x in 0..100 {
        assert_eq!(svc.clone().oneshot(x).await.unwrap(), 2 * x);
    }
    // After five failures in a row, outlier detection (on by default) ejects the broken
    // endpoint; the health task runs between requests, so at most one more try gets through.
    let failed = calls[0].load(Ordering::Relaxed);
    assert!(
        (5..=6).contains(&failed),
        "{failed} tries went to the broken endpoint"
    );
    assert_eq!(calls[1].load(Ordering::Relaxed), 100);
    let broken = &lb.snapshot()[0];
    assert_eq!(broken.failures as usize, failed);
    assert!(matches!(
        broken.state,
        tower_lb::EndpointState::Ejected { ejections: 1, .. }
    ));
}

#[tokio::test]
async fn endpoint_timeout_inside_releases_the_endpoint() {
    let hang = service_fn(|()| futures::future::pending::<Result<(), std::io::Error>>());
    let lb = Balance::builder(RoundRobin::new())
        .endpoint("hang", hang)
        .endpoint_layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(10)))
        .build()
        .unwrap();
    let err = lb.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(lb.snapshot()[0].in_flight, 0);
    assert_eq!(lb.snapshot()[0].failures, 1);
}

/// `Balance` and its response future are `Send + Sync`/`Send` like `reqwest::Client` and its
/// futures, so they can be shared across tasks and spawned.
#[test]
fn balance_is_send_and_sync() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let client = reqwest::Client::new();
    let endpoint = service_fn(move |url: String| client.get(url).send());
    let mut lb = Balance::builder(tower_lb::policy::P2c::peak_ewma())
        .endpoint("a", endpoint)
        .build()
        .unwrap();
    send_sync(&lb);
    send(&tower::Service::call(
        &mut lb,
        "http://127.0.0.1:9/".to_string(),
    ));
}
