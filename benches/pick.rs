//! Pick overhead per request, against the anchors in the same run: a bare `service_fn` call
//! (the floor) and tower's `p2c::Balance` with `PendingRequests` and with `PeakEwma`.
//!
//! Endpoints are trivial and always ready, so what is measured is the balancer itself: pick,
//! load accounting and the response future. Run with `cargo bench --bench pick`; compare the
//! ratios within one run, not the times across runs (the machine is shared and noisy).

use criterion::{criterion_group, criterion_main, Criterion};
use futures::FutureExt;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::Duration;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::util::ServiceFn;
use tower::{service_fn, Service, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::load::{LatencyClock, PeakEwma};
use tower_lb::policy::{
    ConsistentHash, LeastPending, Maglev, P2c, Pick, Random, RoundRobin, WeightedRoundRobin,
};
use tower_lb::replica::{Access, ReplicaRouter};
use tower_lb::sticky::{key_fn, KeyFn};
use tower_lb::Balance;

/// Requests are numbers, so the consistent-hash policy has a different key each time.
type Trivial = ServiceFn<fn(u64) -> Ready<Result<(), Infallible>>>;

fn trivial() -> Trivial {
    service_fn(|_| ready(Ok(())))
}

/// One request through `svc`: readiness, call, and the response future run to completion.
fn one_request<S: Service<u64>>(svc: &mut S, request: &mut u64)
where
    S::Error: std::fmt::Debug,
{
    *request = request.wrapping_add(1);
    svc.ready()
        .now_or_never()
        .expect("ready")
        .expect("no error");
    svc.call(*request)
        .now_or_never()
        .expect("complete")
        .expect("no error");
}

/// Hashes each request's number.
type ByRequest = ConsistentHash<KeyFn<fn(&u64) -> Option<u64>>>;

fn by_request() -> ByRequest {
    ConsistentHash::new(key_fn(
        (|request: &u64| Some(*request)) as fn(&u64) -> Option<u64>,
    ))
}

/// Hashes each request's number through a Maglev table.
type MaglevByRequest = Maglev<KeyFn<fn(&u64) -> Option<u64>>>;

fn maglev_by_request() -> MaglevByRequest {
    Maglev::new(key_fn(
        (|request: &u64| Some(*request)) as fn(&u64) -> Option<u64>,
    ))
}

/// A balancer with health off, like tower's p2c beside it: the pick is what is measured (the
/// health path is `bench_health`'s). With outlier detection on, a balancer built outside a
/// runtime has a driver waiting for one, and every call outside a runtime looks for one
/// (`Handle::try_current`, about 48 instructions); inside a runtime that check is one load.
fn ours<P: Pick<u64>>(policy: P, n: usize) -> Balance<usize, Trivial, P> {
    weighted(policy, n, Outlier::disabled())
}

/// `n` trivial endpoints of weights 1..=4 with the given outlier detection.
fn weighted<P: Pick<u64>>(policy: P, n: usize, outlier: Outlier) -> Balance<usize, Trivial, P> {
    let mut builder = Balance::builder(policy).outlier(outlier);
    for i in 0..n {
        // Weights 1..=4, so the weighted policies have real work to do.
        builder = builder
            .weighted_endpoint(i, trivial(), (i % 4 + 1) as u32)
            .expect("valid weight");
    }
    builder.build().expect("builds")
}

fn bench_pick(c: &mut Criterion) {
    for n in [2usize, 8, 64, 512, 4096] {
        let mut group = c.benchmark_group(format!("pick/n={n}"));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);

        group.bench_function("floor (bare service_fn)", |b| {
            let mut svc = trivial();
            {
                let mut request = 0;
                b.iter(|| one_request(&mut svc, &mut request))
            }
        });
        group.bench_function("tower p2c PendingRequests", |b| {
            let discover = PendingRequestsDiscover::new(
                ServiceList::new((0..n).map(|_| trivial())),
                CompleteOnResponse::default(),
            );
            let mut svc = tower::balance::p2c::Balance::new(discover);
            {
                let mut request = 0;
                b.iter(|| one_request(&mut svc, &mut request))
            }
        });
        group.bench_function("tower p2c PeakEwma", |b| {
            let discover = PeakEwmaDiscover::new::<u64>(
                ServiceList::new((0..n).map(|_| trivial())),
                Duration::from_millis(30),
                Duration::from_secs(10),
                CompleteOnResponse::default(),
            );
            let mut svc = tower::balance::p2c::Balance::new(discover);
            {
                let mut request = 0;
                b.iter(|| one_request(&mut svc, &mut request))
            }
        });

        macro_rules! policy {
            ($name:literal, $policy:expr) => {
                group.bench_function($name, |b| {
                    let mut svc = ours($policy, n);
                    {
                        let mut request = 0;
                        b.iter(|| one_request(&mut svc, &mut request))
                    }
                });
            };
        }
        policy!("tower-lb round robin", RoundRobin::new());
        policy!("tower-lb weighted round robin", WeightedRoundRobin::new());
        policy!("tower-lb random (weighted)", Random::new());
        policy!("tower-lb p2c pending", P2c::new());
        policy!("tower-lb p2c peak-ewma", P2c::peak_ewma());
        policy!(
            "tower-lb p2c peak-ewma, TSC clock",
            P2c::peak_ewma_with(PeakEwma::default().clock(LatencyClock::Tsc))
        );
        group.bench_function("tower-lb p2c pending, clone per call", |b| {
            let svc = ours(P2c::new(), n);
            let mut request = 0;
            b.iter(|| one_request(&mut svc.clone(), &mut request))
        });
        policy!("tower-lb consistent hash", by_request());
        policy!("tower-lb maglev", maglev_by_request());
        // These endpoints are idle, so every pick is the weighted draw; a pick that draws a
        // busy endpoint scans the pool, O(n) (`least pending, busy` below).
        policy!("tower-lb least pending", LeastPending::new());
        group.bench_function("tower-lb least pending, busy", |b| {
            let mut svc = ours(LeastPending::new(), n);
            // One call held on every endpoint (least pending spreads them one each).
            let held: Vec<_> = (0..n as u64)
                .map(|request| {
                    svc.ready()
                        .now_or_never()
                        .expect("ready")
                        .expect("no error");
                    svc.call(request)
                })
                .collect();
            let mut request = 0;
            b.iter(|| one_request(&mut svc, &mut request));
            drop(held);
        });
        group.finish();
    }
}

