//! The SQL classifier's list of PostgreSQL functions a replica may run
//! (`src/replica/sql/pg_functions.rs`), built from `pg_proc` of a real hot standby and checked
//! there: every overload of every listed function is called on the standby (with NULL
//! arguments), and none is refused as a write in recovery.
//!
//! The list is generated, not typed: `TOWER_LB_WRITE_PG_FUNCTIONS=1 cargo test
//! --all-features --test pg_functions` writes it from the system's PostgreSQL. Without the
//! variable, the test checks that the committed list is what this server gives (on the
//! major version the list was made from) and calls every function on the standby.

#[path = "support/postgres.rs"]
mod postgres;

use sqlx::postgres::PgPoolOptions;
use sqlx::Row;

/// Volatile functions that only read and are the same on any node: allowed though volatile.
const VOLATILE_READS: &[&str] = &[
    "random",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_database_size",
    "pg_tablespace_size",
    "pg_partition_tree",
    "pg_partition_ancestors",
];

/// Stable or immutable functions that still belong to the primary: the connection's own
/// session state (its settings, its backend, its temporary schema, its transaction), the
/// node's own state (recovery, WAL, start time), or that fail during recovery.
const SESSION_OR_NODE_STATE: &[&str] = &[
    "current_setting",
    "current_schema",
    "current_schemas",
    "pg_backend_pid",
    "pg_trigger_depth",
    "pg_my_temp_schema",
    "pg_is_other_temp_schema",
    "pg_listening_channels",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "txid_current",
    "pg_current_xact_id",
    "txid_current_if_assigned",
    "pg_current_xact_id_if_assigned",
    "txid_current_snapshot",
    "pg_current_snapshot",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_walfile_name",
    "pg_walfile_name_offset",
];

/// Prefixes of the same: per-node statistics and control data.
const SESSION_OR_NODE_STATE_PREFIXES: &[&str] = &["pg_stat_get_", "pg_control_"];

const LIST: &str = "src/replica/sql/pg_functions.rs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_functions_are_pg_procs_safe_functions_and_run_on_a_hot_standby() {
    let Some(cluster) = postgres::Cluster::start() else {
        return;
    };
    let standby = PgPoolOptions::new()
        .max_connections(2)
        .connect(&cluster.replica_url())
        .await
        .unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&standby)
        .await
        .unwrap();
    assert!(
        in_recovery,
        "the list is built and checked on a hot standby"
    );
    let major: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(&standby)
        .await
        .unwrap();
    let major = &major[..major.len() - 4];
    let prefixes: Vec<String> = SESSION_OR_NODE_STATE_PREFIXES
        .iter()
        .map(|prefix| format!("{prefix}%"))
        .collect();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'pg_catalog' \
         GROUP BY p.proname \
         HAVING bool_and((p.provolatile IN ('i', 's') OR p.proname = ANY($1)) \
                         AND p.prokind IN ('f', 'a', 'w')) \
            AND NOT (p.proname = ANY($2) OR p.proname::text LIKE ANY($3)) \
         ORDER BY p.proname COLLATE \"C\"",
    )
    .bind(VOLATILE_READS)
    .bind(SESSION_OR_NODE_STATE)
    .bind(&prefixes)
    .fetch_all(&standby)
    .await
    .unwrap();

    let generated = render(major, &names);
    if std::env::var_os("TOWER_LB_WRITE_PG_FUNCTIONS").is_some() {
        std::fs::write(LIST, &generated).unwrap();
        println!(
            "wrote {} functions of PostgreSQL {major} to {LIST}",
            names.len()
        );
    } else {
        let committed = std::fs::read_to_string(LIST).unwrap();
        if committed.contains(&format!("PostgreSQL {major} ")) {
            assert!(
                committed == generated,
                "{LIST} is not what this server's pg_proc gives: regenerate it \
                 (TOWER_LB_WRITE_PG_FUNCTIONS=1)"
            );
        } else {
            println!("{LIST} was made from another major version than {major}: not compared");
        }
    }

    // Every overload of every listed function, called on the standby with NULL arguments.
    // Errors are expected (wrong arguments, polymorphic types); a refusal as a write during
    // recovery is not.
    let calls = sqlx::query(
        "SELECT p.proname::text, (SELECT array_agg(format_type(t, NULL) ORDER BY i) \
                                   FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i)) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'pg_catalog' AND p.proname = ANY($1) AND p.prokind <> 'w'",
    )
    .bind(&names)
    .fetch_all(&standby)
    .await
    .unwrap();
    let (mut answered, mut refused) = (0, Vec::new());
    for call in &calls {
        let name: String = call.get(0);
        let arguments: Option<Vec<String>> = call.get(1);
        let arguments: Vec<String> = arguments
            .unwrap_or_default()
            .iter()
            .map(|t| format!("NULL::{t}"))
            .collect();
        let sql = format!("SELECT pg_catalog.\"{name}\"({})", arguments.join(", "));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(&standby)
            .await
        {
            Ok(_) => answered += 1,
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("25006" | "55000")) =>
            {
                refused.push(format!("{sql}: {error}"));
            }
            Err(_) => {}
        }
    }
    println!(
        "{} functions, {} overloads called on the standby, {answered} answered",
        names.len(),
        calls.len()
    );
    assert!(refused.is_empty(), "refused on the standby: {refused:#?}");
    assert!(
        names.len() > 2000 && answered > 1000,
        "the catalog was read"
    );
}

fn render(major: &str, names: &[String]) -> String {
    let mut out = format!(
        "//! PostgreSQL's own functions that a hot standby may run for a plain read: generated \
         from\n//! `pg_proc` of PostgreSQL {major} (a hot standby) by `tests/pg_functions.rs`; do \
         not edit.\n//!\n//! Every name whose overloads are all `IMMUTABLE` or `STABLE` (or a \
         volatile read the\n//! generator names), less the session's and the node's own state; \
         sorted bytewise.\n\n/// Names of `pg_catalog` functions safe to call on a replica.\n\
         pub(crate) static READ_FUNCTIONS: [&str; {}] = [\n",
        names.len()
    );
    for name in names {
        out.push_str(&format!("    {name:?},\n"));
    }
    out.push_str("];\n");
    out
}
