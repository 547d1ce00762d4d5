//! The classifier's tests: both dialects' reads and writes, declared functions, and
//! properties over random text.

use super::*;
use proptest::prelude::*;

fn read(sql: &str) -> bool {
    SqlClassifier::new().classify(sql) == Access::Read
}

#[test]
fn plain_reads_go_to_replicas() {
    for sql in [
        "SELECT 1",
        "select * from users where id = $1;",
        "  -- a comment\n SELECT name FROM users /* a /* nested */ comment */ LIMIT 1",
        "WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM recent",
        "(SELECT 1) UNION (SELECT 2)",
        "VALUES (1, 'a')",
        "TABLE users",
        "SELECT 'it''s', E'\\'; DELETE', $$ UPDATE x $$, $fn$ INSERT $fn$ FROM t",
        "SELECT \"update_count\", \"update\" FROM stats",
        "SELECT coalesce(a, b), lower(name), now() FROM t",
        "SELECT substring(name FOR 3) FROM t",
        "SELECT * FROM t; -- done",
        // Several statements, empty ones, a transaction around them.
        "",
        ";",
        " ; ; ",
        "-- nothing\n",
        "SELECT 1; SELECT 2",
        "SELECT 1;; SELECT 2;",
        "BEGIN; SELECT 1; COMMIT",
        "BEGIN READ ONLY; SELECT * FROM t; SELECT 2; COMMIT;",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; TABLE t; END",
        "begin; select 1; rollback",
        // EXPLAIN plans without running; with ANALYZE it runs a read.
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN UPDATE t SET a = 1",
        "EXPLAIN (FORMAT JSON, COSTS false) DELETE FROM t",
        "EXPLAIN VERBOSE INSERT INTO t VALUES (nextval('s'))",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM t",
        "explain analyse verbose (select 1)",
        // COPY to the client.
        "COPY t TO STDOUT",
        "COPY public.t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)",
        "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT",
        "COPY (SELECT lower(x) FROM (SELECT 'A' x) s) TO STDOUT (FORMAT binary)",
        // Known functions, syntax that looks like a call, column lists.
        "SELECT pg_catalog.lower(name), upper(name), length(name) FROM t",
        "SELECT count(*) FILTER (WHERE a > 0) OVER (PARTITION BY b) FROM t",
        "SELECT x FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1) OR NOT (a = ANY (ARRAY[1]))",
        "SELECT CAST(a AS numeric(10, 2)), a::varchar(20), COALESCE(a, 0), NULLIF(a, 1) FROM t",
        "SELECT * FROM generate_series(1, 3) AS g(n)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "SELECT date_trunc('day', now()), to_char(now(), 'YYYY'), random(), gen_random_uuid()",
        "SELECT json_build_object('a', 1), jsonb_agg(t) FROM t",
        "SELECT \"lower\"('A')",
    ] {
        assert!(read(sql), "{sql}");
    }
}

