//! Read-your-own-writes under write load on MariaDB: a throwaway primary and GTID replica
//! started from the system's binaries (`apt-get install -y mariadb-server`): how many of a
//! session's reads right after its write a replica serves, whether any is stale, and what
//! waiting for the replica to apply the write adds to the read. The PostgreSQL twin is
//! `own_reads`.
//!
//! Four writers keep the primary busy (each `INSERT` adds `ROWS` rows of 200 bytes, 4 by
//! default); each trial is one session's `INSERT` followed at once by its `SELECT` of what it
//! wrote, through the router.
//!
//! ```sh
//! cargo run --release --example own_reads_mysql --features sqlx-mysql
//! ROWS=200 cargo run --release --example own_reads_mysql --features sqlx-mysql # heavier writes
//! ```

#[path = "../tests/support/mariadb.rs"]
mod mariadb;
#[path = "support/own_reads.rs"]
mod own_reads;

use own_reads::{percentiles, print_head, print_row, Mode, MODES};

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{ReplicaRouter, DEFAULT_POSITION_CAP};
use tower_lb::{Balance, BoxError};

const TRIALS: i32 = 2000;
const WRITERS: usize = 4;

/// One mode's router and what its trials saw.
struct Run {
    name: &'static str,
    db: tower_lb::replica::MySqlRouter<Balance<&'static str, MySqlPool, P2c>>,
    stale: usize,
    latencies: Vec<Duration>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(cluster) = mariadb::Cluster::shared() else {
        println!("MariaDB's server binaries are not installed: nothing to show.");
        return Ok(());
    };
    let connect = |url: String| async move {
        MySqlPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
    };
    let primary = connect(cluster.primary_url()).await?;
    let replica = connect(cluster.replica_url()).await?;
    sqlx::raw_sql(
        "CREATE TABLE posts (author INT NOT NULL, INDEX (author)); \
         CREATE TABLE busy (pad TEXT)",
    )
    .execute(&primary)
    .await?;
    let started = Instant::now();
    while sqlx::raw_sql("SELECT 1 FROM busy")
        .execute(&replica)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let rows: u32 = std::env::var("ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(4);
    let insert = format!(
        "INSERT INTO busy SELECT REPEAT('x', 200) FROM seq_1_to_{rows}" // MariaDB's SEQUENCE engine
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (primary, stop, insert) = (primary.clone(), Arc::clone(&stop), insert.clone());
            tokio::spawn(async move {
                let mut writes = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    if sqlx::raw_sql(sqlx::AssertSqlSafe(insert.as_str()))
                        .execute(&primary)
                        .await
                        .is_ok()
                    {
                        writes += 1;
                    }
                }
                writes
            })
        })
        .collect();

    let plain = plain_replica_reads(&replica).await?;
    print_head(WRITERS, TRIALS, &format!("{rows} rows per insert"), plain);
    let mut runs = Vec::new();
    for (name, mode) in MODES {
        let builder = ReplicaRouter::builder(
            Balance::builder(P2c::new())
                .endpoint("primary", primary.clone())
                .build()?,
            Balance::builder(P2c::new())
                .endpoint("replica", replica.clone())
                .build()?,
        );
        let db = match mode {
            Mode::Window => builder.read_your_writes(Duration::from_secs(2)).build(),
            Mode::Position { wait } => builder
                .read_your_writes_by_position(DEFAULT_POSITION_CAP)
                .replay_wait(wait)
                .build(),
        };
        runs.push(Run {
            name,
            db,
            stale: 0,
            latencies: Vec::with_capacity(TRIALS as usize),
        });
    }
    // The modes take turns, trial by trial: the replica's lag drifts over a run, and each
    // mode must see the same drift.
    let mut user = 0;
    for trial in 0..TRIALS {
        for turn in 0..runs.len() {
            let run = &mut runs[(trial as usize + turn) % 5];
            user += 1;
            let session = run.db.session(user);
            sqlx::query("INSERT INTO posts (author) VALUES (?)")
                .bind(user)
                .execute(&session)
                .await?;
            let reading = Instant::now();
            let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM posts WHERE author = ?")
                .bind(user)
                .fetch_one(&session)
                .await?;
            run.latencies.push(reading.elapsed());
            run.stale += usize::from(mine != 1);
        }
    }
    for run in &mut runs {
        let on_replica = run.db.stats().replica_reads;
        print_row(
            run.name,
            on_replica,
            TRIALS,
            run.stale,
            &mut run.latencies,
            plain.1,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await?;
    }
    println!("\n({writes} writes by the writers meanwhile)");
    Ok(())
}

/// p50 and p99 of the same read sent straight to the replica, under the same load.
async fn plain_replica_reads(replica: &MySqlPool) -> Result<(Duration, Duration), BoxError> {
    let mut latencies = Vec::with_capacity(TRIALS as usize);
    for user in 0..TRIALS {
        let reading = Instant::now();
        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM posts WHERE author = ?")
            .bind(-user)
            .fetch_one(replica)
            .await?;
        latencies.push(reading.elapsed());
    }
    Ok(percentiles(&mut latencies))
}
