//! Every numeric and `Duration` setting at its extremes: no panic (in the caller's task or in
//! a background driver), no hang, and ejection and return still happen whenever the settings
//! allow them. Paused tokio time, so an hour of health timers costs milliseconds.

use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};
use tower_lb::health::{check_fn, ActiveChecks, Outlier, SlowStart};
use tower_lb::load::PeakEwma;
use tower_lb::policy::{P2c, RoundRobin};
use tower_lb::retry::{RetryErrors, RetryPolicy};
use tower_lb::{Balance, DriverState, EndpointState};

fn duration() -> impl Strategy<Value = Duration> {
    prop::sample::select(vec![
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_millis(20),
        Duration::from_secs(1),
        Duration::from_secs(30),
        Duration::from_secs(3600),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ])
}

fn count() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0, 1, 2, 5, 1000, u32::MAX])
}

fn fraction() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![
        0.0,
        0.1,
        0.5,
        1.0,
        -1.0,
        1e300,
        f64::NAN,
        f64::INFINITY,
    ])
}

#[derive(Debug, Clone)]
struct Checks {
    every: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
    jitter: f64,
}

#[derive(Debug, Clone)]
struct Config {
    consecutive_failures: u32,
    base_ejection: Duration,
    max_ejection: Duration,
    max_ejected_percent: u32,
    jitter: f64,
    interval: Duration,
    checks: Option<Checks>,
    slow_start: Option<Duration>,
    panic_threshold: f64,
    /// `None`: round robin; `Some`: P2C on peak EWMA with these settings.
    ewma: Option<(Duration, Duration, Duration)>,
}

fn config() -> impl Strategy<Value = Config> {
    let checks = (duration(), duration(), count(), count(), fraction()).prop_map(
        |(every, timeout, rise, fall, jitter)| Checks {
            every,
            timeout,
            rise,
            fall,
            jitter,
        },
    );
    (
        (
            count(),
            duration(),
            duration(),
            count(),
            fraction(),
            duration(),
        ),
        prop::option::of(checks),
        prop::option::of(duration()),
        fraction(),
        prop::option::of((duration(), duration(), duration())),
    )
        .prop_map(
            |(
                (consecutive_failures, base_ejection, max_ejection, percent, jitter, interval),
                checks,
                slow_start,
                panic_threshold,
                ewma,
            )| Config {
                consecutive_failures,
                base_ejection,
                max_ejection,
                max_ejected_percent: percent,
                jitter,
                interval,
                checks,
                slow_start,
                panic_threshold,
                ewma,
            },
        )
}

/// Rounds of one call per endpoint, then a pause; 4 endpoints, endpoint 0 failing while
/// `failing` is set (its calls and its health checks).
const ENDPOINTS: usize = 4;
const FAILING_ROUNDS: u32 = 40;
const FAILING_PAUSE: Duration = Duration::from_millis(50);
const RECOVERY_ROUNDS: u32 = 30;
const RECOVERY_PAUSE: Duration = Duration::from_secs(1);

type Probe<T> = Box<dyn Fn() -> T>;
type Caller = Box<dyn Fn(u32, Duration) -> futures::future::LocalBoxFuture<'static, ()>>;

/// Endpoint 0's state, the health driver's state, and rounds of calls, for either policy.
fn handles<S, P>(lb: Balance<usize, S, P>) -> (Probe<EndpointState>, Probe<DriverState>, Caller)
where
    S: Clone + 'static,
    P: tower_lb::policy::Policy,
    Balance<usize, S, P>: tower::Service<(), Response = ()> + Clone + 'static,
{
    let (a, b, c) = (lb.clone(), lb.clone(), lb);
    (
        Box::new(move || a.snapshot()[0].state),
        Box::new(move || b.stats().health_driver),
        Box::new(move |rounds, pause| {
            let lb = c.clone();
            Box::pin(async move { run(&lb, rounds, pause).await })
        }),
    )
}

async fn run<S>(lb: &S, rounds: u32, pause: Duration)
where
    S: tower::Service<(), Response = ()> + Clone,
{
    for _ in 0..rounds {
        for _ in 0..ENDPOINTS {
            let _ = lb.clone().oneshot(()).await;
        }
        tokio::time::sleep(pause).await;
    }
}

