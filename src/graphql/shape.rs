//! Bounds on a document's shape, checked before validation and execution.
//!
//! async-graphql's own depth, complexity and directive checks walk fragment
//! spreads by expanding them, so a few hundred bytes of nested fragments
//! (`{ ...F0 } fragment F0 on Query { ...F1 ...F1 } …`) make them, and the
//! validation and execution after them, do 2^N work. This guard measures
//! the document with each fragment summarized once (memoized), so its own
//! cost is linear in the document's size, and refuses any document whose
//! *expanded* shape passes a limit:
//!
//! - fields after expanding every fragment (`__typename` included);
//! - fragment spreads after expansion;
//! - aliases after expansion (each alias can re-run a resolver);
//! - depth, with introspection (`__schema`, `__type`) measured by its own,
//!   more generous rule: GraphiQL's introspection query nests `ofType`
//!   eight levels deep, which is not what a depth limit is meant to stop;
//! - directives on one selection.
//!
//! It also refuses NUL characters anywhere in the request (query text or
//! variables): PostgreSQL cannot store them in text, so they would
//! otherwise surface as internal errors deep in a command or query.
//!
//! And it coerces `Int` arguments up front ([`super::inputs`]).
//!
//! Only after these checks pass does async-graphql see the document (the
//! parsed document is handed over, so it is parsed once). A document that
//! does not parse is refused here too, in one line ([`super::syntax`]).
use std::collections::HashMap;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned, Request, ServerError, ServerResult, Value};

/// The limits on a document's expanded shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Fields after expanding fragments.
    pub max_fields: u64,
    /// Fragment spreads after expanding fragments.
    pub max_spreads: u64,
    /// Aliases after expanding fragments.
    pub max_aliases: u64,
    /// Nesting of fields outside introspection.
    pub max_depth: u64,
    /// Nesting of fields inside `__schema` / `__type`.
    pub max_introspection_depth: u64,
    /// Directives on one field, spread or inline fragment.
    pub max_directives: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        Self {
            max_fields: crate::defaults::MAX_FIELDS,
            max_spreads: 1_000,
            max_aliases: crate::defaults::MAX_ALIASES,
            max_depth: crate::defaults::MAX_DEPTH,
            max_introspection_depth: 24,
            max_directives: 8,
        }
    }
}

/// What one selection set (or fragment) expands to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Shape {
    fields: u64,
    spreads: u64,
    aliases: u64,
    depth: u64,
    introspection_depth: u64,
}

impl Shape {
    fn add(&mut self, other: Shape) {
        self.fields = self.fields.saturating_add(other.fields);
        self.spreads = self.spreads.saturating_add(other.spreads);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub message: String,
    pub pos: Option<Pos>,
}

struct Measure<'a> {
    doc: &'a ExecutableDocument,
    limits: ShapeLimits,
    /// Fragments already summarized (`None`: being summarized, i.e. a cycle).
    fragments: HashMap<&'a str, Option<Shape>>,
}

