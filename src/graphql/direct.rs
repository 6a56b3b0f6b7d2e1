//! The orders of a list page, and the page, resolved without a future per field.
//!
//! async-graphql resolves an object by giving every selected field its own
//! context, boxed future and join, and every object its own map: for a page
//! of 50 orders with three lines each that is about 450 futures, and the
//! profile of the computed page put 45% of its time there
//! (docs/performance.md, "The computed page"). The fields a page asks for
//! most are plain columns of the row, known without waiting for anything.
//!
//! [`ListedPage`] and [`ListedOrder`] are the order lists' page and node.
//! [`ListedOrder`] is the schema's `OrderSummary` (same name, same type in
//! the registry, so the SDL does not change) and resolves a selection made only of such fields directly into
//! the response value. Anything else — a field this module does not know, a
//! field with arguments or directives, a fragment, a response key given
//! twice, a value that would be an error — goes the derived way, through
//! `OrderSummary`'s own resolver, for the whole order. So a field added to
//! `OrderSummary` is served correctly before anyone teaches it here, and
//! every error keeps its path and code. [`ListedPage`] does the same one
//! level up, for `edges`, `nodes` and `pageInfo`. The test
//! `queries::a_listed_order_resolves_as_the_derived_type` holds the two
//! ways equal; measured, the direct way serves about 20% more pages a
//! second (docs/performance.md, "The page resolved directly").
//!
//! The derived type is a parameter (`O`, bound by the row it wraps), not a
//! path: `types.rs` names this module's page in `Customer.orders`, so this
//! module names nothing of `types.rs`, and the two files stay free of an
//! import circle (tests/it/architecture.rs). The schema uses them with
//! `O = types::OrderSummary`.
use std::borrow::Cow;

use async_graphql::connection::{CursorType, EmptyFields, OpaqueCursor};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};

use super::enums::OrderStatus;
use super::lists::Page;
use crate::query::list::Cursor;
use crate::query::OrderSummaryRow;

/// An edge of a page of orders.
type Edge<O> = async_graphql::connection::Edge<OpaqueCursor<Cursor>, ListedOrder<O>, EmptyFields>;

/// An order in a list's page: the schema's `OrderSummary`, resolved
/// directly when its selection allows (see the module's docs). `O` is the
/// derived `OrderSummary`, which the whole order falls back to.
pub struct ListedOrder<O>(pub O);

impl<O: OutputType + AsRef<OrderSummaryRow>> OutputType for ListedOrder<O> {
    fn type_name() -> Cow<'static, str> {
        O::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        O::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        match order_value(self.0.as_ref(), &ctx.item.node) {
            Some(value) => Ok(value),
            None => OutputType::resolve(&self.0, ctx, field).await,
        }
    }
}

/// The fields of one selection, each with its response key, if every one
/// is a plain field: no arguments, no directives, no fragments, no key
/// twice. `None` sends the object the derived way.
fn plain_fields(set: &SelectionSet) -> Option<Vec<(&Name, &Field)>> {
    let mut fields: Vec<(&Name, &Field)> = Vec::with_capacity(set.items.len());
    for item in &set.items {
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let field = &field.node;
        if !field.arguments.is_empty() || !field.directives.is_empty() {
            return None;
        }
        let key = &field.response_key().node;
        if fields.iter().any(|(seen, _)| *seen == key) {
            return None;
        }
        fields.push((key, field));
    }
    Some(fields)
}

/// An order's selected fields as a value, or `None` to go the derived way.
fn order_value(row: &OrderSummaryRow, set: &SelectionSet) -> Option<Value> {
    let fields = plain_fields(set)?;
    let mut object = IndexMap::with_capacity(fields.len());
    for (key, field) in fields {
        let value = match field.name.node.as_str() {
            "__typename" => Value::String("OrderSummary".to_owned()),
            "id" => Value::String(row.order_id.to_string()),
            "customerId" => Value::String(row.customer_id.to_string()),
            "customerName" => Value::String(row.customer_name.clone()),
            "customerEmail" => Value::String(row.customer_email.clone()),
            "lineCount" => Value::from(row.line_count),
            "totalCents" => Value::from(i32::try_from(row.total_cents).ok()?),
            "status" => {
                let status: OrderStatus = crate::domain::order::OrderStatus::parse(&row.status)?.into();
                async_graphql::InputType::to_value(&status)
            }
            "placedAt" => async_graphql::ScalarType::to_value(&row.placed_at),
            "lines" => lines_value(&row.lines, &field.selection_set.node)?,
            _ => return None,
        };
        object.insert(key.clone(), value);
    }
    Some(Value::Object(object))
}