fn case(config: Config) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let endpoint = |i: usize| {
        let failing = Arc::clone(&failing);
        service_fn(move |()| {
            let fail = i == 0 && failing.load(Ordering::Relaxed);
            async move {
                match fail {
                    true => Err(std::io::Error::other("down")),
                    false => Ok(()),
                }
            }
        })
    };
    let outlier = Outlier::consecutive_failures(config.consecutive_failures)
        .base_ejection(config.base_ejection)
        .max_ejection(config.max_ejection)
        .max_ejected_percent(config.max_ejected_percent)
        .jitter(config.jitter)
        .interval(config.interval);
    macro_rules! build {
        ($policy:expr) => {{
            let mut builder = Balance::builder($policy)
                .outlier(outlier.clone())
                .panic_threshold(config.panic_threshold)
                .endpoints((0..ENDPOINTS).map(|i| (i, endpoint(i))));
            if let Some(c) = &config.checks {
                let failing = Arc::clone(&failing);
                let check = check_fn(move |key: &usize| {
                    let fail = *key == 0 && failing.load(Ordering::Relaxed);
                    async move {
                        match fail {
                            true => Err(std::io::Error::other("check failed")),
                            false => Ok(()),
                        }
                    }
                });
                builder = builder.health_check(
                    ActiveChecks::new(check)
                        .every(c.every)
                        .timeout(c.timeout)
                        .rise(c.rise)
                        .fall(c.fall)
                        .jitter(c.jitter),
                );
            }
            if let Some(window) = config.slow_start {
                builder = builder.slow_start(SlowStart::over(window));
            }
            builder.build().expect("any setting builds")
        }};
    }
    runtime.block_on(async {
        let round_robin = config.ewma.is_none();
        let (state, stats, call) = match config.ewma {
            None => handles(build!(RoundRobin::new().with_rng(1))),
            Some((decay, default_rtt, penalty)) => {
                let ewma = PeakEwma::default()
                    .decay(decay)
                    .default_rtt(default_rtt)
                    .failure_penalty(penalty);
                handles(build!(P2c::peak_ewma_with(ewma).with_rng(1)))
            }
        };

        // Phase 1: endpoint 0 fails.
        failing.store(true, Ordering::Relaxed);
        let started = Instant::now();
        call(FAILING_ROUNDS, FAILING_PAUSE).await;
        let failing_for = started.elapsed();
        prop_assert_eq!(stats(), DriverState::Running, "the health driver survives");
        let passive = round_robin && config.consecutive_failures.max(1) <= FAILING_ROUNDS;
        let active = config.checks.as_ref().is_some_and(|c| {
            let every = c.every.max(Duration::from_millis(1));
            c.fall <= 5 && every.saturating_mul(2 * (c.fall + 1)) <= failing_for
        });
        let after_failures = state();
        if passive || active {
            prop_assert_ne!(
                after_failures,
                EndpointState::Healthy,
                "ejection must happen"
            );
        }

        // Phase 2: it recovers.
        failing.store(false, Ordering::Relaxed);
        let recovering = Instant::now();
        let budget = RECOVERY_PAUSE * (RECOVERY_ROUNDS - 2);
        let checks_within = |times: u32| {
            config.checks.as_ref().is_some_and(|c| {
                let every = c.every.max(Duration::from_millis(1));
                times <= 5 && every.saturating_mul(2 * (times + 1)) <= budget
            })
        };
        let must_return = match after_failures {
            EndpointState::Healthy | EndpointState::Probation => true,
            EndpointState::Ejected { until, .. } => {
                until.saturating_duration_since(recovering) < budget || checks_within(1)
            }
            EndpointState::Failing => checks_within(config.checks.as_ref().map_or(0, |c| c.rise)),
            _ => false,
        };
        call(RECOVERY_ROUNDS, RECOVERY_PAUSE).await;
        prop_assert_eq!(stats(), DriverState::Running, "the health driver survives");
        if must_return {
            prop_assert_eq!(state(), EndpointState::Healthy, "return must happen");
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_setting_at_its_extremes_is_safe_and_health_still_works(config in config()) {
        case(config)?;
    }

    /// Retry backoffs and attempts at their extremes: no panic in the caller's task.
    #[test]
    fn retry_settings_at_their_extremes_do_not_panic(
        min in duration(),
        max in duration(),
        attempts in prop::sample::select(vec![0usize, 1, 3, usize::MAX]),
        ttl in duration(),
        floor in count(),
        percent in prop::sample::select(vec![0.0f32, 0.2, 1000.0, -1.0, f32::NAN, f32::INFINITY]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let mut policy = RetryPolicy::new(attempts)
                .retry_if(RetryErrors)
                .backoff(min, max)
                .budget(ttl, floor, percent);
            for _ in 0..64 {
                let mut failed: Result<(), ()> = Err(());
                match tower::retry::Policy::<(), (), ()>::retry(&mut policy, &mut (), &mut failed) {
                    // The backoff is a sleep, however long: creating it must not panic.
                    Some(backoff) => drop(backoff),
                    None => break,
                }
            }
        });
    }
}

/// Found by the sweep: in panic mode, an endpoint on probation waited for a latency-aware
/// policy to choose it, which a failure penalty can postpone indefinitely.
#[test]
fn probation_in_panic_mode_gets_its_probe() {
    case(Config {
        consecutive_failures: 0,
        base_ejection: Duration::ZERO,
        max_ejection: Duration::ZERO,
        max_ejected_percent: 0,
        jitter: 0.0,
        interval: Duration::ZERO,
        checks: None,
        slow_start: None,
        panic_threshold: 1e300,
        ewma: Some((
            Duration::from_secs(30),
            Duration::ZERO,
            Duration::from_nanos(1),
        )),
    })
    .unwrap();
}
