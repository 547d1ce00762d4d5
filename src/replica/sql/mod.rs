//! A conservative read/write classifier for SQL text: PostgreSQL's, or MySQL's and
//! MariaDB's ([`SqlClassifier::mysql`]).
//!
//! It answers [`Access::Read`] only for text a hot standby runs as it would on the primary;
//! everything else, and everything it is not sure of, goes to the primary. It tokenizes just
//! enough of PostgreSQL's lexical syntax to never be fooled by comments, literals, quoted
//! identifiers or dollar quotes ([`scan`]); it does not parse.
//!
//! - [`query`]: the rules of one plain read, run first on every text;
//! - [`calls`]: which functions a read may call (an allowlist: [`pg_functions`], generated
//!   from `pg_proc` of a hot standby, plus the application's declared ones);
//! - [`script`]: the rules for several statements, `EXPLAIN`, `COPY … TO STDOUT`, `CALL`,
//!   run only when the plain-read rules stop between statements.

mod calls;
mod dialect;
mod mysql_functions;
mod pg_functions;
mod query;
mod scan;
mod script;

use super::Access;
use dialect::{MySql, MySqlSkippingVersions, Postgres};
use query::Query;
use scan::{may_hold_version_comment, scan};
use script::Script;

/// Classifies SQL text for a PostgreSQL primary and its streaming replicas.
///
/// Text is a read, and may go to a replica, only if each of its statements is one of:
/// - a plain query: it starts with `SELECT`, `WITH`, `VALUES` or `TABLE` (after any opening
///   parentheses); no `INSERT`, `UPDATE`, `DELETE`, `MERGE` anywhere (a writable CTE), no
///   `INTO` (`SELECT … INTO` creates a table), no locking clause (`FOR UPDATE`, `FOR NO KEY
///   UPDATE`, `FOR SHARE`, `FOR KEY SHARE`); and every function it calls is known to be
///   safe on a standby: one of PostgreSQL's own (`IMMUTABLE` or `STABLE` in `pg_catalog`, as
///   listed from `pg_proc` of a hot standby, with the few volatile ones that only read),
///   or one the application declares with [`read_functions`](Self::read_functions). **A
///   function it does not know goes to the primary**: it may write. So do the connection's
///   own state (`current_setting`, `pg_backend_pid`, …) and the node's (`pg_is_in_recovery`);
/// - `EXPLAIN` of any statement without `ANALYZE` (it is only planned), or `EXPLAIN
///   ANALYZE` of a plain query;
/// - `COPY (plain query) TO STDOUT` or `COPY table TO STDOUT` (never to a file or program:
///   those write on the replica's host);
/// - `CALL` of a procedure declared with [`read_functions`](Self::read_functions), with
///   arguments a plain query could have;
/// - an empty statement; and the whole text may be wrapped in one transaction (`BEGIN`,
///   `BEGIN READ ONLY`, `START TRANSACTION ISOLATION LEVEL REPEATABLE READ` … `COMMIT`).
///
/// Everything else is a write: DML, DDL, `SET`, `SHOW`, `LISTEN`, `NOTIFY`, `LOCK`, `COPY …
/// FROM`, `DO`, an undeclared `CALL`, transaction control on its own, an unterminated
/// string or comment.
///
/// ```
/// use tower_lb::replica::{Access, SqlClassifier};
///
/// let sql = SqlClassifier::new();
/// assert_eq!(sql.classify("SELECT name FROM users WHERE id = $1"), Access::Read);
/// assert_eq!(sql.classify("SELECT * FROM jobs FOR UPDATE SKIP LOCKED"), Access::Write);
/// assert_eq!(sql.classify("WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved"), Access::Write);
/// assert_eq!(sql.classify("SELECT nextval('ids')"), Access::Write);
/// assert_eq!(sql.classify("SELECT lower(name), count(*) FROM users GROUP BY 1"), Access::Read);
/// assert_eq!(sql.classify("SELECT record_visit(42)"), Access::Write); // unknown: may write
/// assert_eq!(sql.classify("SELECT 'DELETE FROM users' AS text -- UPDATE"), Access::Read);
/// assert_eq!(sql.classify("SELECT 1; SELECT 2"), Access::Read);
/// assert_eq!(sql.classify("SELECT 1; DROP TABLE users"), Access::Write);
/// assert_eq!(sql.classify("EXPLAIN UPDATE users SET name = ''"), Access::Read);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SqlClassifier {
    /// Whose SQL it reads.
    dialect: Dialect,
    /// Lower-cased names of the application's own functions that write.
    write_functions: Vec<Box<str>>,
    /// Lower-cased names of the application's own functions and procedures that only read.
    read_functions: Vec<Box<str>>,
}

