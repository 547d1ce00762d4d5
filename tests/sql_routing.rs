//! The SQL classifier scored on a corpus of statements, each run on a real hot standby: a
//! statement classified as a read must run there (0 misroutes), and every statement's
//! routing must be the expected one (a plain read sent to the primary is a wasted replica
//! read). The corpus is plain statements and the same statements wrapped in `EXPLAIN`,
//! `EXPLAIN ANALYZE`, `COPY (…) TO STDOUT`, a second statement and a read-only transaction.

#[path = "support/postgres.rs"]
mod postgres;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tower_lb::replica::{Access, SqlClassifier};

const SCHEMA: &str = "
    CREATE TABLE t (a int, b text);
    CREATE TABLE u (id serial PRIMARY KEY, t_a int);
    INSERT INTO t VALUES (1, 'x'), (2, 'y');
    CREATE SEQUENCE s;
    CREATE VIEW v AS SELECT a FROM t;
    CREATE FUNCTION record_visit(int) RETURNS int LANGUAGE sql VOLATILE
        AS $$ INSERT INTO u (t_a) VALUES ($1) RETURNING id $$;
    CREATE FUNCTION visible_posts(int) RETURNS SETOF t LANGUAGE sql STABLE
        AS $$ SELECT * FROM t WHERE a >= $1 $$;
    CREATE SCHEMA app;
    CREATE FUNCTION app.lower(text) RETURNS text LANGUAGE sql VOLATILE
        AS $$ INSERT INTO u (t_a) VALUES (0) RETURNING 'x' $$;
    CREATE PROCEDURE report(int) LANGUAGE sql AS $$ SELECT $1 $$;
    CREATE PROCEDURE refresh() LANGUAGE sql AS $$ INSERT INTO u (t_a) VALUES (9) $$;
    CREATE TABLE replayed ();
";

/// Plain reads: a replica serves each of them.
const READS: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t",
    "select a, b from t where a = 1",
    "SELECT count(*) FROM t",
    "SELECT lower(b), upper(b), length(b) FROM t",
    "SELECT coalesce(a, 0), nullif(a, 1), greatest(a, 2), least(a, 0) FROM t",
    "SELECT * FROM t WHERE a IN (1, 2)",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_a = t.a)",
    "SELECT * FROM t JOIN u ON (u.t_a = t.a)",
    "WITH c AS (SELECT a FROM t) SELECT * FROM c",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT * FROM generate_series(1, 3) AS g(n)",
    "SELECT now(), current_date, date_trunc('day', now())",
    "SELECT to_char(now(), 'YYYY-MM-DD')",
    "SELECT random() < 2",
    "SELECT gen_random_uuid() IS NOT NULL",
    "SELECT json_build_object('a', a) FROM t",
    "SELECT jsonb_agg(t) FROM t",
    "SELECT string_agg(b, ',') FROM t",
    "SELECT array_agg(a ORDER BY a) FROM t",
    "SELECT row_number() OVER (ORDER BY a) FROM t",
    "SELECT a, sum(a) OVER (PARTITION BY b) FROM t",
    "SELECT count(*) FILTER (WHERE a > 1) FROM t",
    "SELECT CAST(a AS numeric(10, 2)), a::varchar(10) FROM t",
    "SELECT CASE WHEN a > 1 THEN 'big' ELSE 'small' END FROM t",
    "SELECT substring(b FROM 1 FOR 1), position('x' IN b), trim(both ' ' FROM b) FROM t",
    "SELECT extract(year FROM now())",
    "SELECT pg_catalog.lower('A')",
    "SELECT \"lower\"('A')",
    "SELECT * FROM visible_posts(1)",
    "SELECT * FROM v",
    "VALUES (1, 'a'), (2, 'b')",
    "TABLE t",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT 'DELETE FROM t' AS text -- UPDATE",
    "SELECT $$ INSERT $$",
    "SELECT a FROM t ORDER BY a LIMIT 1 OFFSET 0",
    "SELECT pg_relation_size('t')",
    "SELECT version() IS NOT NULL",
    "SELECT current_database()",
    "SELECT has_table_privilege('t', 'SELECT')",
    "SELECT to_regclass('t') IS NOT NULL",
    "SELECT * FROM t TABLESAMPLE BERNOULLI (50)",
    "SELECT ARRAY(SELECT a FROM t)",
    "SELECT ROW(1, 2)",
    "SELECT 1 WHERE NOT (1 = 2)",
    "SELECT * FROM (SELECT a FROM t) s",
    "SELECT * FROM t, LATERAL (SELECT t.a) l",
    "SELECT md5(b) FROM t",
    "SELECT regexp_replace(b, 'x', 'y') FROM t",
    "SELECT pg_sleep(0)",
    "SELECT format('%s', a) FROM t",
    "SELECT a FROM t GROUP BY ROLLUP (a)",
    "SELECT xmlelement(name x, 'y')",
    "SELECT a FROM t WHERE b LIKE ('x%')",
    "SELECT a FROM t WHERE a = ANY (ARRAY[1, 2])",
    "SELECT unnest(ARRAY[1, 2])",
    "SELECT abs(-1), round(1.5), floor(1.5), ceil(1.5)",
    "SELECT '{\"a\": 1}'::jsonb -> 'a'",
    "SELECT a FROM t WHERE (a, b) = (1, 'x')",
];

