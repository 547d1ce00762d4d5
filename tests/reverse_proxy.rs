//! The reverse proxy example's proxy (`examples/support/proxy.rs`), driven with real HTTP
//! requests over loopback: spread, sticky session cookies, and a backend killed under load.

#[path = "../examples/support/backend.rs"]
mod backend;
#[path = "../examples/support/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::EndpointState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_spread_over_the_backends_and_stay_on_theirs() {
    let backends = backend::start_many(4).await.unwrap();
    let proxy = proxy::Proxy::start(backends.iter().map(|b| b.url()))
        .await
        .unwrap();
    let client = reqwest::Client::new();

    let (sessions, opened) = proxy::open_sessions(&client, &proxy.url(), 400)
        .await
        .unwrap();
    assert_eq!(
        sessions.iter().collect::<BTreeSet<_>>().len(),
        400,
        "one cookie per session"
    );
    for b in &backends {
        let share = *opened.by_backend.get(&b.name).unwrap_or(&0) as f64 / 400.0;
        assert!(
            share >= 0.15,
            "{} got {share:.3} of new sessions: {:?}",
            b.name,
            opened.by_backend
        );
    }

    let tally = proxy::load(&client, &proxy.url(), &sessions, 2_000, 8, Arc::default()).await;
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
    assert_eq!(tally.answered(), 2_000);
    for (session, answered_by) in &tally.by_session {
        assert_eq!(
            answered_by, &opened.by_session[session],
            "session {session} left the backend it opened on"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_fails_no_request_and_moves_only_its_sessions() {
    let mut backends = backend::start_many(4).await.unwrap();
    backends
        .iter()
        .for_each(|b| b.set_delay(Duration::from_micros(300)));
    let proxy = proxy::Proxy::start(backends.iter().map(|b| b.url()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let (sessions, opened) = proxy::open_sessions(&client, &proxy.url(), 100)
        .await
        .unwrap();
    let on_killed: BTreeSet<_> = opened
        .by_session
        .iter()
        .filter(|(_, b)| b[0] == "b1")
        .map(|(session, _)| session.clone())
        .collect();
    assert!(!on_killed.is_empty(), "b1 has sessions to lose");

    const REQUESTS: usize = 3_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let run = {
        let (client, url, sent) = (client.clone(), proxy.url(), Arc::clone(&sent));
        tokio::spawn(async move { proxy::load(&client, &url, &sessions, REQUESTS, 8, sent).await })
    };
    let started = Instant::now();
    while sent.load(Ordering::Relaxed) < REQUESTS / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the load stalled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    backends[1].stop();
    let killed_at = sent.load(Ordering::Relaxed);
    let tally = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the load finished")
        .unwrap();

    assert!(
        tally.failures.is_empty(),
        "{} failed: {:?}",
        tally.failures.len(),
        tally.failures
    );
    assert_eq!(tally.answered(), REQUESTS);
    let moved: BTreeSet<_> = tally
        .by_session
        .iter()
        .filter(|(_, b)| b.len() > 1)
        .map(|(session, _)| session.clone())
        .collect();
    assert_eq!(
        moved, on_killed,
        "exactly the killed backend's sessions moved"
    );
    let b1 = proxy
        .snapshot()
        .into_iter()
        .find(|e| e.key == backends[1].url())
        .unwrap();
    assert_ne!(
        b1.state,
        EndpointState::Healthy,
        "the killed backend is out of rotation"
    );
    println!(
        "killed b1 after {killed_at} of {REQUESTS} requests: 0 failed, {} sessions moved, answers {:?}, b1 {:?} after {} picks",
        moved.len(),
        tally.by_backend,
        b1.state,
        b1.picks
    );
}
