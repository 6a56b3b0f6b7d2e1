//! Queries: every field reads only the read views (through
//! [`crate::query::ReadModel`]) and takes `consistentWith: Token` to read
//! the caller's own write.
use async_graphql::{Context, Object, ID};
use chrono::NaiveDate;

use super::access::{self, Viewer};
use super::direct::{ListedOrder, ListedPage};
use super::error::{from_query, validation};
use super::lists::{
    self, order_columns, order_list, page_cost, CountOf, CustomerFilter, CustomerOrderBy, OrderFilter, OrderOrderBy,
    Page, ProductFilter, ProductOrderBy, QUERY_COST,
};
use super::loaders::{unwrap_arc, CustomerLoaderHandle, ProductLoaderHandle};
use super::request::{RequestCache, RequestConsistency, ServedLog};
use super::scalars::{uuid, Token};
use super::types::{Customer, DailySales, Node, OrderActivity, OrderStatus, OrderSummary, Product, ProjectionStatus};
use crate::catalog::View;
use crate::query::customers::CUSTOMERS;
use crate::query::list::ListQuery;
use crate::query::products::PRODUCTS;
use crate::query::served::Served;
use crate::query::{page_size, ReadModel};
use crate::token::LogPosition;

pub struct QueryRoot;

/// What an order field can reach: the summary, and through nested fields
/// the customer dashboard and the catalog.
const ORDER_VIEWS: &[&str] = &[View::OrderSummary.name(), View::CustomerView.name(), View::ProductCatalog.name()];

/// The read model once `projections` show the field's `consistentWith`
/// and the request's `extensions.consistentWith`, whichever is later.
/// (Borrowed from the schema's data: a clone per field would copy its
/// pools' handles and URLs on every request.)
async fn consistent<'a>(
    ctx: &Context<'a>,
    projections: &[&str],
    token: Option<Token>,
) -> async_graphql::Result<&'a ReadModel> {
    let reads = ctx.data::<ReadModel>()?;
    let token = token_of(ctx, token);
    reads.ensure_visible(projections, token).await.map_err(from_query)?;
    Ok(reads)
}

/// The token a root field reads at: its `consistentWith` or the
/// request's, whichever is later.
fn token_of(ctx: &Context<'_>, token: Option<Token>) -> Option<LogPosition> {
    let request = ctx.data_opt::<RequestConsistency>().map(|r| r.0);
    std::cmp::max(token.map(|t| t.0), request)
}

/// Records how a root field was served (`extensions.served`), when it was
/// asked to read at a token or it folded.
fn note_served(ctx: &Context<'_>, token: Option<LogPosition>, served: Served) {
    if token.is_none() && served != Served::Folded {
        return;
    }
    if let Some(log) = ctx.data_opt::<ServedLog>() {
        log.note(ctx.item.node.response_key().node.as_str(), served.as_str());
    }
}

/// `projections` reads every checkpoint and counts the log behind each.
const PROJECTIONS_COST: usize = 50;

