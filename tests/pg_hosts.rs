//! A router from a libpq multi-host URL on a real PostgreSQL primary with two streaming
//! replicas: roles found by probing whatever the order of the hosts, `target_session_attrs`
//! mapped to where reads go, `load_balance_hosts=random` spreading them, and writes following
//! a promoted replica.
//!
//! Starts its own throwaway cluster (`tests/support/postgres.rs`); skipped with a loud notice
//! when the PostgreSQL binaries are missing, unless `CI` is set.

#[path = "support/postgres.rs"]
mod postgres;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tower_lb::replica::{router_error, PgHosts, PgHostsRouter, TargetSessionAttrs};
use tower_lb::Error;

/// Which server answers: a read the classifier may send to a replica (the node's own state,
/// `inet_server_port()`, would keep it on the primary).
const PORT: &str = "SELECT setting::int FROM pg_settings WHERE name = 'port'";

/// Which server answered `sql`, as the router sent it for `session`.
async fn port_of(db: &PgHostsRouter, session: &str, sql: &str) -> Result<u16, sqlx::Error> {
    let port: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&db.session(session))
        .await?;
    Ok(u16::try_from(port).expect("a port"))
}

/// How many of `n` reads each server answered.
async fn read_ports(db: &PgHostsRouter, n: usize) -> HashMap<u16, usize> {
    let mut ports = HashMap::new();
    for _ in 0..n {
        *ports
            .entry(port_of(db, "reader", PORT).await.unwrap())
            .or_default() += 1;
    }
    ports
}

fn url(ports: &[u16], query: &str) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!("postgresql://postgres@{}/postgres?{query}", hosts.join(","))
}

fn pool() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_a_multi_host_url_on_a_real_cluster() {
    let Some(mut cluster) = postgres::Cluster::start() else {
        return;
    };
    let (primary, replica_a) = (cluster.primary_port, cluster.replica_port);
    let replica_b = cluster.add_replica();
    // The primary in the middle: roles come from probing, not from the order.
    let hosts = [replica_a, primary, replica_b];
    let connect = |query: &str| {
        PgHosts::from_url(&url(&hosts, query))
            .unwrap()
            .pool_options(pool())
            .probe_every(Duration::from_millis(200))
            .connect()
    };

    // prefer-standby, random: writes on the primary, reads spread over both replicas, a
    // session's own read on the primary.
    let db = connect("target_session_attrs=prefer-standby&load_balance_hosts=random")
        .await
        .unwrap();
    let write = "INSERT INTO t VALUES (1) RETURNING inet_server_port()";
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(port_of(&db, "writer", write).await.unwrap(), primary);
    assert_eq!(
        port_of(&db, "writer", PORT).await.unwrap(),
        primary,
        "own read"
    );
    let reads = read_ports(&db, 400).await;
    assert_eq!(
        reads.len(),
        2,
        "both replicas, never the primary: {reads:?}"
    );
    for replica in [replica_a, replica_b] {
        let share = reads.get(&replica).copied().unwrap_or(0) as f64 / 400.0;
        assert!((0.4..=0.6).contains(&share), "random over two: {reads:?}");
    }
    // With no replica in rotation, reads fall back to the primary.
    for replica in [replica_a, replica_b] {
        db.replicas()
            .exclude(&format!("127.0.0.1:{replica}"), "test")
            .unwrap();
    }
    assert_eq!(port_of(&db, "reader", PORT).await.unwrap(), primary);
    assert_eq!(db.stats().fallback_reads, 1);
    drop(db);

    // standby: reads on replicas only; with none in rotation they fail, typed.
    let db = connect("target_session_attrs=standby").await.unwrap();
    let reads = read_ports(&db, 50).await;
    assert!(!reads.contains_key(&primary), "{reads:?}");
    assert_eq!(port_of(&db, "writer", write).await.unwrap(), primary);
    for replica in [replica_a, replica_b] {
        db.replicas()
            .exclude(&format!("127.0.0.1:{replica}"), "test")
            .unwrap();
    }
    let error = port_of(&db, "reader", PORT).await.unwrap_err();
    assert!(
        matches!(router_error(&error), Some(Error::NoReplica { .. })),
        "{error}"
    );
    assert_eq!(db.stats().reads_without_replica, 1);
    drop(db);

    // primary, from a list of connect options: every statement on the primary.
    let options = hosts.map(|port| {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .database("postgres")
    });
    let db = PgHosts::new(options)
        .target_session_attrs(TargetSessionAttrs::Primary)
        .pool_options(pool())
        .probe_every(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    assert_eq!(read_ports(&db, 20).await, HashMap::from([(primary, 20)]));
    drop(db);

    #[cfg(feature = "metrics")]
    own_reads_wait_for_replay_and_are_measured(&hosts).await;

    // The primary dies and replica a is promoted: writes follow within two probe intervals
    // of the promotion, reads go on meanwhile.
    let db = connect("target_session_attrs=prefer-standby")
        .await
        .unwrap();
    cluster.stop_primary();
    assert!(port_of(&db, "writer", write).await.is_err(), "no primary");
    assert!(port_of(&db, "reader", PORT).await.is_ok(), "reads go on");
    cluster.promote_replica();
    let promoted = Instant::now();
    let followed = loop {
        match port_of(&db, "writer", write).await {
            Ok(port) => break port,
            Err(_) if promoted.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("writes did not follow the promotion: {error}"),
        }
    };
    let after = promoted.elapsed();
    eprintln!("writes followed the promoted replica after {after:?}");
    assert_eq!(followed, replica_a);
    assert!(after <= Duration::from_millis(600), "{after:?}");
}

#[tokio::test]
async fn no_host_answering_is_a_typed_error() {
    // Free loopback ports with nothing listening: every probe is refused at once.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        })
        .collect();
    let started = Instant::now();
    let error = PgHosts::from_url(&url(&ports, "target_session_attrs=primary"))
        .unwrap()
        .probe_every(Duration::from_millis(100))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Unreachable { nodes: 2, .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Position mode through `PgHosts::builder`: a session's read after its write waits for a
/// replica to replay it, and the wait lands in the router's position-wait histogram.
#[cfg(feature = "metrics")]
async fn own_reads_wait_for_replay_and_are_measured(hosts: &[u16]) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower_lb::telemetry::Metrics;

    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    let db = PgHosts::from_url(&url(hosts, "target_session_attrs=prefer-standby"))
        .unwrap()
        .pool_options(pool())
        .builder()
        .unwrap()
        .read_your_writes_by_position(Duration::from_secs(30))
        .replay_wait(Duration::from_millis(50))
        .metrics(Metrics::new("db"))
        .build();
    db.ready(Duration::from_secs(5)).await.unwrap();
    for i in 0..10 {
        let insert = format!("INSERT INTO t VALUES ({i})");
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .execute(&db.session("owner"))
            .await
            .unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE x = $1")
            .bind(i)
            .fetch_one(&db.session("owner"))
            .await
            .unwrap();
        assert!(seen >= 1, "own write {i} read back");
    }
    let waits =
        (snapshots.snapshot().into_vec().into_iter()).find_map(|(key, _, _, value)| {
            match (key.key().name(), value) {
                ("tower_lb_replica_position_wait_seconds", DebugValue::Histogram(waits)) => {
                    Some(waits)
                }
                _ => None,
            }
        });
    let waits = waits.expect("position waits recorded");
    assert_eq!(waits.len(), 10, "one per own read");
    assert!(waits.iter().all(|w| w.into_inner() < 0.2), "{waits:?}");
}