/// Writes, session state and node state: all for the primary.
const WRITES: &[&str] = &[
    "INSERT INTO u (t_a) VALUES (1)",
    "UPDATE t SET a = a",
    "DELETE FROM u",
    "MERGE INTO t USING u ON t.a = u.t_a WHEN MATCHED THEN DO NOTHING",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR KEY SHARE",
    "WITH d AS (DELETE FROM u RETURNING *) SELECT * FROM d",
    "SELECT nextval('s')",
    "SELECT setval('s', 10)",
    "SELECT record_visit(1)",
    "SELECT * FROM t WHERE a = record_visit(1)",
    "SELECT CASE WHEN a > 0 THEN record_visit(a) END FROM t",
    "SELECT (SELECT record_visit(1))",
    "SELECT app.lower(b) FROM t",
    "SELECT current_setting('search_path')",
    "SELECT set_config('a.b', 'c', false)",
    "SELECT pg_backend_pid()",
    "SELECT pg_is_in_recovery()",
    "SELECT txid_current()",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_notify('c', 'x')",
    "SELECT pg_current_wal_lsn()",
    "SELECT * INTO t2 FROM t",
];

/// Statements that are not queries: for the primary, and not explainable.
const OTHERS: &[&str] = &[
    "CREATE TABLE t3 (a int)",
    "CREATE TEMP TABLE tmp (a int)",
    "SET search_path = public",
    "SHOW search_path",
    "LISTEN c",
    "NOTIFY c",
    "LOCK TABLE t",
    "DO $$ BEGIN PERFORM 1; END $$",
    "CALL refresh()",
    "VACUUM t",
    "ANALYZE t",
    "BEGIN",
    "COMMIT",
    "PREPARE p AS SELECT 1",
    "DISCARD ALL",
    "COPY t TO '/tmp/tower-lb-copy.csv'",
    "COPY t FROM STDIN",
    "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; COMMIT",
    "SELECT 1; SELECT record_visit(1)",
];

/// Reads that are not plain queries.
const OTHER_READS: &[&str] = &[
    "CALL report(1)",
    "COPY t TO STDOUT",
    "COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)",
    ";",
    "",
    "BEGIN; SELECT 1; COMMIT",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; TABLE t; END",
];

