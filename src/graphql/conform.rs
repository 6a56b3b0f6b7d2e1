//! Two places where async-graphql 7.2's executor departs from the GraphQL
//! specification, put right on each response after execution:
//!
//! - **Response key order.** It resolves a selection set's fields
//!   concurrently and writes each into the response map as it completes, so a
//!   field that awaits (a database read) lands after one that does not
//!   (`viewer`). The spec orders the map as the fields appear in the document
//!   (§6.3, CollectFields), and clients that compare or stream responses rely
//!   on it.
//! - **Field errors.** A field that errors is left out of its object. The
//!   spec (§6.4.4, "Handling Field Errors") makes it `null` and, for a
//!   non-null field, propagates the null to the nearest nullable parent,
//!   `data` itself at worst. A client generated from the schema (Apollo,
//!   Relay, graphql-codegen) trusts a non-null field to be present.
//!
//! Both are fixed on the response rather than in a fork of the executor: the
//! executor stays the crate's, and this pass needs only the document and the
//! schema's registry. Its cost is one walk of the response; reordering and
//! null propagation touch only the objects that need it, and a selection
//! set's key plan is computed once per response however many rows share it.
//!
//! Where a root field can fail for a permission reason while the rest of a
//! document is fine, the schema makes it nullable (as GitHub's API does), so
//! propagation stops at that field instead of nulling the whole `data`.
use std::collections::HashMap;
use std::rc::Rc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::Registry;
use async_graphql::{Name, PathSegment, Positioned, Response, Value};

/// Fragment spreads are expanded at most this deep (validation refuses
/// cycles; this only bounds the walk should one slip through).
const MAX_FRAGMENT_NESTING: usize = 64;

/// Puts `response` in the spec's shape for `document`: nulls where fields
/// errored (propagated through non-null types), then keys in document order.
pub fn conform(
    response: &mut Response,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    registry: &Registry,
) {
    let Some(operation) = operation(document, operation_name) else { return };
    let root_type = match operation.ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let walk = Walk { fragments: &document.fragments };
    let field_errors = response.errors.iter().any(|e| !e.path.is_empty());
    if let (Some(root_type), true) = (root_type, field_errors) {
        // async-graphql answers `null` for a root object whose every field
        // errored: start from the empty object the fields were left out of.
        if response.data == Value::Null {
            response.data = Value::Object(Default::default());
        }
        for error in &response.errors {
            if error.path.is_empty() {
                continue;
            }
            if let Some(types) = walk.types_along(&operation.selection_set.node, root_type, &error.path, registry) {
                if !null_out(&mut response.data, &error.path, &types) {
                    response.data = Value::Null;
                    break;
                }
            }
        }
    }
    let mut plans = Plans::default();
    walk.order(&mut response.data, &[&operation.selection_set.node], &mut plans);
}

fn operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d async_graphql::parser::types::OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| &op.node),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// A field's type as the registry writes it (`[Product!]!`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeRef<'r> {
    nullable: bool,
    /// The element type of a list; `None` for a named type.
    list_of: Option<Box<TypeRef<'r>>>,
    named: &'r str,
}

impl<'r> TypeRef<'r> {
    fn parse(text: &'r str) -> TypeRef<'r> {
        let (nullable, inner) = match text.strip_suffix('!') {
            Some(inner) => (false, inner),
            None => (true, text),
        };
        match inner.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            Some(element) => {
                let element = TypeRef::parse(element);
                TypeRef { nullable, named: element.named, list_of: Some(Box::new(element)) }
            }
            None => TypeRef { nullable, list_of: None, named: inner },
        }
    }
}

/// Sets null where `path` first finds nothing (or null), then lifts the
/// null to the nearest nullable position at or above it. `types[i]` is the
/// type at `path[..=i]`. Returns false when no position is nullable: the
/// caller nulls `data` itself.
fn null_out(data: &mut Value, path: &[PathSegment], types: &[TypeRef<'_>]) -> bool {
    // The first position that is missing or null.
    let mut first_gap = None;
    let mut node = &*data;
    for (i, segment) in path.iter().enumerate() {
        let next = match (node, segment) {
            (Value::Object(map), PathSegment::Field(key)) => map.get(key.as_str()),
            (Value::List(items), PathSegment::Index(index)) => items.get(*index),
            _ => None,
        };
        match next {
            Some(value) if *value != Value::Null => node = value,
            _ => {
                first_gap = Some(i);
                break;
            }
        }
    }
    let Some(gap) = first_gap else { return true };
    let Some(target) = (0..=gap).rev().find(|&i| types[i].nullable) else { return false };
    // Walk to the parent of `target` and set it null.
    let mut node = data;
    for segment in &path[..target] {
        node = match (node, segment) {
            (Value::Object(map), PathSegment::Field(key)) => match map.get_mut(key.as_str()) {
                Some(value) => value,
                None => return true,
            },
            (Value::List(items), PathSegment::Index(index)) => match items.get_mut(*index) {
                Some(value) => value,
                None => return true,
            },
            _ => return true,
        };
    }
    match (node, &path[target]) {
        (Value::Object(map), PathSegment::Field(key)) => {
            map.insert(Name::new(key), Value::Null);
        }
        (Value::List(items), PathSegment::Index(index)) => {
            if let Some(item) = items.get_mut(*index) {
                *item = Value::Null;
            }
        }
        _ => {}
    }
    true
}

/// One selection set's response keys in document order, each with the
/// selection sets of the fields that answer to it (several when a key is
/// selected more than once, in fragments or directly).
struct Plan<'d> {
    keys: Vec<(&'d str, Vec<&'d SelectionSet>)>,
}

