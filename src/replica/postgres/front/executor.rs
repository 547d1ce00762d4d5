//! The router and its sessions as sqlx `Executor`s: glue only (the methods whose
//! signatures differ between sqlx majors are in the front's root, `prepare_and_describe!`). Each statement is routed,
//! run and accounted in [`statement`](super::statement); preparing and describing run on the
//! primary, which knows every table a replica does.

use super::sqlstate::unavailable;
use super::statement::{results, Fetch, Item};
use super::{prepare_and_describe, sqlx, PgNodes};
use crate::replica::postgres::{PgRouter, PgSession};
use futures_core::Stream;
use sqlx::postgres::PgRow;
use sqlx::{Either, Execute, Executor, PgPool, Postgres};
use std::future::Future;
use std::pin::Pin;

type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The primary's pool, for preparing and describing.
fn primary_pool<P: PgNodes, R, X>(router: &PgRouter<P, R, X>) -> Result<PgPool, sqlx::Error> {
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
async fn first_row(rows: impl Stream<Item = Item>) -> Result<Option<PgRow>, sqlx::Error> {
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
        impl<'c, P, R, X> Executor<'c> for $ty
        where
            P: PgNodes,
            R: PgNodes,
            X: Send + Sync + 'static,
        {
            type Database = Postgres;

            fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                let $this = self;
                Box::pin(results($router, $slot, query, Fetch::Many))
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                let $this = self;
                Box::pin(first_row(results($router, $slot, query, Fetch::Optional)))
            }

            prepare_and_describe!(|$this| $router);
        }
    };
}

executor!(&'c PgRouter<P, R, X>, |router| (
    router,
    router.session_slot(())
));
executor!(&'c PgSession<'c, P, R, X>, |session| (
    session.router,
    session.slot
));
