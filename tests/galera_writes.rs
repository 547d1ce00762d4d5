//! Writes through the router spread over a real three-node Galera cluster (every node a
//! primary, `GaleraRoleProbe`), while one node is killed with SIGKILL: no write the caller
//! was told succeeded is lost, the failed ones fail with an error (never silently), no new
//! write goes to the dead node once the monitor has taken it out, and the survivors' stall
//! until the cluster evicts the dead node is measured.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/mysql_nodes.rs"]
mod mysql_nodes;

use mysql_nodes::multi_primary;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::replica::{GaleraRoleProbe, RoleMonitor};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_a_galera_node_is_killed() {
    let Some(galera) = mariadb::Galera::shared() else {
        return;
    };
    galera.sql(
        0,
        &format!(
            "CREATE TABLE {}.events (token BIGINT PRIMARY KEY, writer INT) ENGINE = InnoDB",
            mariadb::DATABASE
        ),
    );
    let pools: Vec<(&str, MySqlPool)> = NODES
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let pool = MySqlPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy(&galera.url(i))
                .unwrap();
            (*key, pool)
        })
        .collect();
    let interval = Duration::from_millis(200);
    let db = Arc::new(
        multi_primary(&pools)
            .role_monitor(RoleMonitor::new(GaleraRoleProbe::new(pools.clone())).every(interval))
            .build(),
    );
    db.ready(Duration::from_secs(10)).await.unwrap();

    // Two writers, each inserting its own tokens one at a time for a bounded time.
    let run_for = Duration::from_secs(12);
    let started = Instant::now();
    let writer = |id: i64| {
        let db = Arc::clone(&db);
        tokio::spawn(async move {
            let (mut acknowledged, mut failed, mut slowest) =
                (Vec::new(), Vec::new(), Duration::ZERO);
            let mut token = id * 1_000_000;
            while started.elapsed() < run_for && token < id * 1_000_000 + 100_000 {
                token += 1;
                let sent = Instant::now();
                let result = sqlx::query("INSERT INTO events (token, writer) VALUES (?, ?)")
                    .bind(token)
                    .bind(id)
                    .execute(&*db)
                    .await;
                slowest = slowest.max(sent.elapsed());
                match result {
                    Ok(_) => acknowledged.push(token),
                    Err(error) => failed.push((token, error.to_string())),
                }
            }
            (acknowledged, failed, slowest)
        })
    };
    let writers = [writer(1), writer(2)];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let picks_of = |key: &str| {
        db.primary()
            .snapshot()
            .into_iter()
            .find(|e| e.key == key)
            .map_or(0, |e| e.picks)
    };
    let in_rotation = |key: &str| {
        db.primary()
            .snapshot()
            .into_iter()
            .any(|e| e.key == key && e.excluded.is_none())
    };
    assert!(
        picks_of("node3") > 0,
        "writes reach every node before the kill"
    );
    galera.kill(2);
    let killed = Instant::now();
    while in_rotation("node3") {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "node3 still in rotation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let out_after = killed.elapsed();
    let picks_when_out = picks_of("node3");

    let (mut acknowledged, mut failed, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for writer in writers {
        let (a, f, s) = writer.await.unwrap();
        acknowledged.extend(a);
        failed.extend(f);
        slowest = slowest.max(s);
    }
    let picks_after = picks_of("node3");

    // Every acknowledged token is on the survivors.
    let survivor = &pools[0].1;
    let stored: BTreeSet<i64> = sqlx::query_scalar("SELECT token FROM events")
        .fetch_all(survivor)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<i64> = acknowledged
        .iter()
        .copied()
        .filter(|token| !stored.contains(token))
        .collect();
    let mut kinds: Vec<String> = failed
        .iter()
        .map(|(_, error)| error.chars().take(60).collect())
        .collect();
    kinds.sort();
    kinds.dedup();
    println!(
        "{} writes acknowledged, {} lost; {} failed ({kinds:?}); node3 out of writes {out_after:?} \
         after the kill, picks of it then {picks_when_out}, at the end {picks_after}; slowest \
         write {slowest:?} (the survivors stall until the cluster evicts the dead node)",
        acknowledged.len(),
        lost.len(),
        failed.len(),
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(
        picks_after, picks_when_out,
        "a write went to the dead node after the monitor took it out"
    );
    assert!(
        acknowledged.len() > 100,
        "writes went on: {}",
        acknowledged.len()
    );
}
