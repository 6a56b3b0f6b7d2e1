//! A document that does not parse, answered in one line a person can act
//! on: `Syntax error at line 1, column 63: expected a name, found ")"`,
//! with `locations` at that place and the code `VALIDATION`.
//!
//! async-graphql's parser (pest) reports a syntax error as several lines
//! of source art (` --> 1:63`, the line, a caret, `= expected name`), in
//! its grammar's rule names. What the art says is kept — the place and the
//! rules expected there — and said in words; what stands at that place is
//! read from the document itself.
use async_graphql::parser::Error as ParseError;
use async_graphql::{ErrorExtensionValues, Pos, ServerError};

/// At most this many characters of what was found are quoted.
const MAX_FOUND_CHARS: usize = 40;

/// The error for `query`, which failed to parse with `error`.
pub fn parse_error(query: &str, error: &ParseError) -> ServerError {
    let mut server_error = match error {
        ParseError::Syntax { message, start, .. } => {
            let what = expectation(message);
            let found = found_at(query, *start);
            ServerError::new(
                format!("Syntax error at line {}, column {}: {what}, found {found}", start.line, start.column),
                Some(*start),
            )
        }
        // The other parse errors (two anonymous operations, a name defined
        // twice, no operation) are one line already, and name their places.
        other => {
            let mut server_error = ServerError::new(other.to_string(), None);
            server_error.locations = other.positions().collect();
            server_error
        }
    };
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", super::error::VALIDATION);
    server_error.extensions = Some(extensions);
    server_error
}

/// pest's last line, `= expected a, b, or c` (or `unexpected …`), in words.
fn expectation(art: &str) -> String {
    let said = art.lines().rev().find_map(|line| line.trim_start().strip_prefix("= ")).unwrap_or("").trim();
    let (unexpected, expected) = match said.split_once("; expected ") {
        Some((unexpected, expected)) => (unexpected.strip_prefix("unexpected "), Some(expected)),
        None => (said.strip_prefix("unexpected "), said.strip_prefix("expected ")),
    };
    match (expected, unexpected) {
        (Some(expected), _) => format!("expected {}", rules_in_words(expected)),
        (None, Some(unexpected)) => format!("did not expect {}", rules_in_words(unexpected)),
        (None, None) => "the document is not valid GraphQL".to_owned(),
    }
}

