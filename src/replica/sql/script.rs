//! The rules for text that is not one plain query but may still be read on a replica: several
//! statements that are all reads (`SELECT 1; SELECT 2`), optionally wrapped in one
//! transaction (`BEGIN READ ONLY; …; COMMIT`); in PostgreSQL `EXPLAIN` without `ANALYZE` of
//! anything (it plans, it does not run), and `EXPLAIN ANALYZE` of a read, in MySQL `EXPLAIN`
//! of a read only; PostgreSQL's `COPY (read) TO STDOUT` and `COPY table TO STDOUT`; empty
//! statements; `CALL` of a procedure declared read-only.
//!
//! The plain-query rules ([`Query`]) run first, alone, on every text; this runs only when
//! they stop between statements, so a single `SELECT` never pays for it.

use super::query::Query;
use super::scan::{Take, Token, Word};
use super::{Dialect, Rules};

/// What the script rules have seen so far.
pub(super) struct Script<'c, 'a> {
    rules: Rules<'c>,
    sql: &'a [u8],
    phase: Phase,
    /// The current query, in [`Phase::Query`] and [`Phase::CopyQuery`].
    query: Query<'c, 'a>,
    /// Parentheses open inside `EXPLAIN (…)` options, a `COPY (…)` query or column list.
    depth: u32,
    /// A statement other than an empty one has been seen.
    begun: bool,
    /// The first statement opened a transaction…
    in_transaction: bool,
    /// … and a later one ended it: nothing may follow.
    ended: bool,
    /// The last word of a `CALL`'s procedure name.
    procedure: Option<(usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Where a statement starts.
    Start,
    /// In a query: [`Query`]'s rules.
    Query,
    /// After `EXPLAIN` (and `ANALYZE`, `VERBOSE`); options in parentheses may still come.
    Explain {
        analyze: bool,
        options: bool,
    },
    /// In `EXPLAIN (…)` options.
    ExplainOptions {
        analyze: bool,
    },
    /// After MySQL's `EXPLAIN` and its options: a query must follow (a read-only replica
    /// refuses to explain a write).
    ExplainQuery,
    /// The rest of a statement that runs nothing: `EXPLAIN` without `ANALYZE`, the options
    /// of `COPY … TO STDOUT`.
    Inert,
    /// After `COPY`: a query in parentheses, or a table.
    Copy,
    CopyQuery,
    CopyTable,
    /// After `COPY (…)`: `TO` must come.
    CopiedQuery,
    /// After `TO`: only `STDOUT` (a file or a program would be written on the replica).
    CopyTo,
    /// `BEGIN` / `START TRANSACTION` and its modes.
    Begin,
    /// `COMMIT` / `END` / `ROLLBACK` / `ABORT`.
    End,
    /// `CALL` and its procedure's name.
    Call,
}

impl<'c, 'a> Script<'c, 'a> {
    pub(super) fn new(rules: Rules<'c>, sql: &'a [u8]) -> Self {
        Script {
            rules,
            sql,
            phase: Phase::Start,
            query: Query::new(rules, sql),
            depth: 0,
            begun: false,
            in_transaction: false,
            ended: false,
            procedure: None,
        }
    }

    /// Whether the text, all taken, was a read.
    pub(super) fn is_read(&self) -> bool {
        let complete = match self.phase {
            Phase::Start | Phase::Inert | Phase::Begin | Phase::End => true,
            Phase::Query => self.query.started(),
            _ => false,
        };
        complete && self.in_transaction == self.ended
    }

    fn word(&self, token: Token) -> Option<Word<'a>> {
        match token {
            Token::Word((start, end), _) => Some(Word::at(&self.sql[start..end])),
            _ => None,
        }
    }

    /// Starts a statement with `token`.
    fn start(&mut self, token: Token) -> bool {
        if let Token::Semicolon = token {
            return true; // an empty statement
        }
        if self.ended {
            return false; // nothing after the transaction's end
        }
        let first = !std::mem::replace(&mut self.begun, true);
        let is = |word: &str| self.word(token).is_some_and(|w| !w.quoted && w.is(word));
        let mysql = self.rules.dialect == Dialect::MySql;
        self.phase = if is("explain") && mysql {
            Phase::ExplainQuery
        } else if is("explain") {
            Phase::Explain {
                analyze: false,
                options: true,
            }
        } else if is("copy") && !mysql {
            Phase::Copy
        } else if is("begin") || is("start") {
            if !first {
                return false; // only a transaction around the whole text
            }
            self.in_transaction = true;
            Phase::Begin
        } else if is("commit") || is("end") || is("rollback") || is("abort") {
            if !self.in_transaction {
                return false; // someone else's transaction
            }
            self.ended = true;
            Phase::End
        } else if is("call") {
            self.procedure = None;
            Phase::Call
        } else {
            return self.query_from(token);
        };
        true
    }

    /// Starts a query with `token`.
    fn query_from(&mut self, token: Token) -> bool {
        self.query = Query::new(self.rules, self.sql);
        self.phase = Phase::Query;
        self.query.take(token)
    }
}

/// Words allowed in `BEGIN` / `START TRANSACTION`: the modes a standby runs (not `READ
/// WRITE`, not `SERIALIZABLE`, which a hot standby refuses).
const TRANSACTION_MODES: &[&str] = &[
    "transaction",
    "work",
    "isolation",
    "level",
    "read",
    "only",
    "committed",
    "uncommitted",
    "repeatable",
    "deferrable",
    "not",
];

