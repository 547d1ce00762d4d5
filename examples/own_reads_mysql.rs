//! Read-your-own-writes under write load on MariaDB: a throwaway primary and GTID replica
//! started from the system's binaries (`apt-get install -y mariadb-server`): how many of a
//! session's reads right after its write a replica serves, whether any is stale, and what
//! waiting for the replica to apply the write adds to the read. The PostgreSQL twin is
//! `own_reads`.
//!
//! `WRITERS` writers (4 by default, 0 for an idle primary) keep the primary busy (each `INSERT`
//! adds `ROWS` rows of 200 bytes, 4 by default); `REPLICATION=paused` stops the replica's apply
//! for the run, `REPLICATION=delayed` makes it apply each transaction a second late; each trial is one session's `INSERT` followed at once by its `SELECT` of what it
//! wrote, through the router.
//!
//! ```sh
//! cargo run --release --example own_reads_mysql --features sqlx-mysql
//! ROWS=200 cargo run --release --example own_reads_mysql --features sqlx-mysql # heavier writes
//! PACE=250 cargo run --release --example own_reads_mysql --features sqlx-mysql # 250 inserts/s per writer
//! WRITERS=0 REPLICATION=paused cargo run --release --example own_reads_mysql --features sqlx-mysql
//! ```

#[path = "../tests/support/mariadb.rs"]
mod mariadb;
#[path = "support/own_reads.rs"]
#[macro_use]
mod own_reads;

use own_reads::{percentiles, print_head, print_row, Mode, Replication, Run, MODES, TRIALS};

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{ReplicaRouter, DEFAULT_POSITION_CAP};
use tower_lb::{Balance, BoxError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let replication = Replication::from_env()?;
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
    match replication {
        Replication::Live => {}
        Replication::Paused => {
            cluster.replica_sql("STOP SLAVE SQL_THREAD");
        }
        Replication::Delayed => {
            cluster.replica_sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 1; START SLAVE");
        }
    }

    measure!(
        primary: primary,
        replica: replica,
        replication: replication,
        router: tower_lb::replica::MySqlRouter<Balance<&'static str, MySqlPool, P2c>>,
        // MariaDB's SEQUENCE engine makes the rows.
        load: |rows| format!("INSERT INTO busy SELECT REPEAT('x', 200) FROM seq_1_to_{rows}"),
        write: "INSERT INTO posts (author) VALUES (?)",
        read: "SELECT COUNT(*) FROM posts WHERE author = ?",
    )
}
