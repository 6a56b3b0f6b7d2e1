//! The layer map of `src/lib.rs`, held by a parser, and the import graph of
//! `src/`, checked for cycles.
//!
//! Every source file under `src/` is parsed with `syn`. Each path a file
//! names is resolved to what it names: `use` trees (grouped, renamed,
//! globbed), paths written inline, paths inside macro invocations and
//! inside attribute arguments (`#[arg(default_value_t = crate::x::Y)]`),
//! `super::`/`self::`/`crate::` paths, and names bound by an earlier `use`
//! in scope — aliases included (`use sea_orm as orm;` then `orm::DbErr`,
//! `use crate as root;` then `root::projection::…`).
//!
//! The map itself is not copied here: [`LayerMap::of`] reads the table in
//! the doc comment of `src/lib.rs` (the `lib.rs` of the crate checked, so
//! a planted `lib.rs` plants a map). The rules:
//!
//! 1. **Arrows.** What a file names directly must be its own layer or one
//!    its row may use; an outside crate must be in its row's outside crates
//!    (`std`, `core`, `alloc` always are), and never a path of its "must
//!    never use" cell. `src/main.rs` is checked against its own row.
//! 2. **Re-exports are transparent to the "never" lists.** A name reached
//!    through `pub use` is followed, hop by hop, to the item it re-exports.
//!    If any hop is something the naming layer must never name (an outside
//!    path or a layer of its "must never use" cell in `src/lib.rs`), that
//!    is a violation:
//!    `graphql` naming `query::OrderSummaryRow` when that is
//!    `entity::read::order_summary::Model` names `entity`. Internal hops
//!    along allowed arrows are fine (`http` → `admin` → `db`): the arrows
//!    say what a file may name, and a re-exported item is named where it is
//!    re-exported.
//! 3. **No holding through public types.** What a layer must never name
//!    of `entity` (the persistence model) it must not hold either: no item
//!    of another layer that it names may hand one out — by a crate-visible
//!    (`pub`, `pub(crate)`) field or enum variant, alias, const, or the
//!    return type of a function, of a trait method or of an inherent `pub`
//!    method of a type it names — followed through the types handed out
//!    (`ReadModel::orders` → `OrderPage` → `rows`). So `query` may read
//!    `entity::read` but hands `graphql` row structs it owns, and `admin`
//!    hands out its own checkpoint and dead-letter types. Parameters are
//!    not handed out (a caller must already hold what it passes, which
//!    rule 1 sees), nor are trait impls (`impl From<entity::…::Model>`).
//!    The rule is kept to `entity`: other "never" paths handed out in
//!    signatures (`sea_orm::DbErr` in results) are not covered yet.
//! 4. **No cycles.** The graph of top-level modules (an edge when a file of
//!    one names the other) and the graph of files (each `.rs` file a node; an
//!    edge when a file names an item or module defined in another file,
//!    following re-exports to the file that defines it) have no cycle.
//!    `mod x;` declarations are not edges; `super::X` from a child to its
//!    parent's file and `child::Y` from the parent back are a cycle. A name
//!    reached through a `pub use` is an edge to the re-exporting file too.
//! 5. **No `unreachable!()`** outside `#[cfg(test)]` code and `#[test]`
//!    functions: a panic the `unwrap` lint does not see.
//!
//! Each rule has a planted violation in a self-test, so the checker is shown
//! able to fail. Known limits: names brought in by an external glob
//! (`use sea_orm::prelude::*`) are not attributed (the `use` itself is),
//! and paths written inside string literals (`#[serde(with = "…")]`) are not
//! read.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// One row of the layer map in `src/lib.rs`.
#[derive(Debug, Default)]
struct Row {
    /// Top-level modules it may name (`None`: every one).
    may: Option<BTreeSet<String>>,
    /// Outside crates it may name besides `std`, `core` and `alloc` (`None`: any).
    crates: Option<BTreeSet<String>>,
    /// Layers of this crate it must never name, not even through a re-export.
    never_internal: Vec<String>,
    /// Outside paths it must never name (`entity::write`), not even through a re-export.
    never_external: Vec<String>,
}

/// The layer map, read from the table in the doc comment of `src/lib.rs`:
/// the one copy. Columns: module, role, may use (modules of the crate),
/// outside crates, must never use. A list cell is names separated by
/// commas, `—` for none, or `everything` / `any`; anything else in it is an
/// error here, so the table cannot drift into prose the check skips.
struct LayerMap {
    rows: BTreeMap<String, Row>,
}

impl LayerMap {
    /// The map `krate`'s `lib.rs` states.
    fn of(krate: &Crate) -> LayerMap {
        let lib = krate.src.join("lib.rs");
        let (_, ast) = krate.files.get(&lib).unwrap_or_else(|| panic!("no {}", lib.display()));
        let doc: Vec<String> = ast
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .filter_map(|a| match &a.meta {
                syn::Meta::NameValue(nv) => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        LayerMap::parse(&doc.join("\n"))
    }

    fn parse(doc: &str) -> LayerMap {
        let mut rows = BTreeMap::new();
        let mut header = false;
        for line in doc.lines().map(str::trim) {
            if !line.starts_with('|') {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if !header {
                assert_eq!(
                    cells,
                    ["module", "role", "may use", "outside crates", "must never use"],
                    "the layer map's columns changed: update the check"
                );
                header = true;
                continue;
            }
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
                continue;
            }
            assert_eq!(cells.len(), 5, "a layer map row without five cells: {line}");
            let name = cells[0].trim_matches(|c| c == '[' || c == ']' || c == '`').to_owned();
            let may = list(cells[2], &name, "may use");
            let crates = list(cells[3], &name, "outside crates");
            let never =
                list(cells[4], &name, "must never use").unwrap_or_else(|| panic!("{name}: must never use everything?"));
            rows.insert(
                name,
                Row { may, crates, never_internal: never.into_iter().collect(), never_external: Vec::new() },
            );
        }
        assert!(header && !rows.is_empty(), "no layer map table in src/lib.rs");
        // A "never" name that is no row is an outside path.
        let layers: BTreeSet<String> = rows.keys().cloned().collect();
        for row in rows.values_mut() {
            let (internal, external): (Vec<String>, Vec<String>) =
                std::mem::take(&mut row.never_internal).into_iter().partition(|n| layers.contains(n));
            row.never_internal = internal;
            row.never_external = external;
        }
        LayerMap { rows }
    }

    /// Whether `layer` may name the top-level module `to`.
    fn may(&self, layer: &str, to: &str) -> bool {
        to == layer || self.rows.get(layer).is_some_and(|r| r.may.as_ref().is_none_or(|m| m.contains(to)))
    }

    /// Whether `layer` may name the outside crate `krate`. A first segment
    /// that is no dependency in `Cargo.toml` is no crate (a primitive, a
    /// type parameter, a tool attribute like `clippy::`), so it passes.
    fn may_crate(&self, layer: &str, krate: &str) -> bool {
        !dependencies().contains(krate)
            || self.rows.get(layer).is_some_and(|r| r.crates.as_ref().is_none_or(|c| c.contains(krate)))
    }

    /// What in `target` `layer` must never name, if anything.
    fn never(&self, layer: &str, target: &Target) -> Option<String> {
        match target {
            Target::Internal(path) => {
                let to = path.first()?;
                self.rows.get(layer)?.never_internal.contains(to).then(|| to.clone())
            }
            Target::External(path) => self.external_ban(layer, path),
        }
    }

    fn external_ban(&self, layer: &str, path: &[String]) -> Option<String> {
        let joined = path.join("::");
        self.rows
            .get(layer)?
            .never_external
            .iter()
            .find(|banned| joined == **banned || joined.starts_with(&format!("{banned}::")))
            .cloned()
    }
}

/// The package's `[dependencies]` (as code names them: `sea-orm` is `sea_orm`).
fn dependencies() -> &'static BTreeSet<String> {
    static DEPENDENCIES: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    DEPENDENCIES.get_or_init(|| {
        let manifest =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("Cargo.toml");
        let mut within = false;
        let mut out = BTreeSet::new();
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                within = line == "[dependencies]";
            } else if within {
                if let Some((name, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
                    out.insert(name.trim().replace('-', "_"));
                }
            }
        }
        assert!(out.contains("sea_orm"), "no [dependencies] read from Cargo.toml: {out:?}");
        out
    })
}

