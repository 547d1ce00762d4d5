//! The front on sqlx 0.9 (feature `sqlx-postgres`): the files in `front/`, compiled against
//! sqlx 0.9, and what differs from 0.8 (a statement's text is a `SqlStr`, which sending it
//! consumes; statements carry no lifetime).

use super::sqlx_front_modules;
use ::sqlx;

sqlx_front_modules!(postgres: #[cfg(feature = "sqlx-postgres")]);

// MySQL and MariaDB, on sqlx 0.9 only.
#[cfg(feature = "sqlx-mysql")]
#[path = "front/mysql.rs"]
mod mysql;

/// A transaction on a MySQL or MariaDB primary.
#[cfg(feature = "sqlx-mysql")]
pub type MySqlTransaction<X> = RouterTransaction<X, sqlx::MySql>;

/// The statement as the front holds it: public in a private module, as the front's
/// `FrontDatabase` impl names it.
mod sendable {
    use super::sqlx;
    use sqlx::error::BoxDynError;
    use sqlx::{Database, Execute, SqlStr};
    use std::marker::PhantomData;

    /// A statement that can be sent more than once. sqlx's `Execute` is consumed by the send, so
    /// it is taken apart into its text and arguments (which clone) first.
    pub struct Statement<'q, DB: Database> {
        sql: SqlStr,
        arguments: Option<DB::Arguments>,
        persistent: bool,
        query: PhantomData<&'q str>,
    }

    impl<'q, DB: Database> Statement<'q, DB> {
        pub(super) fn take(mut query: impl Execute<'q, DB>) -> Result<Self, sqlx::Error> {
            let persistent = query.persistent();
            let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
            Ok(Statement {
                sql: query.sql(),
                arguments,
                persistent,
                query: PhantomData,
            })
        }

        pub(super) fn text(&self) -> &str {
            self.sql.as_str()
        }
    }

    impl<DB: Database> Clone for Statement<'_, DB>
    where
        DB::Arguments: Clone,
    {
        fn clone(&self) -> Self {
            Statement {
                sql: self.sql.clone(),
                arguments: self.arguments.clone(),
                persistent: self.persistent,
                query: PhantomData,
            }
        }
    }

    impl<DB: Database> std::fmt::Debug for Statement<'_, DB> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Statement")
                .field("sql", &self.sql.as_str())
                .finish_non_exhaustive()
        }
    }

    impl<'q, DB: Database> Execute<'q, DB> for Statement<'q, DB> {
        fn sql(self) -> SqlStr {
            self.sql
        }

        fn statement(&self) -> Option<&DB::Statement> {
            None // sqlx prepares it again, from its statement cache when persistent
        }

        fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
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
        fn prepare_with<'e>(
            self,
            sql: sqlx::SqlStr,
            parameters: &'e [<DB as sqlx::Database>::TypeInfo],
        ) -> BoxFuture<'e, Result<<DB as sqlx::Database>::Statement, sqlx::Error>>
        where
            'c: 'e,
        {
            let $this = self;
            let pool = primary_pool($router);
            Box::pin(async move { (&pool?).prepare_with(sql, parameters).await })
        }

        fn describe<'e>(
            self,
            sql: sqlx::SqlStr,
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