impl<'a> Measure<'a> {
    fn set(&mut self, set: &'a Positioned<SelectionSet>) -> Result<Shape, ShapeError> {
        let mut shape = Shape::default();
        for item in &set.node.items {
            let directives = item.node.directives();
            let directive_args = directives.iter().flat_map(|d| d.node.arguments.iter());
            let field_args = match &item.node {
                Selection::Field(field) => Some(field.node.arguments.iter()),
                _ => None,
            };
            if directive_args.chain(field_args.into_iter().flatten()).any(|(_, value)| literal_has_nul(&value.node)) {
                return Err(nul_error(item.pos));
            }
            if directives.len() > self.limits.max_directives {
                return Err(ShapeError {
                    message: format!(
                        "a selection carries {} directives; at most {} are allowed",
                        directives.len(),
                        self.limits.max_directives
                    ),
                    pos: Some(item.pos),
                });
            }
            match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let child = self.set(&field.node.selection_set)?;
                    let mut own =
                        Shape { fields: 1, aliases: u64::from(field.node.alias.is_some()), ..Shape::default() };
                    own.fields = own.fields.saturating_add(child.fields);
                    own.spreads = child.spreads;
                    own.aliases = own.aliases.saturating_add(child.aliases);
                    // `depth`: the longest path without an introspection
                    // field; `introspection_depth`: the longest path with one.
                    if name == "__schema" || name == "__type" {
                        own.introspection_depth = 1 + child.depth.max(child.introspection_depth);
                    } else {
                        own.depth = 1 + child.depth;
                        own.introspection_depth =
                            if child.introspection_depth > 0 { 1 + child.introspection_depth } else { 0 };
                    }
                    shape.add(own);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let mut fragment = self.fragment(name, spread.pos)?;
                    fragment.spreads = fragment.spreads.saturating_add(1);
                    shape.add(fragment);
                }
                Selection::InlineFragment(inline) => {
                    let inner = self.set(&inline.node.selection_set)?;
                    shape.add(inner);
                }
            }
            self.check_counts(&shape, item.pos)?;
        }
        Ok(shape)
    }

    fn fragment(&mut self, name: &str, pos: Pos) -> Result<Shape, ShapeError> {
        if let Some(known) = self.fragments.get(name) {
            return known.ok_or_else(|| ShapeError {
                message: format!("fragment {name} spreads itself (a cycle)"),
                pos: Some(pos),
            });
        }
        // An unknown fragment is validation's business; it expands to nothing here.
        let Some((key, definition)) = self.doc.fragments.get_key_value(name) else {
            return Ok(Shape::default());
        };
        self.fragments.insert(key.as_str(), None);
        let shape = self.set(&definition.node.selection_set)?;
        self.fragments.insert(key.as_str(), Some(shape));
        Ok(shape)
    }

    /// Counts are checked as they grow, so a huge document stops early.
    fn check_counts(&self, shape: &Shape, pos: Pos) -> Result<(), ShapeError> {
        let l = &self.limits;
        let refuse = |message: String| Err(ShapeError { message, pos: Some(pos) });
        if shape.fields > l.max_fields {
            return refuse(format!(
                "the document selects more than {} fields once its fragments are expanded",
                l.max_fields
            ));
        }
        if shape.spreads > l.max_spreads {
            return refuse(format!("the document spreads fragments more than {} times once expanded", l.max_spreads));
        }
        if shape.aliases > l.max_aliases {
            return refuse(format!(
                "the document uses more than {} aliases once its fragments are expanded",
                l.max_aliases
            ));
        }
        Ok(())
    }

    /// Depth is checked per operation: only there is it known which
    /// nesting is introspection's.
    fn check_depth(&self, shape: &Shape, pos: Pos) -> Result<(), ShapeError> {
        let l = &self.limits;
        let refuse = |message: String| Err(ShapeError { message, pos: Some(pos) });
        if shape.depth > l.max_depth {
            return refuse(format!("the document is nested too deep: fields nest more than {} levels", l.max_depth));
        }
        if shape.introspection_depth > l.max_introspection_depth {
            return refuse(format!(
                "the introspection query is nested too deep: more than {} levels",
                l.max_introspection_depth
            ));
        }
        Ok(())
    }
}

/// Measures every operation of `doc` (and the fragments they use) against `limits`.
pub fn check_document(doc: &ExecutableDocument, limits: ShapeLimits) -> Result<(), ShapeError> {
    let mut measure = Measure { doc, limits, fragments: HashMap::new() };
    let operations: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    for op in operations {
        if op.node.variable_definitions.iter().any(|v| v.node.default_value.as_ref().is_some_and(|d| has_nul(&d.node)))
        {
            return Err(nul_error(op.pos));
        }
        if op.node.directives.len() > limits.max_directives {
            return Err(ShapeError {
                message: format!("an operation carries more than {} directives", limits.max_directives),
                pos: Some(op.pos),
            });
        }
        let shape = measure.set(&op.node.selection_set)?;
        measure.check_depth(&shape, op.pos)?;
    }
    // Fragments no operation uses are still measured: they are parsed and
    // validated too, and an unused cycle must not slip through.
    for (name, definition) in &doc.fragments {
        measure.fragment(name.as_str(), definition.pos)?;
    }
    Ok(())
}

/// True when a literal in the document holds a NUL character (the parser
/// turns `"\u0000"` into one).
fn literal_has_nul(value: &async_graphql_value::Value) -> bool {
    use async_graphql_value::Value as Literal;
    match value {
        Literal::String(s) => s.contains('\0'),
        Literal::List(items) => items.iter().any(literal_has_nul),
        Literal::Object(map) => map.iter().any(|(k, v)| k.as_str().contains('\0') || literal_has_nul(v)),
        _ => false,
    }
}

