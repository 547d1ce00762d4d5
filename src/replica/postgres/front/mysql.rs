//! MySQL and MariaDB as the front speaks them (sqlx 0.9, feature `sqlx-mysql`): statements
//! classified in MySQL's dialect, GTID positions for read-your-own-writes, and what the
//! server's error numbers mean for routing.
//!
//! A position is a sequence number of replication domain 0 (MariaDB's default domain): the
//! primary's `@@gtid_binlog_pos`, read after the write committed (it is global, so any
//! connection sees the commit once it has returned), against a replica's
//! `@@gtid_slave_pos`, which the replica waits on itself (`MASTER_GTID_WAIT`). Positions of other domains are not compared: the session's reads
//! then go to the primary until the cap.

use super::database::{BoxFuture, BoxStream, FrontDatabase, Item};
use super::sqlstate::is_query_fault;
use super::{sqlx, Statement};
use crate::replica::mysql::GtidPosition;
use crate::replica::{Access, SqlClassifier};
use sqlx::mysql::{MySqlDatabaseError, MySqlRow};
use sqlx::{Execute, Executor, MySql, MySqlConnection, MySqlPool};
use std::time::Duration;

impl FrontDatabase for MySql {
    type Sendable<'q> = Statement<'q, MySql>;

    fn take<'q>(query: impl Execute<'q, Self>) -> Result<Statement<'q, MySql>, sqlx::Error> {
        Statement::take(query)
    }

    fn text<'s>(statement: &'s Statement<'_, MySql>) -> &'s str {
        statement.text()
    }

    fn classify(classifier: &SqlClassifier, text: &str) -> Access {
        classifier.classify_mysql(text)
    }

    fn fetch_many<'c, 'q: 'c>(
        connection: &'c mut MySqlConnection,
        statement: Statement<'q, MySql>,
    ) -> BoxStream<'c, Item<Self>> {
        connection.fetch_many(statement)
    }

    fn fetch_optional<'c, 'q: 'c>(
        connection: &'c mut MySqlConnection,
        statement: Statement<'q, MySql>,
    ) -> BoxFuture<'c, Result<Option<MySqlRow>, sqlx::Error>> {
        connection.fetch_optional(statement)
    }

    fn current_position(primary: &MySqlPool) -> BoxFuture<'_, Option<u64>> {
        Box::pin(position(primary, "SELECT @@gtid_binlog_pos"))
    }

    /// `MASTER_GTID_WAIT` on the replica: it returns the moment the replica's SQL thread
    /// applies the position (0), or when `budget` runs out (-1); the router does not poll.
    fn reached(
        replica: &MySqlPool,
        position: u64,
        budget: Duration,
    ) -> BoxFuture<'_, Option<bool>> {
        Box::pin(reached(replica, position, budget))
    }

    /// 1290 (`--read-only`), 1792 (a read-only transaction).
    fn is_read_only(error: &sqlx::Error) -> bool {
        matches!(error_number(error), Some(1290 | 1792))
    }

    /// A replica's connection-level failure, or 1047 (a Galera node not ready).
    fn worth_resending(error: &sqlx::Error) -> bool {
        !is_query_fault(error) || error_number(error) == Some(1047)
    }
}

/// MariaDB's error number of a database error.
fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Whether `replica` has applied domain 0 up to `sequence`, waiting up to `budget`.
async fn reached(replica: &MySqlPool, sequence: u64, budget: Duration) -> Option<bool> {
    // Only the sequence number of each domain is compared: the server id may be any.
    let waited: Option<i64> = sqlx::query_scalar("SELECT MASTER_GTID_WAIT(?, ?)")
        .bind(format!("0-0-{sequence}"))
        .bind(budget.as_secs_f64())
        .fetch_one(replica)
        .await
        .ok()?;
    match waited? {
        0 => Some(true),
        -1 => Some(false),
        _ => None,
    }
}

/// The domain-0 sequence number of the GTID position `query` reads.
async fn position(pool: &MySqlPool, query: &'static str) -> Option<u64> {
    let text: String = sqlx::query_scalar(query).fetch_one(pool).await.ok()?;
    GtidPosition::parse(&text).ok()?.sequence_in_only_domain_0()
}
