//! A real HTTP pool through reqwest, on in-process loopback servers: three backends, one
//! client, outlier detection, a per-attempt timeout and safe retries. One backend is killed
//! halfway through; no request fails.
//!
//! ```sh
//! cargo run --example reqwest_pool --features reqwest
//! ```

#[path = "support/backend.rs"]
mod backend;

use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::P2c;
use tower_lb::retry::{RetryLayer, RetryPolicy};
use tower_lb::{Balance, BoxError, EndpointState};

const REQUESTS: usize = 600;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut backends = backend::start_many(3).await?;
    let urls: Vec<String> = backends.iter().map(|b| b.url()).collect();

    // The pool: one client, three base URLs.
    let lb = Balance::builder(P2c::new())
        .http_endpoints(&reqwest::Client::new(), &urls)?
        .timeout(Duration::from_secs(1))
        .outlier(Outlier::consecutive_failures(3).base_ejection(Duration::from_secs(5)))
        .build()?;
    // GETs are idempotent: retried on another backend after any failure.
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(2)))
        .service(lb.clone());

    let mut failed = 0;
    for i in 0..REQUESTS {
        if i == REQUESTS / 2 {
            println!("killing {} after {i} requests", backends[1].url());
            backends[1].stop();
        }
        let url = format!("http://pool/items/{i}?verbose=1");
        let request = reqwest::Request::new(reqwest::Method::GET, url.parse()?);
        match client.clone().oneshot(request).await {
            Ok(response) if response.status().is_success() => {}
            _ => failed += 1,
        }
    }

    println!("\n| backend | requests | state |\n|---|---:|---|");
    for (backend, endpoint) in backends.iter().zip(lb.snapshot()) {
        let state = match endpoint.state {
            EndpointState::Ejected { ejections, .. } => format!("ejected ({ejections}x)"),
            state => format!("{state:?}"),
        };
        println!("| {} | {} | {state} |", endpoint.key, backend.hits());
    }
    println!(
        "\n{REQUESTS} requests, {failed} failed, {} retried",
        client.stats().retries
    );
    Ok(())
}
