//! Read/write splitting on a throwaway PostgreSQL primary and streaming replica, started by
//! this example from the system's binaries (`apt-get install -y postgresql`), with replay on
//! the replica paused so that it is as stale as a replica can be.
//!
//! Users write a note and read their notes back at once; other users only read. The table
//! shows, per mode, how many of the own-reads missed the user's write (stale) and the share of
//! all reads the replica served.
//!
//! ```sh
//! cargo run --example read_write --features sqlx-postgres
//! ```

#[path = "../tests/support/postgres.rs"]
mod postgres;

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use tower_lb::policy::P2c;
use tower_lb::replica::{PgRoleProbe, ReplicaRouter, RoleMonitor, DEFAULT_POSITION_CAP};
use tower_lb::{Balance, BoxError};

const WRITERS: i32 = 100;
const READERS: i32 = 100;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(cluster) = postgres::Cluster::start() else {
        println!("PostgreSQL's server binaries are not installed: nothing to show.");
        return Ok(());
    };
    let connect = |url: String| async move {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&url)
            .await
    };
    let primary = connect(cluster.primary_url()).await?;
    let replica = connect(cluster.replica_url()).await?;
    sqlx::raw_sql("CREATE TABLE notes (author int NOT NULL, body text)")
        .execute(&primary)
        .await?;
    wait_for_table(&replica).await?;
    sqlx::raw_sql("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await?;

    println!("replay on the replica is paused; {WRITERS} users write then read their own notes, {READERS} only read\n");
    println!("| mode | own reads | stale own reads | reads served by the replica |");
    println!("|---|---:|---:|---:|");
    for (name, mode, first_user) in [
        ("naive split (read-your-own-writes off)", Mode::Off, 0),
        ("window, 2 s (the default)", Mode::Window, 10_000),
        ("position (sqlx front)", Mode::Position, 20_000),
    ] {
        // Every node in both pools; the role monitor keeps each pool to the nodes of its role.
        let nodes = [("db-1", primary.clone()), ("db-2", replica.clone())];
        let pool = || {
            Balance::builder(P2c::new())
                .endpoints(nodes.clone())
                .build()
        };
        let builder = ReplicaRouter::builder(pool()?, pool()?)
            .role_monitor(RoleMonitor::new(PgRoleProbe::new(nodes.clone())));
        let db = match mode {
            Mode::Off => builder.read_your_writes(Duration::ZERO).build(),
            Mode::Window => builder.read_your_writes(Duration::from_secs(2)).build(),
            Mode::Position => builder
                .read_your_writes_by_position(DEFAULT_POSITION_CAP)
                .build(),
        };
        // Until the role monitor has found the primary, writes fail with NoPrimary.
        db.ready(Duration::from_secs(10)).await?;
        let mut stale = 0;
        for user in first_user..first_user + WRITERS {
            let session = db.session(user);
            sqlx::query("INSERT INTO notes (author, body) VALUES ($1, 'hello')")
                .bind(user)
                .execute(&session)
                .await?;
            let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = $1")
                .bind(user)
                .fetch_one(&session)
                .await?;
            stale += usize::from(mine == 0);
        }
        for reader in 0..READERS {
            let _: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
                .fetch_one(&db.session(-1 - reader))
                .await?;
        }
        let stats = db.stats();
        let reads =
            stats.replica_reads + stats.pinned_reads + stats.fallback_reads + stats.reads_behind;
        println!(
            "| {name} | {WRITERS} | {stale} | {:.0} % |",
            100.0 * stats.replica_reads as f64 / reads as f64
        );
    }
    println!(
        "\nWith replay paused no replica has the users' writes, so position mode reads them from \
         the primary too;\nonce replay runs, it reads them from the replica as soon as it has \
         replayed them (tests/replica_postgres.rs)."
    );
    Ok(())
}

enum Mode {
    Off,
    Window,
    Position,
}

async fn wait_for_table(replica: &PgPool) -> Result<(), BoxError> {
    for _ in 0..500 {
        if sqlx::raw_sql("SELECT 1 FROM notes")
            .execute(replica)
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("the replica never replayed the table".into())
}
