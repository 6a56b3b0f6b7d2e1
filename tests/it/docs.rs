//! The documentation holds: every relative link and anchor in `README.md`
//! and `docs/*.md` resolves, the README stays a short entry, and every
//! GraphQL snippet of the README's tour runs as written against a fresh
//! server in open development mode (as `cargo run --release` serves it).
//!
//! **Links.** Outside code fences and code spans, every `[text](target)`,
//! `![alt](target)`, `[ref]: target` and HTML `href="…"`/`src="…"` whose
//! target has no scheme must name a file or directory that exists
//! (relative to the Markdown file), and a `#fragment` into a Markdown file
//! must name one of its headings by GitHub's slug rules: the heading's
//! text (code spans, emphasis and links reduced to their text) lowercased,
//! every character but letters, digits, `-`, `_` and spaces dropped, each
//! space made a `-`; a repeated slug gets `-1`, `-2`, … in order.
//!
//! **The tour.** Every ```` ```graphql ```` fence of `README.md` is run in
//! order, with the variables it declares taken from the answers before it,
//! by name, the way the README asks a reader to fill GraphiQL's Variables
//! pane (see [`Tour::bind`]; each snippet is sent with the whole pane):
//!
//! | variable | value |
//! |---|---|
//! | `$customerId` | the `id` the last `registerCustomer` returned |
//! | `$productId` | the `id` the last `addProduct` returned |
//! | `$orderId` | the `id` the last `placeOrder` returned |
//! | `$token` | the `token` of the last command answered |
//! | `$day` | today's date (UTC), `YYYY-MM-DD` |
//!
//! A snippet must answer without errors and with every root field set,
//! unless it carries a comment line `# expect: CODE`: then its first
//! error's `extensions.code` must be `CODE`. A mutation that passes a
//! `commandId` is sent twice and must answer the same both times (the
//! README promises it). A variable not in the table fails the test.
//!
//! The ```` ```graphql ```` fences of `docs/*.md` are sent afterwards with
//! the same variables and must be valid against the schema (no HTTP 400
//! under `Accept: application/graphql-response+json`). A guide's snippet
//! that carries `# expect: CODE` must fail with that code, and one that
//! carries `# expect: answer` must answer without errors, every root
//! field set (the guide shows what it answers).
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::helpers::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const README_MAX_LINES: usize = 300;
/// The README's test command, which `.ci/run` runs (and says so).
const TEST_COMMAND: &str = "TWOFOLD_TEST_PG_URL=postgres://postgres@127.0.0.1:5432 cargo test --workspace";

// ---------------------------------------------------------------- Markdown

/// A fenced code block: its info string (`graphql`, `js`, …) and text.
#[derive(Debug, Clone)]
struct Fence {
    info: String,
    text: String,
}

/// What the checks need from one Markdown file.
#[derive(Debug, Default)]
struct Markdown {
    /// Heading slugs, duplicates numbered as GitHub numbers them.
    anchors: Vec<String>,
    /// Link targets outside code, in order.
    links: Vec<String>,
    fences: Vec<Fence>,
}

fn fence_marker(line: &str) -> Option<(char, usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let c = trimmed.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|&x| x == c).count();
    (n >= 3).then(|| (c, n, trimmed[n..].trim()))
}

