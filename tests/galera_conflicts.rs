//! Certification conflicts on a real three-node Galera cluster through the router: writers
//! incrementing one row, their writes spread over the nodes, collide in certification
//! (MariaDB 1213, SQLSTATE 40001). The router hands each such failure to the caller as the
//! database's own typed error and never sends the write again (it cannot know it did not
//! apply): the counter ends at exactly the number of increments the callers were told
//! succeeded.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::sync::Arc;
use std::time::Duration;
use tower_lb::policy::RoundRobin;
use tower_lb::replica::{GaleraRoleProbe, ReplicaRouter, RoleMonitor};
use tower_lb::Balance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certification_conflicts_reach_the_caller_typed_and_are_never_resent() {
    let Some(galera) = mariadb::Galera::shared() else {
        return;
    };
    galera.sql(
        0,
        &format!(
            "CREATE TABLE {db}.counter (id INT PRIMARY KEY, n INT) ENGINE = InnoDB;
             INSERT INTO {db}.counter VALUES (1, 0);",
            db = mariadb::DATABASE
        ),
    );
    let pools: Vec<(String, MySqlPool)> = (0..3)
        .map(|i| {
            let pool = MySqlPoolOptions::new()
                .max_connections(4)
                .connect_lazy(&galera.url(i))
                .unwrap();
            (format!("node{}", i + 1), pool)
        })
        .collect();
    // Round robin: consecutive writes land on different nodes, as conflicts need.
    let db = Arc::new(
        ReplicaRouter::builder(
            Balance::builder(RoundRobin::new())
                .endpoints(pools.clone())
                .build()
                .unwrap(),
            Balance::builder(RoundRobin::new())
                .endpoints(pools.clone())
                .build()
                .unwrap(),
        )
        .role_monitor(RoleMonitor::new(GaleraRoleProbe::new(pools.clone())))
        .build(),
    );
    db.ready(Duration::from_secs(10)).await.unwrap();

    let per_writer = 300;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                let (mut done, mut conflicts, mut other) = (0u64, 0u64, Vec::new());
                for _ in 0..per_writer {
                    match sqlx::query("UPDATE counter SET n = n + 1 WHERE id = 1")
                        .execute(&*db)
                        .await
                    {
                        Ok(_) => done += 1,
                        Err(sqlx::Error::Database(error))
                            if error.code().as_deref() == Some("40001") =>
                        {
                            conflicts += 1
                        }
                        Err(error) => other.push(error.to_string()),
                    }
                }
                (done, conflicts, other)
            })
        })
        .collect();
    let (mut done, mut conflicts, mut other) = (0, 0, Vec::new());
    for writer in writers {
        let (d, c, o) = writer.await.unwrap();
        done += d;
        conflicts += c;
        other.extend(o);
    }
    let n: i32 = sqlx::query_scalar("SELECT n FROM counter WHERE id = 1")
        .fetch_one(&pools[0].1)
        .await
        .unwrap();
    // Each send is one pick of a node: as many as there were statements.
    let sends: u64 = db.primary().snapshot().iter().map(|e| e.picks).sum();
    println!(
        "{} increments: {done} acknowledged, {conflicts} certification conflicts (40001), \
         {} other failures; counter {n}; statements sent {sends}",
        4 * per_writer,
        other.len(),
    );
    assert!(other.is_empty(), "failures other than conflicts: {other:?}");
    assert!(conflicts > 0, "writes spread over the nodes collide");
    assert_eq!(
        i64::from(n),
        done as i64,
        "the counter is what the callers were told"
    );
    assert_eq!(sends, 4 * per_writer, "no write was sent twice");
}
