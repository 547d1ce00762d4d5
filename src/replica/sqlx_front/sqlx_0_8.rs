//! The replica router's sqlx front on sqlx 0.8 (feature `sqlx-0_8`), for applications not yet
//! on sqlx 0.9: the same [`PgRouter`](crate::replica::PgRouter) is an `Executor` over sqlx
//! 0.8's `PgPool`s, with this module's transaction, probes and [`router_error`].
//!
//! It is the same code as sqlx 0.9's front, compiled against sqlx 0.8; its documentation's
//! examples show sqlx 0.9 (`sqlx::…`): with 0.8 they read the same.

// The files in `front/`, compiled against sqlx 0.8, and what differs from 0.9 (a statement's
// text is a borrowed `&str`; statements carry its lifetime).

use super::sqlx_front_modules;
use ::sqlx_0_8 as sqlx;

sqlx_front_modules!(postgres: #[cfg(all())]);

/// The statement as the front holds it: public in a private module, as the front's
/// `FrontDatabase` impl names it.
mod sendable {
    use super::sqlx;
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgArguments, PgStatement};
    use sqlx::{Execute, Postgres};
    use std::marker::PhantomData;

    /// A statement that can be sent more than once. sqlx's `Execute` is consumed by the send, so
    /// it is taken apart into its text and arguments (which clone) first. On sqlx 0.8 the
    /// front speaks PostgreSQL only: `DB` is always `Postgres`.
    #[derive(Debug)]
    pub struct Statement<'q, DB = Postgres> {
        sql: &'q str,
        arguments: Option<PgArguments>,
        persistent: bool,
        database: PhantomData<fn() -> DB>,
    }

    impl Clone for Statement<'_, Postgres> {
        fn clone(&self) -> Self {
            Statement {
                sql: self.sql,
                arguments: self.arguments.clone(),
                persistent: self.persistent,
                database: PhantomData,
            }
        }
    }

    impl<'q> Statement<'q, Postgres> {
        pub(super) fn take(mut query: impl Execute<'q, Postgres>) -> Result<Self, sqlx::Error> {
            Ok(Statement {
                sql: query.sql(),
                persistent: query.persistent(),
                arguments: query.take_arguments().map_err(sqlx::Error::Encode)?,
                database: PhantomData,
            })
        }

        pub(super) fn text(&self) -> &str {
            self.sql
        }
    }

    impl<'q> Execute<'q, Postgres> for Statement<'q, Postgres> {
        fn sql(&self) -> &'q str {
            self.sql
        }

        fn statement(&self) -> Option<&PgStatement<'q>> {
            None // sqlx prepares it again, from its statement cache when persistent
        }

        fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
            Ok(self.arguments.take())
        }

        fn persistent(&self) -> bool {
            self.persistent
        }
    }
}
use sendable::Statement;

/// `Executor::prepare_with` and `describe`, on the primary's pool (`$router`'s).
macro_rules! prepare_and_describe {
    (|$this:ident| $router:expr) => {
        fn prepare_with<'e, 'q: 'e>(
            self,
            sql: &'q str,
            parameters: &'e [<DB as sqlx::Database>::TypeInfo],
        ) -> BoxFuture<'e, Result<<DB as sqlx::Database>::Statement<'q>, sqlx::Error>>
        where
            'c: 'e,
        {
            let $this = self;
            let pool = primary_pool($router);
            Box::pin(async move { (&pool?).prepare_with(sql, parameters).await })
        }

        fn describe<'e, 'q: 'e>(
            self,
            sql: &'q str,
        ) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
        where
            'c: 'e,
        {
            let $this = self;
            let pool = primary_pool($router);
            Box::pin(async move { (&pool?).describe(sql).await })
        }
    };
}
use prepare_and_describe;
