//! PostgreSQL as the front speaks it: statements, WAL positions (the primary's, read after a
//! commit, and a replica's replay position) and what its SQLSTATEs mean for routing.

use super::database::{BoxFuture, BoxStream, FrontDatabase, Item};
use super::sqlstate::is_query_fault;
use super::{sqlx, Statement};
use crate::replica::position::parse_lsn;
use crate::replica::{Access, SqlClassifier};
use sqlx::{Execute, Executor, PgPool, Postgres};
use std::time::Duration;

impl FrontDatabase for Postgres {
    type Sendable<'q> = Statement<'q, Postgres>;

    fn take<'q>(query: impl Execute<'q, Self>) -> Result<Statement<'q, Postgres>, sqlx::Error> {
        Statement::take(query)
    }

    fn text<'s>(statement: &'s Statement<'_, Postgres>) -> &'s str {
        statement.text()
    }

    fn classify(classifier: &SqlClassifier, text: &str) -> Access {
        classifier.classify(text)
    }

    fn fetch_many<'c, 'q: 'c>(
        connection: &'c mut sqlx::PgConnection,
        statement: Statement<'q, Postgres>,
    ) -> BoxStream<'c, Item<Self>> {
        connection.fetch_many(statement)
    }

    fn fetch_optional<'c, 'q: 'c>(
        connection: &'c mut sqlx::PgConnection,
        statement: Statement<'q, Postgres>,
    ) -> BoxFuture<'c, Result<Option<sqlx::postgres::PgRow>, sqlx::Error>> {
        connection.fetch_optional(statement)
    }

    fn current_position(primary: &sqlx::PgPool) -> BoxFuture<'_, Option<u64>> {
        Box::pin(current_position(primary))
    }

    /// A standby has no function to wait for a replay position (in the releases this crate
    /// is tested on): it answers at once, and the router asks again while the read may wait.
    fn reached(
        replica: &sqlx::PgPool,
        position: u64,
        _budget: Duration,
    ) -> BoxFuture<'_, Option<bool>> {
        Box::pin(async move { Some(replayed(replica).await? >= position) })
    }

    /// PostgreSQL has one primary: a pinned read runs on the node that took the write, and
    /// no router over PostgreSQL pools asks for causal reads (`causal_reads` is MySQL's).
    fn causal_barrier(_: &mut sqlx::PgConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_read_only(error: &sqlx::Error) -> bool {
        is_read_only(error)
    }

    fn worth_resending(error: &sqlx::Error) -> bool {
        worth_resending(error)
    }
}

/// SQLSTATE 25006, `read_only_sql_transaction`: a write reached a node in recovery or fenced
/// read-only.
fn is_read_only(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("25006"))
}

/// Whether a read that failed on a replica is worth sending to the primary: the replica
/// failed (a connection-level error), or cancelled it in a conflict with recovery (SQLSTATE
/// 40001 on a standby), not the statement itself.
fn worth_resending(error: &sqlx::Error) -> bool {
    !is_query_fault(error)
        || matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("40001"))
}

/// The primary's WAL insert position, read after the write committed (never inside its
/// transaction: that would be below the commit record).
async fn current_position(primary: &PgPool) -> Option<u64> {
    let position: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(primary)
        .await
        .ok()?;
    parse_lsn(&position)
}

/// How far `replica` has replayed (`pg_last_wal_replay_lsn()`, never the receive position).
async fn replayed(replica: &PgPool) -> Option<u64> {
    let position: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(replica)
        .await
        .ok()?;
    parse_lsn(&position?)
}
