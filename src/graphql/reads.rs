//! Which read views a query document reads, from its root fields: what a
//! conditional GET keys its `ETag` by (`crate::http::web`). A document that
//! reads anything else (operational fields, mutations, subscriptions) has
//! no such key and is never answered 304.
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};

use crate::catalog::View;

/// What a cacheable query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSet {
    /// The views whose checkpoints its answer depends on (sorted, unique).
    pub views: Vec<View>,
    /// Only the public catalog (`products`, `topProducts`): the same for everyone.
    pub catalog_only: bool,
}

/// The views each root field reads (nested fields included), or `None`
/// for a field whose answer does not follow the checkpoints.
fn views_of(field: &str) -> Option<&'static [View]> {
    const ORDER: &[View] = &[View::OrderSummary, View::CustomerView, View::ProductCatalog];
    Some(match field {
        "order" | "orders" | "node" => ORDER,
        "customer" | "customers" => &[View::CustomerView],
        "products" | "topProducts" => &[View::ProductCatalog],
        "dailySales" => &[View::DailySales],
        "orderActivity" => &[View::OrderActivity],
        // The caller and the schema: fixed for a given token and binary.
        "viewer" | "__typename" | "__schema" | "__type" => &[],
        _ => return None,
    })
}

/// The read set of the operation `operation_name` selects in `query`;
/// `None` if it is not a query of read-view fields only (or does not parse).
pub fn read_set(query: &str, operation_name: Option<&str>) -> Option<ReadSet> {
    let document = async_graphql::parser::parse_query(query).ok()?;
    let operation = super::inputs::selected_operation(&document, operation_name)?;
    if operation.node.ty != OperationType::Query {
        return None;
    }
    let mut fields = Vec::new();
    root_fields(&document, &operation.node.selection_set.node, &mut fields, 0)?;
    let mut views: Vec<View> = Vec::new();
    for field in &fields {
        views.extend_from_slice(views_of(field)?);
    }
    views.sort_by_key(|v| v.name());
    views.dedup();
    let catalog_only = fields.iter().all(|f| matches!(f.as_str(), "products" | "topProducts" | "__typename"));
    Some(ReadSet { views, catalog_only })
}

/// The names of the root fields of `set`, through fragments (`None` for
/// an unknown fragment, or nesting beyond a bound).
pub fn root_field_names(doc: &ExecutableDocument, set: &SelectionSet, out: &mut Vec<String>) -> Option<()> {
    root_fields(doc, set, out, 0)
}

/// The root fields of a selection set, through fragments (bounded depth:
/// the document guard has already refused cycles and bombs, this is a
/// second line).
fn root_fields(doc: &ExecutableDocument, set: &SelectionSet, out: &mut Vec<String>, depth: usize) -> Option<()> {
    if depth > 8 {
        return None;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => out.push(field.node.name.node.to_string()),
            Selection::InlineFragment(inline) => root_fields(doc, &inline.node.selection_set.node, out, depth + 1)?,
            Selection::FragmentSpread(spread) => {
                let fragment = doc.fragments.get(&spread.node.fragment_name.node)?;
                root_fields(doc, &fragment.node.selection_set.node, out, depth + 1)?;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_fields_map_to_the_views_they_read() {
        let set = read_set("{ orders { edges { node { id } } } topProducts { id } }", None).expect("cacheable");
        assert_eq!(set.views, vec![View::CustomerView, View::OrderSummary, View::ProductCatalog]);
        assert!(!set.catalog_only);
        let catalog = read_set("query Q { ...F } fragment F on Query { products { edges { cursor } } }", Some("Q"));
        assert_eq!(catalog, Some(ReadSet { views: vec![View::ProductCatalog], catalog_only: true }));
    }

    #[test]
    fn operational_fields_and_mutations_are_not_cacheable() {
        assert_eq!(read_set("{ projections { name } }", None), None);
        assert_eq!(read_set("{ orders { edges { cursor } } deadLetters { id } }", None), None);
        assert_eq!(read_set("mutation { x }", None), None);
        assert_eq!(read_set("{ broken", None), None);
    }
}
