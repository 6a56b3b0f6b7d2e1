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
//!
//! Except one thing it says poorly: a misspelt field in an input object
//! literal (`registerCustomer(input: {nme: "A", …})`). Its validator names
//! the required field that is missing (`name`) and never the field that
//! was given, so the walk refuses the unknown field first, with the name
//! it most resembles ([`unknown_field`]). Variables' JSON is checked the
//! same way ([`check_variables`]).
use std::collections::HashSet;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet, Type,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{ErrorExtensionValues, Name, Pos, Positioned, ServerError, Value, Variables};

/// Refuses an out-of-range `Int` anywhere in the arguments of the
/// operation `operation_name` selects, and a field an input object literal
/// among them has but its type does not. An operation that cannot be
/// selected, an unknown field or an unknown variable is left to validation.
pub fn check_arguments(
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
                        if let Some(message) =
                            Type::new(&arg.ty).and_then(|ty| self.unknown_in_literal(&ty, &value.node))
                        {
                            return Err(validation_error(message, Some(value.pos)));
                        }
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

    /// The first field of an input object literal in `value` (of type
    /// `ty`) that its type does not have, as a message; `None` when there
    /// is none. Variables in it are [`check_variables`]' to check.
    fn unknown_in_literal(&self, ty: &Type, value: &async_graphql_value::Value) -> Option<String> {
        use async_graphql_value::Value as Literal;
        match (&ty.base, value) {
            (BaseType::List(item), Literal::List(items)) => items.iter().find_map(|v| self.unknown_in_literal(item, v)),
            (BaseType::List(item), v) => self.unknown_in_literal(item, v),
            (BaseType::Named(name), Literal::Object(fields)) => {
                let Some(MetaType::InputObject { name, input_fields, .. }) = self.registry.types.get(name.as_str())
                else {
                    return None;
                };
                if let Some(unknown) = fields.keys().find(|k| !input_fields.contains_key(k.as_str())) {
                    return Some(unknown_field(unknown, name, input_fields.keys().map(String::as_str), None));
                }
                fields.iter().find_map(|(key, v)| {
                    let field = input_fields.get(key.as_str())?;
                    self.unknown_in_literal(&Type::new(&field.ty)?, v)
                })
            }
            _ => None,
        }
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
    validation_error(format!("invalid argument of {field}: {problem}"), Some(pos))
}

fn validation_error(message: String, pos: Option<Pos>) -> ServerError {
    let mut error = ServerError::new(message, pos);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", super::error::VALIDATION);
    error.extensions = Some(extensions);
    error
}

/// Field names are quoted at most this long in a message.
const MAX_NAME_CHARS: usize = 64;

/// `Unknown field "nme" in input RegisterCustomerInput; did you mean
/// "name"?` — or, when no field's name is close, the fields it has. `at`:
/// where in a variable it was (`$input.lines[0]`), for variables' JSON.
pub fn unknown_field<'a>(
    unknown: &str,
    input: &str,
    known: impl Iterator<Item = &'a str> + Clone,
    at: Option<&str>,
) -> String {
    let unknown: String = unknown.chars().take(MAX_NAME_CHARS).collect();
    let whose = at.map(|at| format!(" (variable {at})")).unwrap_or_default();
    let hint = match closest(&unknown, known.clone()) {
        Some(name) => format!("did you mean {name:?}?"),
        None => {
            let names: Vec<String> = known.map(|name| format!("{name:?}")).collect();
            format!("its fields are {}", names.join(", "))
        }
    };
    format!("Unknown field {unknown:?} in input {input}{whose}; {hint}")
}

/// The name in `known` nearest to `given`, if one is near enough to be
/// what was meant: a third of the longer name may differ (at least one
/// edit; a swap of two letters counts as one, and so does letter case).
fn closest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    known
        .map(|name| (strsim::damerau_levenshtein(&given_lower, &name.to_lowercase()), name))
        .filter(|(distance, name)| {
            let longer = given.chars().count().max(name.chars().count());
            *distance <= (longer / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
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
            return Err(validation_error(problem.message(name), None));
        }
    }
    Ok(())
}

fn variable_error(name: &str, problem: &str) -> ServerError {
    validation_error(format!("variable ${name} {problem}"), None)
}

/// What is wrong with a variable's value, and where in it.
struct Problem {
    /// The place inside the variable, outermost first (`.lines[0]`).
    path: String,
    kind: ProblemKind,
}

enum ProblemKind {
    /// Said after the place: `is required`, `is not a valid Int`.
    Says(String),
    /// An input object field that its type does not have.
    UnknownField { field: String, input: String, known: Vec<String> },
}

impl Problem {
    fn says(what: String) -> Self {
        Self { path: String::new(), kind: ProblemKind::Says(what) }
    }

    /// The same problem, one step further in (`segment` is `.name` or `[i]`).
    fn under(mut self, segment: &str) -> Self {
        self.path.insert_str(0, segment);
        self
    }

