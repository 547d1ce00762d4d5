//! `SqlClassifier::mysql()` against a real read-only MariaDB replica, as an ordinary user
//! (`read_only` does not bind SUPER): every statement it sends to replicas runs there, and
//! the statements a read-only replica refuses are ones it keeps on the primary.

#[path = "support/mariadb.rs"]
mod mariadb;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use sqlx::mysql::{MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool};
use tower_lb::replica::{Access, SqlClassifier};

/// Reads of every kind the classifier lets through, over the schema below.
const READS: &[&str] = &[
    "SELECT 1",
    "SELECT `id`, `update` FROM t WHERE id = 1",
    "SELECT name FROM t # by name\n WHERE id = 1",
    "SELECT 1 -- a comment\n",
    "SELECT /*+ MAX_EXECUTION_TIME(100) */ * FROM t",
    "SELECT /*!40001 SQL_NO_CACHE */ * FROM t",
    "SELECT 'it''s', \"a \"\" quote\", 'DELETE FROM t' FROM t",
    "SELECT lower(name), concat(name, 'x'), count(*) FROM t GROUP BY 1",
    "SELECT IF(id > 0, 'y', 'n'), IFNULL(name, 0), COALESCE(name, id) FROM t",
    "SELECT DATE_ADD(NOW(), INTERVAL 1 DAY), CAST(id AS CHAR(10)) FROM t",
    "SELECT * FROM t USE INDEX (PRIMARY) WHERE id IN (1, 2) AND name LIKE 'x%'",
    "SELECT * FROM t FORCE KEY (PRIMARY) JOIN t AS u USING (id)",
    "SELECT JSON_EXTRACT('{\"a\": 1}', '$.a'), ROW_NUMBER() OVER (PARTITION BY id ORDER BY name) FROM t",
    "SELECT * FROM docs WHERE MATCH (body) AGAINST ('word')",
    "SELECT value, `key` FROM settings",
    "SELECT id FROM t ORDER BY id LIMIT 10 OFFSET 5",
    "SELECT * FROM t LIMIT 1; SELECT 2",
    "WITH r AS (SELECT 1 AS n) SELECT n FROM r",
    "(SELECT 1) UNION (SELECT 2)",
    "VALUES (1, 2), (3, 4)",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN FORMAT=JSON SELECT * FROM t",
    "EXPLAIN EXTENDED SELECT 1",
    "START TRANSACTION READ ONLY; SELECT 1; COMMIT",
    "START TRANSACTION WITH CONSISTENT SNAPSHOT; SELECT 1; COMMIT",
    "SELECT 5--1",
    "SELECT STR_TO_DATE('2026-12-03', '%Y-%m-%d'), UUID(), RAND() < 2, MD5('x')",
    "SELECT ST_AsText(ST_GeomFromText('POINT(1 1)'))",
    "SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR ','), MEDIAN(id) OVER () FROM t",
    "SELECT * FROM JSON_TABLE('[1, 2]', '$[*]' COLUMNS (a INT PATH '$')) AS j",
    "CALL report(1)", // declared read-only below
];

