//! A transaction on the primary ([`RouterTransaction`]), and how the router begins one.

use super::database::{capture_position, FrontDatabase};
use super::sqlstate::{is_query_fault, unavailable};
use super::sqlx;
use crate::error::Error;
use crate::policy::Pick;
use crate::replica::sqlx_front::{Sealed, SqlxPool};
use crate::replica::router::WriteMark;
use crate::replica::{Access, Nodes, ReplicaRouter, SqlClassifier};
use sqlx::{Database, Pool};
use std::fmt::Debug;
use std::future::Future;

/// A transaction on the primary ([`ReplicaRouter::begin`](crate::replica::ReplicaRouter::begin)),
/// on a pool of `DB` (`PgTransaction`, `MySqlTransaction`): derefs to the connection it runs
/// on, so sqlx's usual `query(..).execute(&mut *tx)` runs inside it; its commit starts the
/// session's read-your-own-writes window.
pub struct RouterTransaction<X, DB: Database> {
    transaction: sqlx::Transaction<'static, DB>,
    pool: Pool<DB>,
    mark: Option<WriteMark<SqlClassifier, X>>,
}

impl<DB: FrontDatabase> Sealed for Pool<DB> {}

impl<DB: FrontDatabase> SqlxPool for Pool<DB> {
    type Transaction<X> = RouterTransaction<X, DB>;
    type Error = sqlx::Error;

    fn begin<P, R, X>(
        router: &ReplicaRouter<P, R, SqlClassifier, X>,
        slot: Option<usize>,
    ) -> impl Future<Output = Result<RouterTransaction<X, DB>, sqlx::Error>> + Send + '_
    where
        P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
        R: Nodes,
        X: Send + Sync + 'static,
    {
        begin(router, slot)
    }
}

/// A transaction on a primary: routed as a write, begun on a connection of the primary the
/// route takes; if that primary leaves rotation before the transaction has begun, on
/// another one, or [`Error::NoPrimary`].
async fn begin<P, R, X, DB>(
    router: &ReplicaRouter<P, R, SqlClassifier, X>,
    slot: Option<usize>,
) -> Result<RouterTransaction<X, DB>, sqlx::Error>
where
    P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    R: Nodes,
    X: Send + Sync + 'static,
    DB: FrontDatabase,
{
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
        return Ok(RouterTransaction {
            transaction: begun?,
            pool,
            mark: route.mark.take(),
        });
    }
    Err(unavailable(Error::NodesLeftRotation { times: MAX_BEGINS }))
}

/// How many primaries a transaction may try to begin on, when they leave rotation under it.
const MAX_BEGINS: usize = 3;

impl<X, DB: FrontDatabase> RouterTransaction<X, DB> {
    /// Commits; the session reads its own writes from now on (in position mode, once the
    /// commit's position is captured).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let RouterTransaction {
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

impl<X, DB: Database> std::ops::Deref for RouterTransaction<X, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.transaction
    }
}

impl<X, DB: Database> std::ops::DerefMut for RouterTransaction<X, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.transaction
    }
}

impl<X, DB: Database> Debug for RouterTransaction<X, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterTransaction")
            .field("marks_session", &self.mark.is_some())
            .finish_non_exhaustive()
    }
}
