//! The replica router's monitors over in-process pools: the lag monitor excludes and
//! readmits replicas, the role monitor moves writes to the primary it finds (and at once when
//! asked to re-probe), writes fail over between primaries, and no exclusion owner lifts
//! another's.

#[path = "support/router_nodes.rs"]
mod router_nodes;
use router_nodes::{node, request, Request};

use std::time::Duration;
use tower::{service_fn, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::RoundRobin;
use tower_lb::replica::{HttpMethods, ReplicaRouter};
use tower_lb::{Balance, Error};

#[test]
fn the_lag_monitor_excludes_and_readmits_through_the_replica_pool() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tower_lb::replica::{Lag, LagMonitor};
    use tower_lb::DriverState;

    // Built outside a runtime: the monitor waits for the first call made inside one.
    let behind = Arc::new(AtomicU64::new(0));
    let probe = {
        let behind = Arc::clone(&behind);
        move |replica: &&'static str| {
            let bytes = behind.load(Ordering::Relaxed);
            let replica = *replica;
            async move {
                match (replica, bytes) {
                    ("replica-a", u64::MAX) => Err("unreachable"),
                    ("replica-a", bytes) => Ok(Lag::new(bytes, Duration::from_secs(5))),
                    _ => Ok(Lag::new(0, Duration::ZERO)),
                }
            }
        }
    };
    let db = {
        let primary = Balance::builder(RoundRobin::new())
            .endpoint("primary", node("primary"))
            .build()
            .unwrap();
        let replicas = Balance::builder(RoundRobin::new())
            .endpoints([
                ("replica-a", node("replica-a")),
                ("replica-b", node("replica-b")),
            ])
            .build()
            .unwrap();
        ReplicaRouter::builder(primary, replicas)
            .classify(HttpMethods)
            .lag_monitor(LagMonitor::new(probe).every(Duration::from_secs(1)))
            .build()
    };
    assert_eq!(db.stats().lag_monitor, DriverState::WaitingForRuntime);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        db.clone().oneshot(request("GET", "a")).await.unwrap();
        assert_eq!(db.stats().lag_monitor, DriverState::Running);
        let excluded = || db.replicas().snapshot()[0].excluded;
        let tick = || tokio::time::sleep(Duration::from_millis(1001));

        behind.store(1, Ordering::Relaxed); // behind, and 5 s without replay
        tick().await;
        assert_eq!(excluded(), Some("replica lagging"));
        for _ in 0..4 {
            let read = db.clone().oneshot(request("GET", "a")).await.unwrap();
            assert_eq!(read, "replica-b", "the lagging replica takes no reads");
        }
        behind.store(u64::MAX, Ordering::Relaxed);
        tick().await;
        assert_eq!(excluded(), Some("replica lag unknown"));
        behind.store(0, Ordering::Relaxed);
        tick().await;
        assert_eq!(excluded(), None, "caught up: back in reads");

        // An exclusion the application made itself is not the monitor's to lift.
        db.replicas().exclude(&"replica-a", "maintenance").unwrap();
        tick().await;
        assert_eq!(excluded(), Some("maintenance"));
    });
}

