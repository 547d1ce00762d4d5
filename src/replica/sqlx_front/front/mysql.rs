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
use crate::replica::{Access, Nodes, ReplicaRouterBuilder, SqlClassifier};
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

    /// Galera's causal read, for this one statement (`SET STATEMENT`, so the connection goes
    /// back to its pool as it came): the node applies every write set the cluster had
    /// committed when the statement arrived before it answers.
    fn causal_barrier(connection: &mut MySqlConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move {
            connection
                .execute("SET STATEMENT wsrep_sync_wait = 1 FOR SELECT 1")
                .await
                .map(drop)
        })
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

impl<P, R, X> ReplicaRouterBuilder<P, R, SqlClassifier, X>
where
    P: Nodes<Service = MySqlPool>,
    R: Nodes<Key = P::Key, Service = MySqlPool, Classify = P::Classify>,
{
    /// For a multi-primary Galera cluster, whose nodes are all primaries: a session's reads
    /// in its read-your-own-writes window first wait on their node, whichever it is, until
    /// it has applied every write the cluster had committed (Galera's causal read,
    /// `wsrep_sync_wait`, one more round trip: ~0.1 ms on loopback at idle, longer while the
    /// node applies a backlog). Without it, such a read goes to "the primary", which may be
    /// another node than the one that took the write, and Galera applies a write on the
    /// other nodes after it commits: the read may miss it.
    ///
    /// A causal read waits while the cluster cannot commit: with a node killed, until the
    /// cluster evicts it (measured on three nodes: one such read took 6.0 s, none failed, of
    /// 12 806 over the kill), where a plain read answers at once.
    ///
    /// Window mode only, and only on Galera nodes (on a MariaDB server without Galera the
    /// wait does nothing; MySQL has no such variable and the read fails). Position mode needs
    /// asynchronous GTID replicas, as Galera nodes do not report a replica's position.
    ///
    /// ```
    /// use sqlx::mysql::MySqlPoolOptions;
    /// use tower_lb::{policy::P2c, replica::{MySqlRouter, ReplicaRouter}, Balance, BoxError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
    /// // Three Galera nodes (lazy pools: nothing connects until a statement runs).
    /// let nodes: Vec<_> = (1..=3)
    ///     .map(|n| MySqlPoolOptions::new().connect_lazy(&format!("mysql://app@127.0.0.1:{}/app", 3305 + n)))
    ///     .collect::<Result<_, _>>()?;
    /// let keyed = || ["node1", "node2", "node3"].into_iter().zip(nodes.clone());
    /// let db: MySqlRouter<_> = ReplicaRouter::builder(
    ///     Balance::builder(P2c::new()).endpoints(keyed()).build()?,
    ///     Balance::builder(P2c::new()).endpoints(keyed()).build()?,
    /// )
    /// .causal_reads()
    /// .build();
    /// # let _ = db;
    /// # Ok(()) }
    /// ```
    pub fn causal_reads(mut self) -> Self {
        self.settings.causal_reads = true;
        self
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
