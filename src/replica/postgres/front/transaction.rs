//! A transaction on the primary ([`PgTransaction`]), and how the router begins one.

use super::database::capture_position;
use super::sqlstate::{is_query_fault, unavailable};
use super::{sqlx, PgNodes};
use crate::error::Error;
use crate::policy::Pick;
use crate::replica::postgres::{PgRouter, Sealed, SqlxPgPool};
use crate::replica::router::WriteMark;
use crate::replica::{Access, Nodes, SqlClassifier};
use sqlx::{PgConnection, PgPool, Postgres};
use std::fmt::Debug;
use std::future::Future;

/// A transaction on the primary ([`ReplicaRouter::begin`](crate::replica::ReplicaRouter::begin)): derefs to the connection it runs
/// on, so sqlx's usual `query(..).execute(&mut *tx)` runs inside it; its commit starts the
/// session's read-your-own-writes window.
pub struct PgTransaction<X> {
    transaction: sqlx::Transaction<'static, Postgres>,
    pool: PgPool,
    mark: Option<WriteMark<SqlClassifier, X>>,
}

impl Sealed for PgPool {}

impl SqlxPgPool for PgPool {
    type Transaction<X> = PgTransaction<X>;
    type Error = sqlx::Error;

    fn begin<P, R, X>(
        router: &PgRouter<P, R, X>,
        slot: Option<usize>,
    ) -> impl Future<Output = Result<PgTransaction<X>, sqlx::Error>> + Send + '_
    where
        P: Nodes<Service = PgPool, Policy: Pick<()>>,
        R: Nodes,
        X: Send + Sync + 'static,
    {
        begin(router, slot)
    }
}

/// A transaction on a primary: routed as a write, begun on a connection of the primary the
/// route takes; if that primary leaves rotation before the transaction has begun, on
/// another one, or [`Error::NoPrimary`].
async fn begin<P: PgNodes, R: Nodes, X: Send + Sync + 'static>(
    router: &PgRouter<P, R, X>,
    slot: Option<usize>,
) -> Result<PgTransaction<X>, sqlx::Error> {
    let shared = router.shared();
    let mut route = shared.decide(Access::Write, slot, true);
    for _ in 0..MAX_BEGINS {
        let lease = shared
            .take(&mut route, |_| router.primary().lease(&(), &[]))
            .map_err(unavailable)?;
        let pool = lease.service.clone();
        let begun = tokio::select! {
            biased;
            begun = pool.begin() => begun,
            () = router.primary().out_of_rotation(lease.endpoint()) => continue,
        };
        lease.complete(begun.as_ref().map_or_else(is_query_fault, |_| true));
        return Ok(PgTransaction {
            transaction: begun?,
            pool,
            mark: route.mark.take(),
        });
    }
    Err(unavailable(Error::NodesLeftRotation { times: MAX_BEGINS }))
}

/// How many primaries a transaction may try to begin on, when they leave rotation under it.
const MAX_BEGINS: usize = 3;

impl<X> PgTransaction<X> {
    /// Commits; the session reads its own writes from now on (in position mode, once the
    /// commit's position is captured).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let PgTransaction {
            transaction,
            pool,
            mark,
        } = self;
        transaction.commit().await?;
        capture_position(&pool, mark.as_ref()).await;
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.transaction.rollback().await
    }
}

impl<X> std::ops::Deref for PgTransaction<X> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.transaction
    }
}

impl<X> std::ops::DerefMut for PgTransaction<X> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }
}

impl<X> Debug for PgTransaction<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("marks_session", &self.mark.is_some())
            .finish_non_exhaustive()
    }
}