#[test]
fn anything_else_goes_to_the_primary() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1",
        "SELECT nextval('s')",
        "SELECT NEXTVAL('s')",
        "SELECT \"nextval\"('s')",
        "SELECT pg_catalog.setval('s', 1)",
        "SELECT currval('s'), lastval()",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT set_config('a.b', 'c', false)",
        "SELECT pg_notify('ch', 'x')",
        "SELECT pg_current_wal_lsn()",
        "SELECT lo_create(0)",
        "SELECT * INTO new_table FROM t",
        "SELECT 1; DROP TABLE t",
        "SELECT 1; INSERT INTO t VALUES (1)",
        // Functions it does not know may write; the session's and the node's own state.
        "SELECT record_visit(1)",
        "SELECT * FROM t WHERE a = my_function(b)",
        "SELECT CASE WHEN a THEN f() ELSE 0 END FROM t",
        "SELECT (SELECT g(a) FROM u) FROM t",
        "SELECT app.lower(name) FROM t",
        "SELECT current_setting('search_path')",
        "SELECT pg_backend_pid(), pg_is_in_recovery()",
        "SELECT txid_current(), pg_current_xact_id()",
        "SELECT pg_catalog.nextval('s')",
        // Transactions that are not wholly in the text, or that a standby refuses.
        "BEGIN",
        "BEGIN; SELECT 1",
        "SELECT 1; COMMIT",
        "SELECT 1; BEGIN; SELECT 2; COMMIT",
        "BEGIN; SELECT 1; COMMIT; SELECT 2",
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; COMMIT",
        "BEGIN READ WRITE; SELECT 1; COMMIT",
        "BEGIN; SELECT 1; COMMIT AND CHAIN",
        "BEGIN; SAVEPOINT a; SELECT 1; COMMIT",
        // EXPLAIN ANALYZE runs what it explains; COPY elsewhere than the client.
        "EXPLAIN ANALYZE UPDATE t SET a = 1",
        "EXPLAIN (ANALYZE) DELETE FROM t",
        "EXPLAIN (ANALYZE false) INSERT INTO t VALUES (1)",
        "EXPLAIN ANALYZE SELECT nextval('s')",
        "EXPLAIN",
        "COPY t TO '/tmp/t.csv'",
        "COPY t TO PROGRAM 'cat'",
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        "COPY (SELECT nextval('s')) TO STDOUT",
        "COPY t FROM STDIN",
        "CALL undeclared()",
        "SET search_path = x",
        "LISTEN ch",
        "NOTIFY ch",
        "LOCK TABLE t",
        "CALL proc()",
        "DO $$ BEGIN END $$",
        "CREATE TABLE t (a int)",
        "BEGIN",
        "COMMIT",
        "EXPLAIN ANALYZE DELETE FROM t",
        "SHOW transaction_read_only",
        "SELECT 'unterminated",
        "SELECT /* unterminated",
        "SELECT $tag$ unterminated",
        "SELECT \"unterminated",
        "SELECT E'\\'",
    ] {
        assert!(!read(sql), "{sql}");
    }
}

#[test]
fn application_functions_can_be_declared_reads() {
    let sql = SqlClassifier::new().read_functions(["App.Visible_Posts", "report"]);
    assert_eq!(sql.classify("SELECT * FROM visible_posts(1)"), Access::Read);
    assert_eq!(
        sql.classify("SELECT * FROM app.visible_posts(1)"),
        Access::Read
    );
    assert_eq!(sql.classify("CALL report(1, lower('A'))"), Access::Read);
    assert_eq!(sql.classify("CALL app.report(1)"), Access::Read);
    assert_eq!(sql.classify("CALL report(nextval('s'))"), Access::Write);
    assert_eq!(sql.classify("CALL report(1); DELETE FROM t"), Access::Write);
    let both = sql.write_functions(["report"]);
    assert_eq!(
        both.classify("SELECT report()"),
        Access::Write,
        "a write wins"
    );
}

#[test]
fn application_functions_can_be_declared_writes() {
    let sql = SqlClassifier::new().write_functions(["Record_Visit"]);
    assert_eq!(sql.classify("SELECT record_visit(1)"), Access::Write);
    assert_eq!(sql.classify("SELECT record_visits FROM t"), Access::Read);
}

fn mysql_read(sql: &str) -> bool {
    SqlClassifier::mysql().classify(sql) == Access::Read
}

#[test]
fn mysql_plain_reads_go_to_replicas() {
    for sql in [
        "SELECT 1",
        "select `id`, `update` from `users` where id = ?",
        "SELECT name FROM users # by name\n WHERE id = 1",
        "SELECT 1 -- a comment\n",
        "SELECT 1 --\tcomment",
        "SELECT 1 --",
        "SELECT /* update */ 1",
        "SELECT /*+ MAX_EXECUTION_TIME(100) */ * FROM t",
        "SELECT 'it''s', \"a \"\" quote\", 'DELETE FROM t' FROM t",
        "SELECT `weird``name` FROM t",
        "SELECT lower(name), concat(a, b), count(*) FROM t GROUP BY 1",
        "SELECT IF(a > 0, 'y', 'n'), IFNULL(a, 0), COALESCE(a, b) FROM t",
        "SELECT DATE_ADD(NOW(), INTERVAL 1 DAY), CAST(a AS CHAR(10)) FROM t",
        "SELECT * FROM t USE INDEX (i) WHERE a IN (1, 2) AND b LIKE 'x%'",
        "SELECT * FROM t FORCE KEY (k) JOIN u USING (id)",
        "SELECT JSON_EXTRACT(doc, '$.a'), ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
        "SELECT * FROM t WHERE MATCH (body) AGAINST ('word')",
        "SELECT value, `key` FROM settings",
        "SELECT a FROM t ORDER BY a LIMIT 10 OFFSET 5",
        "SELECT * FROM t LIMIT 1; SELECT 2",
        "WITH r AS (SELECT 1 AS n) SELECT n FROM r",
        "(SELECT 1) UNION (SELECT 2)",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN FORMAT=JSON SELECT * FROM t",
        "EXPLAIN EXTENDED SELECT 1",
        "START TRANSACTION READ ONLY; SELECT 1; COMMIT",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT; SELECT 1; COMMIT",
        "SELECT /*!40001 SQL_NO_CACHE */ * FROM t",
        "SELECT $col FROM t",
        "SELECT 5--1",
        "",
    ] {
        assert!(mysql_read(sql), "{sql}");
    }
}

