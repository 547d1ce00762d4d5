//! The classifier's tokenizer: just enough of each dialect's lexical syntax to never be
//! fooled by comments, string literals, quoted identifiers or dollar-quoted bodies, and the
//! few keywords the rules act on. It does not parse.
//!
//! - PostgreSQL ([`Postgres`]): nested `/* */` and `--` comments, `'…'` and `E'…'` (with
//!   backslash escapes) literals, `"…"` identifiers, `$tag$…$tag$` bodies, `$1` parameters.
//! - MySQL and MariaDB ([`MySql`]): `#`, `-- ` (dashes and a space) and unnested `/* */`
//!   comments; `/*! … */` and `/*M! … */` (version comments) whose content is SQL that the
//!   server runs; `'…'` and `"…"` literals, `` `…` `` identifiers, `@var` and `@@var`
//!   variables. Whether a backslash escapes in a literal depends on the server's `sql_mode`
//!   (`NO_BACKSLASH_ESCAPES`), which the text does not tell: a literal with a backslash is
//!   not read (the text goes to the primary).

pub(super) use super::dialect::Dialect;

/// Where a word is in the text, quotes included for a quoted one.
pub(super) type Span = (usize, usize);

/// The empty span: no word.
pub(super) const NO_WORD: Span = (0, 0);

/// A token of the text.
#[derive(Clone, Copy)]
pub(super) enum Token {
    /// A word, where it is, and the keyword it is if any (never one when quoted).
    Word(Span, Keyword),
    Semicolon,
    Open,
    Close,
    Other,
}

/// A name in SQL, bare (case-insensitive) or quoted (exact).
#[derive(Clone, Copy)]
pub(super) struct Word<'a> {
    pub(super) text: &'a [u8],
    pub(super) quoted: bool,
}

/// A keyword packed as [`word_end`] packs a word: little-endian, lower case.
pub(super) const fn packed(word: &[u8]) -> u64 {
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
pub(super) const LOCK: u64 = packed(b"lock");
pub(super) const VALUE: u64 = packed(b"value");

/// The keywords the classifier acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    /// Starts a read: `SELECT`, `WITH`, `VALUES`, `TABLE`.
    Reads,
    /// Writes wherever it appears: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `INTO` (and in
    /// MySQL `LOCK`, `SQL_CALC_FOUND_ROWS` and any variable, the connection's own state).
    Writes,
    /// `FOR`, which a lock strength may follow.
    For,
    /// `SHARE`, `NO` (KEY UPDATE), `KEY` (SHARE): after `FOR`, a row lock.
    LockStrength,
    /// MySQL's `VALUE`, which `FOR` may follow: `NEXT VALUE FOR`, a sequence.
    Value,
    Other,
}

