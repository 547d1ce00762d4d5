//! Read/write splitting on a real PostgreSQL primary with a real streaming replica, through
//! sqlx: writes land on the primary, reads on the replica, a session always reads its own
//! writes, and reads fall back to the primary when the replica dies.
//!
//! Starts its own throwaway cluster from the system binaries (`tests/support/postgres.rs`);
//! skipped with a loud notice when they are missing, unless `CI` is set.

#[path = "support/postgres.rs"]
mod postgres;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::time::{Duration, Instant};
use tower::{service_fn, Service, ServiceExt};
use tower_lb::health::Outlier;
use tower_lb::policy::P2c;
use tower_lb::replica::ReplicaRouter;
use tower_lb::retry::Replay;
use tower_lb::sticky::key_fn;
use tower_lb::Balance;

/// A statement and the session (user) that sends it.
#[derive(Debug, Clone)]
struct Query {
    session: u32,
    sql: String,
}

impl AsRef<str> for Query {
    fn as_ref(&self) -> &str {
        &self.sql
    }
}

/// A failed read may be resent to the primary.
impl Replay for Query {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

fn query(session: u32, sql: &str) -> Query {
    Query {
        session,
        sql: sql.to_string(),
    }
}

/// An endpoint: runs the statement on its node's pool.
fn node(
    pool: PgPool,
) -> impl Service<
    Query,
    Response = Vec<PgRow>,
    Error = sqlx::Error,
    Future = impl std::future::Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send,
> + Clone
       + Send
       + Sync {
    service_fn(move |query: Query| {
        let pool = pool.clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(query.sql.clone()))
                .fetch_all(&pool)
                .await
        }
    })
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .unwrap_or_else(|error| panic!("connect {url}: {error}"))
}

/// Waits (10 s at most) until the replica has replayed the creation of `table`.
async fn wait_for_table(replica: &PgPool, table: &str) {
    let started = Instant::now();
    let probe = format!("SELECT 1 FROM {table}");
    while sqlx::raw_sql(sqlx::AssertSqlSafe(probe.as_str()))
        .execute(replica)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A pool of PostgreSQL nodes for the sqlx front.
#[cfg(feature = "sqlx-postgres")]
type PgNodes = Balance<&'static str, PgPool, P2c>;

/// A router whose endpoints are the two pools themselves (the sqlx front); replicas out of
/// rotation fail fast, so reads fall back.
#[cfg(feature = "sqlx-postgres")]
fn pg_router(
    primary: &PgPool,
    replica: &PgPool,
) -> tower_lb::replica::ReplicaRouterBuilder<
    PgNodes,
    PgNodes,
    tower_lb::replica::SqlClassifier,
    tower_lb::replica::WholeRouter,
> {
    ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoint("primary", primary.clone())
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .panic_threshold(0.0)
            .endpoint("replica", replica.clone())
            .build()
            .unwrap(),
    )
    .classify(which_node())
}

/// The tests ask a node whether it is in recovery to tell which node served a read. The
/// node's own state goes to the primary by default; declared a read here, it may go to a
/// replica, as an application would declare it.
fn which_node() -> tower_lb::replica::SqlClassifier {
    tower_lb::replica::SqlClassifier::new().read_functions(["pg_is_in_recovery"])
}