#[test]
fn mysql_anything_else_goes_to_the_primary() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "REPLACE INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT a INTO @a FROM t",
        "SELECT a FROM t INTO OUTFILE '/tmp/x'",
        "SELECT * INTO DUMPFILE '/tmp/x' FROM t",
        "SELECT @a",
        "SELECT @@version",
        "SELECT @`quoted`",
        "SELECT @a := 1",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
        "SELECT FOUND_ROWS()",
        "SELECT LAST_INSERT_ID()",
        "SELECT ROW_COUNT()",
        "SELECT CONNECTION_ID()",
        "SELECT GET_LOCK('a', 1)",
        "SELECT RELEASE_LOCK('a')",
        "SELECT NEXTVAL(s)",
        "SELECT NEXT VALUE FOR s",
        "SELECT PREVIOUS VALUE FOR s",
        "SELECT SETVAL(s, 1)",
        "SELECT MASTER_GTID_WAIT('0-1-1', 1)",
        "SELECT app.f(1)",
        "SELECT `lower`('A')",
        "SELECT my_function(a) FROM t",
        "SELECT VERSION(), DATABASE(), USER()",
        "SELECT SLEEP(1)",
        "EXPLAIN UPDATE t SET a = 1",
        "EXPLAIN DELETE FROM t",
        "EXPLAIN t",
        "DESCRIBE t",
        "SHOW TABLES",
        "SET @a = 1",
        "SET NAMES utf8mb4",
        "DO 1",
        "HANDLER t OPEN",
        "LOAD DATA INFILE '/tmp/x' INTO TABLE t",
        "CALL report(1)",
        "CREATE TEMPORARY TABLE tmp (a INT)",
        "LOCK TABLES t READ",
        "START TRANSACTION; SELECT 1",
        "START TRANSACTION READ WRITE; SELECT 1; COMMIT",
        "SELECT 1; DELETE FROM t",
        // Version comments: SQL the server runs.
        "/*! INSERT INTO t VALUES (1) */",
        "SELECT 1 /*!50001 FOR UPDATE */",
        "SELECT 1 /*M!100100 INTO @a */",
        "SELECT /*!99999 1 */ INTO @a",
        // Backslashes escape or not as sql_mode says.
        "SELECT 'a\\' ; DELETE FROM t; -- '",
        "SELECT \"a\\\"\"",
        // Unterminated.
        "SELECT 'open",
        "SELECT `open",
        "SELECT /* open",
        "SELECT /*! 1",
        "SELECT 1 # comment\n; DELETE FROM t",
    ] {
        assert!(!mysql_read(sql), "{sql}");
    }
}

#[test]
fn mysql_procedures_and_functions_can_be_declared() {
    let sql = SqlClassifier::mysql().read_functions(["report", "app.visible"]);
    assert_eq!(sql.classify("CALL report(2026)"), Access::Read);
    assert_eq!(sql.classify("SELECT visible(1)"), Access::Read);
    assert_eq!(sql.classify("CALL other()"), Access::Write);
    let sql = SqlClassifier::mysql().write_functions(["lower"]);
    assert_eq!(sql.classify("SELECT lower('A')"), Access::Write);
}

