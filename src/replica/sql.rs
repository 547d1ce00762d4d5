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
        let mut statement = Statement {
            classifier: self,
            sql,
            refused: BEFORE_THE_FIRST_WORD,
            previous: NO_WORD,
        };
        let read_to_end = statement.scan()?;
        Some(read_to_end && statement.started())
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

/// What the classifier has seen of a statement so far.
struct Statement<'c, 'a> {
    classifier: &'c SqlClassifier,
    sql: &'a [u8],
    /// The kinds of token (bits by [`kind`]) that would make the statement more than a plain
    /// read if they came next: one test per token instead of a branch per rule.
    refused: u8,
    /// Where the word before this token is ([`NO_WORD`] if there was none): a function's
    /// name when this token is `(`. Positions, not a [`Word`]: they are stored for every word,
    /// and read only before a `(`.
    previous: Span,
}

/// Where a word is in the statement, quotes included for a quoted one.
type Span = (usize, usize);

/// The empty span: no word.
const NO_WORD: Span = (0, 0);

/// A token's kind as one bit: keywords by [`Keyword`], then `(`, `;` and anything else.
const fn kind(keyword: Keyword) -> u8 {
    1 << keyword as u8
}
const OPEN: u8 = 1 << 5;
const SEMICOLON: u8 = 1 << 6;
const OTHER: u8 = 1 << 7;
/// Only opening parentheses and a read's keyword may start a read.
const BEFORE_THE_FIRST_WORD: u8 = !(kind(Keyword::Reads) | OPEN);
/// Inside a read, a writing keyword anywhere ends it…
const IN_A_READ: u8 = kind(Keyword::Writes);
/// … and so does a lock strength right after `FOR` (`FOR UPDATE`, `FOR KEY SHARE`).
const AFTER_FOR: u8 = IN_A_READ | kind(Keyword::LockStrength);
/// Nothing may follow the one `;`.
const AFTER_THE_END: u8 = u8::MAX;

impl<'a> Statement<'_, 'a> {
    /// Takes the next token: `false` once the statement cannot be a plain read.
    ///
    /// Always inlined, into each place [`scan`](Self::scan) finds a kind of token, so that the
    /// `match` below folds away: this runs for every token.
    #[inline(always)]
    fn take(&mut self, token: Token) -> bool {
        let (kind, refused_next) = match token {
            Token::Word(span, keyword) => {
                self.previous = span;
                let next = if keyword == Keyword::For {
                    AFTER_FOR
                } else {
                    IN_A_READ
                };
                (kind(keyword), next)
            }
            Token::Open => {
                let (start, end) = std::mem::replace(&mut self.previous, NO_WORD);
                if end > start && self.classifier.writes(&Word::at(&self.sql[start..end])) {
                    return false;
                }
                // Parentheses may open a read (`(SELECT 1)`): until its keyword, the only
                // state that refuses other tokens is the one before it.
                let next = if self.refused & OTHER != 0 {
                    BEFORE_THE_FIRST_WORD
                } else {
                    IN_A_READ
                };
                (OPEN, next)
            }
            Token::Semicolon => {
                self.previous = NO_WORD;
                (SEMICOLON, AFTER_THE_END)
            }
            Token::Other => {
                self.previous = NO_WORD;
                (OTHER, IN_A_READ)
            }
        };
        if self.refused & kind != 0 {
            return false;
        }
        self.refused = refused_next;
        true
    }

    /// Whether the statement has begun with a read's keyword: only until then are the
    /// tokens refused those of [`BEFORE_THE_FIRST_WORD`].
    fn started(&self) -> bool {
        self.refused != BEFORE_THE_FIRST_WORD
    }
}

/// A name in SQL, bare (case-insensitive) or quoted (exact).
#[derive(Clone, Copy)]
struct Word<'a> {
    text: &'a [u8],
    quoted: bool,
}

