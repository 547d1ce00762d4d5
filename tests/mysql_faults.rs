//! The MySQL router when a MariaDB server dies under load, each test on a primary and GTID
//! replica of its own (killed with SIGKILL, as a crash would): a dead replica fails no read
//! (reads in flight are answered by the primary, later ones fall back to it); a dead primary
//! fails writes fast with a typed `NoPrimary` while reads go on on the replica (with the lag
//! monitor on: it must not take the replica out with the primary); a promoted replica takes
//! the writes within two probe intervals, through the router.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{
    router_error, LagMonitor, MySqlLagProbe, MySqlRoleProbe, MySqlRouter, ReplicaRouter,
    RoleMonitor,
};
use tower_lb::{Balance, Error};

type Router = MySqlRouter<Balance<&'static str, MySqlPool, P2c>>;

const INTERVAL: Duration = Duration::from_millis(200);
const READERS: usize = 4;

/// A pool that would wait 30 s for a connection: the router, not the pool's timeout, must
/// keep statements from waiting on a dead node.
async fn patient(url: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .unwrap()
}

/// The primary and the replica as `keys` name them, in patient pools; the ordinary user may
/// read replication status (the role and lag probes do).
async fn both_nodes(
    cluster: &mariadb::Cluster,
    keys: [&'static str; 2],
) -> [(&'static str, MySqlPool); 2] {
    cluster.primary_sql(&format!(
        "GRANT SLAVE MONITOR ON *.* TO '{}'@'127.0.0.1'",
        mariadb::USER
    ));
    [
        (keys[0], patient(&cluster.primary_url()).await),
        (keys[1], patient(&cluster.replica_url()).await),
    ]
}

/// A balancer over `nodes` with the given panic threshold.
fn balancer(
    nodes: &[(&'static str, MySqlPool)],
    panic_threshold: f64,
) -> Balance<&'static str, MySqlPool, P2c> {
    Balance::builder(P2c::new())
        .panic_threshold(panic_threshold)
        .endpoints(nodes.iter().cloned())
        .build()
        .unwrap()
}

/// Both nodes in both pools, the role and lag monitors sorting them every [`INTERVAL`]; a
/// table `t` with one row, in reads.
async fn router(cluster: &mariadb::Cluster) -> Router {
    let nodes = both_nodes(cluster, ["primary", "replica"]).await;
    let primary = nodes[0].1.clone();
    let db = ReplicaRouter::builder(balancer(&nodes, 0.5), balancer(&nodes, 0.0))
        .role_monitor(RoleMonitor::new(MySqlRoleProbe::new(nodes.clone())).every(INTERVAL))
        .lag_monitor(
            LagMonitor::new(
                MySqlLagProbe::new(primary, nodes.clone()).primary_timeout(INTERVAL / 4),
            )
            .every(INTERVAL),
        )
        .build();
    db.ready(Duration::from_secs(10)).await.unwrap();
    sqlx::query("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t () VALUES ()")
        .execute(&db)
        .await
        .unwrap();
    cluster.wait_for_replica();
    let started = Instant::now();
    while count(&db).await.ok() != Some(1) || db.stats().replica_reads == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never served reads: {:?}",
            db.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db
}

async fn count(db: &Router) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db)
        .await
}

/// Readers reading through the router until stopped (at most 60 s); their failures, and
/// the reads served.
struct Readers {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    fn start(db: &Router) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..READERS)
            .map(|_| {
                let (db, stop, served, failures) = (
                    db.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&served),
                    Arc::clone(&failures),
                );
                tokio::spawn(async move {
                    let started = Instant::now();
                    while !stop.load(Relaxed) && started.elapsed() < Duration::from_secs(60) {
                        match count(&db).await {
                            Ok(_) => served.fetch_add(1, Relaxed),
                            Err(error) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((Instant::now(), error.to_string()));
                                0
                            }
                        };
                    }
                })
            })
            .collect();
        Readers {
            stop,
            served,
            failures,
            tasks,
        }
    }

    /// Stops the readers; the reads served, and the failures.
    async fn stop(self) -> (usize, Vec<(Instant, String)>) {
        self.stop.store(true, Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.served.load(Relaxed), failures)
    }
}

