//! The main job, on in-process loopback backends: eleven HTTP servers, one of which turns ten
//! times slower for the middle third of the run, and every balancing policy sending the same
//! traffic through reqwest. Prints one table: each backend's share of the traffic, latency
//! percentiles, and the share of requests answered within the timeout.
//!
//! ```text
//! cargo run --example demo
//! ```

#[path = "support/backend.rs"]
mod backend;

use backend::Backend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use tower_lb::policy::{LeastPending, P2c, Pick, Random, RoundRobin, WeightedRoundRobin};
use tower_lb::{Balance, BoxError};

const BACKENDS: usize = 11;
const SLOW: usize = 3;
const REQUESTS: usize = 6_000;
const CONCURRENCY: usize = 32;
const BASE_DELAY: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_millis(15);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backends = backend::start_many(BACKENDS).await?;
    backends.iter().for_each(|b| b.set_delay(BASE_DELAY));
    let backends = Arc::new(backends);
    println!(
        "{BACKENDS} loopback backends at {BASE_DELAY:?}; b{SLOW} is 10x slower for the middle third \
         of each run. {REQUESTS} requests per policy, {CONCURRENCY} at a time, timeout {TIMEOUT:?}.\n"
    );
    let header: String = (0..BACKENDS)
        .map(|i| format!("{:>5}", format!("b{i}")))
        .collect();
    println!(
        "{:<22}{header}  {:>7} {:>7} {:>7} {:>8}",
        "policy (share %)", "p50", "p99", "p99.9", "success"
    );

    let started = Instant::now();
    run("round robin", RoundRobin::new(), &backends).await?;
    run("weighted round robin", WeightedRoundRobin::new(), &backends).await?;
    run("random", Random::new(), &backends).await?;
    run("least pending", LeastPending::new(), &backends).await?;
    run("p2c pending", P2c::new(), &backends).await?;
    run("p2c peak-ewma", P2c::peak_ewma(), &backends).await?;
    println!("\ndone in {:.1?}", started.elapsed());
    Ok(())
}

/// Sends the run's traffic through one policy and prints its row.
async fn run<P>(name: &str, policy: P, backends: &Arc<Vec<Backend>>) -> Result<(), BoxError>
where
    P: Pick<()>,
{
    let client = reqwest::Client::new();
    let lb = Balance::builder(policy)
        .endpoints(
            backends
                .iter()
                .map(|b| (b.name.clone(), backend::text_endpoint(&client, b.url()))),
        )
        .build()?;

    let hits_before: Vec<u64> = backends.iter().map(|b| b.hits()).collect();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (lb, sent, backends) = (lb.clone(), Arc::clone(&sent), Arc::clone(backends));
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut ok = 0usize;
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    return (latencies, ok);
                }
                // The slow phase is the middle third of this policy's requests.
                if n == REQUESTS / 3 {
                    backends[SLOW].set_delay(BASE_DELAY * 10);
                } else if n == 2 * REQUESTS / 3 {
                    backends[SLOW].set_delay(BASE_DELAY);
                }
                let start = Instant::now();
                // Dropping a timed-out call releases its endpoint's in-flight count.
                let result = tokio::time::timeout(TIMEOUT, lb.clone().oneshot(())).await;
                latencies.push(start.elapsed());
                ok += usize::from(matches!(result, Ok(Ok(_))));
            }
        });
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut ok = 0;
    while let Some(worker) = workers.join_next().await {
        let (l, o) = worker?;
        latencies.extend(l);
        ok += o;
    }
    backends[SLOW].set_delay(BASE_DELAY);
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    let shares: String = backends
        .iter()
        .zip(hits_before)
        .map(|(b, before)| {
            format!(
                "{:>5.1}",
                100.0 * (b.hits() - before) as f64 / REQUESTS as f64
            )
        })
        .collect();
    println!(
        "{name:<22}{shares}  {:>7} {:>7} {:>7} {:>7.1}%",
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(percentile(0.999)),
        100.0 * ok as f64 / REQUESTS as f64
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}
