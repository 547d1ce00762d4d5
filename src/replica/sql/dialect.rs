//! The lexical rules that differ between the SQL dialects the classifier reads: what
//! [`scan`](super::scan::scan) is compiled for, once per dialect.

use super::scan::{Keyword, LOCK, VALUE};

/// The lexical rules of one SQL dialect: what [`scan`](super::scan::scan) is compiled for, once per dialect.
pub(super) trait Dialect {
    /// `#` comments, `-- ` only with a space after, version comments, backtick
    /// identifiers, variables, `$` in identifiers, literals whose backslashes are ambiguous.
    const MYSQL: bool;
    /// Whether the content of a MySQL version comment is read as SQL (the server runs it
    /// if it is at least the version the comment names) or skipped as a comment (if
    /// older): text with such comments is a read only if it is one both ways.
    const RUN_VERSION_COMMENTS: bool = Self::MYSQL;

    /// The keyword a bare word is, given its first eight bytes as [`word_end`] packs them
    /// and the whole word.
    fn keyword(packed: u64, word: &[u8]) -> Keyword;
}

/// PostgreSQL's lexical rules.
pub(super) struct Postgres;

/// MySQL's and MariaDB's lexical rules (with the default `sql_mode`; see the module docs
/// for what is read conservatively).
pub(super) struct MySql;

/// [`MySql`] on a server older than the text's version comments: they are comments.
pub(super) struct MySqlSkippingVersions;

impl Dialect for MySqlSkippingVersions {
    const MYSQL: bool = true;
    const RUN_VERSION_COMMENTS: bool = false;

    #[inline(always)]
    fn keyword(packed: u64, word: &[u8]) -> Keyword {
        MySql::keyword(packed, word)
    }
}

impl Dialect for Postgres {
    const MYSQL: bool = false;

    #[inline(always)]
    fn keyword(packed: u64, _: &[u8]) -> Keyword {
        Keyword::of(packed)
    }
}

impl Dialect for MySql {
    const MYSQL: bool = true;

    #[inline(always)]
    fn keyword(packed: u64, word: &[u8]) -> Keyword {
        match packed {
            // `LOCK IN SHARE MODE`, a row lock (`LOCK` is reserved: never a bare column).
            LOCK => Keyword::Writes,
            // `NEXT VALUE FOR s`, `PREVIOUS VALUE FOR s`: sequences.
            VALUE => Keyword::Value,
            // Too long to pack: makes the session's `FOUND_ROWS()` count this query.
            0 if word.eq_ignore_ascii_case(b"sql_calc_found_rows") => Keyword::Writes,
            _ => Keyword::of(packed),
        }
    }
}