/// The corpus: each statement with its expected routing.
fn corpus() -> Vec<(String, Access)> {
    let mut corpus = Vec::new();
    for read in READS {
        for wrapped in [
            read.to_string(),
            format!("{read};"),
            format!("EXPLAIN {read}"),
            format!("EXPLAIN ANALYZE {read}"),
            format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {read}"),
            // A line break after the statement: it may end in a `--` comment.
            format!("COPY ({read}\n) TO STDOUT"),
            format!("{read}\n; SELECT 2"),
            format!("BEGIN READ ONLY; {read}\n; COMMIT"),
        ] {
            corpus.push((wrapped, Access::Read));
        }
    }
    for write in WRITES {
        corpus.push((write.to_string(), Access::Write));
        corpus.push((format!("SELECT 1; {write}"), Access::Write));
        corpus.push((format!("BEGIN READ ONLY; {write}; COMMIT"), Access::Write));
        corpus.push((format!("EXPLAIN ANALYZE {write}"), Access::Write));
        if !write.contains(" INTO t2 ") {
            // Planned, not run: a standby plans writes too.
            corpus.push((format!("EXPLAIN {write}"), Access::Read));
        }
    }
    for other in OTHERS {
        corpus.push((other.to_string(), Access::Write));
    }
    for read in OTHER_READS {
        corpus.push((read.to_string(), Access::Read));
    }
    corpus
}

/// Runs `sql` on `node`, within 5 s: `COPY … TO STDOUT` through the copy protocol, the rest
/// as a script; `COPY … FROM STDIN` is not run (it would wait for data).
async fn run(node: &PgPool, url: &str, sql: &str) -> Result<(), String> {
    let ran = async {
        if sql.contains("FROM STDIN") {
            return Err(sqlx::Error::Protocol("COPY FROM STDIN is not run".into()));
        }
        if sql.contains("TO STDOUT") {
            // A connection of its own: a failed COPY leaves sqlx's connection out of step.
            use futures::TryStreamExt;
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(url).await?;
            let rows = connection.copy_out_raw(sql).await?;
            let _: Vec<_> = rows.try_collect().await?;
            return Ok(());
        }
        // On a connection of its own: a script may leave a transaction open, which the
        // ROLLBACK after it ends.
        let mut connection = node.acquire().await?;
        let ran = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *connection)
            .await
            .map(drop);
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
        ran
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), ran).await {
        Ok(ran) => ran.map_err(|error| error.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_classified_as_reads_run_on_a_hot_standby() {
    let Some(cluster) = postgres::Cluster::start() else {
        return;
    };
    let connect = |url: String| async move {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap()
    };
    let (primary, standby) = (
        connect(cluster.primary_url()).await,
        connect(cluster.replica_url()).await,
    );
    sqlx::raw_sql(SCHEMA).execute(&primary).await.unwrap();
    let started = std::time::Instant::now();
    while sqlx::raw_sql("TABLE replayed")
        .execute(&standby)
        .await
        .is_err()
    {
        assert!(
            started.elapsed().as_secs() < 10,
            "the standby never replayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let sql = SqlClassifier::new().read_functions(["visible_posts", "report"]);
    let corpus = corpus();
    let (mut misrouted, mut wasted, mut failing_on_standby) = (Vec::new(), Vec::new(), 0);
    for (statement, expected) in &corpus {
        let routed = sql.classify(statement);
        let on_standby = run(&standby, &cluster.replica_url(), statement).await;
        failing_on_standby += usize::from(on_standby.is_err());
        match (routed, expected) {
            (Access::Read, _) if on_standby.is_err() => {
                misrouted.push(format!("{statement}: {}", on_standby.unwrap_err()));
            }
            (Access::Read, Access::Write) => {
                misrouted.push(format!("{statement}: expected a write"))
            }
            (Access::Write, Access::Read) => wasted.push(statement.clone()),
            _ => {}
        }
    }
    let reads = corpus.iter().filter(|(_, a)| *a == Access::Read).count();
    println!(
        "{} statements ({reads} reads), {failing_on_standby} fail on the standby; routed to a \
         replica but not a read there: {}; plain reads sent to the primary: {}",
        corpus.len(),
        misrouted.len(),
        wasted.len()
    );
    assert!(misrouted.is_empty(), "sent to a replica: {misrouted:#?}");
    assert!(wasted.is_empty(), "reads sent to the primary: {wasted:#?}");
}
