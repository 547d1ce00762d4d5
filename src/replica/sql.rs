//! A conservative read/write classifier for PostgreSQL statement text.
//!
//! It answers [`Access::Read`] only for one plain read; everything else, and everything it is
//! not sure of, goes to the primary. It tokenizes just enough of PostgreSQL's lexical syntax
//! to never be fooled by comments (nested `/* */` and `--`), string literals (`'…'`, `E'…'`
//! with backslash escapes), quoted identifiers (`"…"`) or dollar-quoted bodies (`$tag$…$tag$`);
//! it does not parse.

use super::Access;

/// Classifies SQL text for a PostgreSQL primary and its streaming replicas.
///
/// A statement is a read, and may go to a replica, only if all of these hold:
/// - it is a single statement (one trailing `;` allowed) that the tokenizer reads to its end;
/// - it starts with `SELECT`, `WITH`, `VALUES` or `TABLE` (after any opening parentheses);
/// - no `INSERT`, `UPDATE`, `DELETE`, `MERGE` anywhere (a writable CTE), no `INTO`
///   (`SELECT … INTO` creates a table), no locking clause (`FOR UPDATE`, `FOR NO KEY UPDATE`,
///   `FOR SHARE`, `FOR KEY SHARE`);
/// - it calls no function with side effects or session state: sequences (`nextval`, `setval`,
///   `currval`, `lastval`), advisory locks, `set_config`, `pg_notify`, transaction ids, WAL
///   functions that fail on a standby, large objects, `dblink_exec`, backend signalling, and
///   any function named with [`write_functions`](Self::write_functions).
///
/// Everything else is a write: DML, DDL, `SET`, `LISTEN`, `NOTIFY`, `LOCK`, `COPY`, `CALL`,
/// `DO`, `EXPLAIN` (which `ANALYZE` would execute), transaction control, an unterminated
/// string or comment, an empty string.
///
/// ```
/// use tower_lb::replica::{Access, SqlClassifier};
///
/// let sql = SqlClassifier::new();
/// assert_eq!(sql.classify("SELECT name FROM users WHERE id = $1"), Access::Read);
/// assert_eq!(sql.classify("SELECT * FROM jobs FOR UPDATE SKIP LOCKED"), Access::Write);
/// assert_eq!(sql.classify("WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved"), Access::Write);
/// assert_eq!(sql.classify("SELECT nextval('ids')"), Access::Write);
/// assert_eq!(sql.classify("SELECT 'DELETE FROM users' AS text -- UPDATE"), Access::Read);
/// assert_eq!(sql.classify("SELECT 1; DROP TABLE users"), Access::Write);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SqlClassifier {
    /// Lower-cased names of the application's own functions that write.
    write_functions: Vec<Box<str>>,
}

/// Built-in functions with side effects, session state, or that fail on a standby. Matched
/// case-insensitively, by full name or (ending in `*`) by prefix.
const WRITE_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_advisory*",
    "pg_try_advisory*",
    "set_config",
    "pg_notify",
    "txid_current*",
    "pg_current_xact_id*",
    "pg_current_wal*",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_create_*",
    "pg_drop_replication_slot",
    "pg_replication_origin*",
    "pg_logical_emit_message",
    "pg_logical_slot_get_changes",
    "lo_*",
    "dblink_exec",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_stat_reset*",
];

impl SqlClassifier {
    /// The built-in rules.
    pub fn new() -> Self {
        SqlClassifier::default()
    }

    /// Also treats calls of these functions (the application's own `VOLATILE` functions that
    /// write) as writes. Names are matched case-insensitively, without schema.
    ///
    /// ```
    /// use tower_lb::replica::{Access, SqlClassifier};
    ///
    /// let sql = SqlClassifier::new().write_functions(["record_visit"]);
    /// assert_eq!(sql.classify("SELECT app.record_visit(42)"), Access::Write);
    /// ```
    pub fn write_functions<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.write_functions.extend(
            names
                .into_iter()
                .map(|name| name.as_ref().to_ascii_lowercase().into_boxed_str()),
        );
        self
    }

    /// Whether `sql` is one plain read ([`Access::Read`]) or must go to the primary.
    pub fn classify(&self, sql: &str) -> Access {
        match self.is_plain_read(sql.as_bytes()) {
            Some(true) => Access::Read,
            _ => Access::Write,
        }
    }

    /// `None` when the text cannot be tokenized.
    fn is_plain_read(&self, sql: &[u8]) -> Option<bool> {
        let mut tokens = Tokens { sql, at: 0 };
        let mut started = false;
        let mut previous_for = false;
        let mut ended = false;
        while let Some(token) = tokens.next()? {
            if ended {
                return Some(false); // a second statement
            }
            match token {
                Token::Open if !started => {}
                Token::Semicolon | Token::Other if !started => return Some(false),
                Token::Semicolon => ended = true,
                Token::Word { text, quoted } => {
                    let word = Word { text, quoted };
                    let keyword = word.keyword();
                    if !started {
                        if keyword != Keyword::Reads {
                            return Some(false);
                        }
                        started = true;
                    }
                    if keyword == Keyword::Writes
                        || (previous_for && keyword == Keyword::LockStrength)
                    {
                        return Some(false);
                    }
                    previous_for = keyword == Keyword::For;
                    if tokens.calls() && self.writes(&word) {
                        return Some(false);
                    }
                    continue;
                }
                Token::Open | Token::Other => {}
            }
            previous_for = false;
        }
        Some(started)
    }

    /// Whether a call of `function` may write or needs the primary.
    fn writes(&self, function: &Word<'_>) -> bool {
        let builtin = WRITE_FUNCTIONS
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => function.starts_with(prefix),
                None => function.is(pattern),
            });
        builtin || self.write_functions.iter().any(|name| function.is(name))
    }
}

