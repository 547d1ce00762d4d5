//! WAL positions for read-your-own-writes by position: the primary's, read after a commit,
//! and a replica's replay position.

use super::sqlx;
use crate::replica::position::parse_lsn;
use sqlx::PgPool;

/// The primary's WAL insert position, read after the write committed (never inside its
/// transaction: that would be below the commit record).
pub(super) async fn current_position(primary: &PgPool) -> Option<u64> {
    let position: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(primary)
        .await
        .ok()?;
    parse_lsn(&position)
}

/// How far `replica` has replayed (`pg_last_wal_replay_lsn()`, never the receive position).
pub(super) async fn replayed(replica: &PgPool) -> Option<u64> {
    let position: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(replica)
        .await
        .ok()?;
    parse_lsn(&position?)
}
