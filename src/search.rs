//! The search language, and the one folding of text that both stores index.
//!
//! **One folding.** A view's searchable text (a customer's name and email,
//! a product's title and SKU, an order's customer, lines, tracking number
//! and id) is folded here, in Rust, before either store sees it:
//! transliterated to ASCII (`deunicode`: "Zoë Øster" is `zoe oster`,
//! "Straße" is `strasse`), lowercased, split on anything that is not a
//! letter or a digit. The stores index those words as they are (PostgreSQL's
//! `simple` configuration, SQLite FTS5's `unicode61`), and a query is folded
//! the same way, so both stores agree on every match: there is no second
//! set of accent rules (PostgreSQL's `unaccent` and FTS5's
//! `remove_diacritics` disagree on `ß`, `æ` and `ø`) and no parser that
//! treats an email or a version number as one word on one store and three
//! on the other.
//!
//! **The language** (the same on both stores, see docs/frontend.md):
//! - words are ANDed: `ada tea`;
//! - `"a phrase"` matches those words next to each other;
//! - `-word` (or `-"a phrase"`) excludes;
//! - a trailing `*` matches a prefix: `tea*`;
//! - the last word typed matches as a prefix too (search as you type),
//!   unless the query ends with a space or the word is quoted.
//!
//! User input never reaches a store as syntax: it is parsed here into
//! [`Query`], whose words are folded ASCII letters and digits only, and
//! written out as a `tsquery` or an FTS5 query by [`Query::to_tsquery`] and
//! [`Query::to_fts5`]. Anything else in the input (quotes out of place,
//! `OR`, `NEAR(`, NUL, emoji) is either a word or nothing.
use std::fmt;

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most terms (words or phrases, included or excluded) one query may have.
pub const MAX_TERMS: usize = 8;
/// The longest word kept, in bytes (longer ones are cut: no store indexes
/// them whole, and nobody types them).
const MAX_WORD: usize = 64;

/// Why a search cannot be run: the client's own mistake (`VALIDATION`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("search must be at most {MAX_QUERY_CHARS} characters, got {0}")]
    TooLong(usize),
    #[error("search may have at most {MAX_TERMS} words or phrases, got {0}")]
    TooManyTerms(usize),
    #[error("search has no letters or digits to look for")]
    Empty,
    #[error("search needs at least one word to look for besides the excluded ones")]
    OnlyExclusions,
}

/// The words of `text`, folded: ASCII, lowercase, letters and digits only.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).flat_map(fold_word)
}

/// One run of letters and digits, transliterated: it may become several
/// words ("Œuvre-naïve" is one run per side of the hyphen; "北京" two).
fn fold_word(run: &str) -> Vec<String> {
    let ascii = deunicode::deunicode(run).to_ascii_lowercase();
    ascii
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(MAX_WORD).collect())
        .collect()
}

/// A search document: the folded words of every part, space-separated.
pub fn document<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        for word in words(part) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&word);
        }
    }
    out
}

/// One term of a query: words that must appear next to each other (one
/// word, or a phrase), the last of them perhaps as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub words: Vec<String>,
    /// The last word matches any word it begins.
    pub prefix: bool,
}

/// A parsed query: what must match, and what must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub include: Vec<Term>,
    pub exclude: Vec<Term>,
}

/// Parses a query in the language above.
pub fn parse(input: &str) -> Result<Query, SearchError> {
    let chars = input.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(SearchError::TooLong(chars));
    }
    // Raw terms: (excluded, quoted, text, starred), in order.
    let mut raw: Vec<(bool, bool, String, bool)> = Vec::new();
    let mut rest = input.chars().peekable();
    while let Some(&c) = rest.peek() {
        if c.is_whitespace() {
            rest.next();
            continue;
        }
        let excluded = c == '-';
        if excluded {
            rest.next();
        }
        if rest.peek() == Some(&'"') {
            rest.next();
            let text: String = rest.by_ref().take_while(|&c| c != '"').collect();
            let starred = rest.peek() == Some(&'*');
            if starred {
                rest.next();
            }
            raw.push((excluded, true, text, starred));
        } else {
            let mut text = String::new();
            while let Some(&c) = rest.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                text.push(c);
                rest.next();
            }
            let starred = text.ends_with('*');
            raw.push((excluded, false, text, starred));
        }
    }
    let ends_typing = !input.ends_with(char::is_whitespace);
    let last = raw.len().checked_sub(1);
    let mut query = Query { include: Vec::new(), exclude: Vec::new() };
    for (i, (excluded, quoted, text, starred)) in raw.into_iter().enumerate() {
        let folded: Vec<String> = words(&text).collect();
        if folded.is_empty() {
            continue;
        }
        // The word being typed matches as a prefix (search as you type).
        let typing = Some(i) == last && ends_typing && !quoted && !excluded;
        let term = Term { words: folded, prefix: starred || typing };
        if excluded {
            query.exclude.push(term);
        } else {
            query.include.push(term);
        }
    }
    let terms = query.include.len() + query.exclude.len();
    if terms > MAX_TERMS {
        return Err(SearchError::TooManyTerms(terms));
    }
    if query.include.is_empty() {
        return Err(if query.exclude.is_empty() { SearchError::Empty } else { SearchError::OnlyExclusions });
    }
    Ok(query)
}