/// Removes code spans (`` `x` ``, ``` ``x`` ```): their text is not Markdown.
/// With `keep`, their content stays (for heading text); otherwise it goes.
fn strip_code_spans(text: &str, keep: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The closing run: exactly n backticks.
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                if keep {
                    out.extend(&chars[i + n..j]);
                }
                i = j + n;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    let text = strip_code_spans(heading, true);
    // Links read as their text.
    let mut plain = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("](") {
        let Some(end) = rest[start..].find(')') else { break };
        plain.push_str(&rest[..start]);
        rest = &rest[start + end + 1..];
    }
    plain.push_str(rest);
    plain
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Link targets in a block of Markdown text (code spans already removed).
fn targets_in(block: &str, out: &mut Vec<String>) {
    let mut rest = block;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // The target runs to the `)` that closes it (parentheses may nest).
        let mut depth = 0usize;
        let mut end = None;
        for (k, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(k);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let raw = after[..end].trim();
        let raw = raw.strip_prefix('<').and_then(|r| r.split_once('>')).map_or(raw, |(t, _)| t);
        let target = raw.split_whitespace().next().unwrap_or("");
        out.push(target.to_owned());
        rest = &after[end..];
    }
    for attribute in ["href=\"", "src=\""] {
        let mut rest = block;
        while let Some(at) = rest.find(attribute) {
            let after = &rest[at + attribute.len()..];
            let Some(end) = after.find('"') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    for line in block.lines() {
        let line = line.trim_start();
        if let Some(after) = line.strip_prefix('[') {
            if let Some((_, target)) = after.split_once("]:") {
                if let Some(target) = target.split_whitespace().next() {
                    out.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
                }
            }
        }
    }
}

fn parse(text: &str) -> Markdown {
    let mut md = Markdown::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut block = String::new();
    let mut fence: Option<(char, usize, String, String)> = None;
    let flush = |block: &mut String, links: &mut Vec<String>| {
        targets_in(&strip_code_spans(block, false), links);
        block.clear();
    };
    for line in text.lines() {
        if let Some((c, n, info, body)) = &mut fence {
            match fence_marker(line) {
                Some((c2, n2, rest)) if c2 == *c && n2 >= *n && rest.is_empty() => {
                    md.fences.push(Fence { info: info.clone(), text: std::mem::take(body) });
                    fence = None;
                }
                _ => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            continue;
        }
        if let Some((c, n, info)) = fence_marker(line) {
            flush(&mut block, &mut md.links);
            let info = info.split_whitespace().next().unwrap_or("").to_owned();
            fence = Some((c, n, info, String::new()));
            continue;
        }
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && (trimmed.len() == hashes || trimmed[hashes..].starts_with(' ')) {
            flush(&mut block, &mut md.links);
            let text = trimmed[hashes..].trim();
            let text = text.trim_end_matches('#').trim_end();
            let base = slug(&text.replace(['*'], ""));
            let n = seen.entry(base.clone()).or_insert(0);
            md.anchors.push(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
            *n += 1;
            targets_in(&strip_code_spans(text, false), &mut md.links);
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut block, &mut md.links);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    flush(&mut block, &mut md.links);
    assert!(fence.is_none(), "a code fence is never closed");
    md
}

/// Every broken relative link or anchor of `files` (paths relative to
/// `root`), as `file: target (why)`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut parsed: BTreeMap<PathBuf, Markdown> = BTreeMap::new();
    let mut load = |path: &Path| -> Option<Vec<String>> {
        let path = path.canonicalize().ok()?;
        if !parsed.contains_key(&path) {
            parsed.insert(path.clone(), parse(&std::fs::read_to_string(&path).ok()?));
        }
        Some(parsed[&path].anchors.clone())
    };
    let mut problems = Vec::new();
    for file in files {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for target in parse(&text).links {
            let external = target.starts_with("//")
                || target.split_once(':').is_some_and(|(scheme, _)| {
                    !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                });
            if external {
                continue;
            }
            let (file_part, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved =
                if file_part.is_empty() { path.clone() } else { path.parent().expect("a directory").join(file_part) };
            if !resolved.exists() {
                problems.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            let markdown = resolved.extension().is_some_and(|e| e == "md");
            if anchor.is_empty() || !markdown {
                continue;
            }
            let anchors = load(&resolved).unwrap_or_default();
            if !anchors.iter().any(|a| a == anchor) {
                problems.push(format!("{}: {target} (no heading with that anchor)", file.display()));
            }
        }
    }
    problems
}

/// `README.md` and every `docs/*.md`.
fn documentation() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("name")))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = documentation();
    assert!(files.len() >= 5, "README.md and the guides in docs/: {files:?}");
    let problems = broken_links(Path::new(ROOT), &files);
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn the_link_checker_reports_a_planted_broken_link_and_anchor() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("docs")).expect("docs");
    std::fs::write(
        dir.path().join("README.md"),
        "# Top\n\nSee [the guide](docs/guide.md#the-flags-table), [a missing one](docs/missing.md),\n\
         [a bad anchor](docs/guide.md#no-such-heading), [here](#top), [not here](#nowhere)\n\
         and [the web](https://example.com/x.md#y).\n\n\
         `[not a link](nowhere.md)` is code.\n\n```md\n[neither](nowhere.md)\n```\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("docs/guide.md"),
        "# Guide\n\n## The flags table\n\n[back](../README.md#top), [broken back](../README.md#gone)\n\n\
         <img src=\"missing.png\" alt=\"\">\n",
    )
    .expect("write");
    let problems = broken_links(dir.path(), &[PathBuf::from("README.md"), PathBuf::from("docs/guide.md")]);
    assert_eq!(
        problems,
        vec![
            "README.md: docs/missing.md (no such file)",
            "README.md: docs/guide.md#no-such-heading (no heading with that anchor)",
            "README.md: #nowhere (no heading with that anchor)",
            "docs/guide.md: ../README.md#gone (no heading with that anchor)",
            "docs/guide.md: missing.png (no such file)",
        ]
    );
}

#[test]
fn anchors_follow_githubs_slug_rules() {
    let md = parse(
        "# Twofold — two models, one truth\n## The `writeVisible` subscription\n## Limits and failure behaviour\n\
         ### Limits and failure behaviour\n## Limits and failure behaviour\n## What's *new*? (v2.1)\n\
         ## snake_case and kebab-case\n## [Linked](x.md) heading ##\n```sh\n# not a heading\n```\n",
    );
    assert_eq!(
        md.anchors,
        vec![
            "twofold--two-models-one-truth",
            "the-writevisible-subscription",
            "limits-and-failure-behaviour",
            "limits-and-failure-behaviour-1",
            "limits-and-failure-behaviour-2",
            "whats-new-v21",
            "snake_case-and-kebab-case",
            "linked-heading",
        ]
    );
}

#[test]
fn the_readme_stays_a_short_entry_with_the_test_command() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= README_MAX_LINES, "README.md has {lines} lines; at most {README_MAX_LINES}");
    assert!(
        readme.lines().any(|l| l.trim() == TEST_COMMAND),
        "README.md must give the test command `.ci/run` runs: {TEST_COMMAND}"
    );
    assert!(readme.contains("cargo run --release\n"), "README.md gives the command that runs the service");
}

// ---------------------------------------------------------------- the tour

/// The variables of the tour, taken from the answers so far.
struct Tour {
    values: HashMap<&'static str, Value>,
}

/// `(variable, mutation, field)`: `$variable` ← `data.<mutation>.<field>`.
const FROM_ANSWERS: &[(&str, &str, &str)] =
    &[("customerId", "registerCustomer", "id"), ("productId", "addProduct", "id"), ("orderId", "placeOrder", "id")];

impl Tour {
    fn new() -> Self {
        let today = chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string();
        Self { values: HashMap::from([("day", json!(today))]) }
    }

    /// Takes what an answer gives to later snippets.
    fn learn(&mut self, answer: &Value) {
        let Some(data) = answer["data"].as_object() else { return };
        for (field, value) in data {
            for (variable, mutation, key) in FROM_ANSWERS {
                if field == mutation && value[key].is_string() {
                    self.values.insert(variable, value[key].clone());
                }
            }
            if value["token"].is_string() {
                self.values.insert("token", value["token"].clone());
            }
        }
    }

    /// Everything the reader's Variables pane holds so far: a snippet is
    /// sent with all of it, as GraphiQL sends the pane, declared or not.
    fn pane(&self) -> Value {
        Value::Object(self.values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    /// The variables `snippet` declares, by name, or what it declares
    /// that the convention does not know (or no answer gave yet).
    fn bind(&self, snippet: &str) -> Result<Value, String> {
        let document = async_graphql::parser::parse_query(snippet).map_err(|e| format!("does not parse: {e}"))?;
        let mut variables = serde_json::Map::new();
        for (_, operation) in document.operations.iter() {
            for definition in &operation.node.variable_definitions {
                let name = definition.node.name.node.as_str();
                let value = self.values.get(name).ok_or_else(|| {
                    format!("${name}: no value (the tour's variables are ${{customerId, productId, orderId, token, day}}, each from an earlier answer)")
                })?;
                variables.insert(name.to_owned(), value.clone());
            }
        }
        Ok(Value::Object(variables))
    }
}

/// `# expect: CODE` in a snippet.
fn expected_code(snippet: &str) -> Option<&str> {
    snippet.lines().find_map(|l| l.trim().strip_prefix("# expect:").and_then(|rest| rest.split_whitespace().next()))
}

fn is_mutation(snippet: &str) -> bool {
    async_graphql::parser::parse_query(snippet).is_ok_and(|d| {
        d.operations.iter().any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Mutation)
    })
}

#[test]
fn the_tour_names_the_variables_it_cannot_fill() {
    let mut tour = Tour::new();
    let place = "mutation Place($customerId: ID!, $productId: ID!) { placeOrder(input: {customerId: $customerId, lines: [{productId: $productId, quantity: 1}]}) { id token } }";
    let early = tour.bind(place).expect_err("no customer yet");
    assert!(early.contains("$customerId"), "{early}");
    tour.learn(&json!({ "data": { "registerCustomer": { "id": "c", "token": "1" } } }));
    tour.learn(&json!({ "data": { "addProduct": { "id": "p", "token": "2" } } }));
    assert_eq!(tour.bind(place).expect("bound"), json!({ "customerId": "c", "productId": "p" }));
    assert_eq!(tour.bind("query($token: Token) { projections { name } }").expect("bound"), json!({ "token": "2" }));
    let unknown = tour.bind("query($order: ID!) { order(id: $order) { id } }").expect_err("unknown name");
    assert!(unknown.contains("$order"), "{unknown}");
    assert!(tour.bind("query { order(id: ").is_err(), "a snippet that does not parse is reported");
    assert_eq!(expected_code("mutation {\n  # expect: INVARIANT_VIOLATION (why)\n x }"), Some("INVARIANT_VIOLATION"));
    assert_eq!(expected_code("mutation { x }"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_tour_runs_as_written() {
    let readme = parse(&read("README.md"));
    let snippets: Vec<&Fence> = readme.fences.iter().filter(|f| f.info == "graphql").collect();
    assert!(snippets.len() >= 5, "the tour's GraphQL snippets: {}", snippets.len());
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut tour = Tour::new();
    for (n, snippet) in snippets.iter().enumerate() {
        let n = n + 1;
        tour.bind(&snippet.text).unwrap_or_else(|e| panic!("tour snippet {n}: {e}\n{}", snippet.text));
        let variables = tour.pane();
        let answer = app.gql(&snippet.text, variables.clone()).await;
        match expected_code(&snippet.text) {
            Some(expected) => {
                assert_eq!(
                    answer["errors"][0]["extensions"]["code"],
                    json!(expected),
                    "tour snippet {n} should fail with {expected}: {answer}\n{}",
                    snippet.text
                );
            }
            None => {
                assert!(answer.get("errors").is_none(), "tour snippet {n} failed: {answer}\n{}", snippet.text);
                let data = answer["data"].as_object().unwrap_or_else(|| panic!("tour snippet {n}: no data: {answer}"));
                for (field, value) in data {
                    assert!(!value.is_null(), "tour snippet {n}: `{field}` is null: {answer}\n{}", snippet.text);
                }
                if is_mutation(&snippet.text) && snippet.text.contains("commandId:") {
                    let again = app.gql(&snippet.text, variables).await;
                    assert_eq!(again, answer, "tour snippet {n}, sent again with its commandId, answers the same");
                }
            }
        }
        tour.learn(&answer);
    }

    // The guides' snippets, with the tour's variables: valid against the schema.
    for file in documentation().iter().filter(|f| f.starts_with("docs")) {
        let guide = parse(&read(&file.to_string_lossy()));
        for (n, snippet) in guide.fences.iter().filter(|f| f.info == "graphql").enumerate() {
            let n = n + 1;
            let where_ = format!("{} graphql snippet {n}", file.display());
            let variables = tour.bind(&snippet.text).unwrap_or_else(|e| panic!("{where_}: {e}\n{}", snippet.text));
            let response = app
                .client
                .post(format!("{}/graphql", app.base))
                .header("accept", "application/graphql-response+json")
                .json(&json!({ "query": snippet.text, "variables": variables }))
                .send()
                .await
                .expect("request sent");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(status, 200, "{where_} is not a valid document: {body}\n{}", snippet.text);
            match expected_code(&snippet.text) {
                None => {}
                Some("answer") => {
                    assert!(body.get("errors").is_none(), "{where_} failed: {body}\n{}", snippet.text);
                    let data = body["data"].as_object().unwrap_or_else(|| panic!("{where_}: no data: {body}"));
                    for (field, value) in data {
                        assert!(!value.is_null(), "{where_}: `{field}` is null: {body}\n{}", snippet.text);
                    }
                }
                Some(expected) => assert_eq!(
                    body["errors"][0]["extensions"]["code"],
                    json!(expected),
                    "{where_} should fail with {expected}: {body}\n{}",
                    snippet.text
                ),
            }
        }
    }
    app.stop().await;
}
