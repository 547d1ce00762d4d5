//! The router as a sqlx `Executor` over MariaDB pools (`MySqlRouter`), on a real primary and
//! GTID replica: writes go to the primary, plain reads to the replica, statements are
//! classified in MySQL's dialect, and in position mode a session reads its own writes from
//! the replica once it has applied their GTID, never stale (a naive read of the replica
//! right after the write is often stale: measured below too); transactions run on the
//! primary.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/mysql_nodes.rs"]
mod mysql_nodes;

use mysql_nodes::{builder, pool};
use sqlx::Row;
use std::time::{Duration, Instant};
use tower_lb::replica::{SqlClassifier, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_primary_and_own_reads_are_never_stale() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    cluster.primary_sql(&format!(
        "CREATE TABLE {}.notes (id INT AUTO_INCREMENT PRIMARY KEY, author INT, body TEXT)",
        mariadb::DATABASE
    ));
    cluster.wait_for_replica();
    let (primary, replica) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    // The classifier given is PostgreSQL's (the builder's default): the front reads MySQL's
    // dialect for MySQL pools whatever it is, so `@v` below is session state, not a read.
    let db = builder(&primary, &replica)
        .classify(SqlClassifier::new())
        .read_your_writes_by_position(Duration::from_secs(30))
        .replay_wait(Duration::from_millis(50))
        .build();

    // Plain reads on the replica, writes on the primary, session state on the primary.
    for _ in 0..20 {
        sqlx::query("SELECT COUNT(*) FROM notes")
            .fetch_one(&db)
            .await
            .unwrap();
    }
    let stats = db.stats();
    assert_eq!(
        (stats.replica_reads, stats.primary_reads),
        (20, 0),
        "{stats:?}"
    );
    sqlx::query("SELECT @v").fetch_one(&db).await.unwrap();
    let stats = db.stats();
    assert_eq!(
        (stats.writes, stats.replica_reads),
        (1, 20),
        "a variable is the connection's: to the primary, as a write"
    );

    // Write-then-read trials, each session its own author: position mode against naive
    // reads of the replica.
    let trials = 500;
    let (mut stale, mut naive_stale, mut waits) = (0, 0, Vec::new());
    let before = db.stats();
    for author in 0..trials {
        let session = db.session(author);
        sqlx::query("INSERT INTO notes (author, body) VALUES (?, 'x')")
            .bind(author)
            .execute(&session)
            .await
            .unwrap();
        // The naive way: write on the primary, read the replica at once.
        let naive_author = trials + author;
        sqlx::query("INSERT INTO notes (author, body) VALUES (?, 'x')")
            .bind(naive_author)
            .execute(&primary)
            .await
            .unwrap();
        let naive: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE author = ?")
            .bind(naive_author)
            .fetch_one(&replica)
            .await
            .unwrap();
        naive_stale += usize::from(naive == 0);
        let started = Instant::now();
        let row = sqlx::query("SELECT COUNT(*) AS n FROM notes WHERE author = ?")
            .bind(author)
            .fetch_one(&session)
            .await
            .unwrap();
        waits.push(started.elapsed());
        stale += usize::from(row.get::<i64, _>("n") == 0);
    }
    let after = db.stats();
    let on_replica = after.replica_reads - before.replica_reads;
    waits.sort();
    println!(
        "{trials} own-reads: {stale} stale, {on_replica} on the replica; a replica read right \
         after a write on the primary: {naive_stale} of {trials} stale; own-read p50 {:?} p99 {:?}",
        waits[trials as usize / 2],
        waits[trials as usize * 99 / 100]
    );
    assert_eq!(stale, 0, "an own-read was stale");
    assert_eq!(after.writes - before.writes, trials as u64);
    assert!(
        on_replica > 0,
        "position mode keeps own-reads on the replica"
    );

    // A transaction runs on the primary, on one connection; its commit is the session's
    // position; a rolled-back one leaves nothing.
    let session = db.session(-2);
    let mut tx = session.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (author, body) VALUES (-2, 'in a transaction')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE author = -2")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(inside, 1, "the transaction reads its own write");
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE author = -2")
        .fetch_one(&session)
        .await
        .unwrap();
    assert_eq!(n, 1, "the committed write is read by its session");
    let mut tx = session.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (author, body) VALUES (-3, 'rolled back')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE author = -3")
        .fetch_one(&primary)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Replication held back: own-reads go to the primary, still never stale.
    cluster.replica_sql("STOP SLAVE SQL_THREAD");
    let session = db.session(-1);
    sqlx::query("INSERT INTO notes (author, body) VALUES (-1, 'held')")
        .execute(&session)
        .await
        .unwrap();
    let before = db.stats();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE author = -1")
        .fetch_one(&session)
        .await
        .unwrap();
    assert_eq!(n, 1, "own write seen while the replica is held back");
    assert_eq!(db.stats().reads_behind - before.reads_behind, 1);
    cluster.replica_sql("START SLAVE SQL_THREAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_no_replica_can_have_goes_to_the_primary_without_waiting() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    let (primary, replica) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    let wait = Duration::from_secs(2);
    let db = builder(&primary, &replica)
        .read_your_writes_by_position(Duration::from_secs(30))
        .replay_wait(wait)
        .build();
    // The highest position there is: what a session holds when its write's position could
    // not be read on the primary.
    let expires = std::time::SystemTime::now() + Duration::from_secs(20);
    let expires = expires.duration_since(std::time::UNIX_EPOCH).unwrap();
    let token: Token = format!("v1.{:x}.{:x}", u64::MAX, expires.as_millis())
        .parse()
        .unwrap();
    let session = db.session_with_token(7, &token);
    let started = Instant::now();
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&session)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(one, 1);
    let stats = db.stats();
    assert_eq!(
        (stats.reads_behind, stats.replica_reads),
        (1, 0),
        "{stats:?}"
    );
    assert!(
        took < wait / 4,
        "the read waited {took:?} for a position no replica has"
    );
}