impl Query {
    /// The query as a PostgreSQL `tsquery` (for `to_tsquery('simple', …)`):
    /// `'ada' & 'tea':* & !('big' <-> 'cake')`. Every word is quoted, and is
    /// ASCII letters and digits only, so nothing in it is syntax.
    pub fn to_tsquery(&self) -> String {
        Self::tsquery(&self.include, &self.exclude)
    }

    /// The part of the query a GIN index answers without a partial match:
    /// its included terms that end in no prefix (`'ada' & ('big' <-> 'cake')`
    /// of `ada "big cake" t -pie`), when there are some and the query has
    /// more than them. A prefix makes GIN collect every row of every word
    /// it begins before the AND (`lamp*`: a quarter of the orders), so the
    /// index is asked for the exact words and each row they find is then
    /// checked against the whole query (`src/query/list.rs`).
    pub fn to_tsquery_exact(&self) -> Option<String> {
        let exact: Vec<Term> = self.include.iter().filter(|t| !t.prefix).cloned().collect();
        (!exact.is_empty() && (exact.len() < self.include.len() || !self.exclude.is_empty()))
            .then(|| Self::tsquery(&exact, &[]))
    }

    fn tsquery(include: &[Term], exclude: &[Term]) -> String {
        let term = |t: &Term| {
            let last = t.words.len() - 1;
            let words: Vec<String> = t
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| if i == last && t.prefix { format!("'{w}':*") } else { format!("'{w}'") })
                .collect();
            if words.len() == 1 {
                words.join("")
            } else {
                format!("({})", words.join(" <-> "))
            }
        };
        let mut parts: Vec<String> = include.iter().map(term).collect();
        parts.extend(exclude.iter().map(|t| format!("!{}", term(t))));
        parts.join(" & ")
    }

    /// The query as an FTS5 query: `("ada" AND "tea"*) NOT ("big cake")`.
    /// Every word is a quoted string of ASCII letters and digits, so nothing
    /// in it is syntax.
    pub fn to_fts5(&self) -> String {
        let term = |t: &Term| format!("\"{}\"{}", t.words.join(" "), if t.prefix { "*" } else { "" });
        let include: Vec<String> = self.include.iter().map(term).collect();
        let mut out = format!("({})", include.join(" AND "));
        if !self.exclude.is_empty() {
            let exclude: Vec<String> = self.exclude.iter().map(term).collect();
            out.push_str(&format!(" NOT ({})", exclude.join(" OR ")));
        }
        out
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fts5())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(words: &[&str], prefix: bool) -> Term {
        Term { words: words.iter().map(|w| (*w).to_owned()).collect(), prefix }
    }

    #[test]
    fn text_is_folded_to_ascii_words() {
        assert_eq!(
            document(["Zoë Øster-Straße", "ada@example.com", "TEA-1"]),
            "zoe oster strasse ada example com tea 1"
        );
        assert_eq!(document(["北京"]), "bei jing");
        assert_eq!(document(["\0 ☕ 🙂 ..."]), "");
    }

    #[test]
    fn the_language_parses_words_phrases_exclusions_and_prefixes() {
        let q = parse("ada \"green tea\" -cake tea*").expect("parse");
        assert_eq!(q.include, vec![term(&["ada"], false), term(&["green", "tea"], false), term(&["tea"], true)]);
        assert_eq!(q.exclude, vec![term(&["cake"], false)]);
        // The last word typed is a prefix, unless followed by a space.
        assert_eq!(parse("ada lo").expect("parse").include[1], term(&["lo"], true));
        assert_eq!(parse("ada lo ").expect("parse").include[1], term(&["lo"], false));
        // A word that folds into several is a phrase.
        assert_eq!(parse("ada@example.com ").expect("parse").include[0], term(&["ada", "example", "com"], false));
    }

    #[test]
    fn the_query_is_written_for_each_store_without_user_syntax() {
        let q = parse("ada \"big cake\" -pie t").expect("parse");
        assert_eq!(q.to_tsquery(), "'ada' & ('big' <-> 'cake') & 't':* & !'pie'");
        assert_eq!(q.to_fts5(), "(\"ada\" AND \"big cake\" AND \"t\"*) NOT (\"pie\")");
        // What the GIN index is asked for: the words that are no prefix.
        assert_eq!(q.to_tsquery_exact().as_deref(), Some("'ada' & ('big' <-> 'cake')"));
        assert_eq!(parse("ada lo ").expect("parse").to_tsquery_exact(), None, "all exact: the query itself");
        assert_eq!(parse("lo*").expect("parse").to_tsquery_exact(), None, "no exact word");
        assert_eq!(parse("ada -lo ").expect("parse").to_tsquery_exact().as_deref(), Some("'ada'"));
        let hostile = parse("x' | 'y\" OR NEAR(a b) * : & ! ( ) \\ ;").expect("words, no syntax");
        for t in hostile.include.iter().chain(&hostile.exclude) {
            assert!(t.words.iter().all(|w| w.chars().all(|c| c.is_ascii_alphanumeric())), "{t:?}");
        }
    }

    #[test]
    fn input_that_cannot_be_searched_is_refused() {
        assert_eq!(parse(""), Err(SearchError::Empty));
        assert_eq!(parse("\" * - 🙂"), Err(SearchError::Empty));
        assert_eq!(parse("-cake"), Err(SearchError::OnlyExclusions));
        assert_eq!(parse(&"a".repeat(10_000)), Err(SearchError::TooLong(10_000)));
        assert_eq!(parse("a b c d e f g h i"), Err(SearchError::TooManyTerms(9)));
    }
}
