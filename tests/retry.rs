//! Retries land on a different endpoint than the one that failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::ConsistentHash;
use tower_lb::retry::{RetryErrors, RetryLayer, RetryPolicy};
use tower_lb::sticky::key_fn;
use tower_lb::Balance;

/// Three endpoints, one of which (`broken`) fails. Outlier detection is off, so only the
/// retry can route around it.
fn sticky_pool(
    calls: Arc<[AtomicUsize; 3]>,
    broken: Arc<AtomicUsize>,
) -> Balance<
    usize,
    impl tower::Service<
            u64,
            Response = usize,
            Error = std::io::Error,
            Future = impl std::future::Future<Output = Result<usize, std::io::Error>> + Send,
        > + Clone
        + Send
        + Sync,
    impl tower_lb::policy::Pick<u64>,
> {
    let endpoint = move |i: usize| {
        let (calls, broken) = (Arc::clone(&calls), Arc::clone(&broken));
        service_fn(move |_key: u64| {
            calls[i].fetch_add(1, Ordering::Relaxed);
            let is_broken = broken.load(Ordering::Relaxed) == i;
            async move {
                if is_broken {
                    Err(std::io::Error::other("this endpoint is broken"))
                } else {
                    Ok(i)
                }
            }
        })
    };
    // Every request carries the same key, so the ring sends all of them to one endpoint.
    Balance::builder(ConsistentHash::new(key_fn(|_: &u64| {
        Some("one sticky session")
    })))
    .outlier(Outlier::disabled())
    .endpoints((0..3).map(|i| (i, endpoint(i))))
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_another_endpoint_even_for_a_sticky_key() {
    let calls: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let broken = Arc::new(AtomicUsize::new(usize::MAX));
    let lb = sticky_pool(Arc::clone(&calls), Arc::clone(&broken));
    // Find the endpoint the sticky key lands on, and break it.
    let owner = lb.clone().oneshot(0).await.unwrap();
    broken.store(owner, Ordering::Relaxed);
    // The requests are reads: safe to resend whatever the failure.
    let policy = RetryPolicy::new(2)
        .retry_if(RetryErrors)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .budget(Duration::from_secs(10), 10, 1.0); // every request may retry once
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(lb.clone());
    for request in 0..50 {
        assert!(
            client.clone().oneshot(request).await.is_ok(),
            "request {request} failed"
        );
    }
    assert_eq!(
        calls[owner].load(Ordering::Relaxed),
        1 + 50,
        "one failed try per request, then elsewhere"
    );

    // The default budget (20 % of requests plus 3 a second, over 10 s) runs out: with no time
    // passing, about 30 + 20 % of the requests get their retry, the rest fail.
    let budgeted = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(2).retry_if(RetryErrors)))
        .service(lb.clone());
    let mut ok = 0;
    for request in 0..100 {
        ok += usize::from(budgeted.clone().oneshot(request).await.is_ok());
    }
    assert!(
        (30..=60).contains(&ok),
        "{ok} of 100 retried within the default budget"
    );

    // tower's own retry, with the same policy, re-picks the same sticky endpoint every time.
    let plain = ServiceBuilder::new()
        .retry(
            RetryPolicy::new(2)
                .retry_if(RetryErrors)
                .backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .service(lb);
    assert!(plain.oneshot(0).await.is_err());
}