impl Plan<'_> {
    fn position(&self, key: &str) -> usize {
        self.keys.iter().position(|(k, _)| *k == key).unwrap_or(usize::MAX)
    }
}

/// Plans per distinct list of selection sets, for one response: the rows
/// of a page share their selection, so it is planned once. Keyed by the
/// address and length of the slice of sets (a plan's child sets live as
/// long as the plan, so the address is stable), searched linearly: a
/// document has a handful of selection sets, and this lookup runs once per
/// object of the response, so it must not allocate or hash.
type Plans<'d> = Vec<(usize, usize, Rc<Plan<'d>>)>;

struct Walk<'d> {
    fragments: &'d HashMap<Name, Positioned<FragmentDefinition>>,
}

impl<'d> Walk<'d> {
    /// Calls `visit` with each field of `set` in document order, fragments
    /// expanded in place, with the type the field is looked up on (the
    /// enclosing fragment's type condition, else `parent`).
    fn each_field(
        &self,
        set: &'d SelectionSet,
        parent: &'d str,
        nesting: usize,
        visit: &mut dyn FnMut(&'d async_graphql::parser::types::Field, &'d str),
    ) {
        if nesting > MAX_FRAGMENT_NESTING {
            return;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => visit(&field.node, parent),
                Selection::InlineFragment(fragment) => {
                    let on = fragment.node.type_condition.as_ref().map_or(parent, |c| c.node.on.node.as_str());
                    self.each_field(&fragment.node.selection_set.node, on, nesting + 1, visit);
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.each_field(&fragment.node.selection_set.node, on, nesting + 1, visit);
                    }
                }
            }
        }
    }

    fn plan(&self, sets: &[&'d SelectionSet], plans: &mut Plans<'d>) -> Rc<Plan<'d>> {
        let (address, len) = (sets.as_ptr() as usize, sets.len());
        if let Some((_, _, plan)) = plans.iter().find(|(a, l, _)| *a == address && *l == len) {
            return plan.clone();
        }
        let mut keys: Vec<(&'d str, Vec<&'d SelectionSet>)> = Vec::new();
        for set in sets {
            self.each_field(set, "", 0, &mut |field, _| {
                let key = field.response_key().node.as_str();
                let at = match keys.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        keys.push((key, Vec::new()));
                        keys.len() - 1
                    }
                };
                if !field.selection_set.node.items.is_empty() {
                    keys[at].1.push(&field.selection_set.node);
                }
            });
        }
        let plan = Rc::new(Plan { keys });
        plans.push((address, len, plan.clone()));
        plan
    }

    /// Orders every object of `value` as its selection sets order their keys.
    fn order(&self, value: &mut Value, sets: &[&'d SelectionSet], plans: &mut Plans<'d>) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.order(item, sets, plans);
                }
            }
            Value::Object(map) => {
                let plan = self.plan(sets, plans);
                // One pass: each key is found in the plan at or after the
                // previous one's place while the object is in order; a key
                // found only before it means the object needs sorting,
                // which happens after its children are done.
                let mut cursor = 0;
                let mut ordered = true;
                for (key, child) in map.iter_mut() {
                    let key = key.as_str();
                    let at = match plan.keys[cursor..].iter().position(|(k, _)| *k == key) {
                        Some(ahead) => {
                            cursor += ahead + 1;
                            Some(cursor - 1)
                        }
                        None => {
                            ordered = false;
                            plan.keys.iter().position(|(k, _)| *k == key)
                        }
                    };
                    let Some((_, child_sets)) = at.and_then(|at| plan.keys.get(at)) else { continue };
                    if !child_sets.is_empty() && matches!(child, Value::Object(_) | Value::List(_)) {
                        self.order(child, child_sets, plans);
                    }
                }
                if !ordered {
                    map.sort_by(|a, _, b, _| plan.position(a.as_str()).cmp(&plan.position(b.as_str())));
                }
            }
            _ => {}
        }
    }

    /// The type at each position of `path`, from the operation's root type;
    /// `None` where the document or the registry does not say (the error is
    /// then left as it is).
    fn types_along(
        &self,
        root: &'d SelectionSet,
        root_type: &'d str,
        path: &[PathSegment],
        registry: &'d Registry,
    ) -> Option<Vec<TypeRef<'d>>> {
        let mut types: Vec<TypeRef<'d>> = Vec::with_capacity(path.len());
        let mut sets: Vec<&'d SelectionSet> = vec![root];
        let mut parent: &'d str = root_type;
        for segment in path {
            match segment {
                PathSegment::Field(key) => {
                    let mut found: Option<TypeRef<'d>> = None;
                    let mut child_sets = Vec::new();
                    for set in &sets {
                        self.each_field(set, parent, 0, &mut |field, on| {
                            if field.response_key().node.as_str() != key {
                                return;
                            }
                            if found.is_none() {
                                found = registry
                                    .types
                                    .get(on)
                                    .and_then(|t| t.field_by_name(field.name.node.as_str()))
                                    .map(|f| TypeRef::parse(f.ty.as_str()));
                            }
                            child_sets.push(&field.selection_set.node);
                        });
                    }
                    let ty = found?;
                    parent = ty.named;
                    sets = child_sets;
                    types.push(ty);
                }
                PathSegment::Index(_) => {
                    let element = types.last()?.list_of.as_deref()?.clone();
                    types.push(element);
                }
            }
        }
        Some(types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_strings_parse_into_nullability_and_lists() {
        let t = TypeRef::parse("[Product!]!");
        assert!(!t.nullable);
        let element = t.list_of.as_deref().expect("a list");
        assert!(!element.nullable);
        assert_eq!(element.named, "Product");
        assert!(TypeRef::parse("Customer").nullable);
        assert_eq!(TypeRef::parse("[[Int]]").list_of.unwrap().list_of.unwrap().named, "Int");
    }

    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (Name::new(k), v.clone())).collect())
    }

    #[test]
    fn a_missing_non_null_field_nulls_its_nearest_nullable_parent() {
        let types = vec![TypeRef::parse("Order"), TypeRef::parse("Customer!")];
        let path = vec![PathSegment::Field("order".into()), PathSegment::Field("customer".into())];
        let mut data = object(&[("order", object(&[("id", Value::from("1"))])), ("viewer", Value::from("x"))]);
        assert!(null_out(&mut data, &path, &types));
        assert_eq!(data, object(&[("order", Value::Null), ("viewer", Value::from("x"))]));
    }

    #[test]
    fn a_missing_nullable_field_becomes_null_in_place() {
        let types = vec![TypeRef::parse("Order")];
        let path = vec![PathSegment::Field("order".into())];
        let mut data = object(&[("viewer", Value::from("x"))]);
        assert!(null_out(&mut data, &path, &types));
        assert_eq!(data, object(&[("viewer", Value::from("x")), ("order", Value::Null)]));
    }

    #[test]
    fn with_no_nullable_position_the_whole_data_goes() {
        let types = vec![TypeRef::parse("[Product!]!"), TypeRef::parse("Product!")];
        let path = vec![PathSegment::Field("topProducts".into()), PathSegment::Index(2)];
        let mut data = object(&[("viewer", Value::from("x"))]);
        assert!(!null_out(&mut data, &path, &types));
    }

    #[test]
    fn a_present_value_is_left_alone() {
        let types = vec![TypeRef::parse("Order!")];
        let path = vec![PathSegment::Field("order".into())];
        let mut data = object(&[("order", Value::from("here"))]);
        assert!(null_out(&mut data, &path, &types));
        assert_eq!(data, object(&[("order", Value::from("here"))]));
    }

    #[test]
    fn keys_follow_the_document_with_fragments_expanded_in_place() {
        let document = async_graphql::parser::parse_query(
            "{ b: viewer { role sub } ...F a: viewer { sub } } fragment F on Query { c: viewer { role } }",
        )
        .expect("parses");
        let walk = Walk { fragments: &document.fragments };
        let DocumentOperations::Single(op) = &document.operations else { unreachable!() };
        let mut data = object(&[
            ("a", object(&[("sub", Value::from("s"))])),
            ("c", object(&[("role", Value::from("R"))])),
            ("b", object(&[("sub", Value::from("s")), ("role", Value::from("R"))])),
        ]);
        walk.order(&mut data, &[&op.node.selection_set.node], &mut Plans::default());
        let Value::Object(map) = &data else { unreachable!() };
        assert_eq!(map.keys().map(Name::as_str).collect::<Vec<_>>(), ["b", "c", "a"]);
        let Value::Object(b) = &map["b"] else { unreachable!() };
        assert_eq!(b.keys().map(Name::as_str).collect::<Vec<_>>(), ["role", "sub"]);
    }
}