#[test]
fn the_postgres_rules_are_untouched_by_mysqls() {
    let pg = SqlClassifier::new();
    // `#` is an operator, `--x` a comment, `@` the absolute value, `"` an identifier.
    assert_eq!(pg.classify("SELECT 1 # 2"), Access::Read);
    assert_eq!(pg.classify("SELECT 1 --x INTO y"), Access::Read);
    assert_eq!(pg.classify("SELECT @ -5"), Access::Read);
    assert_eq!(pg.classify("SELECT value FROM t FOR UPDATE"), Access::Write);
    assert_eq!(pg.classify("SELECT 1 /*! 2 */"), Access::Read);
    assert_eq!(
        SqlClassifier::mysql().classify("SELECT 1 # 2"),
        Access::Read
    );
    assert_eq!(
        SqlClassifier::mysql().classify("SELECT 1 --x INTO y"),
        Access::Write
    );
}

/// Tokens a plain read may hold, several of them a keyword in disguise.
const READ_PIECES: &[&str] = &[
    "a",
    "id",
    "x1",
    "users",
    "inserted",
    "updates",
    "into_",
    "_into",
    "deleted_at",
    "for_update",
    "selectivity",
    "a_very_long_column_name",
    "sixteen_bytes_ab",
    "seven_7",
    "eight_88",
    "nine_9999",
    "insert$1",
    "café_update",
    "updaté",
    "t.delete_flag",
    "\"update\"",
    "\"INSERT INTO\"",
    "'delete from t'",
    "E'it\\'s into'",
    "$$ update $$",
    "$q$ insert $q$",
    "-- update\n",
    "/* delete /* into */ */",
    "$1",
    "500",
    "1.5e3",
    ",",
    "=",
    "<>",
    "+ (",
    ")",
    "::text",
    "count(*)",
    "lower(name)",
    "share",
    "no",
    "key",
    "\t",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No input panics or hangs, and whatever follows a second statement is never read.
    #[test]
    fn any_text_is_classified(text in ".{0,200}") {
        for sql in [SqlClassifier::new(), SqlClassifier::mysql()] {
            let _ = sql.classify(&text);
            prop_assert_eq!(sql.classify(&format!("SELECT 1; {text}\nX")), Access::Write);
        }
    }

    /// MySQL text from its own alphabet (comments, quotes, variables, version comments):
    /// no panic, and a read stays one when a comment is added.
    #[test]
    fn mysql_like_text_is_classified(text in "[ -~\n]{0,120}") {
        let sql = SqlClassifier::mysql();
        let access = sql.classify(&text);
        if access == Access::Read && !text.contains('#') && !text.contains("--") {
            prop_assert_eq!(sql.classify(&format!("{text}\n# done")), Access::Read);
        }
    }

    /// Words of every length around the eight-byte scan, keywords hidden in literals,
    /// comments and longer names: a read stays a read, and one bare write keyword
    /// anywhere in it makes it a write.
    #[test]
    fn words_of_any_length_are_read_whole(
        pieces in proptest::collection::vec(0usize..READ_PIECES.len(), 0..24),
        write in proptest::option::of((0usize..24, 0usize..4)),
    ) {
        let mut text: Vec<&str> = pieces.iter().map(|&i| READ_PIECES[i]).collect();
        let sql = SqlClassifier::new();
        let read = format!("SELECT {}", text.join(" "));
        prop_assert_eq!(sql.classify(&read), Access::Read, "{}", read);
        if let Some((at, keyword)) = write {
            let keyword = ["insert", "UPDATE", "Delete", "into"][keyword];
            text.insert(at.min(text.len()), keyword);
            let write = format!("SELECT {}", text.join(" "));
            prop_assert_eq!(sql.classify(&write), Access::Write, "{}", write);
        }
    }

    /// Bytes from SQL's own alphabet, where the tokenizer's cases meet.
    #[test]
    fn sql_like_text_is_classified(text in "[ -~\n]{0,120}", cut in 0usize..120) {
        let sql = SqlClassifier::new();
        let _ = sql.classify(&text);
        let cut = text.char_indices().nth(cut).map_or(text.len(), |(i, _)| i);
        let _ = sql.classify(&text[..cut]);
    }
}