/// A word of SQL: a keyword or identifier, bare (case-insensitive) or quoted (exact).
struct Word<'a> {
    text: &'a [u8],
    quoted: bool,
}

/// A keyword packed as [`Word::keyword`] packs a word.
const fn packed(word: &[u8]) -> u64 {
    let mut packed = 0u64;
    let mut i = 0;
    while i < word.len() {
        packed = packed << 8 | word[i] as u64;
        i += 1;
    }
    packed
}

const SELECT: u64 = packed(b"select");
const WITH: u64 = packed(b"with");
const VALUES: u64 = packed(b"values");
const TABLE: u64 = packed(b"table");
const INSERT: u64 = packed(b"insert");
const UPDATE: u64 = packed(b"update");
const DELETE: u64 = packed(b"delete");
const MERGE: u64 = packed(b"merge");
const INTO: u64 = packed(b"into");
const FOR: u64 = packed(b"for");
const SHARE: u64 = packed(b"share");
const NO: u64 = packed(b"no");
const KEY: u64 = packed(b"key");

/// The keywords the classifier acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    /// Starts a read: `SELECT`, `WITH`, `VALUES`, `TABLE`.
    Reads,
    /// Writes wherever it appears: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `INTO`.
    Writes,
    /// `FOR`, which a lock strength may follow.
    For,
    /// `SHARE`, `NO` (KEY UPDATE), `KEY` (SHARE): after `FOR`, a row lock.
    LockStrength,
    Other,
}

impl Word<'_> {
    /// Which keyword this is; a quoted identifier is never one.
    #[inline]
    fn keyword(&self) -> Keyword {
        let text = self.text;
        if self.quoted || !(2..=6).contains(&text.len()) {
            return Keyword::Other;
        }
        // Packed into an integer, lower-cased by setting bit 5: exact for words, since no
        // byte outside A-Z, a-z becomes a letter that way.
        let packed = text
            .iter()
            .fold(0u64, |word, &b| word << 8 | u64::from(b | 0x20));
        match packed {
            SELECT | WITH | VALUES | TABLE => Keyword::Reads,
            INSERT | UPDATE | DELETE | MERGE | INTO => Keyword::Writes,
            FOR => Keyword::For,
            SHARE | NO | KEY => Keyword::LockStrength,
            _ => Keyword::Other,
        }
    }

    /// Equal to `lower`, a lower-case name.
    fn is(&self, lower: &str) -> bool {
        if self.quoted {
            self.text == lower.as_bytes()
        } else {
            self.text.eq_ignore_ascii_case(lower.as_bytes())
        }
    }

    fn starts_with(&self, lower: &str) -> bool {
        self.text.len() >= lower.len()
            && Word {
                text: &self.text[..lower.len()],
                quoted: self.quoted,
            }
            .is(lower)
    }
}

enum Token<'a> {
    Word { text: &'a [u8], quoted: bool },
    Semicolon,
    Open,
    Other,
}

