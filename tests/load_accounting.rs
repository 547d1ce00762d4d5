//! Drop-safe load accounting, and peak-EWMA steering on a paused clock.

use futures::FutureExt;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{service_fn, ServiceExt};
use tower_lb::policy::{LeastPending, P2c, RoundRobin};
use tower_lb::{Balance, EndpointSnapshot};

fn total_in_flight<K>(snapshot: &[EndpointSnapshot<K>]) -> usize {
    snapshot.iter().map(|e| e.in_flight).sum()
}

#[tokio::test]
async fn ten_thousand_dropped_futures_release_every_in_flight_count() {
    let never = |_: u8| service_fn(|()| futures::future::pending::<Result<(), Infallible>>());
    let lb = Balance::builder(LeastPending::new().with_rng(1))
        .endpoints((0..4).map(|k| (k, never(k))))
        .build()
        .unwrap();

    let mut futures: Vec<_> = (0..10_000).map(|_| lb.clone().oneshot(())).collect();
    // Poll each once, so every endpoint call is really under way, then drop them all.
    for f in &mut futures {
        assert!(f.now_or_never_ref().is_none());
    }
    assert_eq!(total_in_flight(&lb.snapshot()), 10_000);
    let per_endpoint: Vec<usize> = lb.snapshot().iter().map(|e| e.in_flight).collect();
    assert_eq!(
        per_endpoint, [2500; 4],
        "least pending spreads the held calls evenly"
    );

    drop(futures);
    assert_eq!(total_in_flight(&lb.snapshot()), 0);
}

trait PollOnce {
    fn now_or_never_ref(&mut self) -> Option<()>;
}

impl<F: std::future::Future + Unpin> PollOnce for F {
    fn now_or_never_ref(&mut self) -> Option<()> {
        (&mut *self).now_or_never().map(|_| ())
    }
}

#[tokio::test]
async fn timed_out_calls_release_their_count() {
    let hang = service_fn(|()| futures::future::pending::<Result<(), Infallible>>());
    let lb = Balance::builder(RoundRobin::new())
        .endpoint(1, hang)
        .build()
        .unwrap();
    let timed = tokio::time::timeout(Duration::from_millis(20), lb.clone().oneshot(())).await;
    assert!(timed.is_err());
    assert_eq!(lb.snapshot()[0].in_flight, 0);
    assert_eq!(
        lb.snapshot()[0].failures,
        0,
        "a cancelled call is not a failure"
    );
}

/// Three endpoints at 10 ms; endpoint 0 jumps to 100 ms for a while, then recovers. With
/// peak-EWMA P2C it must lose its traffic during the slowdown and win it back after.
#[tokio::test(start_paused = true)]
async fn peak_ewma_moves_traffic_off_a_slow_endpoint_and_back() {
    let latencies: Arc<[AtomicU64; 3]> = Arc::new([10, 10, 10].map(AtomicU64::new));
    let endpoint = |i: usize| {
        let latencies = Arc::clone(&latencies);
        service_fn(move |()| {
            let ms = latencies[i].load(Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(i)
            }
        })
    };
    let lb = Balance::builder(P2c::peak_ewma().with_rng(3))
        .endpoints((0..3).map(|i| (i, endpoint(i))))
        .build()
        .unwrap();

    // Picks per endpoint over `duration` of virtual time with 6 callers in a closed loop.
    let window = |duration: Duration| {
        let lb = lb.clone();
        async move {
            let before: Vec<u64> = lb.snapshot().iter().map(|e| e.picks).collect();
            let deadline = tokio::time::Instant::now() + duration;
            let callers = (0..6).map(|_| {
                let lb = lb.clone();
                async move {
                    while tokio::time::Instant::now() < deadline {
                        lb.clone().oneshot(()).await.unwrap();
                    }
                }
            });
            futures::future::join_all(callers).await;
            let after: Vec<u64> = lb.snapshot().iter().map(|e| e.picks).collect();
            let counts: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            let total: u64 = counts.iter().sum();
            counts
                .iter()
                .map(|&c| c as f64 / total as f64)
                .collect::<Vec<f64>>()
        }
    };

    let steady = window(Duration::from_secs(5)).await;
    assert!(
        steady[0] > 0.25,
        "an equal endpoint gets its share: {steady:?}"
    );

    latencies[0].store(100, Ordering::Relaxed);
    let _detect = window(Duration::from_secs(1)).await;
    let slow = window(Duration::from_secs(5)).await;
    assert!(
        slow[0] < 0.05,
        "the slow endpoint loses its traffic: {slow:?}"
    );

    latencies[0].store(10, Ordering::Relaxed);
    let _recover = window(Duration::from_secs(30)).await;
    let recovered = window(Duration::from_secs(5)).await;
    assert!(
        recovered[0] > 0.25,
        "the recovered endpoint wins its share back: {recovered:?}"
    );
}
