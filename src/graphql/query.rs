//! Queries: every field reads only the read views (through
//! [`crate::query::ReadModel`]) and takes `consistentWith: Token` to read
//! the caller's own write.
use async_graphql::connection::{Connection, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Object, ID};
use chrono::NaiveDate;

use super::access::{self, Viewer};
use super::error::{from_query, validation};
use super::loaders::{CustomerLoaderHandle, ProductLoaderHandle};
use super::request::{RequestCache, RequestConsistency};
use super::scalars::{uuid, Token};
use super::types::{Customer, DailySales, Node, OrderActivity, OrderStatus, OrderSummary, Product, ProjectionStatus};
use crate::catalog::View;
use crate::query::{page_size, ReadModel};

pub struct QueryRoot;

/// What an order field can reach: the summary, and through nested fields
/// the customer dashboard and the catalog.
const ORDER_VIEWS: &[&str] = &[View::OrderSummary.name(), View::CustomerView.name(), View::ProductCatalog.name()];

type Page<T> = Connection<OpaqueCursor<i64>, T, EmptyFields, EmptyFields>;

/// The read model once `projections` show the field's `consistentWith`
/// and the request's `extensions.consistentWith`, whichever is later.
async fn consistent(ctx: &Context<'_>, projections: &[&str], token: Option<Token>) -> async_graphql::Result<ReadModel> {
    let reads = ctx.data::<ReadModel>()?.clone();
    let request = ctx.data_opt::<RequestConsistency>().map(|r| r.0);
    let token = std::cmp::max(token.map(|t| t.0), request);
    reads.ensure_visible(projections, token).await.map_err(from_query)?;
    Ok(reads)
}

/// What a root field that runs a query costs beyond its selection: a field
/// that hits the database must cost what it costs, so that a document of
/// aliases cannot turn a small request into thousands of statements.
const QUERY_COST: usize = 10;
/// `projections` reads every checkpoint and counts the log behind each.
const PROJECTIONS_COST: usize = 50;

/// A page costs its query plus its selection once per row it may return.
fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first
        .map_or(crate::query::DEFAULT_PAGE_SIZE as usize, |n| n.clamp(0, crate::query::MAX_PAGE_SIZE as i32) as usize);
    QUERY_COST + rows.max(1) * child_complexity
}

fn cursor(after: Option<String>) -> async_graphql::Result<Option<i64>> {
    match after {
        None => Ok(None),
        Some(s) => async_graphql::connection::CursorType::decode_cursor(&s)
            .map(|c: OpaqueCursor<i64>| Some(c.0))
            .map_err(|_| validation("`after` is not a cursor from this list; pass an endCursor exactly as returned")),
    }
}

/// Loads, in one batch each, the customers and products a page of orders
/// will ask for, so nested fields are served from the request's cache
/// whatever the resolution timing.
/// The columns the selected fields of a page's orders show (through
/// `edges { node }` and `nodes`, fragments included). A field this list
/// does not know reads the whole row: a new field is never shown empty.
fn order_columns(ctx: &Context<'_>) -> crate::query::orders::OrderColumns {
    use crate::query::orders::{OrderColumn as C, OrderColumns};
    let look = ctx.look_ahead();
    let mut columns = OrderColumns::KEY;
    for node in [look.field("edges").field("node"), look.field("nodes")] {
        for occurrence in node.selection_fields() {
            for field in occurrence.selection_set() {
                let column = match field.name() {
                    "id" | "__typename" => continue,
                    "customerId" | "customer" => C::CustomerId,
                    "customerName" => C::CustomerName,
                    "customerEmail" => C::CustomerEmail,
                    "lines" => C::Lines,
                    "lineCount" => C::LineCount,
                    "totalCents" => C::TotalCents,
                    "status" => C::Status,
                    "cancelReason" => C::CancelReason,
                    "carrier" => C::Carrier,
                    "trackingNumber" => C::TrackingNumber,
                    "placedAt" => C::PlacedAt,
                    "cancelledAt" => C::CancelledAt,
                    "shippedAt" => C::ShippedAt,
                    "channel" => C::Channel,
                    "version" => C::Version,
                    _ => return OrderColumns::ALL,
                };
                columns = columns.with(column);
            }
        }
    }
    columns
}