/// The SQL a [`SqlClassifier`] reads: the lexical rules, the built-in functions a replica
/// may run, and the statements other than a query that are reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Dialect {
    #[default]
    Postgres,
    MySql,
}

fn lowered<I, N>(names: I) -> impl Iterator<Item = Box<str>>
where
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    names
        .into_iter()
        .map(|name| name.as_ref().to_ascii_lowercase().into_boxed_str())
}

impl SqlClassifier {
    /// The built-in rules, for PostgreSQL.
    pub fn new() -> Self {
        SqlClassifier::default()
    }

    /// The built-in rules for MySQL and MariaDB: their lexical syntax and their built-in
    /// functions, with the same conservative default (a function it does not know goes to
    /// the primary).
    ///
    /// Text is a read only if each of its statements is a plain query (`SELECT`, `WITH`,
    /// `VALUES`, `TABLE`) that writes nowhere and holds no session state, `EXPLAIN` of
    /// one, a `CALL` of a procedure declared with [`read_functions`](Self::read_functions),
    /// or empty, optionally in one transaction (`START TRANSACTION READ ONLY` … `COMMIT`).
    /// So these go to the primary:
    /// - row locks and what writes from a `SELECT`: `FOR UPDATE`, `FOR SHARE`, `LOCK IN
    ///   SHARE MODE`, `INTO @var`, `INTO OUTFILE` (a file on the replica's host);
    /// - the connection's state: any variable (`@v`, `@@v`), `SQL_CALC_FOUND_ROWS`,
    ///   `LAST_INSERT_ID()`, `FOUND_ROWS()`, `ROW_COUNT()`, `GET_LOCK()`,
    ///   `RELEASE_LOCK()`, sequences (`NEXTVAL(s)`, `NEXT VALUE FOR s`, `LASTVAL(s)`);
    /// - every other statement: `SET`, `SHOW`, `HANDLER`, `LOAD DATA`, `DO`, an
    ///   undeclared `CALL` (a `SQL SECURITY DEFINER` procedure writes even on a read-only
    ///   replica, and breaks its replication), `EXPLAIN` of anything but a query (a
    ///   read-only replica refuses `EXPLAIN UPDATE`), temporary tables;
    /// - a literal holding a backslash: whether it escapes depends on the server's
    ///   `sql_mode`, which the text does not tell. Version comments (`/*! … */`) are read
    ///   both as SQL and as comments: the text is a read only if it is one both ways.
    ///
    /// ```
    /// use tower_lb::replica::{Access, SqlClassifier};
    ///
    /// let sql = SqlClassifier::mysql();
    /// assert_eq!(sql.classify("SELECT `name` FROM users WHERE id = ? # by id"), Access::Read);
    /// assert_eq!(sql.classify("SELECT * FROM jobs LOCK IN SHARE MODE"), Access::Write);
    /// assert_eq!(sql.classify("SELECT LAST_INSERT_ID()"), Access::Write);
    /// assert_eq!(sql.classify("SELECT id INTO @last FROM t"), Access::Write);
    /// assert_eq!(sql.classify("SELECT /*! SQL_CALC_FOUND_ROWS */ * FROM t"), Access::Write);
    /// assert_eq!(sql.classify("SELECT lower(name), count(*) FROM users GROUP BY 1"), Access::Read);
    /// assert_eq!(sql.classify("CALL report(2026)"), Access::Write); // may write: undeclared
    /// ```
    pub fn mysql() -> Self {
        SqlClassifier {
            dialect: Dialect::MySql,
            ..SqlClassifier::default()
        }
    }