/// How many reads failed, when (after each of `moments`), and the first few errors.
fn described(failures: &[(Instant, String)], moments: &[(&str, Instant)]) -> String {
    let mut text = format!("{} reads failed", failures.len());
    for (name, at) in moments {
        let after = failures.iter().filter(|(when, _)| when >= at).count();
        text += &format!("; {after} after it was {name}");
    }
    if let (Some(first), Some(last)) = (failures.first(), failures.last()) {
        text += &format!(
            "; over {:?}; first errors: {:?}",
            last.0 - first.0,
            failures.iter().take(3).map(|(_, e)| e).collect::<Vec<_>>()
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_fails_no_read() {
    let Some(cluster) = mariadb::Cluster::start() else {
        return;
    };
    let db = router(&cluster).await;
    let readers = Readers::start(&db);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = db.stats();
    cluster.kill_replica();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Writes are not the replica's: they go on.
    sqlx::query("INSERT INTO t () VALUES ()")
        .execute(&db)
        .await
        .unwrap();
    let (served, failures) = readers.stop().await;
    let after = db.stats();
    println!(
        "replica killed under {READERS} readers: {served} reads served, {} failed; \
         {} resent to the primary, {} fell back to it",
        failures.len(),
        after.retried_reads - before.retried_reads,
        after.fallback_reads - before.fallback_reads,
    );
    assert!(failures.is_empty(), "{}", described(&failures, &[]));
    assert!(
        after.fallback_reads > before.fallback_reads,
        "reads went on on the primary: {after:?}"
    );
    assert_eq!(count(&db).await.unwrap(), 2, "the primary answers reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_fails_writes_fast_reads_go_on_and_writes_follow_a_promotion() {
    let Some(cluster) = mariadb::Cluster::start() else {
        return;
    };
    let db = router(&cluster).await;
    let readers = Readers::start(&db);
    let write = || sqlx::query("INSERT INTO t () VALUES ()").execute(&db);

    cluster.kill_primary();
    let killed = Instant::now();
    // A write sent before the role monitor sees the primary go waits for it (the pool would
    // retry connecting for 30 s), and ends with NoPrimary when it does.
    let no_primary_after = loop {
        let error = write().await.expect_err("the primary is dead");
        if matches!(router_error(&error), Some(Error::NoPrimary { .. })) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < 10 * INTERVAL,
            "writes still wait after {:?}: {error}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        no_primary_after < 10 * INTERVAL,
        "NoPrimary after {no_primary_after:?}"
    );
    // Later writes fail at once.
    let attempt = Instant::now();
    let error = write().await.expect_err("the primary is dead");
    assert!(
        matches!(router_error(&error), Some(Error::NoPrimary { .. }))
            && attempt.elapsed() < Duration::from_millis(50),
        "{error} after {:?}",
        attempt.elapsed()
    );
    // Reads go on on the replica meanwhile, the lag monitor on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replica_reads = db.stats().replica_reads;
    tokio::time::sleep(5 * INTERVAL).await;
    assert!(
        db.stats().replica_reads > replica_reads,
        "reads left the replica with the primary: {:?}",
        db.stats()
    );

    cluster.promote_replica();
    let promoted = Instant::now();
    while write().await.is_err() {
        assert!(
            promoted.elapsed() < 2 * INTERVAL + Duration::from_secs(1),
            "writes did not follow the promotion"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let followed_after = promoted.elapsed();
    let (served, failures) = readers.stop().await;
    println!(
        "primary killed under {READERS} readers: NoPrimary after {no_primary_after:?}; \
         replica promoted: writes followed after {followed_after:?} (probes every \
         {INTERVAL:?}); {served} reads served, {} failed",
        failures.len()
    );
    assert!(
        followed_after <= 2 * INTERVAL + Duration::from_millis(100),
        "writes followed after {followed_after:?}"
    );
    assert!(
        failures.is_empty(),
        "{}",
        described(&failures, &[("killed", killed), ("promoted", promoted)])
    );
    assert_eq!(
        count(&db).await.unwrap(),
        2,
        "the promoted node has both rows"
    );
}

/// A switchover the router did not see coming: the old primary made read-only, the replica
/// promoted, the next scheduled role probe a minute away. The write the old primary refuses
/// (1290) wakes the role monitor, and writes follow the promoted node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_read_only_reprobes_roles_at_once() {
    let Some(cluster) = mariadb::Cluster::start() else {
        return;
    };
    let nodes = both_nodes(&cluster, ["db-1", "db-2"]).await;
    let db2 = nodes[1].1.clone();
    let interval = Duration::from_secs(60);
    let db: Router = ReplicaRouter::builder(balancer(&nodes, 0.5), balancer(&nodes, 0.0))
        .role_monitor(RoleMonitor::new(MySqlRoleProbe::new(nodes.clone())).every(interval))
        .build();
    db.ready(Duration::from_secs(10)).await.unwrap();
    sqlx::query("CREATE TABLE switch (id INT AUTO_INCREMENT PRIMARY KEY)")
        .execute(&db)
        .await
        .unwrap();
    cluster.wait_for_replica();

    // Switchover: fence db-1 (read_only binds the ordinary user), promote db-2.
    cluster.primary_sql("SET GLOBAL read_only = ON");
    cluster.promote_replica();
    let insert = || sqlx::query("INSERT INTO switch () VALUES ()").execute(&db);
    let refused = insert().await.unwrap_err();
    let refused_at = Instant::now();
    let number = match &refused {
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|error| error.number()),
        _ => None,
    };
    assert_eq!(
        number,
        Some(1290),
        "the old primary refuses as read-only: {refused}"
    );
    while let Err(error) = insert().await {
        assert!(
            refused_at.elapsed() < Duration::from_secs(2),
            "writes did not follow the promoted node (next scheduled probe in {interval:?}): \
             {error}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let followed_after = refused_at.elapsed();
    for _ in 0..20 {
        insert()
            .await
            .expect("the fenced node is out of the primary pool");
    }
    let landed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM switch")
        .fetch_one(&db2)
        .await
        .unwrap();
    assert_eq!(landed, 21, "every write landed on the promoted node");
    println!(
        "1290 on the fenced primary: writes followed the promoted node {followed_after:?} \
         later (scheduled probes every {interval:?})"
    );
}