fn one_i64(rows: &[PgRow]) -> i64 {
    rows[0].get::<i64, _>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_primary_reads_to_the_replica_and_sessions_read_their_writes() {
    // The replica applies each commit 300 ms late, so a read that goes to it right after a
    // write cannot see that write.
    let Some(mut cluster) = postgres::Cluster::start_with_apply_delay(Duration::from_millis(300))
    else {
        return;
    };
    let primary_pool = pool(&cluster.primary_url()).await;
    let replica_pool = pool(&cluster.replica_url()).await;
    let router = |window: Duration| {
        let primary = Balance::builder(P2c::new())
            .outlier(Outlier::disabled())
            .endpoint("primary", node(primary_pool.clone()))
            .build()
            .unwrap();
        let replicas = Balance::builder(P2c::new())
            .outlier(
                Outlier::consecutive_failures(1)
                    .base_ejection(Duration::from_secs(60))
                    .max_ejected_percent(100),
            )
            .panic_threshold(0.0)
            .endpoint("replica", node(replica_pool.clone()))
            .build()
            .unwrap();
        ReplicaRouter::builder(primary, replicas)
            .classify(which_node())
            .session(key_fn(|query: &Query| Some(query.session)))
            .read_your_writes(window)
            .build()
    };
    let db = router(Duration::from_secs(2));

    // DDL is a write: on the primary. Wait (bounded) until the replica has replayed it.
    let sql = "CREATE TABLE posts (id serial PRIMARY KEY, author int NOT NULL)";
    db.clone().oneshot(query(0, sql)).await.unwrap();
    wait_for_table(&replica_pool, "posts").await;

    // A plain read goes to the replica: it is in recovery.
    let in_recovery = db
        .clone()
        .oneshot(query(9, "SELECT pg_is_in_recovery()::int::int8"))
        .await
        .unwrap();
    assert_eq!(one_i64(&in_recovery), 1, "served by the replica");

    // Session 1 writes and reads back at once, 1 000 times: it always sees its own write
    // (the replica has not applied it yet).
    for written in 1..=1000 {
        db.clone()
            .oneshot(query(1, "INSERT INTO posts (author) VALUES (1)"))
            .await
            .unwrap();
        let rows = db
            .clone()
            .oneshot(query(1, "SELECT count(*) FROM posts WHERE author = 1"))
            .await
            .unwrap();
        assert_eq!(one_i64(&rows), written, "session 1 read its own write");
    }
    let stats = db.stats();
    assert_eq!((stats.writes, stats.pinned_reads), (1001, 1000));
    assert_eq!(stats.fallback_reads, 0);

    // The same without read-your-own-writes: reads right after writes go to the replica and
    // miss them.
    let unpinned = router(Duration::ZERO);
    let mut stale = 0;
    for written in 1..=1000 {
        let insert = query(2, "INSERT INTO posts (author) VALUES (2)");
        unpinned.clone().oneshot(insert).await.unwrap();
        let count = query(2, "SELECT count(*) FROM posts WHERE author = 2");
        let rows = unpinned.clone().oneshot(count).await.unwrap();
        stale += usize::from(one_i64(&rows) < written);
    }
    assert_eq!(unpinned.stats().replica_reads, 1000);
    println!("without read-your-own-writes: {stale} of 1000 reads missed the session's own write");
    assert!(
        stale >= 900,
        "only {stale} of 1000 reads were stale: is the replica lagging?"
    );

    // The replica dies in the middle of 2 000 reads: none fails (a read that fails on the
    // replica is retried on the primary; once ejected, the replica gets no more reads).
    let mut failed = 0;
    let mut served_by_primary = 0;
    for read in 0..2000 {
        if read == 500 {
            cluster.stop_replica();
        }
        let query = query(3, "SELECT pg_is_in_recovery()::int::int8");
        match db.clone().oneshot(query).await {
            Ok(rows) => served_by_primary += usize::from(one_i64(&rows) == 0),
            Err(error) => {
                failed += 1;
                eprintln!("read {read} failed: {error}");
            }
        }
    }
    assert_eq!(failed, 0, "reads failed while the replica died");
    assert!(served_by_primary >= 1500, "{served_by_primary}");
    let stats = db.stats();
    println!(
        "replica stopped during 2000 reads: {failed} failed, {} retried on the primary, {} fell back",
        stats.retried_reads, stats.fallback_reads
    );
    assert!(stats.retried_reads >= 1 && stats.fallback_reads >= 1);
    // Writes were never affected.
    db.clone()
        .oneshot(query(3, "INSERT INTO posts (author) VALUES (3)"))
        .await
        .unwrap();
}

#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_replaying_is_taken_out_of_reads_and_returns() {
    use tower_lb::replica::{LagMonitor, PgLagProbe};

    let Some(cluster) = postgres::Cluster::start() else {
        return;
    };
    let primary_pool = pool(&cluster.primary_url()).await;
    let replica_pool = pool(&cluster.replica_url()).await;
    let interval = Duration::from_millis(100);
    let max_lag = Duration::from_millis(300);
    let primary = Balance::builder(P2c::new())
        .endpoint("primary", node(primary_pool.clone()))
        .build()
        .unwrap();
    let replicas = Balance::builder(P2c::new())
        .panic_threshold(0.0)
        .endpoint("replica", node(replica_pool.clone()))
        .build()
        .unwrap();
    let probe = PgLagProbe::new(primary_pool.clone(), [("replica", replica_pool.clone())]);
    let db = ReplicaRouter::builder(primary, replicas)
        .classify(which_node())
        .session(key_fn(|query: &Query| Some(query.session)))
        .lag_monitor(LagMonitor::new(probe).every(interval).max_lag(max_lag))
        .build();
    let excluded = || db.replicas().snapshot()[0].excluded;
    let served_by_replica = || async {
        let read = query(2, "SELECT pg_is_in_recovery()::int::int8");
        one_i64(&db.clone().oneshot(read).await.unwrap()) == 1
    };

    db.clone()
        .oneshot(query(1, "CREATE TABLE events (id serial PRIMARY KEY)"))
        .await
        .unwrap();
    assert!(served_by_replica().await);
    assert_eq!(db.stats().lag_monitor, tower_lb::DriverState::Running);

    // Replay stops while writes go on: the replica falls behind and is excluded.
    sqlx::raw_sql("SELECT pg_wal_replay_pause()")
        .execute(&replica_pool)
        .await
        .unwrap();
    let paused = Instant::now();
    while excluded().is_none() {
        db.clone()
            .oneshot(query(1, "INSERT INTO events DEFAULT VALUES"))
            .await
            .unwrap();
        assert!(paused.elapsed() < Duration::from_secs(10), "never excluded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let excluded_after = paused.elapsed();
    assert_eq!(excluded(), Some("replica lagging"));
    // It fell behind at the first write after the pause; it is out within max_lag plus two
    // intervals (and the time the probes themselves take on a busy machine).
    assert!(
        excluded_after < max_lag + 2 * interval + Duration::from_millis(500),
        "excluded after {excluded_after:?}"
    );
    let fallbacks = db.stats().fallback_reads;
    assert!(!served_by_replica().await, "reads go to the primary");
    assert_eq!(db.stats().fallback_reads, fallbacks + 1);

    // Replay resumes: the replica catches up and is back in reads.
    sqlx::raw_sql("SELECT pg_wal_replay_resume()")
        .execute(&replica_pool)
        .await
        .unwrap();
    let resumed = Instant::now();
    while excluded().is_some() {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "never readmitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let readmitted_after = resumed.elapsed();
    assert!(served_by_replica().await);
    println!(
        "replay paused: excluded after {excluded_after:?} (max lag {max_lag:?}, interval \
         {interval:?}); replay resumed: back after {readmitted_after:?}"
    );
}

#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_fast_without_a_primary_and_follow_a_promoted_replica() {
    use tower_lb::replica::{PgRoleProbe, RoleMonitor};
    use tower_lb::Error;

    let Some(mut cluster) = postgres::Cluster::start() else {
        return;
    };
    let (db1, db2) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    let interval = Duration::from_millis(200);
    let nodes = [("db-1", node(db1.clone())), ("db-2", node(db2.clone()))];
    // A call in flight when its node dies ends at the per-call timeout; later ones do not wait.
    let primary = Balance::builder(P2c::new())
        .timeout(Duration::from_millis(500))
        .endpoints(nodes.clone())
        .build()
        .unwrap();
    let replicas = Balance::builder(P2c::new())
        .timeout(Duration::from_millis(500))
        .panic_threshold(0.0)
        .endpoints(nodes)
        .build()
        .unwrap();
    let probe = PgRoleProbe::new([("db-1", db1), ("db-2", db2)]);
    let db = ReplicaRouter::builder(primary, replicas)
        .read_your_writes(Duration::ZERO)
        .role_monitor(RoleMonitor::new(probe).every(interval))
        .build();
    let write = || db.clone().oneshot(query(1, "INSERT INTO t DEFAULT VALUES"));
    let read = || db.clone().oneshot(query(2, "SELECT count(*) FROM t"));

    // The first probes find the primary.
    let started = Instant::now();
    loop {
        let create = db
            .clone()
            .oneshot(query(1, "CREATE TABLE t (id serial PRIMARY KEY)"));
        if create.await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no primary found"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write().await.unwrap();
    let caught_up = Instant::now();
    while !matches!(read().await, Ok(rows) if one_i64(&rows) == 1) {
        assert!(
            caught_up.elapsed() < Duration::from_secs(5),
            "replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The primary dies: within 2 s writes fail fast with NoPrimary; reads go on.
    cluster.stop_primary();
    let stopped = Instant::now();
    loop {
        let attempt = Instant::now();
        let error = write().await.unwrap_err();
        if matches!(error.downcast_ref::<Error>(), Some(Error::NoPrimary { .. })) {
            assert!(
                attempt.elapsed() < Duration::from_millis(50),
                "NoPrimary is immediate"
            );
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "writes still wait: {error}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let no_primary_after = stopped.elapsed();
    assert_eq!(one_i64(&read().await.unwrap()), 1, "reads go on");

    // The replica is promoted: writes follow it within two probe intervals.
    cluster.promote_replica();
    let promoted = Instant::now();
    while write().await.is_err() {
        assert!(
            promoted.elapsed() < 2 * interval + Duration::from_secs(1),
            "writes did not follow"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let followed_after = promoted.elapsed();
    assert_eq!(
        one_i64(&read().await.unwrap()),
        2,
        "the promoted node serves reads too"
    );
    println!(
        "primary stopped: NoPrimary after {no_primary_after:?}; replica promoted: writes \
         followed after {followed_after:?} (probe interval {interval:?})"
    );
}

/// A switchover seen through SQLSTATE 25006: the old primary is fenced read-only and the
/// replica promoted, between two role probes a minute apart. The first write still goes to
/// the old primary and is refused as read-only; that refusal re-probes the roles at once, and
/// the next writes land on the promoted node, long before the next scheduled probe.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_read_only_reprobes_roles_at_once() {
    use tower_lb::replica::{PgRoleProbe, RoleMonitor};

    let Some(mut cluster) = postgres::Cluster::start() else {
        return;
    };
    let (db1, db2) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    let nodes = [("db-1", db1.clone()), ("db-2", db2.clone())];
    let interval = Duration::from_secs(60);
    let db = ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoints(nodes.clone())
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .panic_threshold(0.0)
            .endpoints(nodes)
            .build()
            .unwrap(),
    )
    .role_monitor(
        RoleMonitor::new(PgRoleProbe::new([
            ("db-1", db1.clone()),
            ("db-2", db2.clone()),
        ]))
        .every(interval),
    )
    .build();
    let insert = || sqlx::query("INSERT INTO switch DEFAULT VALUES").execute(&db);

    // The first probes find db-1 the primary.
    let started = Instant::now();
    while sqlx::query("CREATE TABLE switch (id serial PRIMARY KEY)")
        .execute(&db)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no primary found"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for_table(&db2, "switch").await;

    // Switchover: fence db-1 (new transactions read-only), promote db-2.
    for statement in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&db1).await.unwrap();
    }
    let fencing = Instant::now();
    while sqlx::query_scalar::<_, String>("SHOW transaction_read_only")
        .fetch_one(&db1)
        .await
        .unwrap()
        != "on"
    {
        assert!(
            fencing.elapsed() < Duration::from_secs(5),
            "db-1 never turned read-only"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.promote_replica();

    let refused = insert().await.unwrap_err();
    let refused_at = Instant::now();
    assert!(
        matches!(&refused, sqlx::Error::Database(e) if e.code().as_deref() == Some("25006")),
        "the old primary refuses the write as read-only: {refused}"
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
    let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM switch")
        .fetch_one(&db2)
        .await
        .unwrap();
    assert_eq!(landed, 21, "every write landed on the promoted node");
    println!(
        "25006 on the fenced primary: writes followed the promoted node {followed_after:?} \
         later (scheduled probes every {interval:?})"
    );
}

/// The sqlx front: the router over `PgPool`s is an `Executor`; queries keep their shape.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_queries_run_through_the_router_as_an_executor() {
    let Some(cluster) = postgres::Cluster::start_with_apply_delay(Duration::from_millis(300))
    else {
        return;
    };
    let primary_pool = pool(&cluster.primary_url()).await;
    let replica_pool = pool(&cluster.replica_url()).await;
    let db = pg_router(&primary_pool, &replica_pool).build();

    sqlx::query("CREATE TABLE notes (id serial PRIMARY KEY, author int NOT NULL, body text)")
        .execute(&db)
        .await
        .unwrap();
    wait_for_table(&replica_pool, "notes").await;
    let in_recovery = |session: u32| {
        let db = &db;
        async move {
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&db.session(session))
                .await
                .unwrap()
        }
    };
    assert!(
        in_recovery(7).await,
        "a fresh session reads from the replica"
    );

    for written in 1..=20i64 {
        sqlx::query("INSERT INTO notes (author, body) VALUES ($1, $2)")
            .bind(1)
            .bind(format!("note {written}"))
            .execute(&db.session(1))
            .await
            .unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = $1")
            .bind(1)
            .fetch_one(&db.session(1))
            .await
            .unwrap();
        assert_eq!(count, written, "session 1 reads its own writes");
    }
    let other: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&db.session(2))
        .await
        .unwrap();
    assert!(
        other < 20,
        "another session reads the (lagging) replica: {other}"
    );

    // A transaction runs on the primary, on one connection; its commit pins the session.
    let mut tx = db.session(3).begin().await.unwrap();
    sqlx::query("INSERT INTO notes (author) VALUES (3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = 3")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(inside, 1, "the transaction sees its own insert");
    tx.commit().await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = 3")
        .fetch_one(&db.session(3))
        .await
        .unwrap();
    assert_eq!(
        after, 1,
        "after commit the session reads it (from the primary)"
    );

    // Each statement counted against its pool.
    let stats = db.stats();
    assert_eq!(stats.writes, 1 + 20 + 1);
    assert!(
        stats.replica_reads >= 2 && stats.pinned_reads >= 21,
        "{stats:?}"
    );
    assert_eq!(db.primary().snapshot()[0].in_flight, 0);
}

/// The sqlx front sends a read that a replica fails (here: killed) to the primary, through
/// both of sqlx's paths (`fetch_optional` under `fetch_one`, the row stream under
/// `fetch_all`): no read fails.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_reads_that_a_replica_fails_are_answered_by_the_primary() {
    let Some(mut cluster) = postgres::Cluster::start() else {
        return;
    };
    let primary_pool = pool(&cluster.primary_url()).await;
    // A dead node's pool answers once its acquire timeout runs out.
    let replica_pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(250))
        .connect(&cluster.replica_url())
        .await
        .unwrap();
    let db = pg_router(&primary_pool, &replica_pool).build();
    sqlx::query("CREATE TABLE kept (id int)")
        .execute(&db.session(0))
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (1), (2), (3)")
        .execute(&db.session(0))
        .await
        .unwrap();
    wait_for_table(&replica_pool, "kept").await;
    let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM kept");
    let list = || sqlx::query("SELECT id FROM kept WHERE id > $1").bind(0);
    let caught_up = Instant::now();
    while count().fetch_one(&replica_pool).await.unwrap() < 3 {
        assert!(
            caught_up.elapsed() < Duration::from_secs(10),
            "replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(list().fetch_all(&db.session(1)).await.unwrap().len(), 3);
    assert_eq!(db.stats().replica_reads, 1);

    cluster.stop_replica();
    let stopped = Instant::now();
    for session in 2..202 {
        let rows = if session % 2 == 0 {
            count().fetch_one(&db.session(session)).await
        } else {
            list()
                .fetch_all(&db.session(session))
                .await
                .map(|rows| rows.len() as i64)
        };
        assert_eq!(rows.unwrap(), 3, "read {session} after the replica died");
    }
    let stats = db.stats();
    assert!(stats.retried_reads >= 1, "{stats:?}");
    println!(
        "replica killed: 200 of 200 sqlx reads answered in {:?}; {} sent again to the \
         primary, {} fell back once the replica was out",
        stopped.elapsed(),
        stats.retried_reads,
        stats.fallback_reads
    );
}

/// Position mode through the sqlx front: a session reads its own writes from any replica that
/// has replayed them, and from the primary until one has; its state travels as a token.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_mode_reads_own_writes_from_caught_up_replicas_and_tokens_carry_it() {
    use tower_lb::replica::{Token, DEFAULT_POSITION_CAP};

    let Some(cluster) = postgres::Cluster::start() else {
        return;
    };
    let primary_pool = pool(&cluster.primary_url()).await;
    let replica_pool = pool(&cluster.replica_url()).await;
    let router = |window: Option<Duration>| {
        let builder = pg_router(&primary_pool, &replica_pool);
        match window {
            Some(window) => builder.read_your_writes(window).build(),
            None => builder
                .read_your_writes_by_position(DEFAULT_POSITION_CAP)
                .build(),
        }
    };
    let (db, other_server) = (router(None), router(None));
    sqlx::query("CREATE TABLE items (author int NOT NULL)")
        .execute(&db)
        .await
        .unwrap();
    wait_for_table(&replica_pool, "items").await;
    let count = |author: i32| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM items WHERE author = $1").bind(author)
    };
    let insert = |author: i32| sqlx::query("INSERT INTO items (author) VALUES ($1)").bind(author);

    // Replay paused: 500 writes, each read back at once, through one server and through
    // another that has only the token. None is stale.
    sqlx::raw_sql("SELECT pg_wal_replay_pause()")
        .execute(&replica_pool)
        .await
        .unwrap();
    let mut stale = 0;
    for written in 1..=500i64 {
        insert(1).execute(&db.session(1)).await.unwrap();
        stale += usize::from(count(1).fetch_one(&db.session(1)).await.unwrap() < written);
        let token: Token = db.session(1).token().unwrap().to_string().parse().unwrap();
        let elsewhere = other_server.session_with_token(1, &token);
        stale += usize::from(count(1).fetch_one(&elsewhere).await.unwrap() < written);
    }
    assert_eq!(stale, 0, "stale own reads with replay paused");
    assert!(db.stats().reads_behind >= 500 && other_server.stats().reads_behind >= 500);
    let fresh_session = count(1).fetch_one(&db.session(2)).await.unwrap();
    assert_eq!(
        fresh_session, 0,
        "a session without writes reads the paused replica"
    );

    // Replay running: reads issued 100 ms after the session's write mostly find the replica
    // caught up. The window mode sends all of them to the primary.
    sqlx::raw_sql("SELECT pg_wal_replay_resume()")
        .execute(&replica_pool)
        .await
        .unwrap();
    let window = router(Some(Duration::from_secs(2)));
    for (name, db) in [("position", &db), ("window", &window)] {
        let before = db.stats();
        for written in 1..=20i64 {
            insert(3).execute(&db.session(3)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let seen = count(3).fetch_one(&db.session(3)).await.unwrap();
            assert!(seen >= written, "{name}: stale own read");
        }
        let after = db.stats();
        let on_replica = after.replica_reads - before.replica_reads;
        println!("{name} mode: {on_replica} of 20 own reads 100 ms after the write served by the replica");
        match name {
            "position" => assert!(on_replica >= 16, "only {on_replica} of 20 on the replica"),
            _ => assert_eq!(on_replica, 0),
        }
        sqlx::query("DELETE FROM items WHERE author = 3")
            .execute(db)
            .await
            .unwrap();
    }
}

/// A dead primary with both monitors on, through the sqlx front, on pools whose
/// `acquire_timeout` (30 s) is far longer than any probe: a write already waiting for the
/// dead primary stops waiting and fails with a typed `NoPrimary` within a few probe
/// intervals, and reads keep going to the replica, whose lag is judged from its own side.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_fails_writes_fast_and_leaves_reads_on_the_replica() {
    use tower_lb::replica::{router_error, LagMonitor, PgLagProbe, PgRoleProbe, RoleMonitor};
    use tower_lb::Error;

    let Some(mut cluster) = postgres::Cluster::start() else {
        return;
    };
    let patient = |url: String| async move {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await
            .unwrap()
    };
    let (db1, db2) = (
        patient(cluster.primary_url()).await,
        patient(cluster.replica_url()).await,
    );
    let interval = Duration::from_millis(200);
    let nodes = [("db-1", db1.clone()), ("db-2", db2.clone())];
    let pool = |panic_threshold| {
        Balance::builder(P2c::new())
            .panic_threshold(panic_threshold)
            .endpoints(nodes.clone())
            .build()
            .unwrap()
    };
    let lag = PgLagProbe::new(db1.clone(), nodes.clone());
    let db = ReplicaRouter::builder(pool(0.5), pool(0.0))
        .read_your_writes(Duration::ZERO)
        .role_monitor(RoleMonitor::new(PgRoleProbe::new(nodes.clone())).every(interval))
        .lag_monitor(LagMonitor::new(lag).every(interval))
        .build();
    db.ready(Duration::from_secs(10)).await.unwrap();
    sqlx::query("CREATE TABLE t (id serial PRIMARY KEY)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t DEFAULT VALUES")
        .execute(&db)
        .await
        .unwrap();
    wait_for_table(&db2, "t").await;
    let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t").fetch_one(&db);
    let started = Instant::now();
    while !matches!(count().await, Ok(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica never in reads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.stop_primary();
    let stopped = Instant::now();
    let write = sqlx::query("INSERT INTO t DEFAULT VALUES")
        .execute(&db)
        .await;
    let failed_after = stopped.elapsed();
    let error = write.expect_err("the primary is down");
    assert!(
        matches!(router_error(&error), Some(Error::NoPrimary { .. })),
        "a typed NoPrimary, not {error}"
    );
    assert!(
        failed_after < 10 * interval,
        "the write waited {failed_after:?} (probe interval {interval:?})"
    );

    let (mut served, reads) = (0, 1000);
    let reading = Instant::now();
    for _ in 0..reads {
        served += usize::from(matches!(count().await, Ok(1)));
    }
    println!(
        "primary stopped: write failed with NoPrimary after {failed_after:?}; \
         {served}/{reads} reads served in {:?}",
        reading.elapsed()
    );
    assert!(
        served * 1000 >= reads * 999,
        "only {served} of {reads} reads served"
    );
}

/// Position mode's replay wait on a replica that applies each commit 100 ms late: without a
/// wait the session's read goes to the primary; with a budget it waits for the replica and
/// reads its own write there, and a budget shorter than the delay gives up in time.
#[cfg(feature = "sqlx-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_mode_waits_for_the_replica_within_its_budget() {
    use tower_lb::replica::DEFAULT_POSITION_CAP;

    let delay = Duration::from_millis(100);
    let Some(cluster) = postgres::Cluster::start_with_apply_delay(delay) else {
        return;
    };
    let (primary_pool, replica_pool) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );
    sqlx::raw_sql("CREATE TABLE t (author int)")
        .execute(&primary_pool)
        .await
        .unwrap();
    wait_for_table(&replica_pool, "t").await;
    for (user, wait, on_replica) in [
        (1, Duration::ZERO, false),
        (2, Duration::from_secs(5), true),
        (3, Duration::from_millis(10), false),
    ] {
        let db = pg_router(&primary_pool, &replica_pool)
            .read_your_writes_by_position(DEFAULT_POSITION_CAP)
            .replay_wait(wait)
            .build();
        let session = db.session(user);
        sqlx::query("INSERT INTO t VALUES ($1)")
            .bind(user)
            .execute(&session)
            .await
            .unwrap();
        let reading = Instant::now();
        let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE author = $1")
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
            assert!(took >= delay / 2, "it waited for the replay: {took:?}");
        }
    }
}
