//! Real loopback HTTP servers behind reqwest.

#[path = "../examples/support/backend.rs"]
mod backend;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_lb::policy::P2c;
use tower_lb::{Balance, EndpointState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_spreads_and_a_removed_endpoint_loses_no_request() {
    let backends = backend::start_many(4).await.unwrap();
    backends
        .iter()
        .for_each(|b| b.set_delay(Duration::from_millis(1)));
    let client = reqwest::Client::new();
    let lb = Balance::builder(P2c::new())
        .endpoints(
            backends
                .iter()
                .map(|b| (b.name.clone(), backend::text_endpoint(&client, b.url()))),
        )
        .build()
        .unwrap();

    const REQUESTS: usize = 2000;
    let sent = Arc::new(AtomicUsize::new(0));
    let removed_at = Arc::new(tokio::sync::Notify::new());
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (lb, sent, removed_at) = (lb.clone(), Arc::clone(&sent), Arc::clone(&removed_at));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS {
                        break;
                    }
                    if n == REQUESTS / 2 {
                        removed_at.notify_one();
                    }
                    answers.push(lb.clone().oneshot(()).await);
                }
                answers
            })
        })
        .collect();

    // Mid-traffic, remove b0 while calls to it are in flight.
    tokio::time::timeout(Duration::from_secs(30), removed_at.notified())
        .await
        .unwrap();
    lb.remove(&"b0".to_string()).unwrap();
    let hits_at_removal = backends[0].hits();

    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    assert_eq!(answers.len(), REQUESTS);
    for answer in &answers {
        assert!(answer.is_ok(), "a request was lost: {answer:?}");
    }
    // After removal, b0 only finished what was already in flight (at most one per caller).
    assert!(backends[0].hits() <= hits_at_removal + 16);
    assert!(lb
        .snapshot()
        .iter()
        .all(|e| e.key != "b0" || e.state == EndpointState::Draining));
    for b in &backends[1..] {
        let share = b.hits() as f64 / answers.len() as f64;
        assert!(
            share > 0.15,
            "{} got {:.1}% of the traffic",
            b.name,
            share * 100.0
        );
    }
    assert!(backends[0].hits() as f64 / answers.len() as f64 > 0.05);
}

/// Read/write splitting of an HTTP API over real loopback servers: GETs reach the replicas,
/// POSTs the primary, and a client reads its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_router_sends_gets_to_replicas_and_posts_to_the_primary() {
    use tower_lb::replica::{HttpMethods, ReplicaRouter};
    use tower_lb::sticky::Header;

    let primary = backend::Backend::start("primary").await.unwrap();
    let replicas = backend::start_many(2).await.unwrap();
    let client = reqwest::Client::new();
    let endpoint = |url: String| backend::http_endpoint(client.clone(), &url);
    let router = ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoint(primary.url(), endpoint(primary.url()))
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .endpoints(replicas.iter().map(|r| (r.url(), endpoint(r.url()))))
            .build()
            .unwrap(),
    )
    .classify(HttpMethods)
    .session(Header::new("x-user"))
    .build();
    let request = |method: &str, user: &str| {
        http::Request::builder()
            .method(method)
            .uri("http://placeholder/items")
            .header("x-user", user)
            .body(String::new())
            .unwrap()
    };

    for _ in 0..50 {
        let answer = router.clone().oneshot(request("GET", "bob")).await.unwrap();
        assert!(answer.starts_with('b'), "a GET reached {answer}");
    }
    for _ in 0..10 {
        let answer = router
            .clone()
            .oneshot(request("POST", "alice"))
            .await
            .unwrap();
        assert_eq!(answer, "primary");
    }
    let own_read = router
        .clone()
        .oneshot(request("GET", "alice"))
        .await
        .unwrap();
    assert_eq!(own_read, "primary", "alice reads her own write");
    assert_eq!(primary.posts(), 10);
    assert_eq!(primary.hits(), 11);
    assert_eq!(replicas.iter().map(|r| r.hits()).sum::<u64>(), 50);
    assert!(replicas.iter().all(|r| r.posts() == 0));
}

/// Base-URL endpoints against real loopback servers: every request reaches its endpoint's
/// server with path and query intact, under the base path when there is one.
#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_endpoints_keep_path_and_query_under_the_base_path() {
    use tower::Layer;
    use tower_lb::base_url::{BaseUrl, BaseUrlLayer};
    use tower_lb::policy::RoundRobin;

    let backends = backend::start_many(2).await.unwrap();
    let bases = [backends[0].url(), format!("{}/api/", backends[1].url())];
    let client = reqwest::Client::new();
    let lb = Balance::builder(RoundRobin::new())
        .http_endpoints(&client, &bases)
        .unwrap()
        .build()
        .unwrap();
    for page in 0..20 {
        let url = format!("http://placeholder/items?page={page}");
        let request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
        let response = lb.clone().oneshot(request).await.unwrap();
        let asked = response.headers()["x-uri"].to_str().unwrap().to_string();
        let name = response.text().await.unwrap();
        let expected = match name.as_str() {
            "b0" => format!("/items?page={page}"),
            _ => format!("/api/items?page={page}"),
        };
        assert_eq!(asked, expected, "{name}");
    }
    assert_eq!((backends[0].hits(), backends[1].hits()), (10, 10));
    assert!(Balance::builder(RoundRobin::new())
        .http_endpoints(&client, ["ftp://127.0.0.1"])
        .is_err());

    // The same rewrite for `http::Request` users, over any HTTP client service.
    let http_client = {
        let client = client.clone();
        tower::service_fn(move |request: http::Request<String>| {
            let request = reqwest::Request::try_from(request).expect("an absolute URI");
            let sent = client.execute(request);
            async move {
                let response = sent.await?;
                Ok::<_, reqwest::Error>(response.headers()["x-uri"].to_str().unwrap().to_string())
            }
        })
    };
    let base: BaseUrl = format!("{}/v2", backends[0].url()).parse().unwrap();
    let endpoint = BaseUrlLayer::new(base).layer(http_client);
    let request = http::Request::get("/search?q=x")
        .body(String::new())
        .unwrap();
    assert_eq!(endpoint.oneshot(request).await.unwrap(), "/v2/search?q=x");
}