/// Position mode on a replica applying each transaction two seconds late (`MASTER_DELAY`,
/// of whole seconds of the event's timestamp: one to two seconds after the commit):
/// with no wait a session's read goes to the primary; with a budget longer than the delay
/// the replica waits for the write (`MASTER_GTID_WAIT`) and serves it; a budget shorter than
/// the delay gives up in time. A cluster of its own: the delay would slow the other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_mode_waits_for_the_replica_within_its_budget() {
    let Some(cluster) = mariadb::Cluster::start() else {
        return;
    };
    cluster.primary_sql(&format!(
        "CREATE TABLE {}.t (author INT)",
        mariadb::DATABASE
    ));
    cluster.wait_for_replica();
    let delay = Duration::from_secs(2);
    cluster.replica_sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 2; START SLAVE");
    let (primary, replica) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    for (user, wait, on_replica) in [
        (1, Duration::ZERO, false),
        (2, Duration::from_secs(5), true),
        (3, Duration::from_millis(10), false),
    ] {
        let db = builder(&primary, &replica)
            .read_your_writes_by_position(Duration::from_secs(30))
            .replay_wait(wait)
            .build();
        let session = db.session(user);
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(user)
            .execute(&session)
            .await
            .unwrap();
        let reading = Instant::now();
        let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE author = ?")
            .bind(user)
            .fetch_one(&session)
            .await
            .unwrap();
        let took = reading.elapsed();
        let stats = db.stats();
        assert_eq!(mine, 1, "wait {wait:?}: the session reads its own write");
        assert_eq!(
            (stats.replica_reads, stats.reads_behind),
            if on_replica { (1, 0) } else { (0, 1) },
            "wait {wait:?}: served by the replica: {on_replica}"
        );
        assert!(
            took < wait + delay + Duration::from_secs(1),
            "wait {wait:?}: the read took {took:?}"
        );
        if on_replica {
            assert!(took >= delay / 3, "it waited for the replica: {took:?}");
        }
        println!("replay_wait {wait:?}: on the replica {on_replica}, read took {took:?}");
    }
}