/// Words allowed in MySQL's `START TRANSACTION` (not `READ WRITE`).
const MYSQL_TRANSACTION_MODES: &[&str] = &[
    "transaction",
    "work",
    "read",
    "only",
    "with",
    "consistent",
    "snapshot",
];

/// What may come between MySQL's `EXPLAIN` and the query it explains (`ANALYZE` runs it:
/// a plain read, then).
const EXPLAIN_OPTIONS: &[&str] = &[
    "extended",
    "partitions",
    "analyze",
    "format",
    "json",
    "traditional",
    "tree",
];

impl Take for Script<'_, '_> {
    fn take(&mut self, token: Token) -> bool {
        let word = self.word(token).filter(|w| !w.quoted);
        let is = |name: &str| word.is_some_and(|w| w.is(name));
        match self.phase {
            Phase::Start => self.start(token),
            Phase::Query => match token {
                Token::Semicolon if self.query.started() => {
                    self.phase = Phase::Start;
                    true
                }
                token => self.query.take(token),
            },
            Phase::Explain { analyze, options } => match token {
                Token::Semicolon => false,
                // The old syntax: `EXPLAIN ANALYZE VERBOSE …`; options in parentheses come
                // only right after `EXPLAIN`.
                _ if is("analyze") || is("analyse") => {
                    self.phase = Phase::Explain {
                        analyze: true,
                        options: false,
                    };
                    true
                }
                _ if is("verbose") => {
                    self.phase = Phase::Explain {
                        analyze,
                        options: false,
                    };
                    true
                }
                Token::Open if options => {
                    self.depth = 1;
                    self.phase = Phase::ExplainOptions { analyze };
                    true
                }
                // The statement explained: run by ANALYZE, only planned without.
                token if analyze => self.query_from(token),
                _ => {
                    self.phase = Phase::Inert;
                    true
                }
            },
            Phase::ExplainOptions { analyze } => {
                match token {
                    Token::Semicolon => return false,
                    Token::Open => self.depth += 1,
                    Token::Close => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.phase = Phase::Explain {
                                analyze,
                                options: false,
                            };
                        }
                    }
                    // `ANALYZE false` too: conservative.
                    _ if is("analyze") || is("analyse") => {
                        self.phase = Phase::ExplainOptions { analyze: true };
                    }
                    _ => {}
                }
                true
            }
            Phase::ExplainQuery => match token {
                Token::Other => true, // `FORMAT=JSON`
                _ if EXPLAIN_OPTIONS.iter().any(|option| is(option)) => true,
                token => self.query_from(token),
            },
            Phase::Inert => {
                if let Token::Semicolon = token {
                    self.phase = Phase::Start;
                }
                true
            }
            Phase::Copy => match token {
                Token::Open => {
                    self.depth = 1;
                    self.query = Query::new(self.rules, self.sql);
                    self.phase = Phase::CopyQuery;
                    true
                }
                Token::Word(..) => {
                    self.depth = 0;
                    self.phase = Phase::CopyTable;
                    true
                }
                _ => false,
            },
            Phase::CopyQuery => match token {
                Token::Semicolon => false,
                Token::Close if self.depth == 1 => {
                    self.phase = Phase::CopiedQuery;
                    self.query.started()
                }
                token => {
                    match token {
                        Token::Open => self.depth += 1,
                        Token::Close => self.depth -= 1,
                        _ => {}
                    }
                    self.query.take(token)
                }
            },
            Phase::CopyTable => match token {
                Token::Semicolon => false,
                Token::Open => {
                    self.depth += 1;
                    true
                }
                Token::Close => {
                    self.depth = self.depth.saturating_sub(1);
                    true
                }
                _ if self.depth == 0 && is("to") => {
                    self.phase = Phase::CopyTo;
                    true
                }
                _ => self.depth > 0 || !is("from"),
            },
            Phase::CopiedQuery => {
                self.phase = Phase::CopyTo;
                is("to")
            }
            Phase::CopyTo => {
                self.phase = Phase::Inert;
                is("stdout")
            }
            Phase::Begin | Phase::End => match token {
                Token::Semicolon => {
                    self.phase = Phase::Start;
                    true
                }
                Token::Other => true, // the commas between modes
                _ if self.phase == Phase::Begin => match self.rules.dialect {
                    Dialect::Postgres => TRANSACTION_MODES.iter().any(|mode| is(mode)),
                    Dialect::MySql => MYSQL_TRANSACTION_MODES.iter().any(|mode| is(mode)),
                },
                _ => is("work") || is("transaction"),
            },
            Phase::Call => match token {
                Token::Word(span, _) => {
                    self.procedure = Some(span);
                    true
                }
                Token::Other => true, // `schema.procedure`
                Token::Open => {
                    let declared = self.procedure.is_some_and(|(start, end)| {
                        let name = Word::at(&self.sql[start..end]);
                        self.rules
                            .classifier
                            .read_functions
                            .iter()
                            .any(|r| name.is(r))
                    });
                    // Its arguments: a read under way, calling only what a read may call.
                    self.query = Query::under_way(self.rules, self.sql);
                    self.phase = Phase::Query;
                    declared && self.query.take(token)
                }
                _ => false,
            },
        }
    }
}
