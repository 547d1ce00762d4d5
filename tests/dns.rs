//! DNS discovery: membership follows the resolver's answers; a failing or empty answer
//! changes nothing; no request is lost while addresses change; and once with `localhost`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{service_fn, ServiceExt};
use tower_lb::dns::{BoxFuture, DnsDiscover, Resolve};
use tower_lb::policy::RoundRobin;
use tower_lb::{Balance, EndpointState};

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

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 8080))
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
    let make =
        |address: SocketAddr| service_fn(move |()| async move { Ok::<_, std::io::Error>(address) });
    let interval = Duration::from_secs(10);
    let dns = DnsDiscover::with_resolver("service.internal:8080", make, interval, script.clone())
        .await
        .unwrap();
    let lb = Balance::builder(RoundRobin::new())
        .discover(dns)
        .build()
        .unwrap();
    let active = || {
        let mut keys: Vec<SocketAddr> = lb
            .snapshot()
            .into_iter()
            .filter(|e| e.state != EndpointState::Draining)
            .map(|e| e.key)
            .collect();
        keys.sort();
        keys
    };
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
    let make =
        |address: SocketAddr| service_fn(move |()| async move { Ok::<_, std::io::Error>(address) });
    let dns = DnsDiscover::new("localhost:8080", make, Duration::from_secs(60))
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

    assert!(
        DnsDiscover::new("name.invalid:80", make, Duration::from_secs(60))
            .await
            .is_err()
    );
}
