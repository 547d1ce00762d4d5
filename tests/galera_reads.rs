//! Read-your-own-writes across the nodes of a real three-node Galera cluster, every node a
//! primary: a session's read right after its write goes to "the primary", which may be
//! another node than the one that took the write, and Galera applies a write on the other
//! nodes only after it commits. With `causal_reads` the read first waits on its node for the
//! cluster's writes (`wsrep_sync_wait`): never stale. Measured under busy writers, the two
//! routers taking turns trial by trial.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/mysql_nodes.rs"]
mod mysql_nodes;

use mysql_nodes::multi_primary;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::MySqlRouter;
use tower_lb::Balance;

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const TRIALS: usize = 1500;

type Router = MySqlRouter<Balance<&'static str, MySqlPool, P2c>>;

/// One router's trials: stale reads, and each read's latency.
struct Trials {
    db: Router,
    stale: usize,
    latencies: Vec<Duration>,
}

fn p50_p99(latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_reads_see_the_sessions_write_on_any_node() {
    let Some(galera) = mariadb::Galera::shared() else {
        return;
    };
    galera.sql(
        0,
        &format!(
            "CREATE TABLE {db}.posts (author INT NOT NULL, INDEX (author)) ENGINE = InnoDB;
             CREATE TABLE {db}.busy (pad TEXT) ENGINE = InnoDB",
            db = mariadb::DATABASE
        ),
    );
    let pools: Vec<(&'static str, MySqlPool)> = NODES
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let pool = MySqlPoolOptions::new()
                .max_connections(2)
                .connect_lazy(&galera.url(i))
                .unwrap();
            (*key, pool)
        })
        .collect();
    let router = |causal: bool| {
        let builder = multi_primary(&pools);
        match causal {
            true => builder.causal_reads().build(),
            false => builder.build(),
        }
    };
    let mut runs = [false, true].map(|causal| Trials {
        db: router(causal),
        stale: 0,
        latencies: Vec::with_capacity(TRIALS),
    });

    // Writers busy on every node, so that each node has others' write sets to apply.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = pools
        .iter()
        .map(|(_, pool)| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let _ =
                        sqlx::raw_sql("INSERT INTO busy SELECT REPEAT('x', 200) FROM seq_1_to_20")
                            .execute(&pool)
                            .await;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut author: i32 = 0;
    for trial in 0..TRIALS {
        for turn in 0..runs.len() {
            let run = &mut runs[(trial + turn) % 2];
            author += 1;
            let session = run.db.session(author);
            sqlx::query("INSERT INTO posts (author) VALUES (?)")
                .bind(author)
                .execute(&session)
                .await
                .unwrap();
            let reading = Instant::now();
            let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM posts WHERE author = ?")
                .bind(author)
                .fetch_one(&session)
                .await
                .unwrap();
            run.latencies.push(reading.elapsed());
            run.stale += usize::from(mine != 1);
        }
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "trials too slow"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let [plain, causal] = &mut runs;
    for (name, run) in [
        ("pinned reads", &mut *plain),
        ("causal reads", &mut *causal),
    ] {
        let (p50, p99) = p50_p99(&mut run.latencies);
        println!(
            "{name}: {} stale of {TRIALS}, read p50 {p50:?} p99 {p99:?}, {:?}",
            run.stale,
            run.db.stats()
        );
    }
    assert_eq!(causal.stale, 0, "a causal read missed its session's write");
    assert_eq!(causal.db.stats().pinned_reads, TRIALS as u64);

    // `SET STATEMENT` leaves nothing behind on the pools' connections.
    for (key, pool) in &pools {
        for _ in 0..4 {
            let left: u64 = sqlx::query_scalar("SELECT @@SESSION.wsrep_sync_wait")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(left, 0, "{key}");
        }
    }
}