fn nul_error(pos: Pos) -> ShapeError {
    ShapeError { message: "strings must not contain the NUL character (U+0000)".into(), pos: Some(pos) }
}

/// True when `value` holds a NUL character in any string or object key.
pub fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::List(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.as_str().contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// No NUL character anywhere in the request.
fn check_nul(request: &Request) -> ServerResult<()> {
    if request.query.contains('\0')
        || request.variables.iter().any(|(name, value)| name.contains('\0') || has_nul(value))
    {
        return Err(ServerError::new("strings must not contain the NUL character (U+0000)", None));
    }
    Ok(())
}

/// The request-level checks of a document that passed validation before:
/// NUL, `Int` ranges (and input fields) of arguments, and every variable
/// against its declared type. (The
/// guard makes them for documents seen for the first time.)
pub fn check_request(
    registry: &async_graphql::registry::Registry,
    document: &ExecutableDocument,
    request: &Request,
) -> ServerResult<()> {
    check_nul(request)?;
    let operation_name = request.operation_name.as_deref();
    super::inputs::check_arguments(registry, document, operation_name, &request.variables)?;
    super::inputs::check_variables(registry, document, operation_name, &request.variables)
}

/// The extension that applies [`check_document`] and the NUL rule to every
/// request, over HTTP and WebSocket alike, before async-graphql parses it,
/// and checks the request's values against the document's declared types
/// ([`super::inputs`]) once it is parsed.
///
/// A document that passes validation is remembered ([`super::documents`]);
/// the next time it runs on a twin schema without extensions, and
/// [`check_request`] makes the request-level checks before it runs.
pub struct DocumentGuard {
    pub limits: ShapeLimits,
    /// Where documents that pass validation are remembered.
    pub documents: Option<std::sync::Arc<super::documents::Documents>>,
}

impl ExtensionFactory for DocumentGuard {
    fn create(&self) -> std::sync::Arc<dyn Extension> {
        std::sync::Arc::new(DocumentGuardExtension {
            limits: self.limits,
            documents: self.documents.clone(),
            seen: std::sync::Mutex::new(None),
        })
    }
}

/// Validates a request without executing it (trusted documents at start).
#[derive(Debug, Clone, Copy)]
pub struct ValidateOnly;

struct DocumentGuardExtension {
    limits: ShapeLimits,
    documents: Option<std::sync::Arc<super::documents::Documents>>,
    /// This request's operation name and cache key, and its parsed document
    /// once parsed (to remember it if it validates).
    seen: std::sync::Mutex<Option<Seen>>,
}

struct Seen {
    operation_name: Option<String>,
    key: String,
    document: Option<ExecutableDocument>,
}

impl DocumentGuardExtension {
    fn seen(&self) -> std::sync::MutexGuard<'_, Option<Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Extension for DocumentGuardExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(documents) = &self.documents {
            documents.set_schema_env(ctx.schema_env);
        }
        check_nul(&request)?;
        *self.seen() = Some(Seen {
            operation_name: request.operation_name.clone(),
            key: super::documents::cache_key(&request.query, request.operation_name.as_deref()),
            document: None,
        });
        // A document that does not parse is answered here, in one line
        // ([`super::syntax`]), rather than with async-graphql's parser art.
        let document = async_graphql::parser::parse_query(&request.query)
            .map_err(|error| super::syntax::parse_error(&request.query, &error))?;
        check_document(&document, self.limits).map_err(|e| ServerError::new(e.message, e.pos))?;
        request.set_parsed_query(document);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if ctx.data_opt::<ValidateOnly>().is_none() {
            let operation_name = self.seen().as_ref().and_then(|s| s.operation_name.clone());
            let registry = &ctx.schema_env.registry;
            super::inputs::check_arguments(registry, &document, operation_name.as_deref(), variables)?;
            super::inputs::check_variables(registry, &document, operation_name.as_deref(), variables)?;
        }
        if self.documents.is_some() {
            if let Some(seen) = self.seen().as_mut() {
                seen.document = Some(document.clone());
            }
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            errors.iter_mut().for_each(explain_scalar);
            errors
        });
        if let (Ok(_), Some(documents)) = (&result, &self.documents) {
            if let Some(Seen { key, document: Some(document), .. }) = self.seen().take() {
                documents.remember(key, document);
            }
        }
        result
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: async_graphql::extensions::NextExecute<'_>,
    ) -> async_graphql::Response {
        if ctx.data_opt::<ValidateOnly>().is_some() {
            return async_graphql::Response::new(Value::Null);
        }
        next.run(ctx, operation_name).await
    }
}