/// A line as the view stores it (`OrderLine`'s JSON), its text borrowed
/// from the stored column where it has no escapes: one copy per string
/// shown, not two.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLine<'a> {
    product_id: uuid::Uuid,
    #[serde(borrow)]
    sku: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
    quantity: i32,
    unit_price_cents: i64,
    line_total_cents: i64,
}

/// An order's lines with their selected fields, or `None` to go the
/// derived way (the stored lines do not read, or a field is not plain).
fn lines_value(stored: &str, set: &SelectionSet) -> Option<Value> {
    let fields = plain_fields(set)?;
    let lines: Vec<StoredLine<'_>> = serde_json::from_str(stored).ok()?;
    let mut list = Vec::with_capacity(lines.len());
    for line in lines {
        let mut object = IndexMap::with_capacity(fields.len());
        for (key, field) in &fields {
            let value = match field.name.node.as_str() {
                "__typename" => Value::String("OrderLine".to_owned()),
                "productId" => Value::String(line.product_id.to_string()),
                "sku" => Value::String(line.sku.as_ref().to_owned()),
                "title" => Value::String(line.title.as_ref().to_owned()),
                "quantity" => Value::from(line.quantity),
                "unitPriceCents" => Value::from(i32::try_from(line.unit_price_cents).ok()?),
                "lineTotalCents" => Value::from(i32::try_from(line.line_total_cents).ok()?),
                _ => return None,
            };
            object.insert((*key).clone(), value);
        }
        list.push(Value::Object(object));
    }
    Some(Value::List(list))
}

/// A page of orders (`orders`, `Customer.orders`): the schema's
/// `OrderSummaryConnection`, resolved directly when its selection is
/// `edges { cursor node }`, `nodes` and `pageInfo` with plain fields and
/// every order resolves directly too; the derived way otherwise (for
/// example when `totalCount` is asked, which reads the database).
pub struct ListedPage<O: OutputType + AsRef<OrderSummaryRow>>(pub Page<ListedOrder<O>>);

impl<O: OutputType + AsRef<OrderSummaryRow>> OutputType for ListedPage<O> {
    fn type_name() -> Cow<'static, str> {
        Page::<ListedOrder<O>>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Page::<ListedOrder<O>>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        match page_value(&self.0, &ctx.item.node) {
            Some(value) => Ok(value),
            None => OutputType::resolve(&self.0, ctx, field).await,
        }
    }
}