    /// The message for the variable `name`.
    fn message(&self, name: &str) -> String {
        match &self.kind {
            ProblemKind::Says(what) => format!("variable ${name}{} {what}", self.path),
            ProblemKind::UnknownField { field, input, known } => {
                unknown_field(field, input, known.iter().map(String::as_str), Some(&format!("${name}{}", self.path)))
            }
        }
    }
}

struct VariableCheck<'a> {
    registry: &'a Registry,
}

/// Input objects and lists nest at most this deep in a variable.
const MAX_VARIABLE_DEPTH: usize = 16;

impl VariableCheck<'_> {
    /// What is wrong with `value` as a `ty`, if anything.
    fn value(&self, ty: &Type, value: &Value, depth: usize) -> Option<Problem> {
        if depth > MAX_VARIABLE_DEPTH {
            return Some(Problem::says("nests too deep".into()));
        }
        if matches!(value, Value::Null) {
            return (!ty.nullable).then(|| Problem::says(format!("must not be null (its type is {ty})")));
        }
        match &ty.base {
            BaseType::List(item) => match value {
                Value::List(items) => items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| self.value(item, v, depth + 1).map(|p| p.under(&format!("[{i}]")))),
                // A single value coerces to a one-item list.
                other => self.value(item, other, depth + 1),
            },
            BaseType::Named(name) => match self.registry.types.get(name.as_str()) {
                Some(MetaType::Scalar { name, is_valid, .. }) => {
                    if name == "Int" {
                        if let Value::Number(n) = value {
                            if n.as_i64().is_some_and(|i| i32::try_from(i).is_err()) {
                                return Some(Problem::says(format!(
                                    "is {n}, but Int holds only -2147483648 to 2147483647 (use a smaller number)"
                                )));
                            }
                        }
                    }
                    let valid = is_valid.as_ref().is_none_or(|check| check(value));
                    (!valid).then(|| Problem::says(format!("is not a valid {name}")))
                }
                Some(MetaType::Enum { name, enum_values, .. }) => {
                    let given = match value {
                        Value::Enum(v) => v.as_str(),
                        Value::String(s) => s.as_str(),
                        _ => return Some(Problem::says(format!("must be one of {name}'s values"))),
                    };
                    (!enum_values.contains_key(given)).then(|| {
                        let known: Vec<&str> = enum_values.keys().map(String::as_str).collect();
                        Problem::says(format!("is {given:?}, not one of {name}'s values ({})", known.join(", ")))
                    })
                }
                Some(MetaType::InputObject { name, input_fields, .. }) => {
                    let Value::Object(fields) = value else {
                        return Some(Problem::says(format!("must be an object ({name})")));
                    };
                    // Before what is missing: a misspelt field is why it is missing.
                    if let Some(unknown) = fields.keys().find(|k| !input_fields.contains_key(k.as_str())) {
                        return Some(Problem {
                            path: String::new(),
                            kind: ProblemKind::UnknownField {
                                field: unknown.to_string(),
                                input: name.clone(),
                                known: input_fields.keys().cloned().collect(),
                            },
                        });
                    }
                    input_fields.values().find_map(|field| {
                        let field_ty = Type::new(&field.ty)?;
                        let segment = format!(".{}", field.name);
                        match fields.get(field.name.as_str()) {
                            Some(v) => self.value(&field_ty, v, depth + 1).map(|p| p.under(&segment)),
                            None if !field_ty.nullable && field.default_value.is_none() => {
                                Some(Problem::says("is required".into()).under(&segment))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_name_is_suggested_only_when_it_is_close() {
        let fields = ["name", "email", "commandId"];
        let closest = |given| closest(given, fields.iter().copied());
        assert_eq!(closest("nme"), Some("name"));
        assert_eq!(closest("nmae"), Some("name"), "a swap is one edit");
        assert_eq!(closest("Email"), Some("email"), "letter case is no edit");
        assert_eq!(closest("command_id"), Some("commandId"));
        assert_eq!(closest("zzz"), None);
        assert_eq!(closest("x"), None);
    }

    #[test]
    fn an_unknown_field_is_named_with_a_suggestion_or_the_fields_there_are() {
        let fields = ["name", "email"];
        assert_eq!(
            unknown_field("nme", "RegisterCustomerInput", fields.iter().copied(), None),
            r#"Unknown field "nme" in input RegisterCustomerInput; did you mean "name"?"#
        );
        assert_eq!(
            unknown_field("zzz", "RegisterCustomerInput", fields.iter().copied(), Some("$input")),
            r#"Unknown field "zzz" in input RegisterCustomerInput (variable $input); its fields are "name", "email""#
        );
        let long = "x\"\n".repeat(100);
        let message = unknown_field(&long, "I", fields.iter().copied(), None);
        assert!(!message.contains('\n') && message.len() < 300, "{message}");
    }
}