    /// Declares the application's own functions and procedures that only read and that a
    /// standby can run (no writes, no temporary tables, no session settings): calls of them
    /// may go to a replica, and so may a `CALL` of such a procedure. Names are matched
    /// case-insensitively, in any schema.
    ///
    /// ```
    /// use tower_lb::replica::{Access, SqlClassifier};
    ///
    /// let sql = SqlClassifier::new().read_functions(["app.visible_posts", "report"]);
    /// assert_eq!(sql.classify("SELECT * FROM app.visible_posts($1)"), Access::Read);
    /// assert_eq!(sql.classify("CALL report(2026)"), Access::Read);
    /// assert_eq!(sql.classify("CALL refresh_cache()"), Access::Write);
    /// ```
    pub fn read_functions<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let names = lowered(names).map(|name| match name.rsplit_once('.') {
            Some((_, bare)) => bare.into(),
            None => name,
        });
        self.read_functions.extend(names);
        self
    }

    /// Treats calls of these functions as writes, whatever else says (a function of the
    /// application's that shadows a built-in name, or one declared read-only by mistake).
    /// Names are matched case-insensitively, without schema.
    ///
    /// ```
    /// use tower_lb::replica::{Access, SqlClassifier};
    ///
    /// let sql = SqlClassifier::new().write_functions(["lower"]);
    /// assert_eq!(sql.classify("SELECT app.lower(name) FROM t"), Access::Write);
    /// ```
    pub fn write_functions<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.write_functions.extend(lowered(names));
        self
    }

    /// Whether `sql` is a read ([`Access::Read`]) or must go to the primary.
    pub fn classify(&self, sql: &str) -> Access {
        self.classify_in(self.dialect, sql)
    }

    /// `classify` in MySQL's dialect, whatever this classifier's, with its declared
    /// functions: what the sqlx front uses for a statement to a MySQL or MariaDB pool.
    #[cfg_attr(not(feature = "sqlx-mysql"), allow(dead_code))]
    pub(crate) fn classify_mysql(&self, sql: &str) -> Access {
        self.classify_in(Dialect::MySql, sql)
    }

    fn classify_in(&self, dialect: Dialect, sql: &str) -> Access {
        let sql = sql.as_bytes();
        let rules = Rules {
            classifier: self,
            dialect,
        };
        match dialect {
            Dialect::Postgres => rules.classify_as::<Postgres>(sql),
            Dialect::MySql => match rules.classify_as::<MySql>(sql) {
                Access::Read if may_hold_version_comment(sql) => {
                    rules.classify_as::<MySqlSkippingVersions>(sql)
                }
                access => access,
            },
        }
    }
}

/// The rules one text is classified by: the classifier's declarations, in one dialect.
#[derive(Clone, Copy)]
struct Rules<'c> {
    classifier: &'c SqlClassifier,
    dialect: Dialect,
}

impl Rules<'_> {
    /// `classify`, with one dialect's lexical rules.
    fn classify_as<D: scan::Dialect>(self, sql: &[u8]) -> Access {
        let mut query = Query::new(self, sql);
        match scan::<D>(sql, &mut query) {
            None => return Access::Write, // unterminated: no server reads it
            Some(true) if query.started() => return Access::Read,
            _ if !query.stopped_between_statements() => return Access::Write,
            _ => {}
        }
        let mut script = Script::new(self, sql);
        match scan::<D>(sql, &mut script) {
            Some(true) if script.is_read() => Access::Read,
            _ => Access::Write,
        }
    }
}

#[cfg(test)]
mod tests;
