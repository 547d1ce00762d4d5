//! Read-your-own-writes under write load, on a throwaway PostgreSQL primary and streaming
//! replica started from the system's binaries (`apt-get install -y postgresql`): how many of
//! a session's reads right after its write a replica serves, whether any is stale, and what
//! waiting for the replica to replay the write adds to the read.
//!
//! Four writers keep the primary busy (each `INSERT` adds `ROWS` rows of 200 bytes, 4 by
//! default); each trial is one session's `INSERT` followed at once by its `SELECT` of what it
//! wrote, through the router.
//!
//! ```sh
//! cargo run --release --example own_reads --features sqlx-postgres
//! ROWS=200 cargo run --release --example own_reads --features sqlx-postgres # heavier writes
//! PACE=250 cargo run --release --example own_reads --features sqlx-postgres # 250 inserts/s per writer
//! ```

#[path = "support/own_reads.rs"]
#[macro_use]
mod own_reads;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use own_reads::{percentiles, print_head, print_row, Mode, Run, MODES, TRIALS, WRITERS};

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{ReplicaRouter, DEFAULT_POSITION_CAP};
use tower_lb::{Balance, BoxError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(cluster) = postgres::Cluster::start() else {
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

    measure!(
        primary: primary,
        replica: replica,
        router: tower_lb::replica::PgRouter<Balance<&'static str, PgPool, P2c>>,
        load: |rows| format!("INSERT INTO load SELECT repeat('x', 200) FROM generate_series(1, {rows})"),
        write: "INSERT INTO posts (author) VALUES ($1)",
        read: "SELECT count(*) FROM posts WHERE author = $1",
    )
}
