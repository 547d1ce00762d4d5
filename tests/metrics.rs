//! Metrics through the `metrics` facade, read back from `metrics-util`'s debugging recorder:
//! a balancer's counts, ejections and returns, a retry policy's decisions, a replica router's
//! routes and its lag monitor's gauges, under the names `telemetry` documents.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tower::{service_fn, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::RoundRobin;
use tower_lb::replica::{HttpMethods, Lag, LagMonitor, ReplicaRouter};
use tower_lb::retry::{RetryLayer, RetryPolicy};
use tower_lb::telemetry::Metrics;
use tower_lb::{Balance, BoxError};

/// Every metric the recorder holds, as `name{label=value,…}` → value (counters: what was
/// added since the last read).
fn read(snapshots: &Snapshotter) -> BTreeMap<String, DebugValue> {
    (snapshots.snapshot().into_vec().into_iter())
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

/// Runs `test` on a paused current-thread runtime with its own recorder, so that tests do
/// not see each other's metrics.
fn with_recorder(test: impl std::future::Future<Output = ()>) -> BTreeMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test)
    });
    read(&snapshots)
}

fn counter(metrics: &BTreeMap<String, DebugValue>, key: &str) -> u64 {
    match metrics.get(key) {
        Some(DebugValue::Counter(value)) => *value,
        other => panic!("{key}: {other:?} in {metrics:#?}"),
    }
}

fn gauge(metrics: &BTreeMap<String, DebugValue>, key: &str) -> f64 {
    match metrics.get(key) {
        Some(DebugValue::Gauge(value)) => value.into_inner(),
        other => panic!("{key}: {other:?} in {metrics:#?}"),
    }
}

#[test]
fn a_balancer_publishes_picks_failures_ejections_and_returns() {
    let (mut ejected, mut returned) = (BTreeMap::new(), BTreeMap::new());
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let down = std::sync::Arc::new(AtomicBool::new(true));
            let node = |name: &'static str, down: std::sync::Arc<AtomicBool>| {
                service_fn(move |()| {
                    let failing = name == "bad" && down.load(Relaxed);
                    async move {
                        match failing {
                            true => Err::<(), BoxError>("down".into()),
                            false => Ok(()),
                        }
                    }
                })
            };
            let lb = Balance::builder(RoundRobin::new())
                .outlier(Outlier::consecutive_failures(3))
                .endpoints([
                    ("good", node("good", down.clone())),
                    ("bad", node("bad", down.clone())),
                ])
                .metrics(Metrics::new("api").per_endpoint(true))
                .build()
                .unwrap();
            let calls = |n| {
                let lb = lb.clone();
                async move {
                    for _ in 0..n {
                        let _ = lb.clone().oneshot(()).await;
                        tokio::task::yield_now().await; // the health driver takes the outcome
                    }
                }
            };
            calls(100).await;
            tokio::time::sleep(Duration::from_millis(1500)).await; // a publish
            ejected = read(&snapshots);
            // It recovers; once its ejection is over, the probation call passes.
            down.store(false, Relaxed);
            tokio::time::sleep(Duration::from_secs(120)).await;
            calls(10).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            returned = read(&snapshots);
        })
    });
    let metrics = ejected;
    assert_eq!(counter(&metrics, "tower_lb_picks_total{pool=api}"), 100);
    assert_eq!(counter(&metrics, "tower_lb_failures_total{pool=api}"), 3);
    assert_eq!(
        counter(&metrics, "tower_lb_picks_total{endpoint=bad,pool=api}"),
        3,
        "ejected after 3 failures"
    );
    assert_eq!(
        counter(
            &metrics,
            "tower_lb_ejections_total{endpoint=bad,pool=api,reason=consecutive failures}"
        ),
        1
    );
    assert_eq!(
        gauge(&metrics, "tower_lb_endpoints{pool=api,state=eligible}"),
        1.0
    );
    assert_eq!(
        gauge(
            &metrics,
            "tower_lb_endpoints{pool=api,state=out_of_rotation}"
        ),
        1.0
    );
    assert_eq!(gauge(&metrics, "tower_lb_in_flight{pool=api}"), 0.0);
    assert_eq!(gauge(&metrics, "tower_lb_panic_mode{pool=api}"), 0.0);
    assert!(!metrics
        .keys()
        .any(|k| k.starts_with("tower_lb_returns_total")));

    let metrics = returned;
    assert_eq!(
        counter(&metrics, "tower_lb_returns_total{endpoint=bad,pool=api}"),
        1
    );
    // The debugging recorder hands out what was added since its last snapshot.
    assert_eq!(counter(&metrics, "tower_lb_picks_total{pool=api}"), 10);
    assert_eq!(
        gauge(&metrics, "tower_lb_endpoints{pool=api,state=eligible}"),
        2.0
    );
}

