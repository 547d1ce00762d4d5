//! DNS discovery: membership follows the resolver's answers; a failing or empty answer, a
//! resolver that panics and one that never answers change nothing; no request is lost while
//! addresses change; and once with `localhost`.

use futures::StreamExt;
use std::collections::VecDeque;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::discover::Change;
use tower::{Service, ServiceExt};
use tower_lb::dns::{BoxFuture, DnsDiscover, DnsError, Resolve, RESOLVE_TIMEOUT};
use tower_lb::policy::RoundRobin;
use tower_lb::{Balance, DriverState, EndpointSnapshot, EndpointState};

/// Answers from a script, one per resolution; the last answer repeats.
#[derive(Clone)]
struct Scripted(Arc<Mutex<VecDeque<std::io::Result<Vec<SocketAddr>>>>>);

impl Scripted {
    fn push(&self, answer: std::io::Result<Vec<SocketAddr>>) {
        self.0.lock().unwrap().push_back(answer);
    }
}

impl Resolve for Scripted {
    fn resolve(&self, _: &str) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        let mut script = self.0.lock().unwrap();
        let answer = match script.len() {
            0 => Err(std::io::Error::other("no answer scripted")),
            1 => match &script[0] {
                Ok(addresses) => Ok(addresses.clone()),
                Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
            },
            _ => script.pop_front().unwrap(),
        };
        Box::pin(async move { answer })
    }
}

/// An endpoint that answers every call with its own address.
#[derive(Clone)]
struct Endpoint(SocketAddr);

impl Service<()> for Endpoint {
    type Response = SocketAddr;
    type Error = std::io::Error;
    type Future = Ready<Result<SocketAddr, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        ready(Ok(self.0))
    }
}

/// A round-robin balancer over the addresses `resolver` gives for one name, every `interval`.
async fn following(
    resolver: impl Resolve,
    interval: Duration,
) -> Balance<SocketAddr, Endpoint, RoundRobin> {
    let dns = DnsDiscover::with_resolver("service.internal:8080", Endpoint, interval, resolver)
        .await
        .unwrap();
    Balance::builder(RoundRobin::new())
        .discover(dns)
        .build()
        .unwrap()
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 8080))
}

