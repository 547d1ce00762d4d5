//! WAL positions for read-your-own-writes by position: captured on the primary after a
//! commit, and read on a replica.

use super::sqlx;
use crate::replica::position::parse_lsn;
use crate::replica::router::WriteMark;
use crate::replica::SqlClassifier;
use sqlx::PgPool;

/// In position mode, records the primary's WAL position, read after the write committed
/// (never inside its transaction: that would be below the commit record), as the position
/// the writing session's reads must see. If it cannot be read, the session's reads go to the
/// primary until the cap (the highest position there is).
pub(super) async fn capture_position<X>(
    primary: &PgPool,
    mark: Option<&WriteMark<SqlClassifier, X>>,
) {
    let Some((positions, slot)) = mark.and_then(WriteMark::positions) else {
        return;
    };
    let position: Result<String, _> =
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(primary)
            .await;
    let position = position
        .ok()
        .and_then(|text| parse_lsn(&text))
        .unwrap_or(u64::MAX);
    positions.wrote(slot, position);
}

/// How far `replica` has replayed (`pg_last_wal_replay_lsn()`, never the receive position).
pub(super) async fn replayed(replica: &PgPool) -> Option<u64> {
    let position: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(replica)
        .await
        .ok()?;
    parse_lsn(&position?)
}
