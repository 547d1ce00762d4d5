//! The rules of one plain read: a query that starts as a read, writes nowhere (no DML
//! keyword, no `INTO`, no row lock) and calls only functions a replica may run.

use super::calls::may_call;
use super::scan::{Keyword, Span, Take, Token, NO_WORD};
use super::Rules;

/// What the classifier has seen of a query so far.
pub(super) struct Query<'c, 'a> {
    rules: Rules<'c>,
    sql: &'a [u8],
    /// The kinds of token (bits by [`kind`]) that would make the statement more than a plain
    /// read if they came next: one test per token instead of a branch per rule.
    refused: u16,
    /// Where the word before this token is ([`NO_WORD`] if there was none): a function's
    /// name when this token is `(`. Positions, not a [`Word`](super::scan::Word): they are
    /// stored for every word, and read only before a `(`.
    previous: Span,
    /// The kind of the token refused, once one is.
    stopped_at: u16,
}

/// A token's kind as one bit: keywords by [`Keyword`], then `(`, `;` and anything else.
const fn kind(keyword: Keyword) -> u16 {
    1 << keyword as u16
}
const OPEN: u16 = 1 << 8;
const SEMICOLON: u16 = 1 << 9;
const OTHER: u16 = 1 << 10;
/// Only opening parentheses and a read's keyword may start a read.
const BEFORE_THE_FIRST_WORD: u16 = !(kind(Keyword::Reads) | OPEN);
/// Inside a read, a writing keyword anywhere ends it…
const IN_A_READ: u16 = kind(Keyword::Writes);
/// … and so does a lock strength right after `FOR` (`FOR UPDATE`, `FOR KEY SHARE`)…
const AFTER_FOR: u16 = IN_A_READ | kind(Keyword::LockStrength);
/// … and `FOR` right after MySQL's `VALUE` (`NEXT VALUE FOR s`, a sequence).
const AFTER_VALUE: u16 = IN_A_READ | kind(Keyword::For);
/// What a word refuses next, by its keyword: a lookup, not a branch per keyword.
const REFUSED_AFTER: [u16; 6] = {
    let mut after = [IN_A_READ; 6];
    after[Keyword::For as usize] = AFTER_FOR;
    after[Keyword::Value as usize] = AFTER_VALUE;
    after
};
/// Nothing may follow the one `;`.
const AFTER_THE_END: u16 = u16::MAX;

impl Take for Query<'_, '_> {
    /// Takes the next token: `false` once the statement cannot be a plain read.
    ///
    /// Always inlined, into each place [`scan`](super::scan::scan) finds a kind of token, so that the
    /// `match` below folds away: this runs for every token.
    #[inline(always)]
    fn take(&mut self, token: Token) -> bool {
        let (kind, refused_next) = match token {
            Token::Word(span, keyword) => {
                self.previous = span;
                (kind(keyword), REFUSED_AFTER[keyword as usize])
            }
            Token::Open => {
                let name = std::mem::replace(&mut self.previous, NO_WORD);
                if name != NO_WORD && !may_call(self.rules, self.sql, name) {
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
            Token::Other | Token::Close => {
                self.previous = NO_WORD;
                (OTHER, IN_A_READ)
            }
        };
        if self.refused & kind != 0 {
            self.stopped_at = kind;
            return false;
        }
        self.refused = refused_next;
        true
    }
}

impl<'c, 'a> Query<'c, 'a> {
    /// A plain read about to start in `sql`.
    pub(super) fn new(rules: Rules<'c>, sql: &'a [u8]) -> Self {
        Query {
            rules,
            sql,
            refused: BEFORE_THE_FIRST_WORD,
            previous: NO_WORD,
            stopped_at: 0,
        }
    }

    /// A read already under way (the arguments of a `CALL` of a read-only procedure): any
    /// token but a writing one may come.
    pub(super) fn under_way(rules: Rules<'c>, sql: &'a [u8]) -> Self {
        Query {
            refused: IN_A_READ,
            ..Query::new(rules, sql)
        }
    }

    /// Whether the statement has begun with a read's keyword: only until then are the
    /// tokens refused those of [`BEFORE_THE_FIRST_WORD`].
    pub(super) fn started(&self) -> bool {
        self.refused != BEFORE_THE_FIRST_WORD
    }

    /// Whether the refused token came where a statement starts or after its `;`, and was
    /// no writing keyword: then a script of several statements, or one that is not a query
    /// (`EXPLAIN`, `COPY … TO`), may still be a read, which
    /// [`Script`](super::script::Script) decides. (So `INSERT …` is a write at its first
    /// word.)
    pub(super) fn stopped_between_statements(&self) -> bool {
        matches!(self.refused, BEFORE_THE_FIRST_WORD | AFTER_THE_END)
            && self.stopped_at != kind(Keyword::Writes)
    }
}
