//! The replica router over in-process pools: writes to the primary, reads to replicas,
//! fallback to the primary, read-your-own-writes per session, no primary fails fast.

use std::time::Duration;
use tower::{service_fn, Service, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::RoundRobin;
use tower_lb::replica::{Access, HttpMethods, Reads, ReplicaRouter};
use tower_lb::sticky::Header;
use tower_lb::{Balance, Error};

type Request = http::Request<String>;

/// A node that answers with its name.
fn node(
    name: &'static str,
) -> impl Service<
    Request,
    Response = &'static str,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<&'static str, std::io::Error>> + Send,
> + Clone
       + Send
       + Sync {
    node_failing(name, false)
}

/// A node that answers with its name, or fails (as a crashed one would) when `failing`.
fn node_failing(
    name: &'static str,
    failing: bool,
) -> impl Service<
    Request,
    Response = &'static str,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<&'static str, std::io::Error>> + Send,
> + Clone
       + Send
       + Sync {
    service_fn(move |_: Request| async move {
        match failing {
            true => Err(std::io::Error::other("node down")),
            false => Ok(name),
        }
    })
}

fn request(method: &str, user: &str) -> Request {
    http::Request::builder()
        .method(method)
        .header("x-user", user)
        .body(String::new())
        .unwrap()
}

macro_rules! router {
    ($window:expr) => {{
        let primary = Balance::builder(RoundRobin::new())
            .outlier(Outlier::disabled())
            .endpoint("primary", node("primary"))
            .build()
            .unwrap();
        let replicas = Balance::builder(RoundRobin::new())
            .outlier(Outlier::disabled())
            .panic_threshold(0.0)
            .endpoints([
                ("replica-a", node("replica-a")),
                ("replica-b", node("replica-b")),
            ])
            .build()
            .unwrap();
        ReplicaRouter::builder(primary, replicas)
            .classify(HttpMethods)
            .session(Header::new("x-user"))
            .read_your_writes($window)
            .build()
    }};
}

#[tokio::test(start_paused = true)]
async fn writes_go_to_the_primary_and_reads_to_replicas() {
    let db = router!(Duration::ZERO);
    for _ in 0..10 {
        let read = db.clone().oneshot(request("GET", "alice")).await.unwrap();
        assert!(read.starts_with("replica"), "{read}");
        let write = db.clone().oneshot(request("POST", "alice")).await.unwrap();
        assert_eq!(write, "primary");
    }
    // Explicit intent wins: a POST that only reads, marked so.
    let mut search = request("POST", "alice");
    search.extensions_mut().insert(Access::Read);
    assert!(db
        .clone()
        .oneshot(search)
        .await
        .unwrap()
        .starts_with("replica"));
    let stats = db.stats();
    assert_eq!(
        (stats.writes, stats.replica_reads, stats.fallback_reads),
        (10, 11, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn reads_fall_back_to_the_primary_when_no_replica_is_fit() {
    let db = router!(Duration::ZERO);
    db.replicas().exclude(&"replica-a", "lagging").unwrap();
    for _ in 0..4 {
        assert_eq!(
            db.clone().oneshot(request("GET", "a")).await.unwrap(),
            "replica-b"
        );
    }
    db.replicas().exclude(&"replica-b", "lagging").unwrap();
    for _ in 0..4 {
        assert_eq!(
            db.clone().oneshot(request("GET", "a")).await.unwrap(),
            "primary"
        );
    }
    assert_eq!(db.stats().fallback_reads, 4);
    db.replicas().readmit(&"replica-a").unwrap();
    assert_eq!(
        db.clone().oneshot(request("GET", "a")).await.unwrap(),
        "replica-a"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_reads_its_own_writes_from_the_primary_for_the_window() {
    let db = router!(Duration::from_secs(2));
    db.clone().oneshot(request("PUT", "alice")).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            db.clone().oneshot(request("GET", "alice")).await.unwrap(),
            "primary"
        );
        let bob = db.clone().oneshot(request("GET", "bob")).await.unwrap();
        assert!(
            bob.starts_with("replica"),
            "another session is not pinned: {bob}"
        );
    }
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(
        db.clone().oneshot(request("GET", "alice")).await.unwrap(),
        "primary"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let after = db.clone().oneshot(request("GET", "alice")).await.unwrap();
    assert!(after.starts_with("replica"), "the window is over: {after}");
    assert_eq!(db.stats().pinned_reads, 6);

    // A write dropped before it answered may have committed: it pins its session too.
    let mut handle = db.clone();
    drop(handle.call(request("DELETE", "carol")));
    assert_eq!(
        db.clone().oneshot(request("GET", "carol")).await.unwrap(),
        "primary"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_primary_writes_fail_fast_and_are_never_sent_to_a_replica() {
    let db = router!(Duration::ZERO);
    db.primary().remove(&"primary").unwrap();
    let error = db.clone().oneshot(request("POST", "a")).await.unwrap_err();
    assert!(
        matches!(error.downcast_ref::<Error>(), Some(Error::NoPrimary { .. })),
        "{error}"
    );
    assert!(db
        .clone()
        .oneshot(request("GET", "a"))
        .await
        .unwrap()
        .starts_with("replica"));
    assert_eq!(db.stats().writes_without_primary, 1);
    // The router's future can be spawned.
    let spawned = tokio::spawn(db.clone().oneshot(request("GET", "a")));
    assert!(spawned.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn without_a_session_key_the_whole_router_is_one_session() {
    let primary = Balance::builder(RoundRobin::new())
        .endpoint("primary", node("primary"))
        .build()
        .unwrap();
    let replicas = Balance::builder(RoundRobin::new())
        .endpoint("replica", node("replica"))
        .build()
        .unwrap();
    let db = ReplicaRouter::builder(primary, replicas)
        .classify(HttpMethods)
        .build();
    assert_eq!(
        db.clone().oneshot(request("GET", "a")).await.unwrap(),
        "replica"
    );
    db.clone().oneshot(request("POST", "a")).await.unwrap();
    assert_eq!(
        db.clone().oneshot(request("GET", "b")).await.unwrap(),
        "primary"
    );
    tokio::time::advance(tower_lb::replica::DEFAULT_WINDOW).await;
    assert_eq!(
        db.clone().oneshot(request("GET", "b")).await.unwrap(),
        "replica"
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_that_fails_on_a_replica_is_retried_on_the_primary() {
    let primary = Balance::builder(RoundRobin::new())
        .endpoint("primary", node_failing("primary", false))
        .build()
        .unwrap();
    let replicas = Balance::builder(RoundRobin::new())
        .outlier(Outlier::disabled())
        .endpoint("broken", node_failing("broken", true))
        .build()
        .unwrap();
    let db = ReplicaRouter::builder(primary, replicas)
        .classify(HttpMethods)
        .build();
    for _ in 0..10 {
        assert_eq!(
            db.clone().oneshot(request("GET", "a")).await.unwrap(),
            "primary"
        );
    }
    let stats = db.stats();
    assert_eq!((stats.replica_reads, stats.retried_reads), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn replicas_only_never_falls_back_nor_resends_but_keeps_own_reads() {
    let primary = Balance::builder(RoundRobin::new())
        .endpoint("primary", node_failing("primary", false))
        .build()
        .unwrap();
    let replicas = Balance::builder(RoundRobin::new())
        .outlier(Outlier::disabled())
        .endpoints([
            ("replica-a", node_failing("replica-a", false)),
            ("broken", node_failing("broken", true)),
        ])
        .build()
        .unwrap();
    let db = ReplicaRouter::builder(primary, replicas)
        .classify(HttpMethods)
        .session(Header::new("x-user"))
        .reads(Reads::ReplicasOnly)
        .build();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let answer = db.clone().oneshot(request("GET", "a")).await;
        answers.push(answer.map_err(|error| error.to_string()));
    }
    let failed = answers.iter().filter(|a| a.is_err()).count();
    assert_eq!(
        failed, 5,
        "the broken replica's reads fail, not resent: {answers:?}"
    );
    assert!(answers.iter().all(|a| a.as_deref() != Ok("primary")));
    assert_eq!(db.stats().retried_reads, 0);

    // A session's own read after its write: the primary.
    let write = db.clone().oneshot(request("POST", "w")).await.unwrap();
    assert_eq!(write, "primary");
    let own = db.clone().oneshot(request("GET", "w")).await.unwrap();
    assert_eq!(own, "primary");

    db.replicas().exclude(&"replica-a", "down").unwrap();
    db.replicas().exclude(&"broken", "down").unwrap();
    let error = db.clone().oneshot(request("GET", "a")).await.unwrap_err();
    assert!(
        matches!(error.downcast_ref(), Some(Error::NoReplica { .. })),
        "{error}"
    );
    let stats = db.stats();
    assert_eq!((stats.reads_without_replica, stats.fallback_reads), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn reads_on_the_primary_never_reach_a_replica() {
    let db = {
        let primary = Balance::builder(RoundRobin::new())
            .endpoint("primary", node("primary"))
            .build()
            .unwrap();
        let replicas = Balance::builder(RoundRobin::new())
            .endpoint("replica-a", node("replica-a"))
            .build()
            .unwrap();
        ReplicaRouter::builder(primary, replicas)
            .classify(HttpMethods)
            .reads(Reads::Primary)
            .build()
    };
    for method in ["GET", "POST", "GET", "HEAD"] {
        let answer = db.clone().oneshot(request(method, "a")).await.unwrap();
        assert_eq!(answer, "primary", "{method}");
    }
    let stats = db.stats();
    assert_eq!(
        (stats.primary_reads, stats.replica_reads, stats.writes),
        (3, 0, 1)
    );
}

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
async fn the_primary_read_share_cap_sheds_fallback_reads_but_never_own_reads() {
    let db = {
        let primary = Balance::builder(RoundRobin::new())
            .endpoint("primary", node("primary"))
            .build()
            .unwrap();
        let replicas = Balance::builder(RoundRobin::new())
            .panic_threshold(0.0)
            .endpoint("replica", node("replica"))
            .build()
            .unwrap();
        ReplicaRouter::builder(primary, replicas)
            .classify(HttpMethods)
            .session(Header::new("x-user"))
            .max_primary_read_share(0.3)
            .build()
    };
    db.replicas().exclude(&"replica", "maintenance").unwrap();
    let (mut served, mut shed) = (0, 0);
    for _ in 0..1000 {
        match db.clone().oneshot(request("GET", "reader")).await {
            Ok(answer) => {
                assert_eq!(answer, "primary");
                served += 1;
            }
            Err(error) => {
                assert!(matches!(
                    error.downcast_ref::<Error>(),
                    Some(Error::PrimaryReadShare { percent: 30 })
                ));
                shed += 1;
            }
        }
    }
    assert!(
        (250..=350).contains(&served),
        "the primary served {served} of 1000"
    );
    let stats = db.stats();
    assert_eq!((stats.fallback_reads, stats.shed_reads), (served, shed));

    // A session reading its own write is never refused: that read must be the primary's.
    db.clone().oneshot(request("POST", "writer")).await.unwrap();
    for _ in 0..50 {
        assert_eq!(
            db.clone().oneshot(request("GET", "writer")).await.unwrap(),
            "primary"
        );
    }

    // The replica is back: reads go to it, and the window forgets the outage.
    db.replicas().readmit(&"replica").unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        db.clone().oneshot(request("GET", "reader")).await.unwrap(),
        "replica"
    );
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
