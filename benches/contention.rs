//! Throughput under contention: 64 tasks on a 2-worker tokio runtime send requests through
//! clones of one balancer, against tower's `p2c::Balance` (PendingRequests) behind a `Buffer`,
//! the way tower's balancer has to be shared. Reported as requests per second (criterion's
//! "thrpt"); compare within one run.
//!
//! Two ways to share: each task keeps its own clone and calls it (`ready().await` then
//! `call`), as a `Buffer` handle is used (every policy); or each request clones the shared
//! handle and `oneshot`s it, the common idiom in handlers (P2C).
//!
//! Two more anchors bound what peak-EWMA can reach here: `BothCandidates` does only what any
//! peak-EWMA P2C must, with none of its arithmetic.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::convert::Infallible;
use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{service_fn, Service, ServiceExt};
use tower_lb::load::{LatencyClock, PeakEwma};
use tower_lb::policy::{
    Candidates, ConsistentHash, LeastPending, Maglev, P2c, Pick, Policy, Random, RoundRobin,
    WeightedRoundRobin,
};
use tower_lb::sticky::key_fn;
use tower_lb::{Balance, EndpointStats};

const TASKS: u64 = 64;
const ENDPOINTS: usize = 16;
const PER_ITERATION: u64 = 64 * 100;

fn endpoint() -> impl Service<
    (),
    Response = (),
    Error = Infallible,
    Future = std::future::Ready<Result<(), Infallible>>,
> + Clone
       + Send
       + Sync {
    service_fn(|()| ready(Ok::<_, Infallible>(())))
}

/// Runs `iters × PER_ITERATION` requests from `TASKS` tasks sharing clones of `svc`; with
/// `clone_per_request`, every request goes through a fresh clone.
fn run<S>(rt: &tokio::runtime::Runtime, svc: S, iters: u64, clone_per_request: bool) -> Duration
where
    S: Service<()> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async move {
        let per_task = iters * PER_ITERATION / TASKS;
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        if clone_per_request {
                            svc.clone().oneshot(()).await.expect("no error");
                        } else {
                            svc.ready()
                                .await
                                .expect("ready")
                                .call(())
                                .await
                                .expect("no error");
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        start.elapsed()
    })
}

/// Not a policy, a floor for peak-EWMA: what every latency-aware P2C pick must do, and no
/// more. It reads both candidates' counters, where P2C on calls in flight skips the second
/// when the first is idle: a latency cost needs both, and under contention each is a cache
/// line the other core keeps writing. With `timed`, the balancer also times every call and
/// folds the sample into the endpoint's estimate, as for peak-EWMA. What it leaves out is
/// peak-EWMA's own arithmetic (the decay and the cost comparison).
#[derive(Debug, Clone)]
struct BothCandidates {
    timed: Option<PeakEwma>,
}

impl Policy for BothCandidates {
    type Table = ();

    fn table(&self, _: &[Arc<EndpointStats>]) {}

    fn latency(&self) -> Option<PeakEwma> {
        self.timed
    }
}

impl<Req> Pick<Req> for BothCandidates {
    fn pick(&self, _: &Req, _: &(), candidates: &Candidates<'_>) -> Option<usize> {
        // P2C's own draw: one 64-bit number, its halves the two distinct candidates.
        let n = candidates.len() as u64;
        let random = fastrand::u64(..);
        let first = (((random >> 32) * n) >> 32) as usize;
        let other = (((random & u64::from(u32::MAX)) * (n - 1)) >> 32) as usize;
        let second = if other >= first { other + 1 } else { other };
        let busier =
            |a: usize, b: usize| candidates.get(a).in_flight() > candidates.get(b).in_flight();
        Some(if busier(first, second) { second } else { first })
    }
}

fn bench_contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Timers on, as in an application: the health driver (outlier ejection) sleeps.
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("contention: 64 tasks, 2 workers, 16 endpoints");
    group
        .throughput(Throughput::Elements(PER_ITERATION))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);

    group.bench_function("tower p2c PendingRequests behind Buffer", |b| {
        let svc = rt.block_on(async {
            let discover = PendingRequestsDiscover::new(
                ServiceList::new((0..ENDPOINTS).map(|_| endpoint())),
                CompleteOnResponse::default(),
            );
            tower::buffer::Buffer::new(tower::balance::p2c::Balance::new(discover), 1024)
        });
        b.iter_custom(|iters| run(&rt, svc.clone(), iters, false))
    });
    macro_rules! per_task {
        ($name:expr, $policy:expr) => {{
            let lb = Balance::builder($policy)
                .endpoints((0..ENDPOINTS).map(|i| (i, endpoint())))
                .build()
                .expect("builds");
            group.bench_function(concat!("tower-lb ", $name, ", a clone per task"), |b| {
                b.iter_custom(|iters| run(&rt, lb.clone(), iters, false))
            });
            lb
        }};
    }
    let p2c = per_task!("p2c pending", P2c::new());
    group.bench_function("tower-lb p2c pending, a clone per request", |b| {
        b.iter_custom(|iters| run(&rt, p2c.clone(), iters, true))
    });
    per_task!("p2c peak-ewma", P2c::peak_ewma());
    per_task!(
        "p2c peak-ewma, TSC clock",
        P2c::peak_ewma_with(PeakEwma::default().clock(LatencyClock::Tsc))
    );
    per_task!(
        "floor for peak-ewma: both candidates read",
        BothCandidates { timed: None }
    );
    per_task!(
        "floor for peak-ewma: both candidates read, calls timed on the TSC",
        BothCandidates {
            timed: Some(PeakEwma::default().clock(LatencyClock::Tsc))
        }
    );
    per_task!("round robin", RoundRobin::new());
    per_task!("weighted round robin", WeightedRoundRobin::new());
    per_task!("random", Random::new());
    per_task!("least pending", LeastPending::new());
    // A new key for every request, as many users each with their own session.
    per_task!(
        "consistent hash",
        ConsistentHash::new(key_fn(|_: &()| Some(fastrand::u64(..))))
    );
    per_task!(
        "maglev",
        Maglev::new(key_fn(|_: &()| Some(fastrand::u64(..))))
    );
    group.finish();
}

criterion_group!(benches, bench_contention);
criterion_main!(benches);