/// A page's selected fields as a value, or `None` to go the derived way.
fn page_value<O: OutputType + AsRef<OrderSummaryRow>>(
    page: &Page<ListedOrder<O>>,
    set: &SelectionSet,
) -> Option<Value> {
    let fields = plain_fields(set)?;
    let mut object = IndexMap::with_capacity(fields.len());
    for (key, field) in fields {
        let selection = &field.selection_set.node;
        let value = match field.name.node.as_str() {
            "__typename" => Value::String(Page::<ListedOrder<O>>::type_name().into_owned()),
            "edges" => {
                let edge_fields = plain_fields(selection)?;
                let edges = page.edges.iter().map(|edge| {
                    let mut object = IndexMap::with_capacity(edge_fields.len());
                    for (key, field) in &edge_fields {
                        let value = match field.name.node.as_str() {
                            "__typename" => Value::String(<Edge<O> as OutputType>::type_name().into_owned()),
                            "cursor" => Value::String(edge.cursor.encode_cursor()),
                            "node" => order_value(edge.node.0.as_ref(), &field.selection_set.node)?,
                            _ => return None,
                        };
                        object.insert((*key).clone(), value);
                    }
                    Some(Value::Object(object))
                });
                Value::List(edges.collect::<Option<Vec<Value>>>()?)
            }
            "nodes" => {
                let nodes = page.edges.iter().map(|edge| order_value(edge.node.0.as_ref(), selection));
                Value::List(nodes.collect::<Option<Vec<Value>>>()?)
            }
            "pageInfo" => {
                let mut info = IndexMap::new();
                for (key, field) in plain_fields(selection)? {
                    let cursor =
                        |edge: Option<&Edge<O>>| edge.map_or(Value::Null, |e| Value::String(e.cursor.encode_cursor()));
                    let value = match field.name.node.as_str() {
                        "__typename" => Value::String("PageInfo".to_owned()),
                        "hasPreviousPage" => Value::Boolean(page.has_previous_page),
                        "hasNextPage" => Value::Boolean(page.has_next_page),
                        "startCursor" => cursor(page.edges.first()),
                        "endCursor" => cursor(page.edges.last()),
                        _ => return None,
                    };
                    info.insert(key.clone(), value);
                }
                Value::Object(info)
            }
            _ => return None,
        };
        object.insert(key.clone(), value);
    }
    Some(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::DocumentOperations;

    use super::*;

    fn row() -> OrderSummaryRow {
        let product = uuid::Uuid::new_v4();
        OrderSummaryRow {
            order_id: uuid::Uuid::new_v4(),
            customer_id: uuid::Uuid::new_v4(),
            customer_name: "Ada \"the first\"".to_owned(),
            customer_email: "ada@example.com".to_owned(),
            customer_version: 1,
            lines: serde_json::json!([{ "productId": product, "sku": "TEA-1", "title": "Green tea", "quantity": 2,
                "unitPriceCents": 450, "lineTotalCents": 900 }])
            .to_string(),
            line_count: 1,
            total_cents: 900,
            status: "PLACED".to_owned(),
            cancel_reason: None,
            carrier: None,
            tracking_number: None,
            placed_at: chrono::Utc::now(),
            cancelled_at: None,
            shipped_at: None,
            placed_position: 1,
            version: 1,
            last_tx_id: 1,
            last_position: 1,
            channel: "WEB".to_owned(),
            search_rank: None,
        }
    }

    /// `order_value` over the selection of `{ … }`.
    fn direct(order: &OrderSummaryRow, selection: &str) -> Option<Value> {
        let document = async_graphql::parser::parse_query(selection).expect("parses");
        let DocumentOperations::Single(operation) = document.operations else { panic!("one operation") };
        order_value(order, &operation.node.selection_set.node)
    }

    #[test]
    fn plain_fields_are_resolved_directly() {
        let order = row();
        let value =
            direct(&order, "{ id n: customerName status totalCents lines { title quantity } }").expect("direct");
        let json = value.into_json().expect("json");
        assert_eq!(json["id"], order.order_id.to_string());
        assert_eq!(json["n"], "Ada \"the first\"");
        assert_eq!(json["status"], "PLACED");
        assert_eq!(json["totalCents"], 900);
        assert_eq!(json["lines"], serde_json::json!([{ "title": "Green tea", "quantity": 2 }]));
    }

    #[test]
    fn anything_else_goes_the_derived_way() {
        let order = row();
        for selection in [
            "{ id ... on OrderSummary { id } }",
            "{ id version }",
            "{ id customer { name } }",
            "{ id lines { product { id } } }",
            "{ id id }",
            "{ id @include(if: true) }",
        ] {
            assert!(direct(&order, selection).is_none(), "{selection}");
        }
        let mut broken = row();
        broken.status = "LOST".to_owned();
        assert!(direct(&broken, "{ status }").is_none(), "a stored value out of the enum is an error");
        broken.total_cents = i64::from(i32::MAX) + 1;
        assert!(direct(&broken, "{ totalCents }").is_none(), "a total past Int is an error");
        broken.lines = "not json".to_owned();
        assert!(direct(&broken, "{ lines { title } }").is_none(), "unreadable lines are an error");
    }
}
