//! `CALL` through the MySQL router, on a real MariaDB primary and read-only GTID replica.
//!
//! `read_only` does not stop a `SQL SECURITY DEFINER` procedure whose definer has SUPER: an
//! ordinary user calling it on the replica writes there, and with GTID strict mode the
//! replica's own transaction stops replication at the primary's next write. Every spelling
//! of a call of such a procedure sent through the router runs on the primary, and only the
//! procedure declared read-only (`read_functions`) is called on the replica; then the hazard
//! is shown on the real replica.
//!
//! Its own test binary, so its own cluster: the test ends with the replica's replication
//! broken, which no other test should meet.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/mysql_nodes.rs"]
mod mysql_nodes;

use mysql_nodes::{builder, pool};
use sqlx::{AssertSqlSafe, MySqlPool};
use tower_lb::replica::SqlClassifier;

/// Calls of `tidy`, which writes: none may reach the replica.
const UNDECLARED_CALLS: &[&str] = &[
    "CALL tidy()",
    "call tidy",
    "CALL `tidy`()",
    "CALL {db}.tidy()",
    "CALL `{db}`.`tidy`()",
    "/* maintenance */ CALL tidy()",
    "# maintenance\nCALL tidy()",
    "CALL tidy(); SELECT 1",
    "SELECT 1; CALL tidy()",
    "CALL report(1); CALL tidy()",
    "/*!50000 CALL tidy() */",
    // Says READS SQL DATA, and writes: MariaDB does not check what a procedure declares,
    // so neither may the router.
    "CALL claims_to_read()",
];

async fn audit_rows(pool: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_of_an_undeclared_procedure_reaches_the_replica() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    cluster.primary_sql(&format!(
        "USE {db};
         CREATE TABLE t (id INT);
         CREATE TABLE audit (n INT);
         CREATE DEFINER = 'root'@'localhost' PROCEDURE tidy()
             SQL SECURITY DEFINER MODIFIES SQL DATA INSERT INTO audit VALUES (1);
         CREATE DEFINER = 'root'@'localhost' PROCEDURE claims_to_read()
             SQL SECURITY DEFINER READS SQL DATA INSERT INTO audit VALUES (2);
         CREATE PROCEDURE report(n INT) READS SQL DATA SELECT n, COUNT(*) FROM t;",
        db = mariadb::DATABASE
    ));
    cluster.wait_for_replica();
    let (primary, replica) = (
        pool(&cluster.primary_url()).await,
        pool(&cluster.replica_url()).await,
    );

    let db = builder(&primary, &replica)
        .classify(SqlClassifier::mysql().read_functions(["report"]))
        .build();

    let caller = db.session(1);
    for call in UNDECLARED_CALLS {
        let call = call.replace("{db}", mariadb::DATABASE);
        sqlx::raw_sql(AssertSqlSafe(call.as_str()))
            .execute(&caller)
            .await
            .unwrap_or_else(|error| panic!("{call}: {error}"));
    }
    let stats = db.stats();
    assert_eq!(
        (stats.writes, stats.replica_reads),
        (UNDECLARED_CALLS.len() as u64, 0),
        "every undeclared call on the primary: {stats:?}"
    );
    assert_eq!(
        audit_rows(&primary).await,
        UNDECLARED_CALLS.len() as i64,
        "each call wrote once, on the primary"
    );
    cluster.wait_for_replica();
    assert_eq!(
        audit_rows(&replica).await,
        UNDECLARED_CALLS.len() as i64,
        "the replica has the primary's rows by replication, and no call of its own \
         (which would also have stopped its replication)"
    );

    // The declared procedure is a read: the replica runs it (for a session that has not
    // just written: the caller's reads stay on the primary for the read-your-writes window).
    let reader = db.session(2);
    for _ in 0..5 {
        sqlx::raw_sql("CALL report(1)")
            .execute(&reader)
            .await
            .unwrap();
    }
    let stats = db.stats();
    assert_eq!(stats.replica_reads, 5, "{stats:?}");

    // What the router prevents: the ordinary user cannot write on the replica, but the
    // procedure writes for it, and the replica's own transaction then stops replication.
    let refused = sqlx::raw_sql("INSERT INTO audit VALUES (0)")
        .execute(&replica)
        .await
        .expect_err("read_only refuses the ordinary user's own write");
    assert!(refused.to_string().contains("read-only"), "{refused}");
    sqlx::raw_sql("CALL tidy()")
        .execute(&replica)
        .await
        .expect("a definer's procedure writes on a read-only replica");
    assert_eq!(
        audit_rows(&replica).await - audit_rows(&primary).await,
        1,
        "written on the replica only"
    );
    sqlx::raw_sql("INSERT INTO t VALUES (1)")
        .execute(&primary)
        .await
        .unwrap();
    let broken = (0..100).find_map(|_| {
        let status = cluster.replica_sql("SHOW SLAVE STATUS\\G");
        if status.contains("1950") {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    let broken = broken.expect("the primary's next write stops the replica's SQL thread");
    assert!(broken.contains("out-of-order"), "{broken}");
    println!(
        "{} spellings of undeclared calls ran on the primary, none on the replica; \
         the declared one ran on the replica 5 of 5 times; one call of the procedure on the \
         replica itself broke its replication (error 1950)",
        UNDECLARED_CALLS.len()
    );
}
