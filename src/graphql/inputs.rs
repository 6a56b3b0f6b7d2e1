//! Input coercion the validator leaves to execution, done before it.
//!
//! async-graphql's validation accepts any integer where `Int` is expected
//! (its check is "fits in i64") and only finds out at execution, when an
//! argument is parsed into an `i32`, that the value was out of range. By
//! then the request counts as valid, so the error is an execution error
//! without a code: a client's mistake that looks like a server fault. The
//! GraphQL spec makes input coercion part of the request: a bad variable
//! value is a request error, answered before anything executes.
//!
//! This walk visits every argument of the selected operation (literals and
//! variables alike, through fragments, each fragment once) with the
//! argument's declared type from the schema's registry, and refuses an
//! `Int` outside the 32-bit range with a `VALIDATION` error that names the
//! argument path. Everything else stays with async-graphql's validator,
//! which already checks it.
use std::collections::HashSet;

use async_graphql::parser::types::{BaseType, DocumentOperations, ExecutableDocument, Selection, SelectionSet, Type};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{ErrorExtensionValues, Name, Pos, ServerError, Value, Variables};

/// Refuses an out-of-range `Int` anywhere in the arguments of the
/// operation `operation_name` selects. An operation that cannot be
/// selected, an unknown field or an unknown variable is left to validation.
pub fn check_int_ranges(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<(), ServerError> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return Ok(()),
        },
        (DocumentOperations::Multiple(_), None) => return Ok(()),
    };
    let root = match operation.node.ty {
        async_graphql::parser::types::OperationType::Query => Some(registry.query_type.as_str()),
        async_graphql::parser::types::OperationType::Mutation => registry.mutation_type.as_deref(),
        async_graphql::parser::types::OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let Some(root) = root else { return Ok(()) };
    let mut walk = Walk { registry, doc, variables, fragments_seen: HashSet::new() };
    walk.selection_set(root, &operation.node.selection_set.node)
}

struct Walk<'a> {
    registry: &'a Registry,
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    fragments_seen: HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, type_name: &str, set: &'a SelectionSet) -> Result<(), ServerError> {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let Some(meta) = self.registry.types.get(type_name).and_then(|t| t.field_by_name(&field.name.node))
                    else {
                        continue;
                    };
                    for (name, value) in &field.arguments {
                        let Some(arg) = meta.args.get(name.node.as_str()) else { continue };
                        let Ok(value) =
                            value.node.clone().into_const_with(|var| self.variables.get(&var).cloned().ok_or(()))
                        else {
                            continue;
                        };
                        let Some(ty) = Type::new(&arg.ty) else { continue };
                        if let Some(problem) = self.value(&ty, &value, name.node.as_str()) {
                            return Err(refused(&field.name.node, &problem, name.pos));
                        }
                    }
                    let inner = named_type(&meta.ty);
                    self.selection_set(inner, &field.selection_set.node)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let Some((key, fragment)) = self.doc.fragments.get_key_value(name) else { continue };
                    if self.fragments_seen.insert(key.as_str()) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.selection_set(on, &fragment.node.selection_set.node)?;
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline.node.type_condition.as_ref().map_or(type_name, |c| c.node.on.node.as_str());
                    self.selection_set(on, &inline.node.selection_set.node)?;
                }
            }
        }
        Ok(())
    }

    /// The first out-of-range `Int` in `value` (of type `ty`), as a
    /// message naming its path; `None` when there is none.
    fn value(&self, ty: &Type, value: &Value, path: &str) -> Option<String> {
        match (&ty.base, value) {
            (_, Value::Null) => None,
            (BaseType::List(item), Value::List(items)) => {
                items.iter().enumerate().find_map(|(i, v)| self.value(item, v, &format!("{path}[{i}]")))
            }
            // A single value where a list is expected coerces to a one-item list.
            (BaseType::List(item), v) => self.value(item, v, path),
            (BaseType::Named(name), v) => match self.registry.types.get(name.as_str())? {
                MetaType::Scalar { name, .. } if name == "Int" => match v {
                    Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_err()) => Some(format!(
                        "{path} is {n}, but Int holds only -2147483648 to 2147483647 (use a smaller number)"
                    )),
                    _ => None,
                },
                MetaType::InputObject { input_fields, .. } => {
                    let Value::Object(fields) = v else { return None };
                    input_fields.values().find_map(|f| {
                        let given = fields.get(f.name.as_str())?;
                        self.value(&Type::new(&f.ty)?, given, &format!("{path}.{}", f.name))
                    })
                }
                _ => None,
            },
        }
    }
}

/// `[Order!]!` → `Order`.
fn named_type(ty: &str) -> &str {
    ty.trim_matches(|c| c == '[' || c == ']' || c == '!')
}

fn refused(field: &Name, problem: &str, pos: Pos) -> ServerError {
    let mut error = ServerError::new(format!("invalid argument of {field}: {problem}"), Some(pos));
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "VALIDATION");
    error.extensions = Some(extensions);
    error
}