/// A list cell of the layer map: `None` for `everything` / `any`.
fn list(cell: &str, layer: &str, column: &str) -> Option<BTreeSet<String>> {
    match cell {
        "everything" | "any" => return None,
        "—" | "" => return Some(BTreeSet::new()),
        _ => {}
    }
    let names: BTreeSet<String> = cell.split(',').map(|n| n.trim().trim_matches('`').to_owned()).collect();
    for n in &names {
        assert!(
            !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'),
            "the layer map's {column} cell of {layer} holds {n:?}: write names separated by commas, `—`, or `everything`"
        );
    }
    Some(names)
}

/// A path a file names, resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// An item or module of this crate, from its root (`["query", "orders"]`).
    Internal(Vec<String>),
    /// Another crate's path (`["entity", "read", "order_summary"]`).
    External(Vec<String>),
}

impl Target {
    fn join(self, rest: &[String]) -> Target {
        match self {
            Target::Internal(mut p) => {
                p.extend(rest.iter().cloned());
                Target::Internal(p)
            }
            Target::External(mut p) => {
                p.extend(rest.iter().cloned());
                Target::External(p)
            }
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Internal(p) => write!(f, "crate::{}", p.join("::")),
            Target::External(p) => write!(f, "{}", p.join("::")),
        }
    }
}

/// One module of the crate (a file, or an inline `mod x { … }` in one).
#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Modules it declares.
    children: BTreeSet<String>,
    /// Names its `use` declarations bind (the last segment or the alias) →
    /// the path as written (`"::"` first for a leading `::`). Uses inside
    /// function bodies count for the whole module.
    uses: BTreeMap<String, Vec<String>>,
    /// Glob imports (`use super::*;`), as written.
    globs: Vec<Vec<String>>,
    /// Items it defines (types, functions, consts, traits, macros…).
    items: BTreeSet<String>,
}

/// A name or path found in a file: what it resolves to, hop by hop through
/// re-exports (the first is what is written), and how it was written.
#[derive(Debug, Clone)]
struct Found {
    chain: Vec<Target>,
    shown: String,
}

/// The crate: its parsed files and modules.
struct Crate {
    src: PathBuf,
    /// Each file with its module path (`src/main.rs`, another crate root, has none).
    files: BTreeMap<PathBuf, (Option<Vec<String>>, syn::File)>,
    modules: BTreeMap<Vec<String>, Module>,
}

impl Crate {
    /// The crate under `src`, from its files on disk.
    fn load(src: &Path) -> Crate {
        let files = sources(src)
            .into_iter()
            .map(|file| {
                let text = std::fs::read_to_string(&file).expect("read source");
                (file, text)
            })
            .collect();
        Crate::from_sources(src, files)
    }

    /// A crate from source texts (paths under `src`).
    fn from_sources(src: &Path, files: Vec<(PathBuf, String)>) -> Crate {
        let mut krate = Crate { src: src.to_path_buf(), files: BTreeMap::new(), modules: BTreeMap::new() };
        for (file, text) in files {
            krate.add(file, &text);
        }
        krate
    }

    /// Adds (or replaces) a file.
    fn add(&mut self, file: PathBuf, text: &str) {
        let ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let is_main = file == self.src.join("main.rs");
        let module = (!is_main).then(|| module_of(&self.src, &file));
        if let Some(module) = &module {
            self.modules.retain(|path, m| !(m.file == file && path.starts_with(module)));
            scan(&mut self.modules, &file, module.clone(), &ast.items);
        }
        self.files.insert(file, (module, ast));
    }

    /// Resolves `segments` as written in `module`. In a `use` tree
    /// (`in_use`), an unknown first segment is a crate even alone; `skip`
    /// is the name the `use` binds, which does not see itself.
    fn resolve(
        &self,
        module: &[String],
        segments: &[String],
        in_use: bool,
        skip: Option<&str>,
        depth: usize,
    ) -> Option<Target> {
        let (first, rest) = segments.split_first()?;
        if depth > 16 {
            return None;
        }
        match first.as_str() {
            "::" => return (!rest.is_empty()).then(|| Target::External(rest.to_vec())),
            "crate" | "$crate" => return Some(Target::Internal(rest.to_vec())),
            "self" => return Some(Target::Internal([module, rest].concat())),
            "super" => {
                let mut base = module.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                return Some(Target::Internal([&base[..], rest].concat()));
            }
            "Self" => return None,
            _ => {}
        }
        if let Some(m) = self.modules.get(module) {
            if m.children.contains(first) {
                return Some(Target::Internal([module, segments].concat()));
            }
            if skip != Some(first.as_str()) {
                if let Some(written) = m.uses.get(first) {
                    let base = self.resolve(module, written, true, Some(first), depth + 1)?;
                    return Some(base.join(rest));
                }
            }
            if m.items.contains(first) {
                return Some(Target::Internal([module, segments].concat()));
            }
            for glob in &m.globs {
                let Some(Target::Internal(at)) = self.resolve(module, glob, true, None, depth + 1) else { continue };
                if let Some(g) = self.modules.get(&at) {
                    if g.children.contains(first) || g.uses.contains_key(first) || g.items.contains(first) {
                        return self.resolve(&at, segments, in_use, None, depth + 1);
                    }
                }
            }
        }
        (in_use || segments.len() > 1).then(|| Target::External(segments.to_vec()))
    }

    /// How many leading segments of `path` are modules of the crate.
    fn module_prefix(&self, path: &[String]) -> usize {
        let mut k = 0;
        while k < path.len() && self.modules.contains_key(&path[..=k]) {
            k += 1;
        }
        k
    }

