//! Read-your-own-writes under write load, on a throwaway PostgreSQL primary and streaming
//! replica started from the system's binaries (`apt-get install -y postgresql`): how many of
//! a session's reads right after its write a replica serves, whether any is stale, and what
//! waiting for the replica to replay the write adds to the read.
//!
//! `WRITERS` writers (4 by default, 0 for an idle primary) keep the primary busy (each `INSERT`
//! adds `ROWS` rows of 200 bytes, 4 by default); `REPLICATION=paused` stops the replica's apply
//! for the run, `REPLICATION=delayed` makes it apply each transaction a second late; each trial is one session's `INSERT` followed at once by its `SELECT` of what it
//! wrote, through the router.
//!
//! ```sh
//! cargo run --release --example own_reads --features sqlx-postgres
//! ROWS=200 cargo run --release --example own_reads --features sqlx-postgres # heavier writes
//! PACE=250 cargo run --release --example own_reads --features sqlx-postgres # 250 inserts/s per writer
//! WRITERS=0 REPLICATION=paused cargo run --release --example own_reads --features sqlx-postgres
//! ```

#[path = "support/own_reads.rs"]
#[macro_use]
mod own_reads;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use own_reads::{percentiles, print_head, print_row, Mode, Replication, Run, MODES, TRIALS};

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{ReplicaRouter, DEFAULT_POSITION_CAP};
use tower_lb::{Balance, BoxError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let replication = Replication::from_env()?;
    let apply_delay = match replication {
        Replication::Delayed => Duration::from_secs(1),
        _ => Duration::ZERO,
    };
    let Some(cluster) = postgres::Cluster::start_with_apply_delay(apply_delay) else {
        println!("PostgreSQL's server binaries are not installed: nothing to show.");
        return Ok(());
    };
    let connect =
        |url: String| async move { PgPoolOptions::new().max_connections(8).connect(&url).await };
    let primary = connect(cluster.primary_url()).await?;
    let replica = connect(cluster.replica_url()).await?;
    sqlx::raw_sql(
        "CREATE TABLE posts (author int NOT NULL); CREATE INDEX ON posts (author); \
         CREATE TABLE load (pad text)",
    )
    .execute(&primary)
    .await?;
    let started = Instant::now();
    while sqlx::raw_sql("SELECT 1 FROM load")
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
    if replication == Replication::Paused {
        sqlx::raw_sql("SELECT pg_wal_replay_pause()")
            .execute(&replica)
            .await?;
    }

    measure!(
        primary: primary,
        replica: replica,
        replication: replication,
        router: tower_lb::replica::PgRouter<Balance<&'static str, PgPool, P2c>>,
        load: |rows| format!("INSERT INTO load SELECT repeat('x', 200) FROM generate_series(1, {rows})"),
        write: "INSERT INTO posts (author) VALUES ($1)",
        read: "SELECT count(*) FROM posts WHERE author = $1",
    )
}
