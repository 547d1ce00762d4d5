//! Client-side load balancing for [tower](https://docs.rs/tower).
//!
//! `tower-lb` spreads one logical client's calls over many endpoints: a pool of HTTP servers
//! behind `reqwest`, database replicas behind `sqlx`, any `tower::Service + Clone`. A
//! [`Balance`] is itself a tower `Service`, cheap to clone and shared by its clones, so it
//! composes with `ServiceBuilder`, `tower::retry`, `tower::timeout` and `tower::limit`.
//!
//! ```
//! use tower::{service_fn, ServiceExt};
//! use tower_lb::{policy::P2c, Balance, BoxError};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // Any Service + Clone is an endpoint; here, two in-process stand-ins for real backends.
//! let backend = |name: &'static str| service_fn(move |req: String| async move {
//!     Ok::<_, BoxError>(format!("{name} answered {req}"))
//! });
//! let lb = Balance::builder(P2c::peak_ewma())
//!     .endpoints([("a", backend("a")), ("b", backend("b"))])
//!     .build()?;
//!
//! let answer = lb.clone().oneshot("hello".to_string()).await?;
//! assert!(answer.ends_with("answered hello"));
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - `poll_ready` is always ready; `call` picks an endpoint from an immutable snapshot of the
//!   pool, and the [`ResponseFuture`] drives that endpoint's readiness and call. No endpoint
//!   blocks requests bound for another, and there is no `Buffer` task in the request path.
//! - Membership changes publish a new snapshot through `arc-swap`; picks read it lock-free.
//!   Per-endpoint load ([`EndpointStats`]) is kept in atomics shared by all snapshots.
//! - The [`policy`] decides: round robin, smooth weighted round robin, (weighted) random,
//!   least pending, and power of two choices on in-flight count or peak-EWMA latency.
//! - Load accounting is drop-safe: a response future dropped before it completes releases its
//!   endpoint's in-flight count.
//! - With nothing to pick, a call fails at once with a typed [`Error`]; it never pends forever.
//! - [`health`]: passive outlier detection (on by default inside a tokio runtime), active
//!   checks, a panic threshold and slow start keep failing endpoints out of rotation and bring
//!   them back; [`retry`] retries a failed call on another endpoint, within a budget.
//! - [`sticky`] key extractors and [`policy::ConsistentHash`] keep sessions on one endpoint
//!   while the pool changes under them.
//!
//! # Choosing a policy
//!
//! | your endpoints and requests | policy | why |
//! |---|---|---|
//! | alike, requests of similar cost | [`policy::RoundRobin`] | the cheapest pick; every endpoint gets the same share, exactly, per cycle |
//! | of different capacity | [`policy::WeightedRoundRobin`], or [`policy::Random`] | shares exactly by weight per cycle, or by weight on average without a shared cursor (the fastest under contention) |
//! | requests of uneven cost, or endpoints that slow down | [`policy::P2c::new`] | two random candidates, the one with fewer calls in flight per unit of weight: a busy endpoint is avoided at O(1) |
//! | latency differs between endpoints (another zone, pauses, noisy neighbours) | [`policy::P2c::peak_ewma`] | weighs calls in flight by each endpoint's peak-sensitive latency, so a slow endpoint is shunned before a queue builds |
//! | a handful, and the least loaded must win | [`policy::LeastPending`] | scans them all: exact, but O(N) (fine up to a few dozen) |
//! | a session, cache or shard must stay on one endpoint | [`policy::ConsistentHash`] | a key keeps its endpoint; when one leaves, only its keys move |
//! | the same, over thousands of endpoints, where an even spread matters more than a few extra keys moving | [`policy::Maglev`] | shares within one table entry of the weights, a 128 KiB table; a change moves a few keys beyond the leaver's |
//!
//! Measured on a 2-core VM, per request, as the balancer's own cost against tower's
//! `p2c::Balance` in the same run (the README has every table and how to rerun them): at 64
//! endpoints, round robin 46 ns, P2C 65 ns and consistent hashing 82 ns against tower's
//! 199 ns, P2C peak-EWMA 163 ns (109 ns on the TSC clock, [`load::LatencyClock`]) against
//! tower's `PeakEwma` 566 ns; at 4 096 endpoints P2C 83 ns, the hash ring 125 ns and Maglev
//! 85 ns against 273 ns. In a tail-latency test with
//! one of ten endpoints ten times slower, P2C peak-EWMA kept p99 at 40 ms where round robin
//! reached 2.4 s. Health ([`health`]), retries ([`retry`]) and zones ([`Locality`]) work with every
//! policy.
//!
//! # Features
//!
//! - `reqwest`: [`base_url::HttpEndpoint`] and [`Builder::http_endpoints`] (a pool of HTTP
//!   servers behind one `reqwest::Client`), `health::HttpCheck`, and retry support for
//!   `reqwest::Request`, on reqwest 0.13; `reqwest-0_12`: the same on reqwest 0.12.
//! - `sqlx-postgres`: the PostgreSQL side of [`replica`] on sqlx 0.9: the router as a sqlx
//!   `Executor`, position-based read-your-own-writes, and the lag and role probes;
//!   `sqlx-0_8`: the same on sqlx 0.8 (`replica::sqlx_0_8`).
//! - `sqlx-mysql`: the MySQL and MariaDB side of [`replica`] on sqlx 0.9: the router as a
//!   sqlx `Executor` over `MySqlPool`s, GTID positions, lag (by GTID), role and Galera probes.
//! - `metrics`: balancers, retry policies and replica routers publish through the `metrics`
//!   facade (`telemetry`, with the table of names); the request path pays nothing.
//!
//! The minimum supported Rust version is 1.85 (`rust-version` in Cargo.toml) for the crate
//! and every feature but `sqlx-postgres` and `sqlx-mysql`, which need sqlx 0.9's, 1.94; CI
//! checks both.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

// Layers, bottom up. A module may import only from layers below its own (the layering
// test, `tests/layering.rs`, reads these markers and checks every `crate::` path in src/).
// layer: primitives
mod locks;
// layer: leaves
mod background;
mod error;
pub mod load;
mod replay;
mod rng;
#[cfg(test)]
mod stats;
#[cfg(feature = "metrics")]
pub mod telemetry;
mod time;
// layer: endpoint
pub mod base_url;
pub mod dns;
mod endpoint;
// layer: policy
pub mod policy;
// layer: pool
mod pool;
// layer: drivers
mod discover;
pub mod health;
// layer: balance
mod balance;
// layer: above
pub mod replica;
pub mod retry;
pub mod sticky;
// layer: end

/// The README's examples, compiled and run as doc tests. Some use the optional features, so
/// they run with all of them on, as the README's test command (`--all-features`) has it.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "reqwest", feature = "sqlx-postgres"))]
pub struct ReadmeDoctests;

pub use background::{BoxFuture, DriverState};
pub use balance::{Balance, BalanceLayer, BalanceStats, Builder, ResponseFuture};
pub use endpoint::{EndpointStats, MAX_WEIGHT};
pub use error::{BoxError, Error};
pub use pool::{
    Discovered, EndpointSnapshot, EndpointState, Excluder, Exclusions, Locality,
    DEFAULT_OVERPROVISIONING,
};