    /// `target`, then each item it re-exports in turn.
    fn follow(&self, target: Target) -> Vec<Target> {
        let mut chain = vec![target];
        while chain.len() < 16 {
            let Some(Target::Internal(path)) = chain.last() else { break };
            let k = self.module_prefix(path);
            if k == path.len() {
                break;
            }
            let (module, name) = (&path[..k], &path[k]);
            let Some(m) = self.modules.get(module) else { break };
            if m.items.contains(name) || m.children.contains(name) {
                break;
            }
            let Some(written) = m.uses.get(name) else { break };
            let Some(next) = self.resolve(module, written, true, Some(name), 0) else { break };
            let next = next.join(&path[k + 1..]);
            if chain.contains(&next) {
                break;
            }
            chain.push(next);
        }
        chain
    }

    /// The file that defines what `chain` ends at (the last item of this
    /// crate on it: a re-export of another crate's item counts as defined
    /// where it is re-exported).
    fn file_of(&self, chain: &[Target]) -> Option<&Path> {
        let path = chain.iter().rev().find_map(|t| match t {
            Target::Internal(p) => Some(p),
            Target::External(_) => None,
        })?;
        let k = self.module_prefix(path);
        self.modules.get(&path[..k]).map(|m| m.file.as_path())
    }

    /// Everything a file names.
    fn names_in(&self, file: &Path) -> Vec<Found> {
        let (Some(module), ast) = &self.files[file] else { return Vec::new() };
        let mut collector = Collector { krate: self, module: module.clone(), found: Vec::new() };
        collector.visit_file(ast);
        collector.found
    }

    /// What every crate-visible item hands out, by item.
    fn surfaces(&self) -> BTreeMap<Vec<String>, Vec<Surface>> {
        let mut out = Vec::new();
        for (module, ast) in self.files.values() {
            if let Some(module) = module {
                surface(self, module.clone(), &ast.items, &mut out);
            }
        }
        let mut by_item: BTreeMap<Vec<String>, Vec<Surface>> = BTreeMap::new();
        for s in out {
            by_item.entry(s.item.clone()).or_default().push(s);
        }
        by_item
    }
}

/// Records a module's children, `use` bindings and items, and its inline modules'.
fn scan(modules: &mut BTreeMap<Vec<String>, Module>, file: &Path, module: Vec<String>, items: &[syn::Item]) {
    /// `use` declarations inside function bodies and impls (not in nested modules).
    struct InnerUses(Vec<syn::ItemUse>);
    impl<'ast> Visit<'ast> for InnerUses {
        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            self.0.push(item.clone());
        }
        fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}
    }
    let mut m = Module { file: file.to_path_buf(), ..Module::default() };
    let mut inline = Vec::new();
    let mut uses = Vec::new();
    for item in items {
        let ident = match item {
            syn::Item::Mod(i) => {
                m.children.insert(i.ident.to_string());
                if let Some((_, content)) = &i.content {
                    inline.push((i.ident.to_string(), content.clone()));
                }
                None
            }
            syn::Item::Use(u) => {
                uses.push(u.clone());
                None
            }
            syn::Item::ExternCrate(e) => {
                let name = e.rename.as_ref().map_or(&e.ident, |(_, r)| r).to_string();
                m.uses.insert(name, vec!["::".to_owned(), e.ident.to_string()]);
                None
            }
            syn::Item::Struct(i) => Some(&i.ident),
            syn::Item::Enum(i) => Some(&i.ident),
            syn::Item::Union(i) => Some(&i.ident),
            syn::Item::Fn(i) => Some(&i.sig.ident),
            syn::Item::Const(i) => Some(&i.ident),
            syn::Item::Static(i) => Some(&i.ident),
            syn::Item::Type(i) => Some(&i.ident),
            syn::Item::Trait(i) => Some(&i.ident),
            syn::Item::TraitAlias(i) => Some(&i.ident),
            syn::Item::Macro(i) => i.ident.as_ref(),
            _ => None,
        };
        if let Some(ident) = ident {
            m.items.insert(ident.to_string());
        }
        if !matches!(item, syn::Item::Mod(_) | syn::Item::Use(_)) {
            let mut inner = InnerUses(Vec::new());
            inner.visit_item(item);
            uses.extend(inner.0);
        }
    }
    for u in &uses {
        let mut prefix = if u.leading_colon.is_some() { vec!["::".to_owned()] } else { Vec::new() };
        bind(&mut m, &mut prefix, &u.tree);
    }
    modules.insert(module.clone(), m);
    for (name, content) in inline {
        scan(modules, file, [&module[..], &[name]].concat(), &content);
    }
}

/// Records the names a `use` tree binds.
fn bind(m: &mut Module, prefix: &mut Vec<String>, tree: &syn::UseTree) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            bind(m, prefix, &p.tree);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => {
            if let Some(last) = prefix.last() {
                m.uses.insert(last.clone(), prefix.clone());
            }
        }
        syn::UseTree::Name(n) => {
            m.uses.insert(n.ident.to_string(), [&prefix[..], &[n.ident.to_string()]].concat());
        }
        syn::UseTree::Rename(r) if r.rename == "_" => {}
        syn::UseTree::Rename(r) => {
            let written =
                if r.ident == "self" { prefix.clone() } else { [&prefix[..], &[r.ident.to_string()]].concat() };
            m.uses.insert(r.rename.to_string(), written);
        }
        syn::UseTree::Glob(_) => m.globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                bind(m, prefix, item);
            }
        }
    }
}

struct Collector<'a> {
    krate: &'a Crate,
    /// The module being visited (inline `mod x { … }` blocks push onto it).
    module: Vec<String>,
    found: Vec<Found>,
}

impl Collector<'_> {
    fn record(&mut self, segments: Vec<String>, shown: String, in_use: bool, skip: Option<&str>) {
        let Some(target) = self.krate.resolve(&self.module, &segments, in_use, skip, 0) else { return };
        if target == Target::Internal(Vec::new()) {
            return; // the crate root itself (`use crate as root;`): what follows is what counts
        }
        let chain = self.krate.follow(target);
        self.found.push(Found { chain, shown });
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        let shown = |full: &[String]| format!("use {}", full.join("::").replacen("::::", "::", 1));
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
                let bound = full.last().cloned();
                self.record(full.clone(), shown(&full), true, bound.as_deref());
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                let text = format!("{} as {}", shown(&full), r.rename);
                self.record(full, text, true, Some(&r.rename.to_string()));
            }
            syn::UseTree::Glob(_) => {
                let text = format!("{}::*", shown(prefix));
                self.record(prefix.clone(), text, true, None);
            }
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    /// Paths inside macro invocations (`metrics::counter!(crate::metrics::X)`)
    /// and attribute arguments (`#[arg(default_value_t = crate::x::Y)]`).
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
                        self.record(segments, shown, false, None);
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
        let mut prefix = if item.leading_colon.is_some() { vec!["::".to_owned()] } else { Vec::new() };
        self.use_tree(&mut prefix, &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let shown = segments.join("::");
        if path.leading_colon.is_some() {
            segments.insert(0, "::".to_owned());
        }
        self.record(segments, shown, false, None);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    /// `pub(super)`, `pub(in crate::x)`: a visibility names who may see an
    /// item, it imports nothing.
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &attr.meta {
            self.tokens(list.tokens.clone());
        }
        syn::visit::visit_attribute(self, attr);
    }
}

