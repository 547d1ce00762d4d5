//! The MySQL classifier's list of built-in functions a replica may run
//! (`src/replica/sql/mysql_functions.rs`), built from MariaDB's own help tables and checked
//! on a real read-only replica, as an ordinary user (`read_only` does not bind SUPER): every
//! candidate is called there, and only those the server has, that ran, and that no
//! read-only setting refused, are listed.
//!
//! MariaDB keeps no catalog of its native functions with their side effects (PostgreSQL's
//! `pg_proc` has `provolatile`), so the candidates are the help tables' function topics,
//! less the connection's and the node's own state, locks, sequences and waits, named below
//! with the reason.
//!
//! The list is generated, not typed: `TOWER_LB_WRITE_MYSQL_FUNCTIONS=1 cargo test
//! --all-features --test mysql_functions` writes it from the system's MariaDB. Without the
//! variable, the test checks that the committed list is what this server gives (on the
//! version the list was made from) and that every listed function runs on the replica.

#[path = "support/mariadb.rs"]
mod mariadb;

use sqlx::mysql::{MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool};
use tower_lb::replica::{Access, SqlClassifier};

/// Functions that answer from the connection's or the node's own state, take or wait for
/// locks, move sequences, touch files or wait on replication: not the same on a replica.
const SESSION_OR_NODE_STATE: &[(&str, &str)] = &[
    (
        "benchmark",
        "burns the replica's CPU for the caller's loop count",
    ),
    ("binlog_gtid_pos", "the node's binlog"),
    ("connection_id", "the connection"),
    ("current_role", "the connection (SET ROLE)"),
    ("current_user", "the connection's account"),
    ("database", "the connection's default database (USE)"),
    ("found_rows", "the connection's last query"),
    ("get_lock", "a lock held by the connection"),
    ("is_free_lock", "locks on this node"),
    ("is_used_lock", "locks on this node"),
    ("last_insert_id", "the connection's last insert"),
    ("lastval", "a sequence, per connection"),
    ("load_file", "a file on the node's host"),
    ("master_gtid_wait", "waits on the node's replication"),
    ("master_pos_wait", "waits on the node's replication"),
    ("nextval", "moves a sequence"),
    ("old_value", "a trigger's row"),
    ("release_all_locks", "locks held by the connection"),
    ("release_lock", "a lock held by the connection"),
    ("row_count", "the connection's last statement"),
    ("schema", "the connection's default database (USE)"),
    ("session_user", "the connection's account"),
    ("setval", "moves a sequence"),
    ("sleep", "holds a replica connection for the caller's time"),
    ("system_user", "the connection's account"),
    ("user", "the connection's account"),
    ("uuid_short", "the node's server_id"),
    ("value", "the row of an INSERT … ON DUPLICATE KEY UPDATE"),
    ("values", "the row of an INSERT … ON DUPLICATE KEY UPDATE"),
    ("version", "the node's server"),
    ("wsrep_last_seen_gtid", "the Galera node's position"),
    (
        "wsrep_last_written_gtid",
        "the connection's last Galera write",
    ),
    ("wsrep_sync_wait_upto_gtid", "waits on the Galera node"),
];

/// Functions with an argument syntax of their own, called as written here.
const SPECIAL_CALLS: &[(&str, &str)] = &[
    ("adddate", "SELECT ADDDATE(NULL, INTERVAL 1 DAY)"),
    ("date_add", "SELECT DATE_ADD(NULL, INTERVAL 1 DAY)"),
    ("date_sub", "SELECT DATE_SUB(NULL, INTERVAL 1 DAY)"),
    ("extract", "SELECT EXTRACT(YEAR FROM NULL)"),
    ("get_format", "SELECT GET_FORMAT(DATE, 'ISO')"),
    ("position", "SELECT POSITION('a' IN 'b')"),
    ("subdate", "SELECT SUBDATE(NULL, INTERVAL 1 DAY)"),
    ("timestampadd", "SELECT TIMESTAMPADD(DAY, 1, NULL)"),
    ("timestampdiff", "SELECT TIMESTAMPDIFF(DAY, NULL, NULL)"),
    ("trim", "SELECT TRIM(LEADING 'a' FROM NULL)"),
    ("convert", "SELECT CONVERT(NULL, CHAR)"),
    (
        "json_table",
        "SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (a INT PATH '$')) AS t",
    ),
    (
        "percentile_cont",
        "SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY 1) OVER ()",
    ),
    (
        "percentile_disc",
        "SELECT PERCENTILE_DISC(0.5) WITHIN GROUP (ORDER BY 1) OVER ()",
    ),
];

/// The help categories whose topics are functions.
const CATEGORIES: &str = "'Bit Functions', 'Control flow functions', 'Date and Time Functions', \
    'Functions', 'Functions and Modifiers for Use with GROUP BY', 'Geographic Features', \
    'Information Functions', 'Miscellaneous Functions', 'Numeric Functions', \
    'String Functions', 'Contents', 'Dynamic Column Functions', 'Sequences', \
    'Window Functions', 'Encryption Functions', 'Compression Functions'";

/// MariaDB's error numbers: no such function; a wrong argument count, a syntax error (the
/// call needs another form); refused by `read_only` or a read-only transaction.
const NO_SUCH_FUNCTION: [u16; 2] = [1305, 1630];
const NEEDS_ANOTHER_FORM: [u16; 4] = [1582, 1583, 1584, 1064];
const REFUSED_AS_A_WRITE: [u16; 2] = [1290, 1792];

