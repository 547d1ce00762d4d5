//! Which calls a read may make. A function the classifier does not know may write (a user
//! function called from a `SELECT` fails with SQLSTATE 25006 on a standby; a MySQL function
//! with `SQL SECURITY DEFINER` writes even on a read-only replica), so a call is allowed
//! only for the server's own functions that a replica runs alike
//! ([`pg_functions`], generated from `pg_proc`; [`mysql_functions`], generated from
//! MariaDB's help tables and checked on a read-only replica), for the application's
//! functions declared read-only, and for SQL syntax that only looks like a call (`IN (`,
//! `COALESCE(`, a column list after `AS`).

use super::scan::{is_word_byte, Span, Word};
use super::{mysql_functions, pg_functions, Dialect, Rules};

/// Words that may stand before `(` without calling a function: SQL syntax, and type names
/// with modifiers that are no function in `pg_catalog`. Sorted bytewise.
static SYNTAX: [&str; 77] = [
    "all",
    "and",
    "any",
    "array",
    "as",
    "bernoulli",
    "between",
    "by",
    "case",
    "cast",
    "character",
    "coalesce",
    "cube",
    "dec",
    "decimal",
    "distinct",
    "else",
    "except",
    "exists",
    "filter",
    "first",
    "float",
    "for",
    "from",
    "greatest",
    "grouping",
    "having",
    "ilike",
    "in",
    "intersect",
    "is",
    "join",
    "json_array",
    "json_arrayagg",
    "json_object",
    "json_objectagg",
    "lateral",
    "least",
    "like",
    "limit",
    "materialized",
    "nchar",
    "next",
    "not",
    "nullif",
    "offset",
    "on",
    "or",
    "over",
    "rollup",
    "row",
    "select",
    "sets",
    "similar",
    "some",
    "system",
    "then",
    "treat",
    "trim",
    "union",
    "using",
    "values",
    "varying",
    "when",
    "where",
    "window",
    "with",
    "within",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// Whether a read may call the function named at `name` in `sql` (`name` is the word right
/// before a `(`).
pub(super) fn may_call(rules: Rules<'_>, sql: &[u8], name: Span) -> bool {
    let classifier = rules.classifier;
    let word = Word::at(&sql[name.0..name.1]);
    if classifier.write_functions.iter().any(|w| word.is(w)) {
        return false;
    }
    if classifier.read_functions.iter().any(|r| word.is(r)) {
        return true;
    }
    let (syntax, builtins): (&[&str], &[&str]) = match rules.dialect {
        Dialect::Postgres => (&SYNTAX, &pg_functions::READ_FUNCTIONS),
        Dialect::MySql => (&MYSQL_SYNTAX, &mysql_functions::READ_FUNCTIONS),
    };
    match qualifier(sql, name.0) {
        Some(schema) if rules.dialect == Dialect::Postgres && schema.is("pg_catalog") => {
            return is_builtin(word, builtins)
        }
        // Another schema's function of the same name is not ours; MySQL's built-in
        // functions have no schema at all.
        Some(_) => return false,
        None => {}
    }
    // A quoted name in MySQL is a stored function's, never a built-in's.
    if word.quoted && rules.dialect == Dialect::MySql {
        return false;
    }
    let syntax = !word.quoted && (is_syntax(word, syntax) || names_columns(sql, name.0));
    syntax || is_builtin(word, builtins)
}

/// Words that may stand before `(` in MySQL and MariaDB without calling a function: SQL
/// syntax, index hints, and type names with lengths. Sorted bytewise.
static MYSQL_SYNTAX: [&str; 54] = [
    "against",
    "all",
    "and",
    "any",
    "as",
    "between",
    "by",
    "case",
    "cast",
    "char",
    "character",
    "columns",
    "datetime",
    "dec",
    "decimal",
    "distinct",
    "double",
    "else",
    "except",
    "exists",
    "float",
    "for",
    "from",
    "having",
    "in",
    "index",
    "intersect",
    "is",
    "join",
    "key",
    "lateral",
    "like",
    "limit",
    "match",
    "nchar",
    "not",
    "numeric",
    "on",
    "or",
    "over",
    "partition",
    "regexp",
    "rlike",
    "row",
    "select",
    "some",
    "then",
    "union",
    "using",
    "values",
    "varchar",
    "when",
    "where",
    "xor",
];

/// SQL syntax before `(` that calls nothing (`IN (`, `COALESCE(`, `numeric(10, 2)`).
fn is_syntax(word: Word<'_>, syntax: &[&str]) -> bool {
    let mut buffer = [0u8; 64];
    lowered(word.text, &mut buffer).is_some_and(|lower| syntax.binary_search(&lower).is_ok())
}

/// Whether the name starting at `start` is followed by a column list rather than arguments:
/// `FROM f(x) AS g(a, b)`, `WITH RECURSIVE t(n) AS (…)`.
fn names_columns(sql: &[u8], start: usize) -> bool {
    preceding_word(sql, start)
        .is_some_and(|before| before.is("as") || before.is("with") || before.is("recursive"))
}

/// One of the server's own functions that a replica runs alike.
fn is_builtin(word: Word<'_>, builtins: &[&str]) -> bool {
    let mut buffer = [0u8; 64];
    let name = match word.quoted {
        true => std::str::from_utf8(word.text).ok(),
        false => lowered(word.text, &mut buffer),
    };
    name.is_some_and(|name| builtins.binary_search(&name).is_ok())
}

/// `text` in lower case, in `buffer`; `None` if it is longer than any name (63 bytes).
fn lowered<'b>(text: &[u8], buffer: &'b mut [u8; 64]) -> Option<&'b str> {
    let lower = buffer.get_mut(..text.len())?;
    lower.copy_from_slice(text);
    lower.make_ascii_lowercase();
    std::str::from_utf8(lower).ok()
}

/// The schema that qualifies the name starting at `start` (`schema.name`), if any.
fn qualifier(sql: &[u8], start: usize) -> Option<Word<'_>> {
    let dot = skip_spaces_back(sql, start).checked_sub(1)?;
    if sql[dot] != b'.' {
        return None;
    }
    word_ending_at(sql, skip_spaces_back(sql, dot))
}

/// The word that ends where the spaces before `start` begin, if one does.
fn preceding_word(sql: &[u8], start: usize) -> Option<Word<'_>> {
    word_ending_at(sql, skip_spaces_back(sql, start))
}

fn skip_spaces_back(sql: &[u8], mut at: usize) -> usize {
    while at > 0 && sql[at - 1].is_ascii_whitespace() {
        at -= 1;
    }
    at
}

/// The bare or quoted word that ends at `end`.
fn word_ending_at(sql: &[u8], end: usize) -> Option<Word<'_>> {
    if end > 0 && matches!(sql[end - 1], b'"' | b'`') {
        let quote = sql[end - 1];
        let open = sql[..end - 1].iter().rposition(|&b| b == quote)?;
        return Some(Word::at(&sql[open..end]));
    }
    let start = sql[..end]
        .iter()
        .rposition(|&b| !is_word_byte(b))
        .map_or(0, |i| i + 1);
    (start < end).then(|| Word::at(&sql[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_are_sorted_for_binary_search() {
        for list in [
            &SYNTAX[..],
            &MYSQL_SYNTAX[..],
            &pg_functions::READ_FUNCTIONS[..],
            &mysql_functions::READ_FUNCTIONS[..],
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{:?}", &list[..3]);
        }
    }
}