#[tokio::test(start_paused = true)]
async fn writes_follow_the_primary_the_role_monitor_finds() {
    use std::sync::{Arc, Mutex};
    use tower_lb::replica::{Role, RoleMonitor};

    // What each node would answer to a role probe; `None`: down.
    let roles = Arc::new(Mutex::new([Some(Role::Primary), Some(Role::Replica)]));
    let probe = {
        let roles = Arc::clone(&roles);
        move |node: &&'static str| {
            let role = roles.lock().unwrap()[usize::from(*node == "db-2")];
            async move { role.ok_or("connection refused") }
        }
    };
    let nodes = [("db-1", node("db-1")), ("db-2", node("db-2"))];
    let primary = Balance::builder(RoundRobin::new())
        .outlier(Outlier::disabled())
        .endpoints(nodes.clone())
        .build()
        .unwrap();
    let replicas = Balance::builder(RoundRobin::new())
        .outlier(Outlier::disabled())
        .panic_threshold(0.0)
        .endpoints(nodes)
        .build()
        .unwrap();
    let interval = Duration::from_secs(1);
    let db = ReplicaRouter::builder(primary, replicas)
        .classify(HttpMethods)
        .read_your_writes(Duration::ZERO)
        .role_monitor(RoleMonitor::new(probe).every(interval))
        .build();
    let send = |method: &'static str| {
        let db = db.clone();
        async move { db.oneshot(request(method, "a")).await }
    };
    let settle = || tokio::time::sleep(interval + Duration::from_millis(1));

    settle().await;
    for _ in 0..4 {
        assert_eq!(send("POST").await.unwrap(), "db-1");
        assert_eq!(send("GET").await.unwrap(), "db-2");
    }

    // The primary dies: writes fail fast, reads go on.
    roles.lock().unwrap()[0] = None;
    settle().await;
    let error = send("POST").await.unwrap_err();
    assert!(matches!(
        error.downcast_ref::<Error>(),
        Some(Error::NoPrimary { .. })
    ));
    assert_eq!(send("GET").await.unwrap(), "db-2");

    // db-2 is promoted: writes follow it, and it leaves the read set (reads fall back to it as
    // the primary).
    roles.lock().unwrap()[1] = Some(Role::Primary);
    settle().await;
    assert_eq!(send("POST").await.unwrap(), "db-2");
    let fallbacks = db.stats().fallback_reads;
    assert_eq!(send("GET").await.unwrap(), "db-2");
    assert_eq!(db.stats().fallback_reads, fallbacks + 1);

    // db-1 comes back as a replica of the new primary: back in the read set, no writes.
    roles.lock().unwrap()[0] = Some(Role::Replica);
    settle().await;
    for _ in 0..4 {
        assert_eq!(send("POST").await.unwrap(), "db-2");
        assert_eq!(send("GET").await.unwrap(), "db-1");
    }
}

/// Several primaries (multi-primary): writes are balanced over the healthy ones and fail over
/// between them; none is lost.
#[tokio::test(start_paused = true)]
async fn writes_fail_over_between_primaries() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tower::util::Either;

    let down = Arc::new(AtomicBool::new(false));
    let flaky = {
        let down = Arc::clone(&down);
        service_fn(move |_: Request| {
            let down = down.load(Ordering::Relaxed);
            async move {
                match down {
                    true => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                    false => Ok("primary-a"),
                }
            }
        })
    };
    let steady = node("primary-b");
    let primaries = Balance::builder(RoundRobin::new())
        .outlier(Outlier::consecutive_failures(1).max_ejected_percent(50))
        .endpoint("a", Either::Left(flaky))
        .endpoint("b", Either::Right(steady.clone()))
        .build()
        .unwrap();
    let replicas = Balance::builder(RoundRobin::new())
        .endpoint("r", Either::Right(steady))
        .build()
        .unwrap();
    let db = ReplicaRouter::builder(primaries, replicas)
        .classify(HttpMethods)
        .build();
    // The router never resends a write; `tower::retry` in front of it may, when the failure
    // proves the write was never sent (a refused connection).
    let client = tower::ServiceBuilder::new()
        .retry(tower_lb::retry::RetryPolicy::new(2).backoff(Duration::ZERO, Duration::ZERO))
        .service(db.clone());
    let mut served = std::collections::HashMap::new();
    for i in 0..40 {
        if i == 10 {
            down.store(true, Ordering::Relaxed);
        }
        let answer = client.clone().oneshot(request("POST", "a")).await.unwrap();
        *served.entry(answer).or_insert(0) += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(served["primary-a"], 5, "{served:?}");
    assert_eq!(served["primary-b"], 35, "{served:?}");
    assert_eq!(db.stats().writes_without_primary, 0);
}

#[tokio::test(start_paused = true)]
async fn reprobe_roles_follows_a_promotion_before_the_next_tick() {
    use std::sync::{Arc, Mutex};
    use tower_lb::replica::{Role, RoleMonitor};

    let roles = Arc::new(Mutex::new([Role::Primary, Role::Replica]));
    let probe = {
        let roles = Arc::clone(&roles);
        move |node: &&'static str| {
            let role = roles.lock().unwrap()[usize::from(*node == "db-2")];
            async move { Ok::<_, std::io::Error>(role) }
        }
    };
    let nodes = [("db-1", node("db-1")), ("db-2", node("db-2"))];
    let db = ReplicaRouter::builder(
        Balance::builder(RoundRobin::new())
            .endpoints(nodes.clone())
            .build()
            .unwrap(),
        Balance::builder(RoundRobin::new())
            .panic_threshold(0.0)
            .endpoints(nodes)
            .build()
            .unwrap(),
    )
    .classify(HttpMethods)
    .role_monitor(RoleMonitor::new(probe).every(Duration::from_secs(60)))
    .build();
    let write = || db.clone().oneshot(request("POST", "a"));
    tokio::time::sleep(Duration::from_millis(10)).await; // the first round
    assert_eq!(write().await.unwrap(), "db-1");

    *roles.lock().unwrap() = [Role::Replica, Role::Primary];
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        write().await.unwrap(),
        "db-1",
        "the monitor has not looked yet"
    );
    db.reprobe_roles();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(write().await.unwrap(), "db-2", "writes follow at once");
}

