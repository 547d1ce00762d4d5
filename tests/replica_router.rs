//! The replica router over in-process pools: writes to the primary, reads to replicas,
//! fallback to the primary, read-your-own-writes per session, no primary fails fast, the
//! reads policy and the primary's read share. (Its monitors: `replica_monitors.rs`.)

#[path = "support/router_nodes.rs"]
mod router_nodes;
use router_nodes::{node, node_failing, request};

use std::time::Duration;
use tower::{Service, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::RoundRobin;
use tower_lb::replica::{Access, HttpMethods, Reads, ReplicaRouter};
use tower_lb::sticky::Header;
use tower_lb::{Balance, Error};

/// A router of one primary and two replicas, sessions by `x-user`, read-your-own-writes
/// for `$window`.
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