/// The statement's tokens, with comments, literals and whitespace skipped.
struct Tokens<'a> {
    sql: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    /// The next token, `Ok(None)` at the end; `None` (outer) when the text cannot be read
    /// (an unterminated literal, comment or quoted identifier).
    fn next(&mut self) -> Option<Option<Token<'a>>> {
        self.skip_space()?;
        let sql = self.sql;
        let Some(&byte) = sql.get(self.at) else {
            return Some(None);
        };
        let token = match byte {
            b';' => {
                self.at += 1;
                Token::Semicolon
            }
            b'(' => {
                self.at += 1;
                Token::Open
            }
            b'\'' => {
                self.string(false)?;
                Token::Other
            }
            b'"' => {
                let start = self.at + 1;
                let end = self.quoted(b'"')?;
                Token::Word {
                    text: &sql[start..end],
                    quoted: true,
                }
            }
            b'$' => {
                self.dollar()?;
                Token::Other
            }
            b if is_word_start(b) => {
                let start = self.at;
                let rest = &sql[start..];
                self.at += rest
                    .iter()
                    .position(|&b| !is_word_byte(b))
                    .unwrap_or(rest.len());
                let text = &sql[start..self.at];
                // A prefixed string: E'…' (backslash escapes), B'…', X'…', U&'…'.
                if sql.get(self.at) == Some(&b'\'') && text.len() == 1 {
                    self.string(text.eq_ignore_ascii_case(b"e"))?;
                    return Some(Some(Token::Other));
                }
                if text.eq_ignore_ascii_case(b"u") && sql.get(self.at) == Some(&b'&') {
                    match sql.get(self.at + 1) {
                        Some(b'\'') => {
                            self.at += 1;
                            self.string(false)?;
                            return Some(Some(Token::Other));
                        }
                        Some(b'"') => {
                            self.at += 1;
                            let start = self.at + 1;
                            let end = self.quoted(b'"')?;
                            return Some(Some(Token::Word {
                                text: &sql[start..end],
                                quoted: true,
                            }));
                        }
                        _ => {}
                    }
                }
                Token::Word {
                    text,
                    quoted: false,
                }
            }
            _ => {
                self.at += 1;
                Token::Other
            }
        };
        Some(Some(token))
    }

    /// Whether the next token opens a parenthesis: the word before it is a function call.
    /// Skips the space before it, which the next token would skip anyway; an unterminated
    /// comment is left for [`next`](Self::next) to report.
    fn calls(&mut self) -> bool {
        let at = self.at;
        if self.skip_space().is_none() {
            self.at = at;
            return false;
        }
        self.sql.get(self.at) == Some(&b'(')
    }

    /// Skips whitespace and comments; `None` for an unterminated block comment.
    fn skip_space(&mut self) -> Option<()> {
        let sql = self.sql;
        loop {
            let Some(&byte) = sql.get(self.at) else {
                return Some(());
            };
            if CLASSES[byte as usize] == SPACE {
                self.at += 1;
                continue;
            }
            if byte != b'-' && byte != b'/' {
                return Some(());
            }
            match (byte, sql.get(self.at + 1)) {
                (b'-', Some(b'-')) => {
                    while sql.get(self.at).is_some_and(|&b| b != b'\n') {
                        self.at += 1;
                    }
                }
                (b'/', Some(b'*')) => {
                    // Block comments nest in PostgreSQL.
                    self.at += 2;
                    let mut depth = 1usize;
                    while depth > 0 {
                        match (sql.get(self.at)?, sql.get(self.at + 1)) {
                            (b'/', Some(b'*')) => {
                                depth += 1;
                                self.at += 2;
                            }
                            (b'*', Some(b'/')) => {
                                depth -= 1;
                                self.at += 2;
                            }
                            _ => self.at += 1,
                        }
                    }
                }
                _ => return Some(()),
            }
        }
    }

    /// Skips a `'…'` literal at `self.at` (`''` is a quote; with `backslash`, so is `\'`).
    fn string(&mut self, backslash: bool) -> Option<()> {
        self.at += 1;
        loop {
            match *self.sql.get(self.at)? {
                b'\\' if backslash => self.at += 2,
                b'\'' if self.sql.get(self.at + 1) == Some(&b'\'') => self.at += 2,
                b'\'' => {
                    self.at += 1;
                    return Some(());
                }
                _ => self.at += 1,
            }
        }
    }

    /// Skips a literal delimited by `quote` (doubled inside), returning where its text ends.
    fn quoted(&mut self, quote: u8) -> Option<usize> {
        self.at += 1;
        loop {
            match *self.sql.get(self.at)? {
                b if b == quote && self.sql.get(self.at + 1) == Some(&quote) => self.at += 2,
                b if b == quote => {
                    self.at += 1;
                    return Some(self.at - 1);
                }
                _ => self.at += 1,
            }
        }
    }

    /// Skips `$n` (a parameter) or a dollar-quoted literal `$tag$…$tag$`.
    fn dollar(&mut self) -> Option<()> {
        let sql = self.sql;
        let start = self.at;
        self.at += 1;
        if sql.get(self.at).is_some_and(u8::is_ascii_digit) {
            while sql.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            return Some(());
        }
        while sql
            .get(self.at)
            .is_some_and(|&b| is_word_byte(b) && b != b'$')
        {
            self.at += 1;
        }
        if sql.get(self.at) != Some(&b'$') {
            return Some(()); // a lone `$`: an operator character, not a quote
        }
        self.at += 1;
        let delimiter = &sql[start..self.at];
        let body = &sql[self.at..];
        let end = body
            .windows(delimiter.len())
            .position(|window| window == delimiter)?;
        self.at += end + delimiter.len();
        Some(())
    }
}