/// Loads, in one batch each, the customers and products a page of orders
/// will ask for, so nested fields are served from the request's cache
/// whatever the resolution timing.
async fn prefetch(ctx: &Context<'_>, rows: &[crate::query::OrderSummaryRow]) -> async_graphql::Result<()> {
    let node = ctx.look_ahead().field("edges").field("node");
    if node.field("customer").exists() {
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.customer_id).collect();
        ctx.data::<CustomerLoaderHandle>()?.load_many(ids).await.map_err(|e| from_query(unwrap_arc(e)))?;
    }
    if node.field("lines").field("product").exists() {
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        for row in rows {
            let lines = super::types::line_product_ids(&row.lines).map_err(|e| {
                super::error::internal_error_of(&format!("order {}: stored lines cannot be read: {e}", row.order_id))
            })?;
            ids.extend(lines);
        }
        ctx.data::<ProductLoaderHandle>()?.load_many(ids).await.map_err(|e| from_query(unwrap_arc(e)))?;
    }
    Ok(())
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
        let reads = consistent(ctx, ORDER_VIEWS, None).await?;
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
        // The order alone folds (or reads stored rows); nested fields from
        // other views wait for those views first.
        let look = ctx.look_ahead();
        let others: &[&str] = if look.field("customer").exists() || look.field("lines").field("product").exists() {
            &ORDER_VIEWS[1..]
        } else {
            &[]
        };
        let reads = ctx.data::<ReadModel>()?;
        let token = token_of(ctx, consistent_with);
        let waited = token.is_some_and(|t| others.iter().any(|v| reads.notices.known(v) < t));
        reads.ensure_visible(others, token).await.map_err(from_query)?;
        let (row, served) = reads.order_served(id, scope, token).await.map_err(from_query)?;
        note_served(ctx, token, if waited { Served::Waited } else { served });
        Ok(row.map(OrderSummary))
    }

    /// Orders: newest first, or by relevance to `search`, or as `orderBy`
    /// says; narrowed by `filter` (see `OrderFilter` for which filters each
    /// sort offers). A customer sees only its own. `totalCount` counts
    /// every page. `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a
    /// caller who may not read it, so that the rest of the document still
    /// answers.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Full-text search over the customer's name and email, the products' titles and SKUs, the tracking number and the order id: words are ANDed, `\"a phrase\"`, `-word` excludes, `word*` and the last word typed match as prefixes (docs/frontend.md, \"Search and filters\"). At most 200 characters. Ranked by relevance unless `orderBy` is given."
        )]
        search: Option<String>,
        #[graphql(desc = "Narrows the list (see `OrderFilter`: which filters each sort offers).")] filter: Option<
            OrderFilter,
        >,
        #[graphql(desc = "One sort (ties by id). Default: `PLACED_AT DESC`, or relevance with `search`.")]
        order_by: Option<Vec<OrderOrderBy>>,
        #[graphql(deprecation = "use filter: {status: {eq: …}}")] status: Option<OrderStatus>,
        #[graphql(deprecation = "use filter: {customerId: {eq: …}}")] customer_id: Option<ID>,
        #[graphql(desc = "Page size, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` of the page before, exactly as returned (under the same search, filter and sort)."
        )]
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<ListedPage<OrderSummary>>> {
        let scope = access::scope(ctx)?;
        let list = order_list(search, filter, order_by, status, customer_id, first, after)?;
        let reads = consistent(ctx, ORDER_VIEWS, consistent_with).await?;
        let columns = order_columns(ctx);
        let had_after = list.after.is_some();
        let page = reads.orders(list.clone(), scope, columns).await.map_err(from_query)?;
        prefetch(ctx, &page.rows).await?;
        let rows = page.cursors.into_iter().zip(page.rows.into_iter().map(|row| ListedOrder(OrderSummary(row))));
        Ok(Some(ListedPage(lists::page(rows, had_after, page.has_next, CountOf::Orders(list, scope)))))
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
        let reads = ctx.data::<ReadModel>()?;
        let token = token_of(ctx, consistent_with);
        let (row, served) = reads.customer_served(id, scope, token).await.map_err(from_query)?;
        note_served(ctx, token, served);
        Ok(row.map(Customer))
    }

    /// Customers: newest registration first, or by relevance to `search`,
    /// or as `orderBy` says; narrowed by `filter` (a customer: only
    /// itself). `null` (with an UNAUTHENTICATED or FORBIDDEN error) for a
    /// caller who may not read it, so that the rest of the document still
    /// answers.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Full-text search over name and email (the language of `orders(search:)`). Ranked by relevance unless `orderBy` is given."
        )]
        search: Option<String>,
        #[graphql(desc = "Narrows the list (see `CustomerFilter`: which filter each sort offers).")] filter: Option<
            CustomerFilter,
        >,
        #[graphql(desc = "One sort (ties by id). Default: `REGISTERED_AT DESC`, or relevance with `search`.")]
        order_by: Option<Vec<CustomerOrderBy>>,
        #[graphql(desc = "Page size, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` of the page before, exactly as returned (under the same search, filter and sort)."
        )]
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Page<Customer>>> {
        let scope = access::scope(ctx)?;
        let order_by = lists::one_sort(order_by)?;
        let mut list = ListQuery::new(&CUSTOMERS, page_size(first).map_err(from_query)?)
            .search(search.as_deref(), order_by.is_some())
            .map_err(from_query)?;
        if let Some(sort) = order_by {
            list = list.order_by(sort.field.name(), sort.direction.into()).map_err(from_query)?;
        }
        if let Some(filter) = filter {
            crate::query::customers::CustomerFilter {
                lifetime_value_cents: filter.lifetime_value_cents.map(Into::into).unwrap_or_default(),
                orders_placed: filter.orders_placed.map(Into::into).unwrap_or_default(),
            }
            .apply(&mut list);
        }
        let list = lists::after(list, after)?;
        let reads = consistent(ctx, &[View::CustomerView.name()], consistent_with).await?;
        let had_after = list.after.is_some();
        let page = reads.customers(list.clone(), scope).await.map_err(from_query)?;
        let rows = page.cursors.into_iter().zip(page.rows.into_iter().map(Customer));
        Ok(Some(lists::page(rows, had_after, page.has_next, CountOf::Customers(list, scope))))
    }

    /// One product by id.
    #[graphql(complexity = "QUERY_COST + child_complexity")]
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Option<Product>> {
        let id = uuid("id", &id)?;
        consistent(ctx, &[View::ProductCatalog.name()], consistent_with).await?;
        let loader = ctx.data::<ProductLoaderHandle>()?;
        Ok(loader.load_one(id).await.map_err(|e| from_query(unwrap_arc(e)))?.map(Product))
    }

    /// The catalog: newest first, or by relevance to `search`, or as
    /// `orderBy` says; narrowed by `filter`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Full-text search over title and SKU (the language of `orders(search:)`). Ranked by relevance unless `orderBy` is given."
        )]
        search: Option<String>,
        #[graphql(desc = "Narrows the list (see `ProductFilter`: which filter each sort offers).")] filter: Option<
            ProductFilter,
        >,
        #[graphql(desc = "One sort (ties by id). Default: `ADDED_AT DESC`, or relevance with `search`.")]
        order_by: Option<Vec<ProductOrderBy>>,
        #[graphql(desc = "Page size, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` of the page before, exactly as returned (under the same search, filter and sort)."
        )]
        after: Option<String>,
        consistent_with: Option<Token>,
    ) -> async_graphql::Result<Page<Product>> {
        let order_by = lists::one_sort(order_by)?;
        let mut list = ListQuery::new(&PRODUCTS, page_size(first).map_err(from_query)?)
            .search(search.as_deref(), order_by.is_some())
            .map_err(from_query)?;
        if let Some(sort) = order_by {
            list = list.order_by(sort.field.name(), sort.direction.into()).map_err(from_query)?;
        }
        if let Some(filter) = filter {
            crate::query::products::ProductFilter {
                price_cents: filter.price_cents.map(Into::into).unwrap_or_default(),
                units_sold: filter.units_sold.map(Into::into).unwrap_or_default(),
            }
            .apply(&mut list);
        }
        let list = lists::after(list, after)?;
        let reads = consistent(ctx, &[View::ProductCatalog.name()], consistent_with).await?;
        let had_after = list.after.is_some();
        let page = reads.products(list.clone()).await.map_err(from_query)?;
        let rows = page.cursors.into_iter().zip(page.rows.into_iter().map(Product));
        Ok(lists::page(rows, had_after, page.has_next, CountOf::Products(list)))
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
        let reads = ctx.data::<ReadModel>()?;
        let token = token_of(ctx, consistent_with);
        let (rows, served) = reads.activity_served(order_id, scope, token).await.map_err(from_query)?;
        note_served(ctx, token, served);
        Ok(Some(rows.into_iter().map(OrderActivity).collect()))
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
