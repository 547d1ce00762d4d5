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

/// Two zones; both endpoints of the local zone fail, and nothing has taken them out of
/// rotation yet (outlier detection off): the local zone still takes all the traffic. A
/// retry steers clear of the endpoints its request failed on in every zone: once both local
/// ones failed it, it goes to the remote zone, and no request tries an endpoint twice.
#[tokio::test(start_paused = true)]
async fn a_retry_spills_to_the_next_zone_once_it_failed_on_every_local_endpoint() {
    use tower_lb::policy::P2c;
    use tower_lb::Locality;

    let calls: Arc<[AtomicUsize; 5]> = Arc::new(Default::default());
    let endpoint = |i: usize| {
        let calls = Arc::clone(&calls);
        service_fn(move |_: u64| {
            calls[i].fetch_add(1, Ordering::Relaxed);
            async move {
                match i < 2 {
                    true => Err(std::io::Error::other("the local zone is down")),
                    false => Ok(i),
                }
            }
        })
    };
    let zone = |i: &usize| if *i < 2 { "local" } else { "remote" };
    let lb = Balance::builder(P2c::new().with_rng(7))
        .outlier(Outlier::disabled())
        .endpoints((0..5).map(|i| (i, endpoint(i))))
        .locality(Locality::new(["local", "remote"]), zone)
        .build()
        .unwrap();
    let policy = RetryPolicy::new(4)
        .retry_if(RetryErrors)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .budget(Duration::from_secs(10), 1000, 10.0);
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(lb);
    let requests = 200;
    for request in 0..requests {
        let served = client.clone().oneshot(request).await;
        assert!(matches!(served, Ok(2..=4)), "request {request}: {served:?}");
    }
    let local: usize = (0..2).map(|i| calls[i].load(Ordering::Relaxed)).sum();
    let remote: usize = (2..5).map(|i| calls[i].load(Ordering::Relaxed)).sum();
    assert_eq!(remote, requests as usize, "one remote call per request");
    assert_eq!(
        local,
        2 * requests as usize,
        "each request failed once on each local endpoint, never twice on one"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Over any zones, any endpoints failing, outlier ejection on or off, any panic threshold:
    /// while one endpoint works, a request with a retry per endpoint always succeeds, and no
    /// request is ever sent twice to one endpoint.
    #[test]
    fn retries_never_return_to_an_endpoint_the_request_failed_on(
        zones in proptest::collection::vec(1usize..4, 1..4),
        failing in proptest::collection::vec(proptest::bool::ANY, 12),
        ejecting in proptest::bool::ANY,
        panic_threshold in proptest::sample::select(vec![0.0, 0.5, 1.0]),
    ) {
        use std::collections::HashMap;
        use std::sync::Mutex;
        use tower_lb::policy::P2c;
        use tower_lb::Locality;

        let endpoints: Vec<(usize, usize)> = zones
            .iter()
            .enumerate()
            .flat_map(|(zone, &n)| (0..n).map(move |_| zone))
            .enumerate()
            .collect();
        let works = |i: usize| !failing[i % failing.len()];
        proptest::prop_assume!(endpoints.iter().any(|&(i, _)| works(i)));
        let tried: Arc<Mutex<HashMap<u64, Vec<usize>>>> = Arc::default();
        let endpoint = |i: usize| {
            let (tried, works) = (Arc::clone(&tried), works(i));
            service_fn(move |request: u64| {
                tried.lock().unwrap().entry(request).or_default().push(i);
                async move {
                    match works {
                        true => Ok(i),
                        false => Err(std::io::Error::other("down")),
                    }
                }
            })
        };
        let zone_of: HashMap<usize, usize> = endpoints.iter().copied().collect();
        let names = ["z0", "z1", "z2"];
        let lb = Balance::builder(P2c::new().with_rng(3))
            .outlier(match ejecting {
                true => Outlier::consecutive_failures(1).max_ejected_percent(100),
                false => Outlier::disabled(),
            })
            .panic_threshold(panic_threshold)
            .endpoints(endpoints.iter().map(|&(i, _)| (i, endpoint(i))))
            .locality(Locality::new(&names[..zones.len()]), move |i: &usize| names[zone_of[i]])
            .build()
            .unwrap();
        let policy = RetryPolicy::new(endpoints.len())
            .retry_if(RetryErrors)
            .backoff(Duration::from_millis(1), Duration::from_millis(1))
            .budget(Duration::from_secs(10), 10_000, 100.0);
        let client = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(lb);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        for request in 0..20u64 {
            let served = runtime.block_on(client.clone().oneshot(request));
            proptest::prop_assert!(served.is_ok(), "request {request} failed: {served:?}");
        }
        for (request, tried) in tried.lock().unwrap().iter() {
            let mut unique = tried.clone();
            unique.sort_unstable();
            unique.dedup();
            proptest::prop_assert_eq!(unique.len(), tried.len(), "request {} tried {:?}", request, tried);
        }
    }
}