/// Whether an item of `module` with this visibility can be named from
/// another top-level module.
fn crate_visible(vis: &syn::Visibility, module: &[String]) -> bool {
    match vis {
        syn::Visibility::Public(_) => true,
        syn::Visibility::Inherited => false,
        syn::Visibility::Restricted(r) => {
            let path: Vec<String> = r.path.segments.iter().map(|s| s.ident.to_string()).collect();
            match path.first().map(String::as_str) {
                Some("crate") => path.len() == 1,
                Some("super") => module.len() <= path.len(),
                _ => false,
            }
        }
    }
}

/// What a crate-visible item hands to whoever names it: its public fields
/// and variants' fields, its return type, its alias, its type, and for a
/// type, what its inherent `pub` methods return.
#[derive(Debug)]
struct Surface {
    /// The item, from the crate root (`["query", "OrderPage"]`).
    item: Vec<String>,
    /// How it hands it out, for messages (`field of OrderPage`).
    how: String,
    found: Found,
}

/// Collects the surfaces of the crate-visible items of `items`.
fn surface(krate: &Crate, module: Vec<String>, items: &[syn::Item], out: &mut Vec<Surface>) {
    let collect = |what: &mut dyn FnMut(&mut Collector<'_>)| {
        let mut c = Collector { krate, module: module.clone(), found: Vec::new() };
        what(&mut c);
        c.found
    };
    let key = |ident: &syn::Ident| [&module[..], &[ident.to_string()]].concat();
    let mut inline = Vec::new();
    let mut add = |item: Vec<String>, how: String, found: Vec<Found>| {
        out.extend(found.into_iter().map(|found| Surface { item: item.clone(), how: how.clone(), found }));
    };
    let output = |c: &mut Collector<'_>, sig: &syn::Signature| {
        if let syn::ReturnType::Type(_, ty) = &sig.output {
            c.visit_type(ty);
        }
    };
    for item in items {
        match item {
            syn::Item::Type(t) if crate_visible(&t.vis, &module) => {
                add(key(&t.ident), format!("type {}", t.ident), collect(&mut |c| c.visit_type(&t.ty)));
            }
            syn::Item::Fn(f) if crate_visible(&f.vis, &module) => {
                add(key(&f.sig.ident), format!("fn {}", f.sig.ident), collect(&mut |c| output(c, &f.sig)));
            }
            syn::Item::Const(k) if crate_visible(&k.vis, &module) => {
                add(key(&k.ident), format!("const {}", k.ident), collect(&mut |c| c.visit_type(&k.ty)));
            }
            syn::Item::Static(s) if crate_visible(&s.vis, &module) => {
                add(key(&s.ident), format!("static {}", s.ident), collect(&mut |c| c.visit_type(&s.ty)));
            }
            syn::Item::Struct(s) if crate_visible(&s.vis, &module) => {
                for field in s.fields.iter().filter(|f| crate_visible(&f.vis, &module)) {
                    add(key(&s.ident), format!("a field of {}", s.ident), collect(&mut |c| c.visit_type(&field.ty)));
                }
            }
            syn::Item::Enum(e) if crate_visible(&e.vis, &module) => {
                for field in e.variants.iter().flat_map(|v| v.fields.iter()) {
                    add(key(&e.ident), format!("a variant of {}", e.ident), collect(&mut |c| c.visit_type(&field.ty)));
                }
            }
            syn::Item::Trait(t) if crate_visible(&t.vis, &module) => {
                for inner in &t.items {
                    if let syn::TraitItem::Fn(f) = inner {
                        let how = format!("{}::{}", t.ident, f.sig.ident);
                        add(key(&t.ident), how, collect(&mut |c| output(c, &f.sig)));
                    }
                }
            }
            syn::Item::Impl(i) if i.trait_.is_none() => {
                let syn::Type::Path(self_ty) = &*i.self_ty else { continue };
                let written: Vec<String> = self_ty.path.segments.iter().map(|s| s.ident.to_string()).collect();
                let Some(owner) = krate.resolve(&module, &written, false, None, 0).map(|t| krate.follow(t)) else {
                    continue;
                };
                let Some(Target::Internal(owner)) = owner.into_iter().last() else { continue };
                for inner in &i.items {
                    match inner {
                        syn::ImplItem::Fn(f) if crate_visible(&f.vis, &module) => {
                            let how = format!("{}::{}", written.join("::"), f.sig.ident);
                            add(owner.clone(), how, collect(&mut |c| output(c, &f.sig)));
                        }
                        syn::ImplItem::Const(k) if crate_visible(&k.vis, &module) => {
                            let how = format!("{}::{}", written.join("::"), k.ident);
                            add(owner.clone(), how, collect(&mut |c| c.visit_type(&k.ty)));
                        }
                        _ => {}
                    }
                }
            }
            syn::Item::Mod(m) if crate_visible(&m.vis, &module) => {
                if let Some((_, content)) = &m.content {
                    inline.push(([&module[..], &[m.ident.to_string()]].concat(), content));
                }
            }
            _ => {}
        }
    }
    for (module, content) in inline {
        surface(krate, module, content, out);
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

/// `src/`-relative, for messages.
fn shown_file(krate: &Crate, file: &Path) -> String {
    file.strip_prefix(&krate.src).unwrap_or(file).display().to_string()
}

/// Every violation of rules 1–3 in one file.
fn violations_in(krate: &Crate, file: &Path) -> Vec<String> {
    let map = LayerMap::of(krate);
    if *file == krate.src.join("main.rs") {
        return main_violations(krate, &map, file);
    }
    let Some((Some(module), _)) = krate.files.get(file) else { return Vec::new() };
    let Some(layer) = module.first().cloned() else { return Vec::new() };
    let at = format!("src/{}", shown_file(krate, file));
    let mut out = Vec::new();
    if !map.rows.contains_key(&layer) && layer != "lib" {
        out.push(format!("{at}: {layer} has no row in the layer map of src/lib.rs"));
    }
    for Found { chain, shown } in krate.names_in(file) {
        // Rule 1: what is written.
        match &chain[0] {
            Target::Internal(path) => {
                let to = &path[0];
                if !map.may(&layer, to) {
                    out.push(format!("{at}: {layer} may not use {to} ({shown})"));
                }
            }
            Target::External(path) => {
                if let Some(banned) = map.external_ban(&layer, path) {
                    out.push(format!("{at}: {layer} may not use {banned} ({shown})"));
                } else if let Some(name) = path.first().filter(|c| *c != "::" && !map.may_crate(&layer, c)) {
                    out.push(format!(
                        "{at}: {layer} may not use the crate {name}: not in its outside crates ({shown})"
                    ));
                }
            }
        }
        // Rule 2: what it re-exports.
        for hop in &chain[1..] {
            if let Some(banned) = map.never(&layer, hop) {
                out.push(format!(
                    "{at}: {layer} may not use {banned}, not even through a re-export ({shown} is {hop}, re-exported as {})",
                    chain[0]
                ));
            }
        }
    }
    // Rule 3: what the items it names hand to it, followed through the
    // types they hand out.
    let surfaces = krate.surfaces();
    let mut seen = BTreeSet::new();
    for Found { chain, shown } in krate.names_in(file) {
        let mut queue: Vec<(Vec<String>, String)> = chain
            .iter()
            .filter_map(|t| match t {
                Target::Internal(p) if p.first() != Some(&layer) => {
                    Some((p.clone(), format!("crate::{}", p.join("::"))))
                }
                _ => None,
            })
            .collect();
        while let Some((item, via)) = queue.pop() {
            if !seen.insert(item.clone()) {
                continue;
            }
            for Surface { how, found, .. } in surfaces.get(&item).into_iter().flatten() {
                for hop in &found.chain {
                    match hop {
                        Target::External(path) => {
                            if let Some(banned) = map.external_ban(&layer, path).filter(|b| held(b)) {
                                out.push(format!(
                                    "{at}: {layer} may not hold {banned}: it names {shown}, and {via} hands out {hop} ({how}: {})",
                                    found.shown
                                ));
                            }
                        }
                        Target::Internal(p) if p.first() != Some(&layer) => {
                            queue.push((p.clone(), format!("{via} → {how}")));
                        }
                        Target::Internal(_) => {}
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `src/main.rs`, the binary: its own crate root, so it names the library
/// as `twofold::…`. Its row in the map is `main.rs`: which of the library's
/// modules it may name, and which outside crates.
fn main_violations(krate: &Crate, map: &LayerMap, file: &Path) -> Vec<String> {
    struct Paths(Vec<Vec<String>>);
    impl Paths {
        fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
            match tree {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    self.tree(prefix, &p.tree);
                    prefix.pop();
                }
                syn::UseTree::Name(n) => self.0.push([prefix.clone(), vec![n.ident.to_string()]].concat()),
                syn::UseTree::Rename(r) => self.0.push([prefix.clone(), vec![r.ident.to_string()]].concat()),
                syn::UseTree::Glob(_) => self.0.push(prefix.clone()),
                syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.tree(prefix, t)),
            }
        }
    }
    impl<'ast> Visit<'ast> for Paths {
        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            self.tree(&mut Vec::new(), &item.tree);
        }
        fn visit_path(&mut self, path: &'ast syn::Path) {
            if path.segments.len() > 1 {
                self.0.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
            }
            syn::visit::visit_path(self, path);
        }
    }
    let Some((_, ast)) = krate.files.get(file) else { return Vec::new() };
    let mut paths = Paths(Vec::new());
    paths.visit_file(ast);
    let mut out = Vec::new();
    for path in paths.0 {
        let shown = path.join("::");
        match path.first().map(String::as_str) {
            Some("twofold") => {
                if let Some(to) = path.get(1).filter(|to| !map.may("main.rs", to)) {
                    out.push(format!("src/main.rs: main.rs may not use {to} ({shown})"));
                }
            }
            // Its own items, and types' associated items (`Cli::parse`).
            Some("self" | "super" | "crate") | None => {}
            Some(first) if first.starts_with(|c: char| c.is_ascii_uppercase()) => {}
            Some(first) => {
                if !map.may_crate("main.rs", first) {
                    out.push(format!("src/main.rs: main.rs may not use the crate {first} ({shown})"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What a layer must not even hold (through a type another layer hands it),
/// among what it must never name: the persistence model.
fn held(banned: &str) -> bool {
    banned == "entity" || banned.starts_with("entity::")
}

fn all_violations(krate: &Crate) -> Vec<String> {
    krate.files.keys().flat_map(|file| violations_in(krate, file)).collect()
}

/// The strongly connected components with more than one node (Tarjan).
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct Tarjan<'a, N> {
        edges: &'a BTreeMap<N, BTreeSet<N>>,
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        out: Vec<Vec<N>>,
    }
    impl<N: Ord + Clone> Tarjan<'_, N> {
        fn visit(&mut self, v: &N) {
            let i = self.index.len();
            self.index.insert(v.clone(), i);
            self.low.insert(v.clone(), i);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = w == *v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// An import graph: node → node → how the edge is written (first few).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn edge(graph: &mut Graph, from: String, to: String, why: String) {
    let whys = graph.entry(from).or_default().entry(to).or_default();
    if whys.len() < 3 && !whys.contains(&why) {
        whys.push(why);
    }
}

/// Top-level module → top-level module, when a file of one names the other.
fn module_graph(krate: &Crate) -> Graph {
    let mut graph = Graph::new();
    for (file, (module, _)) in &krate.files {
        let Some(from) = module.as_ref().and_then(|m| m.first()) else { continue };
        for Found { chain, shown } in krate.names_in(file) {
            if let Target::Internal(path) = &chain[0] {
                if path[0] != *from {
                    edge(
                        &mut graph,
                        from.clone(),
                        path[0].clone(),
                        format!("src/{}: {shown}", shown_file(krate, file)),
                    );
                }
            }
        }
    }
    graph
}

/// File → file, when a file names an item (or module) another file defines,
/// or re-exports: a name reached through `pub use` depends on every file
/// along the way (the file that re-exports it as well as the one that
/// defines it), so a circle through a re-export is a circle.
fn file_graph(krate: &Crate) -> Graph {
    let mut graph = Graph::new();
    for file in krate.files.keys() {
        let from = shown_file(krate, file);
        for Found { chain, shown } in krate.names_in(file) {
            let mut reached: Vec<&Path> = Vec::new();
            for hop in 1..=chain.len() {
                if let Some(to) = krate.file_of(&chain[..hop]) {
                    if to != file && !reached.contains(&to) {
                        reached.push(to);
                    }
                }
            }
            for to in reached {
                edge(&mut graph, from.clone(), shown_file(krate, to), shown.clone());
            }
        }
    }
    graph
}

/// Every cycle of `graph`, one paragraph per strongly connected component,
/// each edge inside it with how it is written.
fn describe_cycles(kind: &str, graph: &Graph) -> Vec<String> {
    let edges: BTreeMap<String, BTreeSet<String>> =
        graph.iter().map(|(from, tos)| (from.clone(), tos.keys().cloned().collect())).collect();
    cycles(&edges)
        .into_iter()
        .map(|component| {
            let mut text = format!("{kind} cycle among {}:", component.join(", "));
            for from in &component {
                for (to, whys) in &graph[from] {
                    if component.contains(to) {
                        text.push_str(&format!("\n    {from} -> {to}: {}", whys.join("; ")));
                    }
                }
            }
            text
        })
        .collect()
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            // Generated include!() fragments are not modules.
            if path.file_name().is_some_and(|n| n == "static") {
                continue;
            }
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

/// Every source file under `src/`: its path as shown in a failure
/// (relative to `src/`) and its text.
fn source_texts() -> Vec<(String, String)> {
    let src = src();
    sources(&src)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read source");
            (path.strip_prefix(&src).unwrap_or(&path).display().to_string(), text)
        })
        .collect()
}

/// The real crate with planted files added (paths relative to `src/`).
fn planted(files: &[(&str, &str)]) -> (Crate, Vec<PathBuf>) {
    let src = src();
    let mut krate = Crate::load(&src);
    let paths: Vec<PathBuf> = files.iter().map(|(path, _)| src.join(path)).collect();
    for ((_, text), path) in files.iter().zip(&paths) {
        krate.add(path.clone(), text);
    }
    (krate, paths)
}

fn planted_violations(files: &[(&str, &str)]) -> Vec<String> {
    let (krate, paths) = planted(files);
    paths.iter().flat_map(|p| violations_in(&krate, p)).collect()
}

#[test]
fn every_module_keeps_to_the_layer_map() {
    let found = all_violations(&Crate::load(&src()));
    assert!(found.is_empty(), "imports the layer map forbids:\n{}", found.join("\n"));
}

#[test]
fn every_top_level_module_has_a_place_in_the_map() {
    let krate = Crate::load(&src());
    let map = LayerMap::of(&krate);
    let lib = &krate.files[&src().join("lib.rs")].1;
    let missing: Vec<String> = top_level(lib).into_iter().filter(|m| !map.rows.contains_key(m)).collect();
    assert!(missing.is_empty(), "modules without a row in the layer map: {missing:?}");
    let stale: Vec<&String> = map.rows.keys().filter(|r| *r != "main.rs" && !top_level(lib).contains(*r)).collect();
    assert!(stale.is_empty(), "rows of the layer map naming no module: {stale:?}");
}

#[test]
fn the_layer_map_itself_has_no_cycle() {
    let krate = Crate::load(&src());
    let map = LayerMap::of(&krate);
    let layers: BTreeSet<&str> = map.rows.keys().map(String::as_str).collect();
    let edges: BTreeMap<&str, BTreeSet<&str>> = map
        .rows
        .iter()
        .filter(|(_, row)| row.may.is_some())
        .map(|(layer, row)| {
            let may = row.may.iter().flatten().map(String::as_str).filter(|m| layers.contains(m));
            (layer.as_str(), may.collect())
        })
        .collect();
    assert!(cycles(&edges).is_empty(), "the layer map has a cycle: {:?}", cycles(&edges));
}

#[test]
fn the_import_graph_has_no_cycle() {
    let krate = Crate::load(&src());
    let mut found = describe_cycles("module", &module_graph(&krate));
    found.extend(describe_cycles("file", &file_graph(&krate)));
    assert!(found.is_empty(), "import cycles ({}):\n{}", found.len(), found.join("\n"));
}

#[test]
fn a_planted_violation_is_caught_however_it_is_written() {
    let planted = r#"
        use crate::{query::ReadModel, projection::runtime::Projector};
        use super::super::db::Db;
        use entity :: read :: order_summary;
        fn f() {
            let _ = crate::app::start;
            metrics::counter!(crate::cli::run);
        }
    "#;
    let found = planted_violations(&[("graphql/planted.rs", planted)]);
    for expected in
        ["may not use projection", "may not use db", "may not use entity", "may not use app", "may not use cli"]
    {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
    assert!(!found.iter().any(|v| v.contains("may not use query")), "graphql may use query: {found:#?}");
    // `super::` that climbs out of a layer is caught too.
    let climbing = "use super::super::super::command::CommandService;";
    let found = planted_violations(&[("query/orders/deep.rs", climbing)]);
    assert!(found.iter().any(|v| v.contains("query may not use command")), "{found:#?}");
    // A clean file passes.
    assert!(planted_violations(&[("domain/clean.rs", "use super::DomainError;")]).is_empty());
}

/// The query side reaches the event log only through `lazy`, the one
/// module that folds: never the log's entity, never the projection's reader.
#[test]
fn a_planted_read_of_the_log_outside_lazy_is_caught() {
    let planted = r#"
        use entity::log::event;
        use crate::projection::reader::read_stream;
        fn f() { let _ = crate::lazy::MAX_FOLD; }
    "#;
    let found = planted_violations(&[("query/planted_log.rs", planted), ("graphql/planted_log.rs", planted)]);
    for expected in [
        "query may not use entity::log",
        "query may not use projection",
        "graphql may not use entity",
        "graphql may not use projection",
        "graphql may not use lazy",
    ] {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
    assert!(!found.iter().any(|v| v.contains("query may not use lazy")), "query folds through lazy: {found:#?}");
    // And `lazy` itself reads the log only through the projection's reader.
    let found = planted_violations(&[("lazy/planted.rs", "use entity::log::event::Model;")]);
    assert!(found.iter().any(|v| v.contains("lazy may not use entity::log")), "{found:#?}");
}

#[test]
fn a_planted_path_in_an_attribute_argument_is_caught() {
    let planted = r#"
        #[derive(Debug, clap::Args)]
        pub struct Planted {
            #[arg(long, default_value_t = crate::projection::rebuild::REPLAY_BATCH)]
            pub batch_size: u64,
            #[arg(long, value_parser = sea_orm::Value::from)]
            pub other: u64,
        }
    "#;
    let found = planted_violations(&[("args/planted.rs", planted)]);
    for expected in ["args may not use projection", "args may not use sea_orm"] {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
}

/// The resolved settings go to `app` and `cli` only (each layer is handed
/// its own part), and they name only the layers whose settings they hold.
#[test]
fn a_planted_use_of_the_settings_is_caught() {
    let found = planted_violations(&[("http/planted.rs", "fn f(_: &crate::settings::Settings) {}")]);
    assert!(found.iter().any(|v| v.contains("http may not use settings")), "{found:#?}");
    let found = planted_violations(&[("settings/planted.rs", "fn f(_: crate::command::CommandService) {}")]);
    assert!(found.iter().any(|v| v.contains("settings may not use command")), "{found:#?}");
}

#[test]
fn a_planted_alias_is_seen_through() {
    let planted = r#"
        use sea_orm as orm;
        use crate as root;
        fn f() -> Result<(), orm::DbErr> {
            let _ = root::projection::rebuild::REPLAY_BATCH;
            Ok(())
        }
        mod inner {
            use crate::export as ex;
            fn g() { ex::run(); }
        }
    "#;
    let found = planted_violations(&[("graphql/planted.rs", planted)]);
    for expected in [
        "graphql may not use sea_orm (use sea_orm as orm)",
        "graphql may not use sea_orm (orm::DbErr)",
        "graphql may not use projection (root::projection::rebuild::REPLAY_BATCH)",
        "graphql may not use export (ex::run)",
    ] {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
}

#[test]
fn a_planted_re_export_and_public_type_are_caught() {
    // `query` may read `entity::read`, but hands entity types to `graphql`
    // (which must never name `entity`) by a re-export and by public types.
    let query = r#"
        pub use entity::read::order_summary::Model as Leaked;
        pub struct Page { pub rows: Vec<entity::read::customer_view::Model>, hidden: entity::read::dead_letter::Model }
        pub struct Reader;
        impl Reader {
            pub fn page(&self) -> Page { todo!() }
            pub fn load(&self, _: entity::read::daily_sales::Model) -> Option<Leaked> { None }
            fn private(&self) -> entity::read::product_catalog::Model { todo!() }
        }
    "#;
    // `admin` does it through a public field of a public type.
    let admin = "pub struct State { pub row: entity::read::projection_checkpoint::Model }";
    // `graphql` names the re-exported type, also through a further
    // re-export in its own layer, and the types that hand entity out.
    let graphql = r#"
        pub(crate) use crate::query::planted_leak::Leaked as Renamed;
        fn f(_: Renamed, _: crate::query::planted_leak::Leaked) {}
        fn g(reader: &crate::query::planted_leak::Reader, state: crate::admin::planted_state::State) {
            let _ = (reader.page(), state);
        }
    "#;
    let found = planted_violations(&[
        ("query/planted_leak.rs", query),
        ("admin/planted_state.rs", admin),
        ("graphql/planted_user.rs", graphql),
    ]);
    for expected in [
        "graphql may not use entity, not even through a re-export (crate::query::planted_leak::Leaked is entity::read::order_summary::Model",
        "graphql may not use entity, not even through a re-export (Renamed is entity::read::order_summary::Model",
        "graphql may not hold entity: it names crate::query::planted_leak::Reader, and crate::query::planted_leak::Reader hands out entity::read::order_summary::Model (Reader::load",
        "and crate::query::planted_leak::Reader → Reader::page hands out entity::read::customer_view::Model (a field of Page",
        "graphql may not hold entity: it names crate::admin::planted_state::State, and crate::admin::planted_state::State hands out entity::read::projection_checkpoint::Model (a field of State",
    ] {
        assert!(found.iter().any(|v| v.contains(expected)), "missed '{expected}' in {found:#?}");
    }
    // Private fields and methods, and parameters, hand nothing out.
    for absent in ["dead_letter", "product_catalog", "daily_sales"] {
        assert!(!found.iter().any(|v| v.contains(absent)), "'{absent}' is not handed out: {found:#?}");
    }
    // `query` itself may name entity::read, and the re-export alone is not a violation of query's.
    assert!(!found.iter().any(|v| v.starts_with("src/query/")), "{found:#?}");
    // Internal hops along the arrows are fine: http may use admin, admin db.
    let http = "fn f(_: crate::admin::replicas::ReplicaSet) {}";
    assert!(planted_violations(&[("http/planted.rs", http)]).is_empty());
}

#[test]
fn a_planted_cycle_is_caught_between_files_and_between_modules() {
    let src = Path::new("/planted/src");
    let files = [
        ("lib.rs", "pub mod domain; pub mod token;"),
        // Files: mod.rs names its child, the child names its parent.
        ("domain/mod.rs", "pub mod order; pub mod customer; pub use order::Order; pub struct Id;"),
        ("domain/order.rs", "use super::Id; pub struct Order(pub Id);"),
        // Files, through a re-export: customer.rs → token/mod.rs (and → token/position.rs) → customer.rs.
        ("domain/customer.rs", "pub struct Customer(pub crate::token::Position);"),
        ("token/mod.rs", "mod position; pub use self::position::Position;"),
        ("token/position.rs", "use crate::domain::customer as c; pub struct Position; fn f(_: c::Customer) {}"),
    ];
    let krate = Crate::from_sources(src, files.iter().map(|(p, t)| (src.join(p), t.to_string())).collect());
    let file_cycles = describe_cycles("file", &file_graph(&krate));
    assert_eq!(file_cycles.len(), 2, "{file_cycles:#?}");
    for expected in [
        "file cycle among domain/mod.rs, domain/order.rs:",
        "domain/order.rs -> domain/mod.rs: use super::Id",
        "domain/mod.rs -> domain/order.rs: use order::Order",
        "file cycle among domain/customer.rs, token/mod.rs, token/position.rs:",
        "domain/customer.rs -> token/position.rs: crate::token::Position",
        "domain/customer.rs -> token/mod.rs: crate::token::Position",
        "token/position.rs -> domain/customer.rs: use crate::domain::customer as c; c::Customer",
    ] {
        assert!(file_cycles.iter().any(|c| c.contains(expected)), "missed '{expected}' in {file_cycles:#?}");
    }
    let module_cycles = describe_cycles("module", &module_graph(&krate));
    assert_eq!(module_cycles.len(), 1, "{module_cycles:#?}");
    assert!(module_cycles[0].starts_with("module cycle among domain, token:"), "{module_cycles:#?}");
    // An acyclic crate has none.
    let acyclic = Crate::from_sources(
        src,
        vec![
            (src.join("lib.rs"), "pub mod domain;".to_owned()),
            (src.join("domain/mod.rs"), "mod order; pub use order::Order; pub struct Id;".to_owned()),
            (src.join("domain/order.rs"), "pub struct Order;".to_owned()),
        ],
    );
    assert!(describe_cycles("file", &file_graph(&acyclic)).is_empty());
}

/// `unreachable!(` outside `#[cfg(test)]` code: each is a panic the
/// `unwrap` lint does not see. Returns each as `file: fn name`.
fn unreachable_outside_tests(file: &str, text: &str) -> Vec<String> {
    outside_tests(file, text, &["unreachable"], true)
}

/// `DbErr::Custom` outside test code: a database error that carries a
/// message of ours hides its real cause (issue 34: errors are typed enums
/// that keep their source).
fn db_err_custom_outside_tests(file: &str, text: &str) -> Vec<String> {
    outside_tests(file, text, &["DbErr", "Custom"], false)
}

/// Where `needle` (a path, `a::b`, or with `bang` a macro, `a!`) is used
/// outside `#[cfg(test)]` modules and `#[test]` functions, in code or in a
/// macro's tokens: `file: fn <where>` for each use.
fn outside_tests(file: &str, text: &str, needle: &'static [&'static str], bang: bool) -> Vec<String> {
    struct Finder<'f> {
        file: &'f str,
        within: String,
        found: Vec<String>,
        needle: &'static [&'static str],
        bang: bool,
    }
    fn is_test(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("test")
                || (a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
        })
    }
    impl Finder<'_> {
        fn tokens(&mut self, tokens: TokenStream) {
            let tokens: Vec<TokenTree> = tokens.into_iter().collect();
            for (i, t) in tokens.iter().enumerate() {
                match t {
                    TokenTree::Ident(id)
                        if self.needle.last().is_some_and(|last| id == last) && self.matches_at(&tokens, i) =>
                    {
                        self.found.push(format!("{}: {}", self.file, self.within));
                    }
                    TokenTree::Group(g) => self.tokens(g.stream()),
                    _ => {}
                }
            }
        }
    }
    impl Finder<'_> {
        /// Whether the needle's last ident at `i` is preceded by the rest of
        /// it (`a :: b`) and, for a macro, followed by `!`.
        fn matches_at(&self, tokens: &[TokenTree], i: usize) -> bool {
            let bang_ok = !self.bang || matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
            let mut at = i;
            for before in self.needle.iter().rev().skip(1) {
                let colons = at >= 3
                    && matches!(&tokens[at - 1], TokenTree::Punct(p) if p.as_char() == ':')
                    && matches!(&tokens[at - 2], TokenTree::Punct(p) if p.as_char() == ':');
                if !colons || !matches!(&tokens[at - 3], TokenTree::Ident(id) if id == before) {
                    return false;
                }
                at -= 3;
            }
            bang_ok
        }
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if !self.bang && names.ends_with(&self.needle.iter().map(|n| n.to_string()).collect::<Vec<_>>()) {
                self.found.push(format!("{}: {}", self.file, self.within));
            }
            syn::visit::visit_path(self, path);
        }
        fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
            if !is_test(&item.attrs) {
                syn::visit::visit_item_mod(self, item);
            }
        }
        fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
            if !is_test(&item.attrs) {
                self.within = format!("fn {}", item.sig.ident);
                syn::visit::visit_item_fn(self, item);
            }
        }
        fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
            if !is_test(&item.attrs) {
                self.within = format!("fn {}", item.sig.ident);
                syn::visit::visit_impl_item_fn(self, item);
            }
        }
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            if self.bang && mac.path.segments.last().is_some_and(|s| self.needle.last().is_some_and(|n| s.ident == n)) {
                self.found.push(format!("{}: {}", self.file, self.within));
            }
            self.tokens(mac.tokens.clone());
        }
    }
    let ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
    let mut finder = Finder { file, within: String::from("an item"), found: Vec::new(), needle, bang };
    finder.visit_file(&ast);
    finder.found
}

#[test]
fn no_unreachable_outside_tests() {
    let found: Vec<String> =
        source_texts().iter().flat_map(|(shown, text)| unreachable_outside_tests(shown, text)).collect();
    assert!(
        found.is_empty(),
        "unreachable!() outside #[cfg(test)] (make it impossible by type, or handle it):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_planted_unreachable_is_caught_outside_tests_only() {
    let planted = r#"
        pub fn open() -> u8 { "1".parse().unwrap_or_else(|_| unreachable!("a digit")) }
        pub fn nested() { println!("{}", match 1 { 1 => 1, _ => std::unreachable!() }); }
        #[cfg(test)]
        mod tests {
            fn f() { unreachable!() }
        }
        #[test]
        fn g() { unreachable!() }
    "#;
    let found = unreachable_outside_tests("planted.rs", planted);
    assert_eq!(found, ["planted.rs: fn open", "planted.rs: fn nested"], "{found:#?}");
}

#[test]
fn the_map_is_read_from_lib_rs_and_a_row_the_code_breaks_fails() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    // The real map: `metrics` may use `catalog`, and does.
    let row = lib.lines().find(|l| l.starts_with("//! | [`metrics`]")).expect("a metrics row");
    let narrowed = row.replacen("| catalog |", "| — |", 1);
    assert_ne!(row, narrowed, "the metrics row changed shape: {row}");
    let (krate, _) = planted(&[("lib.rs", lib.replacen(row, &narrowed, 1).as_str())]);
    let found = all_violations(&krate);
    assert!(found.iter().any(|v| v.contains("metrics may not use catalog")), "{found:#?}");
    // A cell the parser cannot read is an error, not a row skipped.
    let prose = lib.replacen(row, &row.replacen("| catalog |", "| catalog and friends |", 1), 1);
    let unreadable = std::panic::catch_unwind(|| LayerMap::of(&planted(&[("lib.rs", prose.as_str())]).0));
    assert!(unreadable.is_err(), "a prose cell was accepted");
}

#[test]
fn a_planted_crate_outside_a_layers_list_is_caught() {
    let found = planted_violations(&[(
        "domain/planted.rs",
        "use fastrand::u8 as roll; pub fn f() -> u8 { roll(..) + sea_orm::Value::Bool(None).as_ref_bool().map_or(0, |_| 1) }",
    )]);
    assert!(
        found.iter().any(|v| v.contains("domain may not use the crate fastrand: not in its outside crates")),
        "{found:#?}"
    );
    assert!(found.iter().any(|v| v.contains("domain may not use sea_orm")), "{found:#?}");
    // What the row allows passes.
    assert!(planted_violations(&[("domain/planted.rs", "pub fn f() -> uuid::Uuid { uuid::Uuid::nil() }")]).is_empty());
}

#[test]
fn a_planted_main_rs_is_checked_against_its_row() {
    let main = r#"
        use twofold::args::Cli;
        fn main() {
            let _ = twofold::db::Db::connect;
            let _ = fastrand::u8(..);
            let _ = Cli::parse;
        }
    "#;
    let found = planted_violations(&[("main.rs", main)]);
    assert!(found.iter().any(|v| v.contains("main.rs may not use db (twofold::db::Db::connect)")), "{found:#?}");
    assert!(found.iter().any(|v| v.contains("main.rs may not use the crate fastrand")), "{found:#?}");
    assert!(!found.iter().any(|v| v.contains("args")), "{found:#?}");
    // The real main.rs keeps to it.
    let real = std::fs::read_to_string(src().join("main.rs")).expect("main.rs");
    assert!(planted_violations(&[("main.rs", real.as_str())]).is_empty());
}

#[test]
fn a_planted_circle_through_a_re_export_is_caught() {
    // state.rs names ws/mod.rs's re-export of limits.rs; ws/mod.rs names state.rs.
    let src = Path::new("/planted/src");
    let files = [
        ("lib.rs", "pub mod http;"),
        ("http/mod.rs", "mod state; pub mod ws;"),
        ("http/state.rs", "use super::ws::Limits; pub struct AppState(pub Limits); pub fn id() {}"),
        (
            "http/ws/mod.rs",
            "mod limits; pub use limits::Limits; use super::state::{id, AppState}; fn f(_: AppState) { id() }",
        ),
        ("http/ws/limits.rs", "pub struct Limits;"),
    ];
    let krate = Crate::from_sources(src, files.iter().map(|(p, t)| (src.join(p), t.to_string())).collect());
    let found = describe_cycles("file", &file_graph(&krate));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("file cycle among http/state.rs, http/ws/mod.rs:"), "{found:#?}");
}