#[test]
fn a_retry_policy_publishes_retries_and_refusals() {
    let mut stats = None;
    let metrics = with_recorder(async {
        let node = |fails: bool| {
            service_fn(move |_: http::Request<()>| async move {
                match fails {
                    true => Err::<(), BoxError>("down".into()),
                    false => Ok(()),
                }
            })
        };
        let lb = Balance::builder(RoundRobin::new())
            .outlier(Outlier::disabled())
            .endpoints([("good", node(false)), ("bad", node(true))])
            .build()
            .unwrap();
        let retried = RetryLayer::new(RetryPolicy::new(2).metrics(Metrics::new("api")));
        let client = tower::Layer::layer(&retried, lb);
        for _ in 0..10 {
            client
                .clone()
                .oneshot(http::Request::new(()))
                .await
                .unwrap();
        }
        // A POST that failed may have been applied: not retried.
        let post = || http::Request::post("/").body(()).unwrap();
        let mut refused = 0;
        for _ in 0..4 {
            refused += usize::from(client.clone().oneshot(post()).await.is_err());
        }
        assert_eq!(refused, 2);
        stats = Some(client.stats());
    });
    let stats = stats.unwrap();
    assert!(stats.retries >= 5, "{stats:?}");
    assert_eq!(
        counter(&metrics, "tower_lb_retries_total{pool=api}"),
        stats.retries
    );
    assert_eq!(
        counter(
            &metrics,
            "tower_lb_retries_refused_total{pool=api,reason=not_safe}"
        ),
        2
    );
}

#[test]
fn a_router_publishes_routes_and_lag() {
    let metrics = with_recorder(async {
        let node = |role: &'static str| {
            service_fn(move |_: http::Request<()>| async move { Ok::<_, BoxError>(role) })
        };
        let primary = Balance::builder(RoundRobin::new())
            .endpoint("primary", node("primary"))
            .build()
            .unwrap();
        let replicas = Balance::builder(RoundRobin::new())
            .endpoints([("r1", node("replica")), ("r2", node("replica"))])
            .build()
            .unwrap();
        let lag = LagMonitor::new(|replica: &&str| {
            let lag = match *replica {
                "r1" => Lag::new(4096, Duration::from_millis(300)),
                _ => Lag::new(0, Duration::from_secs(9)), // idle: nothing to replay
            };
            async move { Ok::<_, BoxError>(lag) }
        })
        .max_lag(Duration::from_secs(5));
        let db = ReplicaRouter::builder(primary, replicas)
            .classify(HttpMethods)
            .read_your_writes(Duration::ZERO)
            .lag_monitor(lag)
            .metrics(Metrics::new("db").per_endpoint(true))
            .build();
        db.ready(Duration::from_secs(5)).await.unwrap();
        let get = || http::Request::new(());
        for _ in 0..6 {
            assert_eq!(db.clone().oneshot(get()).await.unwrap(), "replica");
        }
        let post = http::Request::post("/").body(()).unwrap();
        db.clone().oneshot(post).await.unwrap();
        db.replicas().exclude(&"r1", "test").unwrap();
        db.replicas().exclude(&"r2", "test").unwrap();
        assert_eq!(db.clone().oneshot(get()).await.unwrap(), "primary");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    let reads = |route: &str| {
        counter(
            &metrics,
            &format!("tower_lb_router_reads_total{{route={route},router=db}}"),
        )
    };
    assert_eq!(
        (reads("replica"), reads("fallback"), reads("pinned")),
        (6, 1, 0)
    );
    assert_eq!(
        counter(&metrics, "tower_lb_router_writes_total{router=db}"),
        1
    );
    assert_eq!(
        gauge(&metrics, "tower_lb_replica_lag_bytes{router=db}"),
        4096.0
    );
    assert_eq!(
        gauge(&metrics, "tower_lb_replica_lag_seconds{router=db}"),
        0.3
    );
    assert_eq!(
        gauge(
            &metrics,
            "tower_lb_replica_lag_seconds{replica=r2,router=db}"
        ),
        0.0
    );
    assert_eq!(
        gauge(&metrics, "tower_lb_replica_lag_bytes{replica=r1,router=db}"),
        4096.0
    );
}