/// What a read-only replica refuses, or runs as a write: each must stay on the primary.
const REFUSED_BY_THE_REPLICA: &[&str] = &[
    "SELECT * FROM t FOR UPDATE",
    "EXPLAIN UPDATE t SET name = 'x'",
    "EXPLAIN DELETE FROM t",
    "SELECT NEXTVAL(s)",
    "SELECT NEXT VALUE FOR s",
    "SELECT SETVAL(s, 100)",
    "/*! INSERT INTO t VALUES (100, 'x', 0) */",
    "INSERT INTO t VALUES (101, 'x', 0)",
    "SELECT bump()", // a function that writes
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_on_a_read_only_replica_and_what_it_refuses_stays_on_the_primary() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    cluster.primary_sql(&format!(
        "USE {db};
         CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), `update` INT);
         INSERT INTO t VALUES (1, 'a', 0), (2, 'b', 0);
         CREATE TABLE settings (`key` VARCHAR(10), value INT);
         CREATE TABLE docs (body TEXT, FULLTEXT (body)) ENGINE = InnoDB;
         CREATE SEQUENCE s;
         DELIMITER //
         CREATE FUNCTION bump() RETURNS INT MODIFIES SQL DATA
             BEGIN UPDATE t SET `update` = `update` + 1; RETURN 1; END //
         DELIMITER ;
         CREATE PROCEDURE report(n INT) READS SQL DATA SELECT n, count(*) FROM t;",
        db = mariadb::DATABASE
    ));
    cluster.wait_for_replica();
    let replica = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.replica_url())
        .await
        .unwrap();
    let classifier = SqlClassifier::mysql().read_functions(["report"]);

    for sql in READS {
        assert_eq!(classifier.classify(sql), Access::Read, "{sql}");
        if let Err(error) = run(&replica, sql).await {
            panic!("a read failed on the replica: {sql}: {error}");
        }
    }
    for sql in REFUSED_BY_THE_REPLICA {
        assert_eq!(classifier.classify(sql), Access::Write, "{sql}");
        let refused = run(&replica, sql).await.expect_err(sql);
        assert!(
            refused.contains("read-only") || refused.contains("1290"),
            "{sql}: {refused}"
        );
    }
    println!(
        "{} reads ran on the replica; {} statements it refuses stayed on the primary",
        READS.len(),
        REFUSED_BY_THE_REPLICA.len()
    );

    // Random texts built from pieces of reads and of writes in disguise: whatever the
    // classifier sends to a replica, the replica does not refuse as a write.
    let pieces = [
        "SELECT",
        "id",
        "name",
        "FROM t",
        "WHERE",
        "id = 1",
        ",",
        "(",
        ")",
        "lower(name)",
        "NEXTVAL(s)",
        "bump()",
        "FOR UPDATE",
        "FOR",
        "UPDATE",
        "LOCK IN SHARE MODE",
        "INTO @v",
        "@v",
        "/*!",
        "*/",
        "/*",
        "#",
        "-- ",
        "\n",
        "'x'",
        "\"y\"",
        "`id`",
        "'a\\'",
        ";",
        "NEXT VALUE FOR s",
        "INSERT INTO t VALUES (9, 'z', 0)",
        "UNION SELECT 1",
        "LIMIT 1",
        "EXPLAIN",
        "DELETE FROM t",
        "SQL_CALC_FOUND_ROWS",
        "value",
    ];
    let texts = proptest::collection::vec(0..pieces.len(), 1..12).prop_map(move |picked| {
        let text: Vec<&str> = picked.iter().map(|&i| pieces[i]).collect();
        format!("SELECT id {}", text.join(" "))
    });
    let mut runner = TestRunner::new(Config {
        cases: 400,
        ..Config::default()
    });
    let (mut reads, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let text = texts.new_tree(&mut runner).expect("a text").current();
        if classifier.classify(&text) == Access::Read {
            if let Err(error) = run(&replica, &text).await {
                if error.contains("1290") || error.contains("1792") {
                    refused.push(format!("{text}: {error}"));
                }
            }
            reads.push(text);
        }
    }
    assert!(
        refused.is_empty(),
        "reads the replica refused: {refused:#?}"
    );
    assert!(reads.len() > 20, "the pieces make reads: {}", reads.len());
    println!(
        "{} of 400 random texts were reads, none refused",
        reads.len()
    );
}

/// Runs `sql` on `pool`; the error with MariaDB's number.
async fn run(pool: &MySqlPool, sql: &str) -> Result<(), String> {
    match sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) => {
            let number = error
                .try_downcast_ref::<MySqlDatabaseError>()
                .map_or(0, MySqlDatabaseError::number);
            Err(format!("{number}: {error}"))
        }
        Err(error) => Err(error.to_string()),
    }
}