#[test]
fn no_db_err_custom_outside_tests() {
    let found: Vec<String> =
        source_texts().iter().flat_map(|(shown, text)| db_err_custom_outside_tests(shown, text)).collect();
    assert!(
        found.is_empty(),
        "DbErr::Custom outside #[cfg(test)] (give the failure a typed error that keeps its source):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_planted_db_err_custom_is_caught_outside_tests_only() {
    let planted = r#"
        pub fn carried() -> sea_orm::DbErr { sea_orm::DbErr::Custom("ours".into()) }
        pub fn in_a_macro() { let _e = format!("{:?}", DbErr::Custom(String::new())); }
        pub fn other() -> DbErr { DbErr::RecordNotFound("x".into()) }
        #[cfg(test)]
        mod tests {
            fn f() -> DbErr { DbErr::Custom("fine in a test".into()) }
        }
    "#;
    let found = db_err_custom_outside_tests("planted.rs", planted);
    assert_eq!(found, ["planted.rs: fn carried", "planted.rs: fn in_a_macro"], "{found:#?}");
}

/// No file in `src/` is over 700 lines (issue 34): a longer one does more
/// than one job, and the layer map's rows stop saying what it holds.
#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = source_texts()
        .into_iter()
        .filter_map(|(shown, text)| {
            let lines = text.lines().count();
            (lines > 700).then(|| format!("{shown} ({lines} lines)"))
        })
        .collect();
    assert!(long.is_empty(), "split these by job: {long:?}");
}
