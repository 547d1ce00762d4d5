//! Retries of real HTTP requests (`reqwest::Request` and `http::Request`) against loopback
//! servers: idempotent requests are resent after any failure, a `POST` only when it was
//! never sent, and a `POST` whose backend dies mid-request is never sent again.
#![cfg(feature = "reqwest")]

#[path = "../examples/support/backend.rs"]
mod backend;

use backend::Backend;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::RoundRobin;
use tower_lb::retry::{Idempotent, RetryLayer, RetryPolicy};
use tower_lb::Balance;

const REQUESTS: usize = 20;

/// A loopback port with nothing listening on it: connecting is refused.
async fn closed_port_url() -> reqwest::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url.parse().unwrap()
}

fn retries() -> RetryPolicy {
    RetryPolicy::new(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .budget(Duration::from_secs(10), 1000, 1.0)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A balancer over `urls` with outlier detection off, so only retries route around failures.
fn pool<Sv: Clone + Send + Sync + 'static>(
    urls: Vec<reqwest::Url>,
    endpoint: impl Fn(reqwest::Url) -> Sv,
) -> Balance<String, Sv, RoundRobin> {
    Balance::builder(RoundRobin::new())
        .outlier(Outlier::disabled())
        .endpoints(urls.into_iter().map(|url| (url.to_string(), endpoint(url))))
        .build()
        .unwrap()
}

/// A backend that dies mid-request (after counting it) and a healthy one, and their URLs.
async fn dying_and_healthy() -> (Backend, Backend, Vec<reqwest::Url>) {
    let dying = Backend::start("dying").await.unwrap();
    let healthy = Backend::start("healthy").await.unwrap();
    dying.set_dying(true);
    let urls = vec![dying.url().parse().unwrap(), healthy.url().parse().unwrap()];
    (dying, healthy, urls)
}

/// After `REQUESTS` POSTs of which `failed` failed: some reached the dying backend, each
/// failed one reached it exactly once, and no POST was sent twice.
fn assert_each_post_sent_once(dying: &Backend, healthy: &Backend, failed: usize) {
    assert!(
        failed > 0,
        "round robin sent some POSTs to the dying backend"
    );
    assert_eq!(
        dying.posts() as usize,
        failed,
        "each failed POST reached it once"
    );
    assert_eq!(
        (dying.posts() + healthy.posts()) as usize,
        REQUESTS,
        "no POST was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_post_that_died_mid_request_is_not_sent_again_get_is() {
    let (dying, healthy, urls) = dying_and_healthy().await;
    let http = client();
    let lb = pool(urls, |url| {
        backend::reqwest_endpoint(http.clone(), url.as_str())
    });
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retries()))
        .service(lb);
    let request = |method: reqwest::Method| {
        reqwest::Request::new(method, "http://placeholder/orders".parse().unwrap())
    };

    let mut posts_failed = 0;
    for _ in 0..REQUESTS {
        posts_failed += usize::from(
            client
                .clone()
                .oneshot(request(reqwest::Method::POST))
                .await
                .is_err(),
        );
    }
    assert_each_post_sent_once(&dying, &healthy, posts_failed);
    let after_posts = client.stats();
    assert_eq!(after_posts.retries, 0);
    assert_eq!(after_posts.not_safe as usize, posts_failed);

    for _ in 0..REQUESTS {
        let answer = client.clone().oneshot(request(reqwest::Method::GET)).await;
        assert_eq!(
            answer.unwrap(),
            "healthy",
            "a GET is retried on the other backend"
        );
    }
    assert!(client.stats().retries > 0);

    // A POST marked with an Idempotency-Key is retried like a GET.
    let mut keyed = request(reqwest::Method::POST);
    keyed
        .headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    for _ in 0..4 {
        let answer = client.clone().oneshot(keyed.try_clone().unwrap()).await;
        assert_eq!(answer.unwrap(), "healthy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_post_refused_at_connect_is_retried_elsewhere() {
    let healthy = Backend::start("healthy").await.unwrap();
    let http = client();
    let lb = pool(
        vec![closed_port_url().await, healthy.url().parse().unwrap()],
        |url| backend::reqwest_endpoint(http.clone(), url.as_str()),
    );
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retries()))
        .service(lb);
    for _ in 0..REQUESTS {
        let post = reqwest::Request::new(
            reqwest::Method::POST,
            "http://placeholder/orders".parse().unwrap(),
        );
        assert_eq!(client.clone().oneshot(post).await.unwrap(), "healthy");
    }
    assert_eq!(
        healthy.posts() as usize,
        REQUESTS,
        "each POST applied exactly once"
    );
    assert!(client.stats().retries > 0, "the refused ones were retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_retries_follow_the_same_rule() {
    let (dying, healthy, urls) = dying_and_healthy().await;
    let http = client();
    let lb = pool(urls, |url| {
        backend::http_endpoint(http.clone(), url.as_str())
    });
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retries()))
        .service(lb);
    let request = |method: &str| {
        http::Request::builder()
            .method(method)
            .uri("http://placeholder/orders")
            .body("{\"item\": 1}".to_string())
            .unwrap()
    };

    let mut posts_failed = 0;
    for _ in 0..REQUESTS {
        posts_failed += usize::from(client.clone().oneshot(request("POST")).await.is_err());
    }
    assert_each_post_sent_once(&dying, &healthy, posts_failed);

    for method in ["GET", "PUT", "DELETE"] {
        for _ in 0..4 {
            let answer = client.clone().oneshot(request(method)).await;
            assert_eq!(answer.unwrap(), "healthy", "{method} is idempotent");
        }
    }
    // The application vouches for this POST with the `Idempotent` extension.
    for _ in 0..4 {
        let mut post = request("POST");
        post.extensions_mut().insert(Idempotent);
        assert_eq!(client.clone().oneshot(post).await.unwrap(), "healthy");
    }
}
