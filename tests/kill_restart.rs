//! "If one server goes down, traffic is routed to healthy servers; users may never notice":
//! five loopback HTTP backends behind reqwest, two killed and restarted three times during
//! 20 000 requests, with outlier detection, active checks and retries.
#![cfg(feature = "reqwest")]

#[path = "../examples/support/backend.rs"]
mod backend;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{ServiceBuilder, ServiceExt};
use tower_lb::health::{ActiveChecks, HttpCheck, Outlier};
use tower_lb::policy::P2c;
use tower_lb::retry::{RetryErrors, RetryLayer, RetryPolicy};
use tower_lb::{Balance, EndpointState};

const REQUESTS: usize = 20_000;
const WORKERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_backends_loses_no_request() {
    let mut backends = backend::start_many(5).await.unwrap();
    backends
        .iter()
        .for_each(|b| b.set_delay(Duration::from_micros(500)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let lb = Balance::builder(P2c::new())
        .endpoints(
            backends
                .iter()
                .map(|b| (b.url(), backend::text_endpoint(&client, b.url()))),
        )
        .outlier(
            Outlier::consecutive_failures(5)
                .base_ejection(Duration::from_millis(300))
                .max_ejected_percent(40),
        )
        .health_check(
            ActiveChecks::new(HttpCheck::with_client(client.clone(), "/healthz"))
                .every(Duration::from_millis(50))
                .timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    // Every request is a GET: safe to resend whatever the failure.
    let retries = RetryPolicy::new(5)
        .retry_if(RetryErrors)
        .backoff(Duration::from_millis(1), Duration::from_millis(20));
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(retries))
        .service(lb.clone());

    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (service, done) = (service.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while done.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                    if let Err(error) = service.clone().oneshot(()).await {
                        failures.push(error.to_string());
                    }
                }
                failures
            })
        })
        .collect();

    let endpoint = |url: &str| lb.snapshot().into_iter().find(|e| e.key == url);
    let picks = |url: &str| endpoint(url).map_or(0, |e| e.picks);
    let state = |url: &str| {
        lb.snapshot()
            .into_iter()
            .find(|e| e.key == url)
            .map(|e| e.state)
    };
    let mut report = Vec::new();
    for cycle in 0..3 {
        // Let traffic flow, then kill two backends.
        wait_for(|| done.load(Ordering::Relaxed) >= 2_000 + cycle * 6_000).await;
        let victims = [cycle % 5, (cycle + 2) % 5];
        for &v in &victims {
            backends[v].stop();
        }
        let killed = Instant::now();
        for &v in &victims {
            let url = backends[v].url();
            wait_for(|| state(&url) != Some(EndpointState::Healthy)).await;
        }
        let out_of_rotation = killed.elapsed();

        // While down they get no traffic (beyond a probation request each).
        let before: Vec<u64> = victims.iter().map(|&v| picks(&backends[v].url())).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (&v, before) in victims.iter().zip(before) {
            let extra = picks(&backends[v].url()) - before;
            assert!(extra <= 3, "b{v} got {extra} picks while down");
        }

        // Restart them on the same ports: they come back within an active-check rise.
        for &v in &victims {
            backends[v].restart().await.unwrap();
        }
        let restarted = Instant::now();
        for &v in &victims {
            let url = backends[v].url();
            let before = picks(&url);
            wait_for(|| state(&url) == Some(EndpointState::Healthy) && picks(&url) > before).await;
        }
        report.push((out_of_rotation, restarted.elapsed()));
    }

    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    let snapshot = lb.snapshot();
    let attempts: u64 = snapshot.iter().map(|e| e.picks).sum();
    println!(
        "requests: {REQUESTS}, lost: {}, attempts: {attempts}, retries: {}",
        failures.len(),
        attempts as usize - REQUESTS
    );
    for (cycle, (out, back)) in report.iter().enumerate() {
        println!("cycle {cycle}: kill → out of rotation {out:?}; restart → serving again {back:?}");
    }
    for e in &snapshot {
        println!(
            "{} {:?} picks {} failures {}",
            e.key, e.state, e.picks, e.failures
        );
    }
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Polls `condition` every 5 ms for at most 10 s.
async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}