/// Byte classes, looked up rather than computed: the scan is most of the classifier's time.
const WORD_START: u8 = 1;
const WORD: u8 = 2;
const SPACE: u8 = 4;

static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            classes[i] = WORD_START | WORD;
        } else if b.is_ascii_digit() || b == b'$' {
            classes[i] = WORD;
        } else if b.is_ascii_whitespace() {
            classes[i] = SPACE;
        }
        i += 1;
    }
    classes
};

#[inline]
fn is_word_start(byte: u8) -> bool {
    CLASSES[byte as usize] & WORD_START != 0
}

#[inline]
fn is_word_byte(byte: u8) -> bool {
    CLASSES[byte as usize] & WORD != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(sql: &str) -> bool {
        SqlClassifier::new().classify(sql) == Access::Read
    }

    #[test]
    fn plain_reads_go_to_replicas() {
        for sql in [
            "SELECT 1",
            "select * from users where id = $1;",
            "  -- a comment\n SELECT name FROM users /* a /* nested */ comment */ LIMIT 1",
            "WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM recent",
            "(SELECT 1) UNION (SELECT 2)",
            "VALUES (1, 'a')",
            "TABLE users",
            "SELECT 'it''s', E'\\'; DELETE', $$ UPDATE x $$, $fn$ INSERT $fn$ FROM t",
            "SELECT \"update_count\", \"update\" FROM stats",
            "SELECT coalesce(a, b), lower(name), now() FROM t",
            "SELECT substring(name FOR 3) FROM t",
            "SELECT * FROM t; -- done",
        ] {
            assert!(read(sql), "{sql}");
        }
    }

    #[test]
    fn anything_else_goes_to_the_primary() {
        for sql in [
            "",
            ";",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t FOR KEY SHARE",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1",
            "SELECT nextval('s')",
            "SELECT NEXTVAL('s')",
            "SELECT \"nextval\"('s')",
            "SELECT pg_catalog.setval('s', 1)",
            "SELECT currval('s'), lastval()",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT set_config('a.b', 'c', false)",
            "SELECT pg_notify('ch', 'x')",
            "SELECT pg_current_wal_lsn()",
            "SELECT lo_create(0)",
            "SELECT * INTO new_table FROM t",
            "SELECT 1; SELECT 2",
            "SELECT 1; DROP TABLE t",
            "SET search_path = x",
            "LISTEN ch",
            "NOTIFY ch",
            "LOCK TABLE t",
            "COPY t FROM STDIN",
            "COPY t TO STDOUT",
            "CALL proc()",
            "DO $$ BEGIN END $$",
            "CREATE TABLE t (a int)",
            "BEGIN",
            "COMMIT",
            "EXPLAIN ANALYZE DELETE FROM t",
            "SHOW transaction_read_only",
            "SELECT 'unterminated",
            "SELECT /* unterminated",
            "SELECT $tag$ unterminated",
            "SELECT \"unterminated",
            "SELECT E'\\'",
        ] {
            assert!(!read(sql), "{sql}");
        }
    }

    #[test]
    fn application_functions_can_be_declared_writes() {
        let sql = SqlClassifier::new().write_functions(["Record_Visit"]);
        assert_eq!(sql.classify("SELECT record_visit(1)"), Access::Write);
        assert_eq!(sql.classify("SELECT record_visits FROM t"), Access::Read);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No input panics or hangs, and whatever follows a second statement is never read.
        #[test]
        fn any_text_is_classified(text in ".{0,200}") {
            let sql = SqlClassifier::new();
            let _ = sql.classify(&text);
            prop_assert_eq!(sql.classify(&format!("SELECT 1; {text}\nX")), Access::Write);
        }

        /// Bytes from SQL's own alphabet, where the tokenizer's cases meet.
        #[test]
        fn sql_like_text_is_classified(text in "[ -~\n]{0,120}", cut in 0usize..120) {
            let sql = SqlClassifier::new();
            let _ = sql.classify(&text);
            let cut = text.char_indices().nth(cut).map_or(text.len(), |(i, _)| i);
            let _ = sql.classify(&text[..cut]);
        }
    }
}