/// pest's enumeration (`a`, `a or b`, `a, b, or c`) of rule names, as
/// words, each said once, joined as `a, b or c`.
fn rules_in_words(rules: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    for rule in rules.split(", or ").flat_map(|part| part.split(", ")).flat_map(|part| part.split(" or ")) {
        let word = rule_in_words(rule.trim());
        if !word.is_empty() && !words.contains(&word) {
            words.push(word);
        }
    }
    match words.split_last() {
        None => "something else".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// One rule of async-graphql's grammar (`graphql.pest`), as a reader of
/// the document would call it.
fn rule_in_words(rule: &str) -> &str {
    match rule {
        "EOI" => "the end of the document",
        "executable_definition" => "an operation or a fragment",
        "operation_definition" | "named_operation_definition" => "an operation",
        "operation_type" => "query, mutation or subscription",
        "fragment_definition" => "a fragment",
        "selection_set" => "a selection set",
        "selection" | "field" => "a field",
        "alias" => "an alias",
        "fragment_spread" | "inline_fragment" => "a fragment spread",
        "type_condition" => "a type condition",
        "name" => "a name",
        "arguments" | "const_arguments" => "arguments",
        "argument" | "const_argument" => "an argument",
        "directive" | "directives" | "const_directive" | "const_directives" => "a directive",
        "variable_definitions" | "variable_definition" => "a variable definition",
        "variable" => "a variable",
        "type_" => "a type",
        "default_value" => "a default value",
        "value" | "const_value" => "a value",
        "object_field" | "const_object_field" => "an input field",
        "string" => "a string",
        "number" | "int" | "float" => "a number",
        "boolean" => "true or false",
        "null" => "null",
        "enum_value" => "an enum value",
        "list" | "const_list" => "a list",
        "object" | "const_object" => "an input object",
        other => other,
    }
}

/// What stands at `pos` in `query` (lines and columns as pest counts them:
/// from 1, in characters, `\n` or `\r\n` ending a line), quoted; or "the
/// end of the document".
fn found_at(query: &str, pos: Pos) -> String {
    let (mut line, mut column) = (1, 1);
    let mut rest = query;
    while !rest.is_empty() && (line, column) != (pos.line, pos.column) {
        let mut chars = rest.chars();
        match chars.next() {
            Some('\n') => (line, column) = (line + 1, 1),
            Some('\r') if chars.as_str().starts_with('\n') => {
                chars.next();
                (line, column) = (line + 1, 1);
            }
            _ => column += 1,
        }
        rest = chars.as_str();
    }
    let Some(first) = rest.chars().next() else { return "the end of the document".to_owned() };
    let token: String = if first.is_alphanumeric() || first == '_' {
        rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').take(MAX_FOUND_CHARS).collect()
    } else if rest.starts_with("...") {
        "...".to_owned()
    } else {
        first.to_string()
    };
    match token.as_str() {
        "\"" => "'\"'".to_owned(),
        "\n" | "\r" => "the end of the line".to_owned(),
        _ if first.is_control() => format!("the character U+{:04X}", u32::from(first)),
        _ => format!("\"{token}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(query: &str) -> (String, Vec<Pos>) {
        let error = async_graphql::parser::parse_query(query).expect_err("does not parse");
        let server_error = parse_error(query, &error);
        (server_error.message, server_error.locations)
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_place() {
        let (text, at) = message("{ a(x: $) }");
        assert_eq!(text, "Syntax error at line 1, column 9: expected a name, found \")\"");
        assert_eq!(at, [Pos { line: 1, column: 9 }]);
        let (text, _) = message("{ viewer { role }");
        assert_eq!(text, "Syntax error at line 1, column 18: expected a field, found the end of the document");
        let (text, _) = message("{ a { id token ");
        assert_eq!(
            text,
            "Syntax error at line 1, column 16: expected a selection set, a field, a directive or arguments, \
             found the end of the document"
        );
        let (text, _) = message("");
        assert_eq!(
            text,
            "Syntax error at line 1, column 1: expected an operation or a fragment, found the end of the document"
        );
        let (text, _) = message("qurey { a }");
        assert_eq!(text, "Syntax error at line 1, column 1: expected an operation or a fragment, found \"qurey\"");
    }

    #[test]
    fn lines_and_columns_count_as_the_parser_counts_them() {
        let (text, at) = message("query {\r\n  viewer {\n    role(\n  }\n}");
        assert_eq!(text, "Syntax error at line 4, column 3: expected a name, found \"}\"");
        assert_eq!(at, [Pos { line: 4, column: 3 }]);
        let (text, _) = message("{ a(x: \"é\", y: \"unclosed) }");
        assert!(text.starts_with("Syntax error at line 1, column 16: expected a value, found '\"'"), "{text}");
    }

    #[test]
    fn other_parse_errors_keep_their_places() {
        let (text, at) = message("{ a } { b }");
        assert_eq!(text, "document contains multiple operations");
        assert_eq!(at, [Pos { line: 1, column: 7 }, Pos { line: 1, column: 1 }]);
    }

    #[test]
    fn every_answer_is_one_line() {
        for query in ["{", "}", "{ a(", "query ($: Int) { a }", "{ a @ }", "fragment on on Q { a }", "{ a(x: [1, ) }"] {
            let (text, _) = message(query);
            assert!(!text.contains('\n') && !text.is_empty(), "{query}: {text:?}");
        }
    }
}