/// The addresses of a snapshot that are not draining, in order.
fn in_rotation(snapshot: Vec<EndpointSnapshot<SocketAddr>>) -> Vec<SocketAddr> {
    let mut keys: Vec<SocketAddr> = snapshot
        .into_iter()
        .filter(|e| e.state != EndpointState::Draining)
        .map(|e| e.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(start_paused = true)]
async fn membership_follows_the_answers_and_bad_answers_change_nothing() {
    // The first answer, then: an address added and one removed; a failure and an empty
    // answer, which change nothing; then the set changes again.
    let script = Scripted(Arc::default());
    script.push(Ok(vec![addr(1), addr(2)]));
    script.push(Ok(vec![addr(2), addr(3)]));
    script.push(Err(std::io::Error::other("SERVFAIL")));
    script.push(Ok(vec![]));
    script.push(Ok(vec![addr(3), addr(4)]));
    let interval = Duration::from_secs(10);
    let lb = following(script.clone(), interval).await;
    let active = || in_rotation(lb.snapshot());
    assert_eq!(
        active(),
        [addr(1), addr(2)],
        "the first answer is there at build"
    );

    let expected = [
        vec![addr(2), addr(3)],
        vec![addr(2), addr(3)],
        vec![addr(2), addr(3)],
        vec![addr(3), addr(4)],
    ];
    for (round, want) in expected.iter().enumerate() {
        // Requests keep flowing while the addresses change: none fails.
        for _ in 0..10 {
            assert!(lb.clone().oneshot(()).await.is_ok(), "round {round}");
        }
        tokio::time::sleep(interval + Duration::from_millis(1)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(&active(), want, "after round {round}");
    }
}

#[tokio::test]
async fn localhost_resolves_to_loopback_endpoints() {
    let dns = DnsDiscover::new("localhost:8080", Endpoint, Duration::from_secs(60))
        .await
        .unwrap();
    let lb = Balance::builder(RoundRobin::new())
        .discover(dns)
        .build()
        .unwrap();
    let endpoints = lb.snapshot();
    assert!(!endpoints.is_empty());
    assert!(endpoints
        .iter()
        .all(|e| e.key.ip().is_loopback() && e.key.port() == 8080));
    assert!(lb.oneshot(()).await.unwrap().ip().is_loopback());

    // Without a port the system resolver refuses the name before any lookup, so this
    // stays off the network.
    let error = DnsDiscover::new("localhost", Endpoint, Duration::from_secs(60))
        .await
        .expect_err("no port");
    assert!(matches!(error, DnsError::Resolve { .. }), "{error}");
}

/// Misbehaves in turn: answers, panics while making its future, panics while running it,
/// never answers, then answers again.
struct Misbehaving {
    resolutions: AtomicU32,
}

impl Resolve for Misbehaving {
    fn resolve(&self, _: &str) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        match self.resolutions.fetch_add(1, Ordering::SeqCst) {
            0 => Box::pin(async { Ok(vec![addr(1), addr(2)]) }),
            1 => panic!("resolver bug while starting"),
            2 => Box::pin(async {
                tokio::task::yield_now().await;
                panic!("resolver bug while running")
            }),
            3 => Box::pin(std::future::pending()),
            _ => Box::pin(async { Ok(vec![addr(2), addr(3)]) }),
        }
    }
}

fn misbehaving() -> Misbehaving {
    Misbehaving {
        resolutions: AtomicU32::new(0),
    }
}

/// The stream's next item, which must be a failed resolution.
async fn next_failure<F, S>(dns: &mut DnsDiscover<F, S>) -> DnsError
where
    F: Fn(SocketAddr) -> S + Unpin,
    S: Unpin,
{
    let error = dns
        .next()
        .await
        .expect("the stream goes on")
        .err()
        .expect("a failure");
    *error.downcast::<DnsError>().expect("a DnsError")
}

#[tokio::test(start_paused = true)]
async fn a_resolver_that_panics_or_never_answers_is_a_failed_resolution() {
    let interval = Duration::from_secs(1);
    let mut dns =
        DnsDiscover::with_resolver("service.internal:80", Endpoint, interval, misbehaving())
            .await
            .unwrap();
    let mut inserted = Vec::new();
    for _ in 0..2 {
        match dns.next().await {
            Some(Ok(Change::Insert(address, _))) => inserted.push(address),
            other => panic!("expected an insert, got {:?}", other.map(|c| c.is_ok())),
        }
    }
    inserted.sort();
    assert_eq!(inserted, [addr(1), addr(2)]);

    let started = tokio::time::Instant::now();
    let error = next_failure(&mut dns).await;
    assert!(
        matches!(&error, DnsError::Panicked { message, .. } if message == "resolver bug while starting"),
        "{error}"
    );
    let error = next_failure(&mut dns).await;
    assert!(
        matches!(&error, DnsError::Panicked { message, .. } if message == "resolver bug while running"),
        "{error}"
    );
    let error = next_failure(&mut dns).await;
    assert!(
        matches!(error, DnsError::TimedOut { after, .. } if after == RESOLVE_TIMEOUT),
        "{error}"
    );
    // Three intervals and one time limit: the hung resolution held up nothing else.
    let waited = started.elapsed();
    assert!(
        waited >= 3 * interval + RESOLVE_TIMEOUT && waited < 4 * interval + RESOLVE_TIMEOUT,
        "{waited:?}"
    );

    // The addresses known before the failures are still the baseline: one leaves, one joins.
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        match dns.next().await {
            Some(Ok(Change::Remove(address))) => removed.push(address),
            Some(Ok(Change::Insert(address, _))) => added.push(address),
            other => panic!("expected a change, got {:?}", other.map(|c| c.is_ok())),
        }
    }
    assert_eq!((removed, added), (vec![addr(1)], vec![addr(3)]));
}

#[tokio::test(start_paused = true)]
async fn a_balancer_keeps_following_dns_past_a_resolver_that_panics() {
    let interval = Duration::from_secs(1);
    let lb = following(misbehaving(), interval).await;
    // Past the two panics, the hang's time limit and the answer after it.
    tokio::time::sleep(4 * interval + RESOLVE_TIMEOUT + Duration::from_millis(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(lb.stats().discovery_driver, DriverState::Running);
    assert_eq!(in_rotation(lb.snapshot()), [addr(2), addr(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_first_resolution_that_never_answers_fails_instead_of_hanging() {
    struct Silent;
    impl Resolve for Silent {
        fn resolve(&self, _: &str) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
            Box::pin(std::future::pending())
        }
    }
    let started = tokio::time::Instant::now();
    let error = DnsDiscover::with_resolver(
        "service.internal:80",
        Endpoint,
        Duration::from_secs(1),
        Silent,
    )
    .await
    .expect_err("no answer");
    assert!(matches!(error, DnsError::TimedOut { .. }), "{error}");
    assert_eq!(started.elapsed(), RESOLVE_TIMEOUT);
}
