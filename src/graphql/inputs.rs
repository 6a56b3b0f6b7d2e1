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

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet, Type,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{ErrorExtensionValues, Name, Pos, Positioned, ServerError, Value, Variables};

/// Refuses an out-of-range `Int` anywhere in the arguments of the
/// operation `operation_name` selects. An operation that cannot be
/// selected, an unknown field or an unknown variable is left to validation.
pub fn check_int_ranges(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<(), ServerError> {
    let Some(operation) = selected_operation(doc, operation_name) else { return Ok(()) };
    let root = match operation.node.ty {
        async_graphql::parser::types::OperationType::Query => Some(registry.query_type.as_str()),
        async_graphql::parser::types::OperationType::Mutation => registry.mutation_type.as_deref(),
        async_graphql::parser::types::OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let Some(root) = root else { return Ok(()) };
    let mut walk = Walk { registry, doc, variables, fragments_seen: HashSet::new() };
    walk.selection_set(root, &operation.node.selection_set.node)
}

/// The operation a request runs: the one named, or the only one (a single
/// named operation parses as one of "several"). `None` when it cannot be
/// chosen; execution then says why.
pub fn selected_operation<'a>(
    doc: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
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

/// Checks every variable of the selected operation against its declared
/// type: present when required, of the right shape, each scalar valid for
/// its type (`Int` in 32 bits), each enum value one of the enum's, no
/// unknown input-object field. async-graphql checks variable values only
/// where they meet an argument, during its full validation; a document
/// served from the validated cache skips that, and a missing value was
/// only found at execution, without a code. So the check is here, for
/// every request, before anything runs.
pub fn check_variables(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<(), ServerError> {
    let Some(operation) = selected_operation(doc, operation_name) else { return Ok(()) };
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        let ty = &definition.var_type.node;
        let given = variables.get(&definition.name.node);
        let value = match (given, &definition.default_value) {
            (Some(value), _) => value.clone(),
            (None, Some(default)) => default.node.clone(),
            (None, None) if ty.nullable => continue,
            (None, None) => return Err(variable_error(name, "is required (its type is non-null) but was not given")),
        };
        let check = VariableCheck { registry };
        if let Some(problem) = check.value(ty, &value, 0) {
            return Err(variable_error(name, &problem));
        }
    }
    Ok(())
}

fn variable_error(name: &str, problem: &str) -> ServerError {
    let mut error = ServerError::new(format!("variable ${name} {problem}"), None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "VALIDATION");
    error.extensions = Some(extensions);
    error
}

struct VariableCheck<'a> {
    registry: &'a Registry,
}

/// Input objects and lists nest at most this deep in a variable.
const MAX_VARIABLE_DEPTH: usize = 16;

impl VariableCheck<'_> {
    /// What is wrong with `value` as a `ty`, if anything.
    fn value(&self, ty: &Type, value: &Value, depth: usize) -> Option<String> {
        if depth > MAX_VARIABLE_DEPTH {
            return Some("nests too deep".into());
        }
        if matches!(value, Value::Null) {
            return (!ty.nullable).then(|| format!("must not be null (its type is {ty})"));
        }
        match &ty.base {
            BaseType::List(item) => match value {
                Value::List(items) => items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| self.value(item, v, depth + 1).map(|p| format!("[{i}] {p}"))),
                // A single value coerces to a one-item list.
                other => self.value(item, other, depth + 1),
            },
            BaseType::Named(name) => match self.registry.types.get(name.as_str()) {
                Some(MetaType::Scalar { name, is_valid, .. }) => {
                    if name == "Int" {
                        if let Value::Number(n) = value {
                            if n.as_i64().is_some_and(|i| i32::try_from(i).is_err()) {
                                return Some(format!(
                                    "is {n}, but Int holds only -2147483648 to 2147483647 (use a smaller number)"
                                ));
                            }
                        }
                    }
                    let valid = is_valid.as_ref().is_none_or(|check| check(value));
                    (!valid).then(|| format!("is not a valid {name}"))
                }
                Some(MetaType::Enum { name, enum_values, .. }) => {
                    let given = match value {
                        Value::Enum(v) => v.as_str(),
                        Value::String(s) => s.as_str(),
                        _ => return Some(format!("must be one of {name}'s values")),
                    };
                    (!enum_values.contains_key(given)).then(|| {
                        let known: Vec<&str> = enum_values.keys().map(String::as_str).collect();
                        format!("is {given:?}, not one of {name}'s values ({})", known.join(", "))
                    })
                }
                Some(MetaType::InputObject { name, input_fields, .. }) => {
                    let Value::Object(fields) = value else {
                        return Some(format!("must be an object ({name})"));
                    };
                    if let Some(unknown) = fields.keys().find(|k| !input_fields.contains_key(k.as_str())) {
                        return Some(format!("has a field {unknown} that {name} does not have"));
                    }
                    input_fields.values().find_map(|field| {
                        let field_ty = Type::new(&field.ty)?;
                        match fields.get(field.name.as_str()) {
                            Some(v) => self.value(&field_ty, v, depth + 1).map(|p| format!(".{} {p}", field.name)),
                            None if !field_ty.nullable && field.default_value.is_none() => {
                                Some(format!(".{} is required", field.name))
                            }
                            None => None,
                        }
                    })
                }
                // Not an input type: validation names the problem.
                _ => None,
            },
        }
    }
}