impl Keyword {
    /// The keyword a bare word is, given its first eight bytes as [`word_end`] packs them.
    #[inline]
    pub(super) fn of(packed: u64) -> Keyword {
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
    /// The word spelled by `span`: quoted if it starts with `"` (or MySQL's `` ` ``).
    pub(super) fn at(span: &'a [u8]) -> Self {
        match span {
            [b'"' | b'`', text @ .., _] => Word { text, quoted: true },
            text => Word {
                text,
                quoted: false,
            },
        }
    }

    /// Equal to `lower`, a lower-case name.
    pub(super) fn is(&self, lower: &str) -> bool {
        if self.quoted {
            self.text == lower.as_bytes()
        } else {
            self.text.eq_ignore_ascii_case(lower.as_bytes())
        }
    }
}

/// What takes the tokens [`scan`] finds: the plain-read rules ([`Query`](super::query::Query))
/// or the rules for a script of statements ([`Script`](super::script::Script)).
pub(super) trait Take {
    /// Takes the next token: `false` once the text cannot be a read.
    fn take(&mut self, token: Token) -> bool;
}

/// Hands the tokens of `sql` to `sink`, with comments, literals and whitespace skipped,
/// until it answers `false`. `Some(true)` when it took every token,
/// `Some(false)` when it stopped, `None` when the text cannot be read (an unterminated
/// literal, comment or quoted identifier).
///
/// `take` is inlined where each kind of token is found, rather than called after a `match`
/// on the kind (the sink is a type parameter), and the position lives in a local rather
/// than in a struct: the scan is most of the classifier's time.
pub(super) fn scan<D: Dialect>(sql: &[u8], sink: &mut impl Take) -> Option<bool> {
    macro_rules! emit {
        ($token:expr) => {
            if !sink.take($token) {
                return Some(false);
            }
        };
    }
    let mut at = 0;
    // Inside a MySQL version comment (`/*! … */`): its `*/` is skipped like a space.
    let mut in_version_comment = false;
    while let Some(&byte) = sql.get(at) {
        let class = CLASSES[usize::from(byte)];
        if class & WORD_START != 0 || (D::MYSQL && byte == b'$') {
            let (end, next, packed) = word_end(sql, at);
            if !D::MYSQL && end - at == 1 {
                if let Some(prefixed) = prefixed_string(sql, at) {
                    let (token, end) = prefixed?;
                    at = end;
                    emit!(token);
                    continue;
                }
            }
            let start = at;
            at = next;
            emit!(Token::Word(
                (start, end),
                D::keyword(packed, &sql[start..end])
            ));
            continue;
        }
        if class == SPACE {
            at += 1;
            continue;
        }
        match byte {
            // MySQL reads `--` as a comment only before a space or a control character
            // (`5--1` is five minus minus one).
            b'-' if sql.get(at + 1) == Some(&b'-')
                && (!D::MYSQL || sql.get(at + 2).is_none_or(|&b| b <= b' ')) =>
            {
                at = line_end(sql, at);
            }
            b'#' if D::MYSQL => at = line_end(sql, at),
            b'/' if D::MYSQL && sql.get(at + 1) == Some(&b'*') => {
                match version_comment_body(sql, at) {
                    Some(body) if D::RUN_VERSION_COMMENTS && !in_version_comment => {
                        in_version_comment = true;
                        at = body;
                    }
                    // A version comment inside one: not something to guess about.
                    Some(_) if D::RUN_VERSION_COMMENTS => return None,
                    _ => at = flat_comment_end(sql, at)?,
                }
            }
            b'*' if in_version_comment && sql.get(at + 1) == Some(&b'/') => {
                in_version_comment = false;
                at += 2;
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
            b')' => {
                at = past_one_space(sql, at + 1);
                emit!(Token::Close);
            }
            b'\'' if D::MYSQL => {
                at = unescaped_end(sql, at)?;
                emit!(Token::Other);
            }
            b'\'' => {
                at = string_end(sql, at, false)?;
                emit!(Token::Other);
            }
            // A string in MySQL's default mode, an identifier with `ANSI_QUOTES`: a quoted
            // word either way, which names nothing the rules allow.
            b'"' if D::MYSQL => {
                let start = at;
                at = unescaped_end(sql, at)?;
                emit!(Token::Word((start, at), Keyword::Other));
            }
            b'"' => {
                let start = at;
                at = quoted_end(sql, at)?;
                emit!(Token::Word((start, at), Keyword::Other));
            }
            b'`' if D::MYSQL => {
                let start = at;
                at = doubled_quote_end(sql, at, b'`')?;
                emit!(Token::Word((start, at), Keyword::Other));
            }
            // `@v`, `@@v`, `@'quoted'`: a variable of the connection (or of the server, which
            // differs between nodes), read or written: the primary's business.
            b'@' if D::MYSQL => {
                let start = at;
                at = variable_end(sql, at)?;
                emit!(Token::Word((start, at), Keyword::Writes));
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
    (!in_version_comment).then_some(true)
}

/// Where the line of the comment at `at` ends.
fn line_end(sql: &[u8], at: usize) -> usize {
    at + sql[at..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(sql.len() - at)
}

/// Whether `sql` may hold a MySQL version comment: then it is classified both ways.
pub(super) fn may_hold_version_comment(sql: &[u8]) -> bool {
    sql.contains(&b'!')
        && (0..sql.len()).any(|at| sql[at] == b'/' && version_comment_body(sql, at).is_some())
}

/// Where the SQL inside the MySQL version comment at `at` begins (past `/*!`, `/*M!` and
/// the version number), if it is one.
#[cold]
fn version_comment_body(sql: &[u8], at: usize) -> Option<usize> {
    let marker = match sql.get(at + 1..)? {
        [b'*', b'!', ..] => 3,
        [b'*', b'M' | b'm', b'!', ..] => 4,
        _ => return None,
    };
    let body = at + marker;
    Some(
        body + sql[body..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count(),
    )
}

/// Where the MySQL `/* … */` comment at `at` ends: they do not nest.
fn flat_comment_end(sql: &[u8], at: usize) -> Option<usize> {
    let body = at + 2;
    let end = sql.get(body..)?.windows(2).position(|w| w == b"*/")?;
    Some(body + end + 2)
}

/// Where the MySQL `'…'` or `"…"` literal at `at` ends (its quote doubled is a quote); `None`
/// when it does not, or holds a backslash, which escapes or not as the server's `sql_mode`
/// says: both readings would have to be followed to be sure, and such literals are rare
/// in text sent with bound parameters.
fn unescaped_end(sql: &[u8], at: usize) -> Option<usize> {
    let end = doubled_quote_end(sql, at, sql[at])?;
    (!sql[at..end].contains(&b'\\')).then_some(end)
}

/// Where the text quoted by `quote` at `at` ends, the quote doubled being one inside.
fn doubled_quote_end(sql: &[u8], mut at: usize, quote: u8) -> Option<usize> {
    at += 1;
    loop {
        match *sql.get(at)? {
            b if b == quote && sql.get(at + 1) == Some(&quote) => at += 2,
            b if b == quote => return Some(at + 1),
            _ => at += 1,
        }
    }
}

/// Where the MySQL variable at `at` ends: `@name`, `@@name`, `@@session.name`, or a quoted
/// name (`@'…'`, `` @`…` ``).
fn variable_end(sql: &[u8], at: usize) -> Option<usize> {
    let mut end = at + 1;
    if sql.get(end) == Some(&b'@') {
        end += 1;
    }
    match sql.get(end) {
        Some(&quote @ (b'\'' | b'"' | b'`')) => doubled_quote_end(sql, end, quote),
        _ => Some(
            end + sql[end..]
                .iter()
                .take_while(|&&b| is_word_byte(b) || b == b'.')
                .count(),
        ),
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
#[inline(always)]
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
pub(super) fn is_word_byte(byte: u8) -> bool {
    CLASSES[byte as usize] & WORD != 0
}
