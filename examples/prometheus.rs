//! Metrics in the Prometheus text format: a balancer over in-process loopback backends (one
//! of them failing, so outlier detection ejects it) and a retry layer, with a Prometheus
//! recorder installed, and a `/metrics` endpoint served on loopback, which the example
//! scrapes itself once and prints.
//!
//! ```text
//! cargo run --example prometheus --features metrics
//! ```

use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, Layer, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::P2c;
use tower_lb::retry::{RetryLayer, RetryPolicy};
use tower_lb::telemetry::Metrics;
use tower_lb::{Balance, BoxError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    // Three stand-in backends; "c" fails every call.
    let backend = |name: &'static str| {
        service_fn(move |_: http::Request<()>| async move {
            match name {
                "c" => Err::<&str, BoxError>("connection refused".into()),
                _ => Ok(name),
            }
        })
    };
    let lb = Balance::builder(P2c::new())
        .outlier(Outlier::consecutive_failures(3))
        .endpoints([
            ("a", backend("a")),
            ("b", backend("b")),
            ("c", backend("c")),
        ])
        .metrics(
            Metrics::new("backends")
                .per_endpoint(true)
                .every(Duration::from_millis(100)),
        )
        .build()?;
    let client = RetryLayer::new(RetryPolicy::new(2).metrics(Metrics::new("backends"))).layer(lb);
    for _ in 0..1_000 {
        client.clone().oneshot(http::Request::new(())).await?;
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await; // a publish

    // `/metrics` on a loopback port, scraped once.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut connection, _) = listener.accept().await?;
        let mut request = [0u8; 1024];
        let _ = connection.read(&mut request).await?;
        let body = prometheus.render();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        connection.write_all(response.as_bytes()).await?;
        Ok::<_, std::io::Error>(())
    });
    let mut scrape = TcpStream::connect(address).await?;
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), scrape.read_to_string(&mut text)).await??;
    server.await??;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    println!("GET http://{address}/metrics\n");
    for line in body.lines().filter(|l| l.starts_with("tower_lb_")) {
        println!("{line}");
    }
    Ok(())
}