/// Each owner of an exclusion (the application, the lag monitor, the role monitor) keeps its
/// own: a monitor that has a verdict of its own neither overwrites nor lifts the
/// application's, and the application's readmit lifts nothing a monitor holds.
#[tokio::test(start_paused = true)]
async fn no_owner_lifts_another_owners_exclusion() {
    use std::sync::{Arc, Mutex};
    use tower_lb::replica::{Lag, LagMonitor, Role, RoleMonitor};

    let roles = Arc::new(Mutex::new([Role::Primary, Role::Replica]));
    let role_probe = {
        let roles = Arc::clone(&roles);
        move |node: &&'static str| {
            let role = roles.lock().unwrap()[usize::from(*node == "db-2")];
            async move { Ok::<_, std::io::Error>(role) }
        }
    };
    let lagging = Arc::new(Mutex::new(false));
    let lag_probe = {
        let lagging = Arc::clone(&lagging);
        move |_: &&'static str| {
            let bytes = if *lagging.lock().unwrap() {
                u64::MAX
            } else {
                0
            };
            async move { Ok::<_, std::io::Error>(Lag::new(bytes, Duration::ZERO)) }
        }
    };
    let nodes = [("db-1", node("db-1")), ("db-2", node("db-2"))];
    let pool = |panic| {
        Balance::builder(RoundRobin::new())
            .outlier(Outlier::disabled())
            .panic_threshold(panic)
            .endpoints(nodes.clone())
            .build()
            .unwrap()
    };
    let interval = Duration::from_secs(1);
    let db = ReplicaRouter::builder(pool(0.5), pool(0.0))
        .classify(HttpMethods)
        .read_your_writes(Duration::ZERO)
        .role_monitor(RoleMonitor::new(role_probe).every(interval))
        .lag_monitor(LagMonitor::new(lag_probe).every(interval))
        .build();
    let settle = || tokio::time::sleep(interval + Duration::from_millis(1));
    let excluded = |pool: &Balance<_, _, _>, key: &str| {
        pool.snapshot()
            .into_iter()
            .find(|e| e.key == key)
            .unwrap()
            .excluded
    };
    let in_reads = || excluded(db.replicas(), "db-2").is_none();
    let _ = db.clone().oneshot(request("GET", "a")).await; // starts the monitors
    settle().await;
    assert!(in_reads());

    // The application takes db-2 out of reads for maintenance; db-2 is promoted, then
    // demoted again: the role monitor's own verdict comes and goes, the application's stays.
    db.replicas().exclude(&"db-2", "maintenance").unwrap();
    roles.lock().unwrap()[1] = Role::Primary;
    settle().await;
    assert!(!in_reads());
    roles.lock().unwrap()[1] = Role::Replica;
    settle().await;
    assert_eq!(
        excluded(db.replicas(), "db-2"),
        Some("maintenance"),
        "the role monitor lifted the application's exclusion"
    );

    // The lag monitor's verdict does not lift it either.
    *lagging.lock().unwrap() = true;
    settle().await;
    *lagging.lock().unwrap() = false;
    settle().await;
    assert!(
        !in_reads(),
        "the lag monitor lifted the application's exclusion"
    );

    // The application's readmit lifts only its own: a lagging replica stays out.
    *lagging.lock().unwrap() = true;
    settle().await;
    db.replicas().readmit(&"db-2").unwrap();
    assert!(!in_reads(), "readmit lifted the lag monitor's exclusion");
    *lagging.lock().unwrap() = false;
    settle().await;
    assert!(in_reads(), "back once no owner excludes it");
    assert_eq!(
        db.clone().oneshot(request("GET", "a")).await.unwrap(),
        "db-2"
    );
}