/// Membership and health change cost: publishing a new snapshot (and its policy table) after
/// an insert and a remove, and after an exclusion and a readmission (the same path as an
/// ejection by outlier detection and a return). Each iteration makes two changes.
fn bench_membership(c: &mut Criterion) {
    let mut group = c.benchmark_group("membership");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    macro_rules! changes {
        ($n:expr, $name:expr, $policy:expr) => {{
            let lb = ours($policy, $n);
            group.bench_function(format!("insert+remove at n={}, {}", $n, $name), |b| {
                b.iter(|| {
                    lb.insert(usize::MAX, trivial());
                    lb.remove(&usize::MAX).expect("present");
                })
            });
            group.bench_function(format!("exclude+readmit at n={}, {}", $n, $name), |b| {
                b.iter(|| {
                    lb.exclude(&0, "bench").expect("present");
                    lb.readmit(&0).expect("present");
                })
            });
        }};
    }
    for n in [64usize, 512, 4096] {
        changes!(n, "round robin", RoundRobin::new());
        changes!(n, "weighted round robin", WeightedRoundRobin::new());
        changes!(n, "random (weighted)", Random::new());
        changes!(n, "least pending", LeastPending::new());
        changes!(n, "P2C pending", P2c::new());
        changes!(n, "P2C peak-EWMA", P2c::peak_ewma());
        changes!(n, "consistent hash", by_request());
        changes!(n, "maglev", maglev_by_request());
    }
    group.finish();
}

/// The cost of health checking on the request path: P2C over 64 endpoints with outlier
/// detection off, and on (inside a runtime: its driver task is spawned but the request path
/// is what is measured).
fn bench_health(c: &mut Criterion) {
    let mut group = c.benchmark_group("health/n=64");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group.bench_function("p2c, health off", |b| {
        let mut svc = ours(P2c::new(), 64);
        let mut request = 0;
        b.iter(|| one_request(&mut svc, &mut request))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    group.bench_function("p2c, outlier detection on", |b| {
        let _inside = runtime.enter();
        let mut svc = weighted(P2c::new(), 64, Outlier::default());
        let mut request = 0;
        b.iter(|| one_request(&mut svc, &mut request))
    });
    group.finish();
}

/// The replica router's own cost: classify, session check and pick, for a read and for a
/// write, against a plain `Balance` P2C pick over the same two endpoints. The classifier is a
/// closure (intent known), so the SQL classifier's cost (`benches/sql.rs`) is not in it.
fn bench_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route/n=2");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group.bench_function("plain balance p2c pending", |b| {
        let mut svc = ours(P2c::new(), 2);
        let mut request = 0;
        b.iter(|| one_request(&mut svc, &mut request))
    });
    for (name, access) in [
        ("router read", Access::Read),
        ("router write", Access::Write),
    ] {
        group.bench_function(name, |b| {
            let classify: fn(&u64) -> Access = match access {
                Access::Read => |_| Access::Read,
                Access::Write => |_| Access::Write,
            };
            let mut svc = ReplicaRouter::builder(ours(P2c::new(), 2), ours(P2c::new(), 2))
                .classify(classify)
                .build();
            let mut request = 0;
            b.iter(|| one_request(&mut svc, &mut request))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_pick,
    bench_membership,
    bench_health,
    bench_route
);
criterion_main!(benches);