async fn prefetch(ctx: &Context<'_>, rows: &[crate::query::OrderSummaryRow]) -> async_graphql::Result<()> {
    let node = ctx.look_ahead().field("edges").field("node");
    if node.field("customer").exists() {
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.customer_id).collect();
        ctx.data::<CustomerLoaderHandle>()?.load_many(ids).await.map_err(|e| from_query(shared(e)))?;
    }
    if node.field("lines").field("product").exists() {
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        for row in rows {
            let lines = super::types::line_product_ids(&row.lines).map_err(|e| {
                super::error::internal_error_of(&format!("order {}: stored lines cannot be read: {e}", row.order_id))
            })?;
            ids.extend(lines);
        }
        ctx.data::<ProductLoaderHandle>()?.load_many(ids).await.map_err(|e| from_query(shared(e)))?;
    }
    Ok(())
}

fn shared(e: std::sync::Arc<crate::query::QueryError>) -> crate::query::QueryError {
    std::sync::Arc::try_unwrap(e).unwrap_or_else(|shared| crate::query::QueryError::Validation(shared.to_string()))
}

/// Every field reads the read views, which follow the write model a moment
/// behind. To read your own write, pass the token a mutation returned as the
/// field's `consistentWith` argument, or once for the whole operation as the
/// request-level extension `"extensions": {"consistentWith": "<token>"}` (over
/// POST, GET's `extensions` parameter, or a WebSocket `subscribe` payload):
/// every root field then waits until its views show that write (given both,
/// the later token). A value that is not a token is a VALIDATION error.
#[Object(name = "Query")]
impl QueryRoot {
    /// Any order, customer or product by its id (Relay's global object
    /// identification; ids are UUIDs unique across types). `null` for an
    /// unknown id, and for one the caller may not see.
    #[graphql(complexity = "3 * QUERY_COST + child_complexity")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let id = uuid("id", &id)?;
        // No argument of its own; the request's `extensions.consistentWith` applies.
        let reads = &consistent(ctx, ORDER_VIEWS, None).await?;
        if let Some(product) = reads.products_by_ids(&[id]).await.map_err(from_query)?.pop() {
            return Ok(Some(Node::Product(Product(product))));
        }
        // Beyond the catalog, only what the caller may read (anonymous: nothing).
        let Ok(scope) = access::scope(ctx) else { return Ok(None) };
        if let Some(order) = reads.order(id, scope).await.map_err(from_query)? {
            return Ok(Some(Node::OrderSummary(OrderSummary(order))));
        }
        Ok(reads.customer(id, scope).await.map_err(from_query)?.map(|c| Node::Customer(Customer(c))))
    }

    /// Who this request acts as (from its bearer token; see docs/frontend.md,
    /// "Identity and access").
    async fn viewer(&self, ctx: &Context<'_>) -> Viewer {
        access::actor(ctx).into()
    }

    /// One order by id.
    #[graphql(complexity = "QUERY_COST + child_complexity")]
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<OrderSummary>> {
        let id = uuid("id", &id)?;
        let scope = access::scope(ctx)?;
        let reads = consistent(ctx, ORDER_VIEWS, consistent_with).await?;
        Ok(reads.order(id, scope).await.map_err(from_query)?.map(OrderSummary))
    }

    /// Orders, newest first, optionally by status and/or customer. A
    /// customer sees only its own.
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        status: Option<OrderStatus>,
        customer_id: Option<ID>,
        #[graphql(desc = "Page size, at most 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Page<OrderSummary>>> {
        let first = page_size(first).map_err(from_query)?;
        let after = cursor(after)?;
        let customer_id = customer_id.as_ref().map(|id| uuid("customerId", id)).transpose()?;
        let scope = access::scope(ctx)?;
        let reads = consistent(ctx, ORDER_VIEWS, consistent_with).await?;
        let status = status.map(|s| crate::domain::order::OrderStatus::from(s).as_str());
        let columns = order_columns(ctx);
        let page = reads.orders(status, customer_id, first, after, scope, columns).await.map_err(from_query)?;
        prefetch(ctx, &page.rows).await?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection
            .edges
            .extend(page.rows.into_iter().map(|r| Edge::new(OpaqueCursor(r.placed_position), OrderSummary(r))));
        Ok(Some(connection))
    }

    /// One customer's dashboard (a customer: only its own).
    #[graphql(complexity = "QUERY_COST + child_complexity")]
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Customer>> {
        let id = uuid("id", &id)?;
        let scope = access::scope(ctx)?;
        let reads = consistent(ctx, &[View::CustomerView.name()], consistent_with).await?;
        Ok(reads.customer(id, scope).await.map_err(from_query)?.map(Customer))
    }

    /// Customers, newest first (a customer: only itself).
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Page<Customer>>> {
        let first = page_size(first).map_err(from_query)?;
        let after = cursor(after)?;
        let scope = access::scope(ctx)?;
        let reads = consistent(ctx, &[View::CustomerView.name()], consistent_with).await?;
        let page = reads.customers(first, after, scope).await.map_err(from_query)?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection
            .edges
            .extend(page.rows.into_iter().map(|r| Edge::new(OpaqueCursor(r.registered_position), Customer(r))));
        Ok(Some(connection))
    }

    /// The catalog, newest first; `search` matches title or sku.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Page<Product>> {
        let first = page_size(first).map_err(from_query)?;
        let after = cursor(after)?;
        let reads = consistent(ctx, &[View::ProductCatalog.name()], consistent_with).await?;
        let page = reads.products(search.as_deref(), first, after).await.map_err(from_query)?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(page.rows.into_iter().map(|r| Edge::new(OpaqueCursor(r.added_position), Product(r))));
        Ok(connection)
    }

    /// Best sellers by revenue (default 10, at most 100).
    #[graphql(complexity = "QUERY_COST + limit.unwrap_or(10).clamp(1, 100) as usize * child_complexity")]
    async fn top_products(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Vec<Product>> {
        let reads = consistent(ctx, &[View::ProductCatalog.name()], consistent_with).await?;
        Ok(reads.top_products(limit).await.map_err(from_query)?.into_iter().map(Product).collect())
    }

    /// Staff: sales per UTC day from `from` to `to` inclusive (at most 366
    /// days); days without sales are omitted.
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "QUERY_COST + 31 * child_complexity")]
    async fn daily_sales(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Vec<DailySales>>> {
        access::require_staff(ctx, "read daily sales")?;
        let reads = consistent(ctx, &[View::DailySales.name()], consistent_with).await?;
        Ok(Some(reads.daily_sales(from, to).await.map_err(from_query)?.into_iter().map(DailySales).collect()))
    }

    /// An order's timeline, oldest first, with who did each step (a
    /// customer: only its own orders'; another's order has no timeline).
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "QUERY_COST + 3 * child_complexity")]
    async fn order_activity(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Vec<OrderActivity>>> {
        let order_id = uuid("orderId", &order_id)?;
        let scope = access::scope(ctx)?;
        let reads = consistent(ctx, &[View::OrderActivity.name()], consistent_with).await?;
        Ok(Some(
            reads.order_activity(order_id, scope).await.map_err(from_query)?.into_iter().map(OrderActivity).collect(),
        ))
    }

    /// Admin: events projections could not apply, newest first (open ones
    /// unless `includeResolved`).
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "QUERY_COST + first.unwrap_or(50).clamp(1, 500) as usize * child_complexity")]
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        projection: Option<String>,
        #[graphql(default = false)] include_resolved: bool,
        #[graphql(desc = "At most 500 (default 50).")] first: Option<i32>,
    ) -> async_graphql::Result<Option<Vec<super::types::DeadLetter>>> {
        let admin = access::require_admin(ctx, "read dead letters")?;
        let limit = match first {
            None => 50,
            Some(n) if (1..=500).contains(&n) => n as u64,
            Some(n) => return Err(validation(format!("first must be between 1 and 500, got {n}"))),
        };
        let rows = admin
            .dead_letters(projection.as_deref(), include_resolved, limit)
            .await
            .map_err(|e| super::error::internal_error_of(&e))?;
        Ok(Some(rows.into_iter().map(super::types::DeadLetter).collect()))
    }

    /// Staff: every projection's checkpoint, status and lag. Read once per
    /// request, however many times the document asks for it.
    /// `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a caller who
    /// may not read it, so that the rest of the document still answers.
    #[graphql(complexity = "PROJECTIONS_COST + 5 * child_complexity")]
    async fn projections(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<ProjectionStatus>>> {
        access::require_staff(ctx, "read the projections' status")?;
        let admin = ctx.data::<crate::admin::Admin>()?;
        let read = || async { admin.projections().await.map_err(|e| super::error::internal_error_of(&e)) };
        let states = match ctx.data_opt::<RequestCache>() {
            Some(cache) => cache.projections.get_or_try_init(read).await?.clone(),
            None => read().await?,
        };
        Ok(Some(states.into_iter().map(ProjectionStatus).collect()))
    }
}