/// What a value of each custom scalar looks like, for validation errors
/// that would otherwise say only `expected type "Token"`.
const SCALAR_SHAPES: &[(&str, &str)] = &[
    (
        "Token",
        "a token is the string a mutation returned as its `token`, two whole numbers joined by a dot \
         such as \"1234.56\"; pass it back exactly as returned",
    ),
    ("BigInt", "a BigInt is a string of decimal digits such as \"6442450944\""),
    ("NaiveDate", "a date is a string \"YYYY-MM-DD\" such as \"2026-12-04\""),
];

/// Appends what a value of the expected scalar looks like to a validation
/// error about a literal of the wrong shape.
fn explain_scalar(error: &mut ServerError) {
    for (scalar, shape) in SCALAR_SHAPES {
        if error.message.ends_with(&format!("expected type \"{scalar}\"")) {
            error.message.push_str(": ");
            error.message.push_str(shape);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str) -> Result<(), ShapeError> {
        check_document(&async_graphql::parser::parse_query(query).expect("parses"), ShapeLimits::default())
    }

    fn bomb(levels: usize) -> String {
        let mut q = String::from("{ ...F0 }");
        for i in 0..levels {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
        }
        q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
        q
    }

    #[test]
    fn a_fragment_bomb_is_refused_in_linear_time() {
        let started = std::time::Instant::now();
        let err = check(&bomb(60)).expect_err("2^60 fields");
        assert!(err.message.contains("fields") || err.message.contains("spreads"), "{}", err.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_small_fan_out_passes() {
        check(&bomb(5)).expect("32 fields");
    }

    #[test]
    fn the_fragment_count_is_bounded_after_expansion() {
        // 2^11 spreads but only 2^10 fields: the spread limit alone refuses it.
        let err = check(&bomb(10)).expect_err("2046 spreads");
        assert!(err.message.contains("spreads"), "{}", err.message);
    }

    #[test]
    fn aliases_are_counted_after_expansion() {
        let aliases: String = (0..60).map(|i| format!("a{i}: __typename ")).collect();
        let q = format!("{{ ...A ...A }} fragment A on Query {{ {aliases} }}");
        assert!(check(&q).expect_err("120 aliases").message.contains("aliases"));
    }

    #[test]
    fn cycles_are_refused_not_followed() {
        assert!(check("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
            .expect_err("cycle")
            .message
            .contains("cycle"));
        assert!(check("{ __typename } fragment A on Query { ...A }").is_err(), "an unused cycle too");
    }

    #[test]
    fn introspection_has_its_own_depth() {
        let mut of_type = String::from("name");
        for _ in 0..10 {
            of_type = format!("kind ofType {{ {of_type} }}");
        }
        let q = format!("{{ __schema {{ types {{ fields {{ type {{ {of_type} }} }} }} }} }}");
        check(&q).expect("introspection 14 deep passes");
        let mut deep = String::from("__typename");
        for _ in 0..13 {
            deep = format!("orders {{ {deep} }}");
        }
        assert!(check(&format!("{{ {deep} }}")).expect_err("too deep").message.contains("nested too deep"));
    }

    #[test]
    fn nul_in_a_literal_is_refused() {
        assert!(check(r#"{ products(search: "a\u0000") { edges { cursor } } }"#)
            .expect_err("NUL")
            .message
            .contains("NUL"));
        assert!(check(r#"query($s: String = "\u0000") { __typename }"#).is_err());
        check(r#"{ products(search: "tea") { edges { cursor } } }"#).expect("no NUL");
    }

    #[test]
    fn nul_is_found_anywhere_in_variables() {
        let v = Value::from_json(serde_json::json!({ "a": [1, { "b": "x\u{0}" }] })).expect("value");
        assert!(has_nul(&v));
        assert!(!has_nul(&Value::from_json(serde_json::json!({ "a": "ok" })).expect("value")));
    }
}