const LIST: &str = "src/replica/sql/mysql_functions.rs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_functions_are_mariadbs_own_and_run_on_a_read_only_replica() {
    let Some(cluster) = mariadb::Cluster::shared() else {
        return;
    };
    let replica = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.replica_url())
        .await
        .unwrap();
    let (read_only, version): (i64, String) =
        sqlx::query_as("SELECT @@read_only, SUBSTRING_INDEX(VERSION(), '-', 1)")
            .fetch_one(&replica)
            .await
            .unwrap();
    assert_eq!(
        read_only, 1,
        "the list is built and checked on a read-only replica"
    );

    // The help tables are the administrator's to read (as root, through the client).
    let topics = cluster.replica_sql(&format!(
        "SELECT LOWER(REPLACE(t.name, '\\\\_', '_')) FROM mysql.help_topic t \
         JOIN mysql.help_category c USING (help_category_id) WHERE c.name IN ({CATEGORIES})"
    ));
    let mut candidates: Vec<String> = topics
        .lines()
        .map(|topic| topic.trim_end_matches(" function").to_string())
        .filter(|name| {
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        })
        .filter(|name| !SESSION_OR_NODE_STATE.iter().any(|(state, _)| state == name))
        .collect();
    candidates.sort();
    candidates.dedup();

    let (mut names, mut absent, mut unconfirmed, mut refused) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for name in &candidates {
        match call(&replica, name).await {
            Outcome::Ran => names.push(name.clone()),
            Outcome::Absent => absent.push(name.clone()),
            Outcome::Unconfirmed => unconfirmed.push(name.clone()),
            Outcome::Refused(error) => refused.push(format!("{name}: {error}")),
        }
    }
    assert!(
        refused.is_empty(),
        "refused on the read-only replica: {refused:#?}"
    );
    println!(
        "MariaDB {version}: {} candidates, {} ran on the replica; not on this server: \
         {absent:?}; no call form found (left out): {unconfirmed:?}",
        candidates.len(),
        names.len()
    );
    assert!(names.len() > 300, "the help tables were read");

    let generated = render(&version, &names);
    if std::env::var_os("TOWER_LB_WRITE_MYSQL_FUNCTIONS").is_some() {
        std::fs::write(LIST, &generated).unwrap();
        println!(
            "wrote {} functions of MariaDB {version} to {LIST}",
            names.len()
        );
    } else {
        let committed = std::fs::read_to_string(LIST).unwrap();
        if committed.contains(&format!("MariaDB {version} ")) {
            assert!(
                committed == generated,
                "{LIST} is not what this server gives: regenerate it \
                 (TOWER_LB_WRITE_MYSQL_FUNCTIONS=1)"
            );
        } else {
            println!("{LIST} was made from another version than {version}: not compared");
        }
    }

    // And the classifier lets each of them through, as a plain read.
    // (Those that are keywords of their own, such as `INSERT(…)`, still go to the primary.)
    let sql = SqlClassifier::mysql();
    for name in &names {
        if sql.classify(&format!("SELECT {name} FROM t")) == Access::Read {
            let text = format!("SELECT {name}(a) FROM t");
            assert_eq!(sql.classify(&text), Access::Read, "{text}");
        }
    }
}

enum Outcome {
    Ran,
    Absent,
    Unconfirmed,
    Refused(String),
}

/// Calls `name` on the replica with 0 to 4 NULL arguments (or its own form), until one
/// call is not refused for its form.
async fn call(replica: &MySqlPool, name: &str) -> Outcome {
    let forms: Vec<String> = match SPECIAL_CALLS.iter().find(|(special, _)| *special == name) {
        Some((_, form)) => vec![form.to_string()],
        None => (0..=4)
            .flat_map(|arity| {
                let arguments = vec!["NULL"; arity].join(", ");
                // Window functions answer only with OVER.
                [
                    format!("SELECT {name}({arguments})"),
                    format!("SELECT {name}({arguments}) OVER ()"),
                ]
            })
            .collect(),
    };
    for form in forms {
        match sqlx::raw_sql(AssertSqlSafe(form.as_str()))
            .execute(replica)
            .await
        {
            Ok(_) => return Outcome::Ran,
            Err(sqlx::Error::Database(error)) => {
                let number = error
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map_or(0, MySqlDatabaseError::number);
                if REFUSED_AS_A_WRITE.contains(&number) {
                    return Outcome::Refused(format!("{form}: {error}"));
                }
                if NO_SUCH_FUNCTION.contains(&number) {
                    return Outcome::Absent;
                }
                if !NEEDS_ANOTHER_FORM.contains(&number) {
                    return Outcome::Ran; // parsed and run: it refused its arguments
                }
            }
            Err(error) => panic!("{form}: {error}"),
        }
    }
    Outcome::Unconfirmed
}

fn render(version: &str, names: &[String]) -> String {
    let mut out = format!(
        "//! MariaDB's own functions that a read-only replica runs alike for a plain read: \
         generated\n//! from the help tables of MariaDB {version} and checked on a read-only \
         replica by\n//! `tests/mysql_functions.rs`; do not edit.\n//!\n//! Every function \
         topic the server has, less the connection's and the node's own state\n//! (the test \
         names each with its reason); sorted bytewise.\n\n/// Names of built-in functions \
         safe to call on a replica.\npub(crate) static READ_FUNCTIONS: [&str; {}] = [\n",
        names.len()
    );
    for name in names {
        out.push_str(&format!("    {name:?},\n"));
    }
    out.push_str("];\n");
    out
}
