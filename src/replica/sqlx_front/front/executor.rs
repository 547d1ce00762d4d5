//! The router and its sessions as sqlx `Executor`s: glue only (the methods whose
//! signatures differ between sqlx majors are in the front's root, `prepare_and_describe!`).
//! One impl for every database the front speaks ([`FrontDatabase`]): each statement is
//! routed, run and accounted in [`statement`](super::statement); preparing and describing
//! run on the primary, which knows every table a replica does.

use super::database::{BoxFuture, BoxStream, FrontDatabase, Item};
use super::sqlstate::unavailable;
use super::statement::{results, Fetch};
use super::{prepare_and_describe, sqlx};
use crate::policy::Pick;
use crate::replica::sqlx_front::PgSession;
use crate::replica::{Nodes, ReplicaRouter, SqlClassifier};
use futures_core::Stream;
use sqlx::{Database, Either, Execute, Executor, Pool};

/// The primary's pool, for preparing and describing.
fn primary_pool<P, R, X, DB>(
    router: &ReplicaRouter<P, R, SqlClassifier, X>,
) -> Result<Pool<DB>, sqlx::Error>
where
    P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    DB: Database,
{
    let lease = router.primary().lease(&(), &[]).map_err(|reason| {
        unavailable(crate::Error::NoPrimary {
            reason: Box::new(reason),
        })
    })?;
    let pool = lease.service.clone();
    lease.complete(true);
    Ok(pool)
}

/// The first row of `query`'s results, as `fetch_optional` returns it.
async fn first_row<DB: Database>(
    rows: impl Stream<Item = Item<DB>>,
) -> Result<Option<DB::Row>, sqlx::Error> {
    let mut rows = std::pin::pin!(rows);
    while let Some(result) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        if let Either::Right(row) = result? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

macro_rules! executor {
    ($ty:ty, |$this:ident| ($router:expr, $slot:expr)) => {
        impl<'c, P, R, X, DB> Executor<'c> for $ty
        where
            P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
            R: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
            X: Send + Sync + 'static,
            DB: FrontDatabase,
            // What sqlx's own `&Pool` executor asks (preparing and describing use it).
            for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
        {
            type Database = DB;

            fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item<DB>>
            where
                'c: 'e,
                E: 'q + Execute<'q, DB>,
            {
                let $this = self;
                Box::pin(results($router, $slot, query, Fetch::Many))
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, DB>,
            {
                let $this = self;
                Box::pin(first_row::<DB>(results($router, $slot, query, Fetch::Optional)))
            }

            prepare_and_describe!(|$this| $router);
        }
    };
}

executor!(&'c ReplicaRouter<P, R, SqlClassifier, X>, |router| (
    router,
    router.session_slot(())
));
executor!(&'c PgSession<'c, P, R, X>, |session| (
    session.router,
    session.slot
));
