//! The previous majors of reqwest (0.12, feature `reqwest-0_12`) and sqlx (0.8, feature
//! `sqlx-0_8`) through the same adapters as the current ones: real loopback HTTP servers
//! behind a reqwest 0.12 client, and a real PostgreSQL primary and replica behind sqlx 0.8
//! pools.

#[path = "../examples/support/backend.rs"]
mod backend;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

#[cfg(feature = "reqwest-0_12")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_0_12_endpoints_spread_requests_and_a_failing_server_is_checked_out() {
    use reqwest_0_12 as reqwest;
    use tower::ServiceExt;
    use tower_lb::health::{ActiveChecks, HttpCheck};
    use tower_lb::policy::RoundRobin;
    use tower_lb::retry::{RetryLayer, RetryPolicy};
    use tower_lb::{Balance, EndpointState};

    let backends = backend::start_many(3).await.unwrap();
    let client = reqwest::Client::new();
    let lb = Balance::builder(RoundRobin::new())
        .http_endpoints(&client, backends.iter().map(|b| b.url()))
        .unwrap()
        .health_check(
            ActiveChecks::new(HttpCheck::with_client(client.clone(), "/healthz"))
                .every(Duration::from_millis(50))
                .fall(1),
        )
        .build()
        .unwrap();
    let send = |lb: &Balance<String, _, RoundRobin>| {
        let request = reqwest::Request::new(reqwest::Method::GET, "http://any/".parse().unwrap());
        tower::ServiceBuilder::new()
            .layer(RetryLayer::new(RetryPolicy::new(2)))
            .service(lb.clone())
            .oneshot(request)
    };
    for _ in 0..300 {
        let response = send(&lb).await.unwrap();
        assert!(response.status().is_success());
    }
    let hits: Vec<u64> = backends.iter().map(|b| b.hits()).collect();
    assert!(
        hits.iter().all(|&h| h >= 90),
        "round robin spread: {hits:?}"
    );

    backends[1].set_failing(true);
    let key = backends[1].url();
    let started = Instant::now();
    let state = || {
        lb.snapshot()
            .into_iter()
            .find(|e| e.key == key)
            .unwrap()
            .state
    };
    while state() != EndpointState::Failing {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never checked out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = backends[1].hits();
    for _ in 0..100 {
        let response = send(&lb).await.unwrap();
        assert!(response.status().is_success());
    }
    // Only its health checks reach it now.
    assert!(backends[1].hits() - before < 20);
}

#[cfg(feature = "sqlx-0_8")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_0_8_pools_route_writes_reads_and_transactions() {
    use sqlx::postgres::{PgPool, PgPoolOptions};
    use sqlx_0_8 as sqlx;
    use tower_lb::policy::P2c;
    use tower_lb::replica::sqlx_0_8::{router_error, PgHosts, PgLagProbe};
    use tower_lb::replica::{LagMonitor, ReplicaRouter, SqlClassifier};
    use tower_lb::{Balance, Error};

    // The replica applies each commit 300 ms late: a read there right after a write misses it.
    let Some(cluster) = postgres::Cluster::start_with_apply_delay(Duration::from_millis(300))
    else {
        return;
    };
    let pool = |url: String| async move {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&url)
            .await
            .unwrap()
    };
    let primary: PgPool = pool(cluster.primary_url()).await;
    let replica: PgPool = pool(cluster.replica_url()).await;
    sqlx::raw_sql("CREATE TABLE notes (author int NOT NULL)")
        .execute(&primary)
        .await
        .unwrap();
    let db = ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoint("primary", primary.clone())
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .endpoint("replica", replica.clone())
            .build()
            .unwrap(),
    )
    .classify(SqlClassifier::new().read_functions(["pg_is_in_recovery"]))
    .lag_monitor(
        LagMonitor::new(PgLagProbe::new(
            primary.clone(),
            [("replica", replica.clone())],
        ))
        .every(Duration::from_millis(100))
        .max_lag(Duration::from_secs(10)),
    )
    .build();
    db.ready(Duration::from_secs(10)).await.unwrap();

    let in_recovery = |session| {
        let db = &db;
        async move {
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&db.session(session))
                .await
                .unwrap()
        }
    };
    assert!(in_recovery(1).await, "a read goes to the replica");

    sqlx::query("INSERT INTO notes (author) VALUES ($1)")
        .bind(1)
        .execute(&db.session(1))
        .await
        .unwrap();
    let own: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE author = $1")
        .bind(1)
        .fetch_one(&db.session(1))
        .await
        .unwrap();
    assert_eq!(own, 1, "the writing session reads its own write");
    assert!(!in_recovery(1).await, "from the primary");
    assert!(
        in_recovery(2).await,
        "another session still reads the replica"
    );

    let mut transaction = db.session(3).begin().await.unwrap();
    sqlx::query("INSERT INTO notes (author) VALUES (3)")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert!(!in_recovery(3).await, "a commit pins the session's reads");
    let stats = db.stats();
    assert_eq!((stats.writes, stats.pinned_reads), (2, 3), "{stats:?}");

    db.primary().exclude(&"primary", "switchover").unwrap();
    let error = sqlx::query("INSERT INTO notes (author) VALUES (4)")
        .execute(&db)
        .await
        .unwrap_err();
    assert!(
        matches!(router_error(&error), Some(Error::NoPrimary { .. })),
        "{error}"
    );

    // A multi-host URL through 0.8's pools: roles probed (the primary is listed last),
    // reads on the standby only.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=standby",
        cluster.replica_port, cluster.primary_port
    );
    let hosts = PgHosts::from_url(&url)
        .unwrap()
        .probe_every(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let port = "SELECT setting::int FROM pg_settings WHERE name = 'port'";
    let write = "INSERT INTO notes (author) VALUES (5) RETURNING inet_server_port()";
    let written: i32 = sqlx::query_scalar(write).fetch_one(&hosts).await.unwrap();
    let read: i32 = sqlx::query_scalar(port)
        .fetch_one(&hosts.session(6))
        .await
        .unwrap();
    let ports = (cluster.primary_port, cluster.replica_port);
    assert_eq!((written as u16, read as u16), ports);
}
