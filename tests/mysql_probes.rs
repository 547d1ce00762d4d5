//! `MySqlLagProbe` and `MySqlRoleProbe` on a real MariaDB primary and GTID replica, driving the
//! replica router's lag and role monitors: a stopped SQL thread with writes behind it takes
//! the replica out of reads (and `Seconds_Behind_Master`, NULL then, is not taken for 0), it
//! returns when the thread runs again, a dead primary does not take it out, and a replica
//! promoted as an operator would (`STOP SLAVE`, `read_only` off) takes the writes.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{
    LagMonitor, LagProbe, MySqlLagProbe, MySqlRoleProbe, ReplicaRouter, Role, RoleMonitor,
    RoleProbe,
};
use tower_lb::Balance;
use tower_lb::Excluder;

async fn pool(url: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .unwrap()
}

/// Waits (bounded) until `done` holds.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_role_follow_a_real_replica() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    cluster.primary_sql(&format!(
        "GRANT SLAVE MONITOR ON *.* TO '{user}'@'127.0.0.1';
         CREATE TABLE {db}.events (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6));",
        user = mariadb::USER,
        db = mariadb::DATABASE
    ));
    cluster.wait_for_replica();
    let (primary, replica) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    let lag = MySqlLagProbe::new(primary.clone(), [("replica", replica.clone())]);
    let role = MySqlRoleProbe::new([("primary", primary.clone()), ("replica", replica.clone())]);

    // Caught up.
    let measured = lag.lag(&"replica").await.unwrap();
    assert_eq!(measured.transactions_behind, 0, "{measured:?}");
    assert_eq!(role.role(&"primary").await.unwrap(), Role::Primary);
    assert_eq!(role.role(&"replica").await.unwrap(), Role::Replica);

    // The monitors over the router's pools (every node in both, as the role monitor wants).
    let interval = Duration::from_millis(100);
    let nodes = || [("primary", primary.clone()), ("replica", replica.clone())];
    let db = ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoints(nodes())
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .endpoints(nodes())
            .build()
            .unwrap(),
    )
    .lag_monitor(
        LagMonitor::new(MySqlLagProbe::new(primary.clone(), nodes()))
            .every(interval)
            .max_transactions(1000)
            .max_lag(Duration::from_secs(1)),
    )
    .role_monitor(RoleMonitor::new(MySqlRoleProbe::new(nodes())).every(interval))
    .build();
    db.ready(Duration::from_secs(10)).await.unwrap();
    let lagging = |key: &str| {
        db.replicas()
            .snapshot()
            .into_iter()
            .find(|e| e.key == key)
            .and_then(|e| e.exclusions.by(Excluder::LagMonitor))
            .is_some()
    };
    fn in_pool(pool: &Balance<&'static str, MySqlPool, P2c>, key: &str) -> bool {
        pool.snapshot()
            .into_iter()
            .any(|e| e.key == key && e.excluded.is_none())
    }
    eventually(Duration::from_secs(5), "roles sorted", || {
        in_pool(db.primary(), "primary")
            && !in_pool(db.primary(), "replica")
            && in_pool(db.replicas(), "replica")
            && !in_pool(db.replicas(), "primary")
    })
    .await;
    assert!(!lagging("replica"));

    // The SQL thread stopped: caught up, it stays; five writes behind it, it leaves, though
    // Seconds_Behind_Master is NULL (not 0).
    cluster.replica_sql("STOP SLAVE SQL_THREAD");
    tokio::time::sleep(interval * 3).await;
    assert!(
        !lagging("replica"),
        "stopped but caught up: nothing lost yet"
    );
    for _ in 0..5 {
        sqlx::query("INSERT INTO events (at) VALUES (NOW(6))")
            .execute(&primary)
            .await
            .unwrap();
    }
    let measured = lag.lag(&"replica").await.unwrap();
    assert_eq!(measured.transactions_behind, 5, "{measured:?}");
    assert_eq!(
        measured.since_last_replay,
        Duration::MAX,
        "a stopped thread"
    );
    let left = eventually(Duration::from_secs(5), "out of reads", || {
        lagging("replica")
    })
    .await;
    cluster.replica_sql("START SLAVE SQL_THREAD");
    let back = eventually(Duration::from_secs(5), "back in reads", || {
        !lagging("replica")
    })
    .await;
    assert_eq!(lag.lag(&"replica").await.unwrap().transactions_behind, 0);
    println!("stopped SQL thread, 5 transactions behind: out of reads after {left:?}, back {back:?} after it ran again");

    // The primary unreachable: its last known position and the replica's received one
    // judge the replica, which is caught up and stays in reads.
    let gone = MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy("mysql://app:app@127.0.0.1:1/app")
        .unwrap();
    let blind = MySqlLagProbe::new(gone, [("replica", replica.clone())])
        .primary_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let measured = blind.lag(&"replica").await.unwrap();
    assert_eq!(measured.transactions_behind, 0, "{measured:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Promotion, as an operator does it: the replica stops replicating and takes writes.
    cluster.replica_sql("STOP SLAVE; SET GLOBAL read_only = 0");
    cluster.primary_sql("SET GLOBAL read_only = 1");
    let followed = eventually(
        Duration::from_secs(5),
        "writes follow the promotion",
        || in_pool(db.primary(), "replica") && !in_pool(db.primary(), "primary"),
    )
    .await;
    println!("promoted replica in the primary pool after {followed:?} (probes every {interval:?})");
    assert!(followed <= interval * 2 + Duration::from_millis(150));
    // Its replication stopped but still configured: a stopped thread, unbounded time.
    let measured = lag.lag(&"replica").await.unwrap();
    assert!(measured.since_last_replay == Duration::MAX, "{measured:?}");
    // Replication forgotten: a node that takes writes is a primary, never behind (the role
    // monitor, not the lag monitor, takes it out of reads); a read-only one is cut off.
    cluster.replica_sql("RESET SLAVE ALL");
    let measured = lag.lag(&"replica").await.unwrap();
    assert_eq!(
        (measured.transactions_behind, measured.since_last_replay),
        (0, Duration::ZERO),
        "{measured:?}"
    );
    cluster.replica_sql("SET GLOBAL read_only = 1");
    let measured = lag.lag(&"replica").await.unwrap();
    assert_eq!(measured.transactions_behind, u64::MAX, "{measured:?}");
}
