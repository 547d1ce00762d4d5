//! Health-aware pools: outlier ejection, probation, panic mode, HTTP 5xx classification.

#[path = "../examples/support/backend.rs"]
mod backend;
#[path = "support/switch.rs"]
mod switch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switch::Switch;
use tower::{service_fn, ServiceExt};
use tower_lb::health::{Outlier, ServerErrors};
use tower_lb::policy::RoundRobin;
use tower_lb::{Balance, DriverState, EndpointState, Error};

/// Lets the health task run (paused clock: no time passes).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_ejected_put_on_probation_and_restored() {
    let switches: Vec<Switch> = (0..4).map(|_| Switch::default()).collect();
    let lb = Balance::builder(RoundRobin::new())
        .endpoints(switches.iter().enumerate().map(|(i, s)| (i, s.service())))
        .outlier(
            Outlier::consecutive_failures(5)
                .jitter(0.0)
                .max_ejected_percent(25),
        )
        .build()
        .unwrap();
    switches[0].failing.store(true, Ordering::Relaxed);

    // Round robin sends endpoint 0 every 4th request: its 5th failure in a row ejects it.
    for _ in 0..20 {
        let _ = lb.clone().oneshot(()).await;
        settle().await;
    }
    assert_eq!(switches[0].calls(), 5);
    let ejected_at = tokio::time::Instant::now();
    assert_eq!(
        lb.snapshot()[0].state,
        EndpointState::Ejected {
            until: ejected_at + Duration::from_secs(30),
            ejections: 1
        }
    );
    for _ in 0..100 {
        lb.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(switches[0].calls(), 5, "no traffic while ejected");
    let first = &lb.snapshot()[0];
    assert_eq!(
        (first.ejections, first.last_ejection),
        (1, Some("consecutive failures"))
    );

    // After 30 s: probation, and exactly one request goes to it; it still fails.
    tokio::time::sleep(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(lb.snapshot()[0].state, EndpointState::Probation);
    for _ in 0..10 {
        let _ = lb.clone().oneshot(()).await;
        settle().await;
    }
    assert_eq!(switches[0].calls(), 6, "one probation request");
    assert!(
        matches!(
            lb.snapshot()[0].state,
            EndpointState::Ejected { ejections: 2, .. }
        ),
        "the failed probe ejects it again, for longer"
    );
    let second = &lb.snapshot()[0];
    assert_eq!(
        (second.ejections, second.last_ejection),
        (2, Some("probation request failed"))
    );

    // It recovers; after the second, 60 s ejection the probe succeeds and it is back.
    switches[0].failing.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    for _ in 0..40 {
        lb.clone().oneshot(()).await.unwrap();
        settle().await;
    }
    assert_eq!(lb.snapshot()[0].state, EndpointState::Healthy);
    assert_eq!(
        lb.snapshot()[0].ejections,
        2,
        "the history stays after the return"
    );
    assert!(
        switches[0].calls() >= 6 + 1 + 9,
        "back in rotation: {}",
        switches[0].calls()
    );
}

/// Sends `n` requests one after another, letting the health task run after each.
async fn send<S: tower::Service<()> + Clone>(lb: &S, n: usize) {
    for _ in 0..n {
        let _ = lb.clone().oneshot(()).await;
        settle().await;
    }
}

#[tokio::test(start_paused = true)]
async fn when_most_endpoints_are_unhealthy_panic_mode_uses_them_all() {
    let switches: Vec<Switch> = (0..5).map(|_| Switch::default()).collect();
    let lb = Balance::builder(RoundRobin::new())
        .endpoints(switches.iter().enumerate().map(|(i, s)| (i, s.service())))
        .outlier(Outlier::consecutive_failures(2).max_ejected_percent(100))
        .build()
        .unwrap();
    switches
        .iter()
        .for_each(|s| s.failing.store(true, Ordering::Relaxed));
    send(&lb, 50).await;
    // Three ejected leave 2 of 5 healthy (< 50 %): panic mode spreads load over all five.
    assert!(lb.in_panic_mode());
    assert_eq!(lb.panic_mode_entries(), 1);
    let before: Vec<usize> = switches.iter().map(Switch::calls).collect();
    for _ in 0..50 {
        let result = lb.clone().oneshot(()).await;
        let err = result.unwrap_err();
        assert!(
            err.is::<std::io::Error>(),
            "requests reach endpoints, no balancer error: {err}"
        );
    }
    for (s, before) in switches.iter().zip(before) {
        assert_eq!(
            s.calls() - before,
            10,
            "every endpoint takes its share in panic mode"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_panic_mode_an_all_unhealthy_pool_fails_fast() {
    let switches: Vec<Switch> = (0..2).map(|_| Switch::default()).collect();
    let lb = Balance::builder(RoundRobin::new())
        .endpoints(switches.iter().enumerate().map(|(i, s)| (i, s.service())))
        .outlier(Outlier::consecutive_failures(1).max_ejected_percent(100))
        .panic_threshold(0.0)
        .build()
        .unwrap();
    switches
        .iter()
        .for_each(|s| s.failing.store(true, Ordering::Relaxed));
    send(&lb, 4).await;
    let err = lb.clone().oneshot(()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::AllUnhealthy { endpoints: 2 })
    );
}

#[test]
fn health_built_outside_a_runtime_starts_on_the_first_call_inside_one() {
    // Explicit settings and the defaults alike: nothing is dropped.
    for explicit in [true, false] {
        let switches: Vec<Switch> = (0..3).map(|_| Switch::default()).collect();
        let mut builder = Balance::builder(RoundRobin::new());
        if explicit {
            builder = builder.outlier(Outlier::consecutive_failures(5));
        }
        let lb = builder
            .endpoints(switches.iter().enumerate().map(|(i, s)| (i, s.service())))
            .build()
            .expect("builds outside a runtime");
        assert_eq!(lb.stats().health_driver, DriverState::WaitingForRuntime);
        switches[1].failing.store(true, Ordering::Relaxed);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            send(&lb, 15).await;
            assert_eq!(lb.stats().health_driver, DriverState::Running);
            assert!(
                matches!(lb.snapshot()[1].state, EndpointState::Ejected { .. }),
                "explicit: {explicit}: {:?}",
                lb.snapshot()[1]
            );
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_500_is_ejected() {
    let backends = backend::start_many(3).await.unwrap();
    backends[1].set_failing(true);
    let client = reqwest::Client::new();
    let lb = Balance::builder(RoundRobin::new())
        .classify(ServerErrors)
        .endpoints(
            backends
                .iter()
                .map(|b| (b.name.clone(), backend::status_endpoint(&client, b.url()))),
        )
        .build()
        .unwrap();
    let mut server_errors = 0;
    for _ in 0..300 {
        let response = lb.clone().oneshot(()).await.unwrap();
        server_errors += usize::from(response.status().is_server_error());
    }
    // Five 500s in a row eject b1. The health task runs on the other worker, so a request
    // racing the ejection may still reach it.
    assert!(
        (5..=6).contains(&server_errors),
        "{server_errors} server errors"
    );
    assert!(matches!(
        lb.snapshot()[1].state,
        EndpointState::Ejected { .. }
    ));
    assert_eq!(backends[1].hits() as usize, server_errors);
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoints_share_from_ten_percent_to_full() {
    use tower_lb::health::SlowStart;
    use tower_lb::policy::WeightedRoundRobin;

    let endpoint = |i: usize| service_fn(move |()| async move { Ok::<_, std::io::Error>(i) });
    let lb = Balance::builder(WeightedRoundRobin::new())
        .slow_start(SlowStart::over(Duration::from_secs(10)))
        .endpoints((0..4).map(|i| (i, endpoint(i))))
        .build()
        .unwrap();
    // The first four start at full weight; the fifth joins later and ramps.
    lb.insert(4, endpoint(4));
    let share_of_fair = |picks: &[usize]| {
        let new = picks.iter().filter(|&&i| i == 4).count() as f64 / picks.len() as f64;
        new / 0.2 // its fair share is one fifth
    };
    let joined = tokio::time::Instant::now();
    let mut shares = Vec::new();
    for at in [0u64, 5, 11] {
        tokio::time::sleep_until(joined + Duration::from_secs(at)).await;
        settle().await;
        let mut picks = Vec::new();
        for _ in 0..4100 {
            picks.push(lb.clone().oneshot(()).await.unwrap());
        }
        shares.push(share_of_fair(&picks));
    }
    println!("new endpoint's share of its fair share at 0 s, 5 s, 11 s: {shares:.3?}");
    // Weight 1 against 10 × 4 others: 1/41 of picks, 12 % of a fair fifth.
    assert!((shares[0] - 0.122).abs() < 0.01, "{shares:?}");
    assert!(shares[1] > 0.5 && shares[1] < 0.8, "{shares:?}");
    assert!((shares[2] - 1.0).abs() < 0.01, "{shares:?}");
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_hangs_is_failed_by_the_check_timeout() {
    use tower_lb::health::{ActiveChecks, HttpCheck};

    let backends = backend::start_many(3).await.unwrap();
    let endpoint = |_: &backend::Backend| service_fn(|()| async { Ok::<_, std::io::Error>(()) });
    let lb = Balance::builder(RoundRobin::new())
        .endpoints(backends.iter().map(|b| (b.url(), endpoint(b))))
        .health_check(
            ActiveChecks::new(HttpCheck::get("/healthz"))
                .every(Duration::from_millis(20))
                .timeout(Duration::from_millis(50))
                .fall(3),
        )
        .build()
        .unwrap();
    backends[2].set_delay(Duration::from_secs(3600)); // hangs
    let hung = backends[2].url();
    let started = std::time::Instant::now();
    let state = || {
        lb.snapshot()
            .into_iter()
            .find(|e| e.key == hung)
            .unwrap()
            .state
    };
    while state() != EndpointState::Failing {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not failed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Three timed-out checks: at least 3 × 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    println!(
        "a hung backend was out of rotation after {:?}",
        started.elapsed()
    );

    let failing = lb.snapshot().into_iter().find(|e| e.key == hung).unwrap();
    assert_eq!(
        (failing.ejections, failing.last_ejection),
        (1, Some("health checks failing"))
    );

    // It answers again: two passed checks bring it back.
    backends[2].set_delay(Duration::ZERO);
    while state() != EndpointState::Healthy {
        assert!(started.elapsed() < Duration::from_secs(10), "not restored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failing_http_backends_put_the_pool_in_panic_mode() {
    let backends = backend::start_many(5).await.unwrap();
    for b in &backends {
        b.set_failing(true); // every backend answers 500
    }
    let client = reqwest::Client::new();
    let lb = Balance::builder(RoundRobin::new())
        .classify(ServerErrors)
        .outlier(Outlier::consecutive_failures(3).max_ejected_percent(100))
        .endpoints(
            backends
                .iter()
                .map(|b| (b.name.clone(), backend::status_endpoint(&client, b.url()))),
        )
        .build()
        .unwrap();
    for _ in 0..100 {
        lb.clone().oneshot(()).await.unwrap();
    }
    assert!(lb.in_panic_mode(), "{:?}", lb.snapshot());
    let before: Vec<u64> = backends.iter().map(|b| b.hits()).collect();
    for _ in 0..500 {
        // Answered by a backend (a 500), not refused by the balancer.
        let response = lb.clone().oneshot(()).await.unwrap();
        assert!(response.status().is_server_error());
    }
    for (b, before) in backends.iter().zip(before) {
        let share = (b.hits() - before) as f64 / 500.0;
        assert!(
            (0.15..=0.25).contains(&share),
            "{} got {:.0} % in panic mode",
            b.name,
            share * 100.0
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_health_task_stops_with_the_last_handle() {
    use tower_lb::health::{check_fn, ActiveChecks};

    let checks = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&checks);
    let lb = Balance::builder(RoundRobin::new())
        .health_check(
            ActiveChecks::new(check_fn(move |_: &usize| {
                counted.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, std::io::Error>(()) }
            }))
            .every(Duration::from_secs(1)),
        )
        .endpoints((0..2).map(|i| (i, Switch::default().service())))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let while_alive = checks.load(Ordering::Relaxed);
    assert!(
        (16..=24).contains(&while_alive),
        "{while_alive} checks in 10 s for 2 endpoints"
    );

    drop(lb);
    settle().await;
    let at_drop = checks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        checks.load(Ordering::Relaxed),
        at_drop,
        "no checks after the balancer is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_panics_fails_and_runs_again() {
    use tower_lb::health::{check_fn, ActiveChecks};

    let checks = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counted = Arc::clone(&checks);
    let lb = Balance::builder(RoundRobin::new())
        .health_check(
            ActiveChecks::new(check_fn(move |&key: &usize| {
                let run = counted[key].fetch_add(1, Ordering::Relaxed);
                // Endpoint 0's check panics, on every other run before its future exists.
                assert!(
                    key != 0 || run % 2 == 1,
                    "check {run} of endpoint 0 cannot start"
                );
                async move {
                    assert_ne!(key, 0, "check {run} of endpoint 0 broke");
                    Ok::<_, std::io::Error>(())
                }
            }))
            .every(Duration::from_secs(1)),
        )
        .endpoints((0..2).map(|i| (i, Switch::default().service())))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let snapshot = lb.snapshot();
    assert_eq!(
        snapshot[0].state,
        EndpointState::Failing,
        "panics count as failures"
    );
    assert_eq!(snapshot[1].state, EndpointState::Healthy);
    let runs = [0, 1].map(|i| checks[i].load(Ordering::Relaxed));
    assert!(
        runs.iter().all(|runs| (8..=12).contains(runs)),
        "{runs:?} checks in 10 s: a panicking check is run again like any other"
    );
    assert_eq!(lb.stats().health_driver, DriverState::Running);
}

/// An endpoint answering 429 with `Retry-After: 5` is held out for 5 s, then comes back
/// through probation; a 429 without it holds nothing (it is the client's business).
#[tokio::test(start_paused = true)]
async fn retry_after_holds_an_endpoint_out_for_as_long_as_it_asks() {
    let busy = Arc::new(AtomicUsize::new(0)); // 0: serves; 1: 429 alone; 2: 429 + Retry-After
    let node = |name: &'static str, busy: Arc<AtomicUsize>| {
        service_fn(move |()| {
            let mut answer = http::Response::builder();
            match (name, busy.load(Ordering::Relaxed)) {
                ("busy", 1) => answer = answer.status(429),
                ("busy", 2) => answer = answer.status(429).header("retry-after", "5"),
                _ => {}
            }
            async move { Ok::<_, std::io::Error>(answer.body(name).unwrap()) }
        })
    };
    let lb = Balance::builder(RoundRobin::new())
        .classify(ServerErrors)
        .endpoints(["busy", "idle"].map(|name| (name, node(name, busy.clone()))))
        .build()
        .unwrap();
    let state = || lb.snapshot()[0].state;

    busy.store(1, Ordering::Relaxed);
    send(&lb, 10).await;
    settle().await;
    assert_eq!(state(), EndpointState::Healthy, "a 429 alone holds nothing");

    busy.store(2, Ordering::Relaxed);
    send(&lb, 2).await;
    settle().await;
    assert!(
        matches!(state(), EndpointState::Ejected { .. }),
        "{:?}",
        state()
    );
    assert_eq!(lb.snapshot()[0].last_ejection, Some("Retry-After"));
    busy.store(0, Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(*lb.clone().oneshot(()).await.unwrap().body(), "idle");
    }

    tokio::time::sleep(Duration::from_millis(4900)).await;
    settle().await;
    assert!(
        matches!(state(), EndpointState::Ejected { .. }),
        "still asked to wait"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle().await;
    send(&lb, 4).await; // the probation call passes
    settle().await;
    assert_eq!(state(), EndpointState::Healthy);
}
