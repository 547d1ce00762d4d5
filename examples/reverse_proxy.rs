//! A reverse proxy on 127.0.0.1 in front of a web tier of three loopback HTTP servers: hyper
//! serves the clients, hyper-util's client forwards through a `Balance` with sticky session
//! cookies, active checks, outlier detection and retries. Halfway through a run under load,
//! one server is killed: no client request fails, and only its sessions move.
//!
//! ```sh
//! cargo run --example reverse_proxy
//! ```

#[path = "support/backend.rs"]
mod backend;
#[path = "support/proxy.rs"]
mod proxy;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::BoxError;

const SESSIONS: usize = 60;
const REQUESTS: usize = 3_000;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut backends = backend::start_many(3).await?;
    backends
        .iter()
        .for_each(|b| b.set_delay(Duration::from_micros(300)));
    let proxy = proxy::Proxy::start(backends.iter().map(|b| b.url())).await?;
    let url = proxy.url();
    println!("proxy on {url}, in front of {}", names(&backends));

    // Clients: each first request gets a session cookie, and the session stays put.
    let client = reqwest::Client::new();
    let (sessions, opened) = proxy::open_sessions(&client, &url, SESSIONS).await?;
    println!("{SESSIONS} new sessions placed: {:?}", opened.by_backend);

    // Load from 8 concurrent clients; b1 is killed a third of the way in.
    let sent = Arc::new(AtomicUsize::new(0));
    let run = {
        let (client, url, sessions, sent) = (
            client.clone(),
            url.clone(),
            sessions.clone(),
            Arc::clone(&sent),
        );
        tokio::spawn(async move { proxy::load(&client, &url, &sessions, REQUESTS, 8, sent).await })
    };
    let started = Instant::now();
    while sent.load(Ordering::Relaxed) < REQUESTS / 3 && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    backends[1].stop();
    println!("b1 killed after {} requests", sent.load(Ordering::Relaxed));
    let tally = run.await?;

    let moved = tally.by_session.values().filter(|b| b.len() > 1).count();
    println!(
        "{} requests answered, {} failed; per backend: {:?}",
        tally.answered(),
        tally.failures.len(),
        tally.by_backend
    );
    println!(
        "{moved} of {SESSIONS} sessions moved (the {} that were on b1), the rest stayed on one backend",
        opened.by_backend.get("b1").unwrap_or(&0)
    );
    for endpoint in proxy.snapshot() {
        println!(
            "  {} {:?}, {} picks",
            endpoint.key, endpoint.state, endpoint.picks
        );
    }
    Ok(())
}

fn names(backends: &[backend::Backend]) -> String {
    backends
        .iter()
        .map(|b| format!("{} ({})", b.name, b.url()))
        .collect::<Vec<_>>()
        .join(", ")
}
