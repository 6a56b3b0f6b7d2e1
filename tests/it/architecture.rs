//! The layer map of `src/lib.rs`, held by a parser: every `use` tree and
//! every path in every source file under `src/` (grouped imports,
//! `super::`/`self::` paths, paths written inline, paths inside macro
//! invocations) is resolved to the module it names and checked against the
//! allow-list below. A planted violation proves the checker can fail.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Which of the crate's top-level modules each one may import. Keep in
/// step with the map in `src/lib.rs`.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("domain", &[][..]),
        ("token", &[][..]),
        ("catalog", &[][..]),
        ("backoff", &[][..]),
        ("stable_hash", &[][..]),
        ("config", &["catalog"][..]),
        ("metrics", &["catalog"][..]),
        ("db", &["metrics"][..]),
        ("inline", &["domain"][..]),
        ("auth", &["domain"][..]),
        ("notice", &["token", "db", "catalog", "backoff"][..]),
        ("command", &["domain", "token", "db", "notice", "inline", "metrics"][..]),
        (
            "projection",
            &["domain", "token", "db", "notice", "inline", "catalog", "metrics", "backoff", "stable_hash"][..],
        ),
        ("query", &["domain", "token", "db", "notice", "catalog", "metrics"][..]),
        ("export", &["projection", "domain", "token", "db", "catalog", "metrics"][..]),
        ("admin", &["projection", "token", "db", "notice", "catalog", "metrics"][..]),
        ("graphql", &["command", "query", "admin", "notice", "token", "domain", "catalog", "metrics"][..]),
        ("http", &["graphql", "admin", "auth", "catalog", "metrics", "stable_hash"][..]),
        (
            "app",
            &[
                "config",
                "catalog",
                "backoff",
                "stable_hash",
                "domain",
                "token",
                "metrics",
                "db",
                "inline",
                "notice",
                "command",
                "projection",
                "export",
                "query",
                "admin",
                "auth",
                "graphql",
                "http",
            ][..],
        ),
        (
            "cli",
            &[
                "app",
                "config",
                "catalog",
                "domain",
                "token",
                "db",
                "notice",
                "command",
                "projection",
                "admin",
                "auth",
                "graphql",
            ][..],
        ),
    ])
}

/// External paths a layer must never name.
fn forbidden_external(layer: &str) -> &'static [&'static str] {
    match layer {
        "domain" | "token" | "catalog" | "backoff" | "stable_hash" => {
            &["sea_orm", "sqlx", "tokio", "axum", "async_graphql", "reqwest", "entity", "metrics"]
        }
        "command" => &["entity::read", "async_graphql", "axum"],
        "query" => &["entity::write", "entity::log", "async_graphql", "axum"],
        "projection" => &["entity::write", "async_graphql", "axum"],
        "export" => &["entity", "async_graphql", "axum"],
        "admin" => &["entity::write", "async_graphql", "axum"],
        "graphql" => &["entity", "sea_orm", "sqlx", "axum"],
        "http" => &["entity", "sea_orm", "sqlx"],
        "config" => &["entity", "sea_orm", "sqlx", "axum", "async_graphql"],
        "auth" => &["entity", "sea_orm", "sqlx", "axum", "async_graphql", "tokio"],
        _ => &[],
    }
}

/// A path a file names, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A module of this crate, from its root (`["query", "orders"]`).
    Internal(Vec<String>),
    /// Another crate's path (`["entity", "read", "order_summary"]`).
    External(Vec<String>),
}

struct Collector<'a> {
    /// The module being visited (inline `mod x { … }` blocks push onto it).
    module: Vec<String>,
    children: &'a BTreeSet<String>,
    found: Vec<(Target, String)>,
}