/// A keyword packed as [`word_end`] packs a word: little-endian, lower case.
const fn packed(word: &[u8]) -> u64 {
    let mut packed = 0u64;
    let mut i = 0;
    while i < word.len() {
        packed |= (word[i] as u64) << (8 * i);
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

impl Keyword {
    /// The keyword a bare word is, given its first eight bytes as [`word_end`] packs them.
    #[inline]
    fn of(packed: u64) -> Keyword {
        let (key, keyword) = KEYWORDS[keyword_slot(packed)];
        if key == packed {
            keyword
        } else {
            Keyword::Other
        }
    }
}

/// The keywords in a perfect hash of their packed form: one multiply and one compare for
/// every word, rather than a search through the constants with its branches.
static KEYWORDS: [(u64, Keyword); 16] = {
    let keywords = [
        (SELECT, Keyword::Reads),
        (WITH, Keyword::Reads),
        (VALUES, Keyword::Reads),
        (TABLE, Keyword::Reads),
        (INSERT, Keyword::Writes),
        (UPDATE, Keyword::Writes),
        (DELETE, Keyword::Writes),
        (MERGE, Keyword::Writes),
        (INTO, Keyword::Writes),
        (FOR, Keyword::For),
        (SHARE, Keyword::LockStrength),
        (NO, Keyword::LockStrength),
        (KEY, Keyword::LockStrength),
    ];
    let mut table = [(0, Keyword::Other); 16];
    let mut i = 0;
    while i < keywords.len() {
        let slot = keyword_slot(keywords[i].0);
        assert!(
            table[slot].0 == 0,
            "two keywords hash alike: pick another multiplier"
        );
        table[slot] = keywords[i];
        i += 1;
    }
    table
};

/// A multiplier under which the keywords' top four bits differ (found by trying).
const KEYWORD_MULTIPLIER: u64 = 0x10ad_2061_0216_e70f;

#[inline]
const fn keyword_slot(packed: u64) -> usize {
    (packed.wrapping_mul(KEYWORD_MULTIPLIER) >> 60) as usize
}

impl<'a> Word<'a> {
    /// The word spelled by `span`: quoted if it starts with `"`.
    fn at(span: &'a [u8]) -> Self {
        match span {
            [b'"', text @ .., _] => Word { text, quoted: true },
            text => Word {
                text,
                quoted: false,
            },
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
                ..*self
            }
            .is(lower)
    }
}

enum Token {
    /// A word, where it is, and the keyword it is if any (never one when quoted).
    Word(Span, Keyword),
    Semicolon,
    Open,
    Other,
}

impl<'a> Statement<'_, 'a> {
    /// Hands the statement's tokens to [`take`](Self::take), with comments, literals and
    /// whitespace skipped, until it answers `false`. `Some(true)` when it took every token,
    /// `Some(false)` when it stopped, `None` when the text cannot be read (an unterminated
    /// literal, comment or quoted identifier).
    ///
    /// `take` is inlined where each kind of token is found, rather than called after a `match`
    /// on the kind, and the position lives in a local rather than in a struct: the scan is
    /// most of the classifier's time.
    fn scan(&mut self) -> Option<bool> {
        let sql = self.sql;
        macro_rules! emit {
            ($token:expr) => {
                if !self.take($token) {
                    return Some(false);
                }
            };
        }
        let mut at = 0;
        while let Some(&byte) = sql.get(at) {
            let class = CLASSES[usize::from(byte)];
            if class & WORD_START != 0 {
                let (end, next, packed) = word_end(sql, at);
                if end - at == 1 {
                    if let Some(prefixed) = prefixed_string(sql, at) {
                        let (token, end) = prefixed?;
                        at = end;
                        emit!(token);
                        continue;
                    }
                }
                let start = at;
                at = next;
                emit!(Token::Word((start, end), Keyword::of(packed)));
                continue;
            }
            if class == SPACE {
                at += 1;
                continue;
            }
            match byte {
                b'-' if sql.get(at + 1) == Some(&b'-') => {
                    at += sql[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .unwrap_or(sql.len() - at);
                }
                b'/' if sql.get(at + 1) == Some(&b'*') => at = block_comment_end(sql, at)?,
                b';' => {
                    at += 1;
                    emit!(Token::Semicolon);
                }
                b'(' => {
                    at += 1;
                    emit!(Token::Open);
                }
                b'\'' => {
                    at = string_end(sql, at, false)?;
                    emit!(Token::Other);
                }
                b'"' => {
                    let start = at;
                    at = quoted_end(sql, at)?;
                    emit!(Token::Word((start, at), Keyword::Other));
                }
                b'$' => {
                    at = dollar_end(sql, at)?;
                    emit!(Token::Other);
                }
                // Only the digits: PostgreSQL reads `1into` as `1 into`.
                b'0'..=b'9' => {
                    at += sql[at..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .unwrap_or(sql.len() - at);
                    emit!(Token::Other);
                }
                _ => {
                    at = past_one_space(sql, at + 1);
                    emit!(Token::Other);
                }
            }
        }
        Some(true)
    }
}

/// `at`, or just past a space there. Most words and operators are followed by one space:
/// taking it with them saves a turn of the scan's loop, and a hard-to-predict branch.
#[inline(always)]
fn past_one_space(sql: &[u8], at: usize) -> usize {
    at + usize::from(sql.get(at) == Some(&b' '))
}

/// A string with a one-letter prefix, the letter at `letter`: `E'…'` (backslash escapes),
/// `B'…'`, `X'…'`, `U&'…'`, or the quoted identifier `U&"…"`, and where it ends. `None` when
/// the letter is a word of its own; `Some(None)` for an unterminated literal.
#[cold]
fn prefixed_string(sql: &[u8], letter: usize) -> Option<Option<(Token, usize)>> {
    let prefix = sql[letter] | 0x20;
    match (prefix, sql.get(letter + 1), sql.get(letter + 2)) {
        (_, Some(b'\''), _) => {
            Some(string_end(sql, letter + 1, prefix == b'e').map(|end| (Token::Other, end)))
        }
        (b'u', Some(b'&'), Some(b'\'')) => {
            Some(string_end(sql, letter + 2, false).map(|end| (Token::Other, end)))
        }
        (b'u', Some(b'&'), Some(b'"')) => Some(
            quoted_end(sql, letter + 2)
                .map(|end| (Token::Word((letter + 2, end), Keyword::Other), end)),
        ),
        _ => None,
    }
}

/// Where the `/* … */` comment at `at` ends; they nest in PostgreSQL. `None` when it does not.
fn block_comment_end(sql: &[u8], mut at: usize) -> Option<usize> {
    at += 2;
    let mut depth = 1usize;
    while depth > 0 {
        match (sql.get(at)?, sql.get(at + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                at += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                at += 2;
            }
            _ => at += 1,
        }
    }
    Some(at)
}

/// Where the `'…'` literal at `at` ends (`''` is a quote; with `backslash`, so is `\'`).
fn string_end(sql: &[u8], mut at: usize, backslash: bool) -> Option<usize> {
    at += 1;
    loop {
        match *sql.get(at)? {
            b'\\' if backslash => at += 2,
            b'\'' if sql.get(at + 1) == Some(&b'\'') => at += 2,
            b'\'' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

/// Where the `"…"` identifier at `at` ends (`""` is a quote inside).
fn quoted_end(sql: &[u8], mut at: usize) -> Option<usize> {
    at += 1;
    loop {
        match *sql.get(at)? {
            b'"' if sql.get(at + 1) == Some(&b'"') => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

/// Where `$n` (a parameter) or the dollar-quoted literal `$tag$…$tag$` at `start` ends.
fn dollar_end(sql: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    if sql.get(at).is_some_and(u8::is_ascii_digit) {
        while sql.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        return Some(at);
    }
    while sql.get(at).is_some_and(|&b| is_word_byte(b) && b != b'$') {
        at += 1;
    }
    if sql.get(at) != Some(&b'$') {
        return Some(at); // a lone `$`: an operator character, not a quote
    }
    at += 1;
    let delimiter = &sql[start..at];
    let end = sql[at..]
        .windows(delimiter.len())
        .position(|window| window == delimiter)?;
    Some(at + end + delimiter.len())
}

/// Where the word starting at `start` ends; where the next token may start, past one space
/// after the word (see [`past_one_space`]); and the word packed for [`Keyword::of`]: its
/// bytes little-endian and lower-cased (by setting bit 5, which turns no other byte into a
/// letter), or 0 when it is longer than seven bytes and so no keyword.
///
/// The scan takes eight bytes at a time, and a word shorter than that is read from the one
/// load: each word's position depends on the last word's, so loads are the scan's latency.
#[inline]
fn word_end(sql: &[u8], start: usize) -> (usize, usize, u64) {
    let first = eight_bytes(sql, start);
    let ends = !word_bytes(first) & HIGH_BITS;
    if ends != 0 {
        let len = ends.trailing_zeros() as usize / 8;
        let packed = (first | LOWER_CASE) & ((1u64 << (8 * len)) - 1);
        let space_after = (first >> (8 * len)) as u8 == b' ';
        return (start + len, start + len + usize::from(space_after), packed);
    }
    let mut at = start + 8;
    loop {
        let ends = !word_bytes(eight_bytes(sql, at)) & HIGH_BITS;
        if ends != 0 {
            let end = at + ends.trailing_zeros() as usize / 8;
            return (end, past_one_space(sql, end), 0);
        }
        at += 8;
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = ONES * 0x80;
const LOWER_CASE: u64 = ONES * 0x20;

/// The eight bytes from `at`, little-endian, zero (never a word byte) past the end.
#[inline]
fn eight_bytes(sql: &[u8], at: usize) -> u64 {
    match sql.get(at..at + 8) {
        Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("eight bytes")),
        None => {
            let mut padded = [0u8; 8];
            let rest = sql.get(at..).unwrap_or_default();
            padded[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(padded)
        }
    }
}

/// The high bit of each byte of `bytes` that can continue a word: a letter, digit, `_`,
/// `$` or any non-ASCII byte (PostgreSQL's identifier bytes). Each test adds a constant
/// that carries into a byte's high bit exactly when the byte is in range; the bytes are
/// seven-bit by then, so no carry crosses into the next byte.
#[inline]
fn word_bytes(bytes: u64) -> u64 {
    let ascii = bytes & !HIGH_BITS;
    let at_least = |low: u8| ascii + ONES * u64::from(0x80 - low);
    let above = |high: u8| ascii + ONES * u64::from(0x7f - high);
    let lower = ascii | LOWER_CASE;
    let letter = (lower + ONES * u64::from(0x80 - b'a')) & !(lower + ONES * u64::from(0x7f - b'z'));
    let digit = at_least(b'0') & !above(b'9');
    let equal = |byte: u8| !((ascii ^ (ONES * u64::from(byte))) + ONES * 0x7f);
    (bytes | letter | digit | equal(b'_') | equal(b'$')) & HIGH_BITS
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

    /// Tokens a plain read may hold, several of them a keyword in disguise.
    const READ_PIECES: &[&str] = &[
        "a",
        "id",
        "x1",
        "users",
        "inserted",
        "updates",
        "into_",
        "_into",
        "deleted_at",
        "for_update",
        "selectivity",
        "a_very_long_column_name",
        "sixteen_bytes_ab",
        "seven_7",
        "eight_88",
        "nine_9999",
        "insert$1",
        "café_update",
        "updaté",
        "t.delete_flag",
        "\"update\"",
        "\"INSERT INTO\"",
        "'delete from t'",
        "E'it\\'s into'",
        "$$ update $$",
        "$q$ insert $q$",
        "-- update\n",
        "/* delete /* into */ */",
        "$1",
        "500",
        "1.5e3",
        ",",
        "=",
        "<>",
        "(",
        ")",
        "::text",
        "count(*)",
        "lower(name)",
        "share",
        "no",
        "key",
        "\t",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No input panics or hangs, and whatever follows a second statement is never read.
        #[test]
        fn any_text_is_classified(text in ".{0,200}") {
            let sql = SqlClassifier::new();
            let _ = sql.classify(&text);
            prop_assert_eq!(sql.classify(&format!("SELECT 1; {text}\nX")), Access::Write);
        }

        /// Words of every length around the eight-byte scan, keywords hidden in literals,
        /// comments and longer names: a read stays a read, and one bare write keyword
        /// anywhere in it makes it a write.
        #[test]
        fn words_of_any_length_are_read_whole(
            pieces in proptest::collection::vec(0usize..READ_PIECES.len(), 0..24),
            write in proptest::option::of((0usize..24, 0usize..4)),
        ) {
            let mut text: Vec<&str> = pieces.iter().map(|&i| READ_PIECES[i]).collect();
            let sql = SqlClassifier::new();
            let read = format!("SELECT {}", text.join(" "));
            prop_assert_eq!(sql.classify(&read), Access::Read, "{}", read);
            if let Some((at, keyword)) = write {
                let keyword = ["insert", "UPDATE", "Delete", "into"][keyword];
                text.insert(at.min(text.len()), keyword);
                let write = format!("SELECT {}", text.join(" "));
                prop_assert_eq!(sql.classify(&write), Access::Write, "{}", write);
            }
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
