//! Throughput under contention: 64 tasks on a 2-worker tokio runtime send requests through
//! clones of one balancer, against tower's `p2c::Balance` (PendingRequests) behind a `Buffer`,
//! the way tower's balancer has to be shared. Reported as requests per second (criterion's
//! "thrpt"); compare the two within one run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::convert::Infallible;
use std::future::ready;
use std::time::{Duration, Instant};
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{service_fn, Service, ServiceExt};
use tower_lb::policy::{P2c, RoundRobin};
use tower_lb::Balance;

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

/// Runs `iters × PER_ITERATION` requests from `TASKS` tasks sharing clones of `svc`.
fn run<S>(rt: &tokio::runtime::Runtime, svc: S, iters: u64) -> Duration
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
                let svc = svc.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        svc.clone().oneshot(()).await.expect("no error");
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

fn bench_contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        b.iter_custom(|iters| run(&rt, svc.clone(), iters))
    });
    group.bench_function("tower-lb p2c pending (shared clones)", |b| {
        let lb = Balance::builder(P2c::new())
            .endpoints((0..ENDPOINTS).map(|i| (i, endpoint())))
            .build()
            .expect("builds");
        b.iter_custom(|iters| run(&rt, lb.clone(), iters))
    });
    group.bench_function("tower-lb round robin (shared clones)", |b| {
        let lb = Balance::builder(RoundRobin::new())
            .endpoints((0..ENDPOINTS).map(|i| (i, endpoint())))
            .build()
            .expect("builds");
        b.iter_custom(|iters| run(&rt, lb.clone(), iters))
    });
    group.finish();
}

criterion_group!(benches, bench_contention);
criterion_main!(benches);