impl Collector<'_> {
    /// Resolves a path given as segments, relative to the current module.
    fn resolve(&self, segments: &[String]) -> Option<Target> {
        let first = segments.first()?;
        let mut base: Vec<String> = self.module.clone();
        let mut rest = segments;
        match first.as_str() {
            "crate" => {
                base.clear();
                rest = &segments[1..];
            }
            "self" => rest = &segments[1..],
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            name if self.children.contains(name) => {}
            // A single-segment or external path: only multi-segment ones from known crates matter.
            _ => return (segments.len() > 1).then(|| Target::External(segments.to_vec())),
        }
        base.extend(rest.iter().cloned());
        (!base.is_empty()).then_some(Target::Internal(base))
    }

    fn record(&mut self, segments: Vec<String>, shown: String) {
        if let Some(target) = self.resolve(&segments) {
            self.found.push((target, shown));
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                let shown = full.join("::");
                self.record(full, format!("use {shown}"));
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                let shown = full.join("::");
                self.record(full, format!("use {shown}"));
            }
            syn::UseTree::Glob(_) => {
                let shown = format!("{}::*", prefix.join("::"));
                self.record(prefix.clone(), format!("use {shown}"));
            }
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    /// Paths inside macro invocations (`metrics::counter!(crate::metrics::X)`).
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(ident) => {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        let shown = segments.join("::");
                        self.record(segments, shown);
                    }
                    i = j.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            let shown = segments.join("::");
            self.record(segments, shown);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The module path of a source file (`src/command/order.rs` → `command::order`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file");
    let stem = last.trim_end_matches(".rs").to_owned();
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem);
    }
    parts
}

/// The modules a file declares (`mod x;` or inline), at any depth.
fn children(ast: &syn::File) -> BTreeSet<String> {
    struct Mods(BTreeSet<String>);
    impl<'ast> Visit<'ast> for Mods {
        fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
            self.0.insert(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
        }
    }
    let mut mods = Mods(BTreeSet::new());
    mods.visit_file(ast);
    mods.0
}

/// The modules `lib.rs` declares at its top level.
fn top_level(ast: &syn::File) -> BTreeSet<String> {
    ast.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

/// Every violation in one file, given as source text.
fn violations_in(src: &Path, file: &Path, text: &str) -> Vec<String> {
    let module = module_of(src, file);
    let Some(layer) = module.first().cloned() else { return Vec::new() };
    let ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let children = children(&ast);
    let mut collector = Collector { module: module.clone(), children: &children, found: Vec::new() };
    collector.visit_file(&ast);
    let allowed = allowed();
    let mut out = Vec::new();
    for (target, shown) in collector.found {
        match target {
            Target::Internal(path) => {
                let to = &path[0];
                let ok = *to == layer || allowed.get(layer.as_str()).is_some_and(|a| a.contains(&to.as_str()));
                if !ok {
                    out.push(format!("{}: {layer} may not use {to} ({shown})", file.display()));
                }
            }
            Target::External(path) => {
                let joined = path.join("::");
                for banned in forbidden_external(&layer) {
                    if joined == *banned || joined.starts_with(&format!("{banned}::")) {
                        out.push(format!("{}: {layer} may not use {banned} ({shown})", file.display()));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_keeps_to_the_layer_map() {
    let src = src();
    let mut found = Vec::new();
    for file in sources(&src) {
        // Generated include!() fragments are not modules.
        if file.components().any(|c| c.as_os_str() == "static") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        found.extend(violations_in(&src, &file, &text));
    }
    assert!(found.is_empty(), "imports the layer map forbids:\n{}", found.join("\n"));
}

#[test]
fn every_top_level_module_has_a_place_in_the_map() {
    let lib = syn::parse_file(&std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs")).expect("parse lib.rs");
    let allowed = allowed();
    let missing: Vec<String> = top_level(&lib).into_iter().filter(|m| !allowed.contains_key(m.as_str())).collect();
    assert!(missing.is_empty(), "modules without a rule: {missing:?}");
}

#[test]
fn a_planted_violation_is_caught_however_it_is_written() {
    let src = src();
    let planted = r#"
        use crate::{query::ReadModel, projection::runtime::Projector};
        use super::super::db::Db;
        use entity :: read :: order_summary;
        fn f() {
            let _ = crate::app::start;
            metrics::counter!(crate::cli::run);
        }
    "#;
    let found = violations_in(&src, &src.join("graphql").join("planted.rs"), planted);
    for expected in
        ["may not use projection", "may not use db", "may not use entity", "may not use app", "may not use cli"]
    {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
    assert!(!found.iter().any(|v| v.contains("may not use query")), "graphql may use query: {found:#?}");
    // `super::` that climbs out of a layer is caught too.
    let climbing = "use super::super::super::command::CommandService;";
    let found = violations_in(&src, &src.join("query").join("orders").join("deep.rs"), climbing);
    assert!(found.iter().any(|v| v.contains("query may not use command")), "{found:#?}");
    // A clean file passes.
    assert!(violations_in(&src, &src.join("domain").join("clean.rs"), "use super::DomainError;").is_empty());
}
