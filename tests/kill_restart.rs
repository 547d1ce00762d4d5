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
    let workers = send_all(service, &done, REQUESTS, Duration::ZERO);

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

/// `WORKERS` tasks that send requests through `service` until `total` have been sent
/// (counted in `done`), pausing `pace` after each; each task ends with its failures.
fn send_all<S>(
    service: S,
    done: &Arc<AtomicUsize>,
    total: usize,
    pace: Duration,
) -> Vec<tokio::task::JoinHandle<Vec<String>>>
where
    S: tower::Service<()> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
{
    (0..WORKERS)
        .map(|_| {
            let (service, done) = (service.clone(), Arc::clone(done));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while done.fetch_add(1, Ordering::Relaxed) < total {
                    if let Err(error) = service.clone().oneshot(()).await {
                        failures.push(error.to_string());
                    }
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                }
                failures
            })
        })
        .collect()
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

/// Two zones, the local one (two backends) killed whole under load: with outlier detection
/// (at most 10 % ejected, so the second local backend stays in rotation until its checks
/// fail), active checks and retries, not one request fails, because a retry never returns to
/// a backend its request failed on and spills to the remote zone once it failed on both
/// local ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_whole_local_zone_loses_no_request() {
    use tower_lb::Locality;

    const PACED: usize = 6_000;
    let mut backends = backend::start_many(5).await.unwrap();
    backends
        .iter()
        .for_each(|b| b.set_delay(Duration::from_micros(500)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let local: Vec<String> = backends[..2].iter().map(|b| b.url()).collect();
    let zone = {
        let local = local.clone();
        move |url: &String| {
            if local.contains(url) {
                "local"
            } else {
                "remote"
            }
        }
    };
    let lb = Balance::builder(P2c::new())
        .endpoints(
            backends
                .iter()
                .map(|b| (b.url(), backend::text_endpoint(&client, b.url()))),
        )
        .outlier(Outlier::consecutive_failures(5))
        .health_check(
            ActiveChecks::new(HttpCheck::with_client(client.clone(), "/healthz"))
                .every(Duration::from_millis(50))
                .timeout(Duration::from_millis(200)),
        )
        .locality(Locality::new(["local", "remote"]), zone)
        .build()
        .unwrap();
    let retries = RetryPolicy::new(3)
        .retry_if(RetryErrors)
        .backoff(Duration::from_millis(1), Duration::from_millis(20));
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(retries))
        .service(lb.clone());

    let done = Arc::new(AtomicUsize::new(0));
    let workers = send_all(service, &done, PACED, Duration::from_millis(1));
    wait_for(|| done.load(Ordering::Relaxed) >= PACED / 3).await;
    for backend in &mut backends[..2] {
        backend.stop();
    }
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    let picks = |zone_urls: &dyn Fn(&str) -> bool| -> u64 {
        lb.snapshot()
            .iter()
            .filter(|e| zone_urls(&e.key))
            .map(|e| e.picks)
            .sum()
    };
    println!(
        "{PACED} requests, local zone killed after {}: {} failed; picks local {}, remote {}",
        PACED / 3,
        failures.len(),
        picks(&|url| local.iter().any(|l| l == url)),
        picks(&|url| !local.iter().any(|l| l == url)),
    );
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
