//! What the list fields take and give beyond a page: search, filters,
//! sorts, cursors and `totalCount` (the reads are `crate::query::list`'s).
//!
//! The shapes follow Hasura's and PostGraphile's conventions where they
//! can be bounded: `filter: {column: {eq | in | gt | gte | lt | lte}}`
//! (no `and`/`or`/`not`: every offered combination has an index, and a
//! free boolean tree would not), `orderBy: [{field, direction}]` (one
//! field; ties are broken by id).
use async_graphql::connection::{Connection, CursorType, OpaqueCursor};
use async_graphql::{Context, Enum, InputObject, Object, OutputType, ID};
use chrono::{DateTime, Utc};

use super::enums::OrderStatus;
use super::error::{from_query, validation};
use super::scalars::{uuid, BigInt};
use crate::query::list::{Cursor, Direction, ListQuery, Range};
use crate::query::orders::ORDERS;
use crate::query::page_size;
use crate::query::{ReadModel, Scope};

/// A page of a list, with its `totalCount`.
pub type Page<T> = Connection<OpaqueCursor<Cursor>, T, Counted, async_graphql::connection::EmptyFields>;

/// What `totalCount` costs in the query cost limit: it counts every row
/// the list holds (a whole index range, or every match of a search). As
/// any field of a page it counts once per row the page may return (the
/// cost of a page is its selection times its size), so a page of 100 with
/// its count costs at least 2,000 of the 5,000 a request may spend.
pub const TOTAL_COUNT_COST: usize = 20;

/// The continuation `after` names, checked against the list's ordering.
pub fn after(list: ListQuery, after: Option<String>) -> async_graphql::Result<ListQuery> {
    let cursor = match after {
        None => None,
        Some(s) => Some(OpaqueCursor::<Cursor>::decode_cursor(&s).map(|c| c.0).map_err(|_| {
            validation("`after` is not a cursor from this list; pass an endCursor exactly as returned")
        })?),
    };
    list.after(cursor).map_err(from_query)
}

/// How a count is read when asked for.
#[derive(Clone)]
pub enum CountOf {
    Orders(ListQuery, Scope),
    Customers(ListQuery, Scope),
    Products(ListQuery),
    /// One customer's orders (batched with the other customers of the request).
    CustomerOrders(super::loaders::CustomerOrdersKey),
}

/// A list's extra fields: `totalCount`, read only when a document asks.
pub struct Counted(pub CountOf);

#[Object]
impl Counted {
    /// How many items the list holds in all pages, exactly, under its
    /// filter and search. Computed only when selected, by a query of its
    /// own that reads every match (a whole index range, or every match of
    /// a search), so it costs 20 in the query cost limit, per row the page
    /// may return.
    #[graphql(complexity = "TOTAL_COUNT_COST")]
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let reads = ctx.data::<ReadModel>()?;
        let n = match &self.0 {
            CountOf::Orders(list, scope) => reads.count_orders(list.clone(), *scope).await,
            CountOf::Customers(list, scope) => reads.count_customers(list.clone(), *scope).await,
            CountOf::Products(list) => reads.count(list).await,
            CountOf::CustomerOrders(key) => {
                let loader = ctx.data::<super::loaders::CustomerOrderCountLoaderHandle>()?;
                let n = loader.load_one(key.clone()).await.map_err(|e| from_query(super::loaders::unwrap_arc(e)))?;
                Ok(n.unwrap_or(0))
            }
        }
        .map_err(from_query)?;
        super::scalars::int("totalCount", n)
    }
}

/// A page: its rows with their cursors, and the count to read on demand.
pub fn page<T: OutputType>(
    rows: impl IntoIterator<Item = (Cursor, T)>,
    has_previous: bool,
    has_next: bool,
    count: CountOf,
) -> Page<T> {
    let mut connection = Connection::with_additional_fields(has_previous, has_next, Counted(count));
    connection.edges.extend(
        rows.into_iter().map(|(cursor, node)| async_graphql::connection::Edge::new(OpaqueCursor(cursor), node)),
    );
    connection
}

/// Which way a sort runs.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SortDirection {
    /// Smallest (or oldest) first.
    Asc,
    /// Largest (or newest) first.
    Desc,
}

impl From<SortDirection> for Direction {
    fn from(d: SortDirection) -> Self {
        match d {
            SortDirection::Asc => Direction::Asc,
            SortDirection::Desc => Direction::Desc,
        }
    }
}

/// Bounds on a timestamp (each optional; all given must hold).
#[derive(InputObject, Clone, Debug, Default)]
pub struct DateTimeRange {
    /// Greater than this (excluded).
    pub gt: Option<DateTime<Utc>>,
    /// This or greater.
    pub gte: Option<DateTime<Utc>>,
    /// Less than this (excluded).
    pub lt: Option<DateTime<Utc>>,
    /// This or less.
    pub lte: Option<DateTime<Utc>>,
}

impl From<DateTimeRange> for Range<DateTime<Utc>> {
    fn from(r: DateTimeRange) -> Self {
        Self { gt: r.gt, gte: r.gte, lt: r.lt, lte: r.lte }
    }
}

/// Bounds on an `Int` field (each optional; all given must hold).
#[derive(InputObject, Clone, Debug, Default)]
pub struct IntRange {
    /// Greater than this (excluded).
    pub gt: Option<i32>,
    /// This or greater.
    pub gte: Option<i32>,
    /// Less than this (excluded).
    pub lt: Option<i32>,
    /// This or less.
    pub lte: Option<i32>,
}

impl From<IntRange> for Range<i64> {
    fn from(r: IntRange) -> Self {
        Self { gt: r.gt.map(i64::from), gte: r.gte.map(i64::from), lt: r.lt.map(i64::from), lte: r.lte.map(i64::from) }
    }
}

/// Bounds on a `BigInt` field (each optional; all given must hold).
#[derive(InputObject, Clone, Debug, Default)]
pub struct BigIntRange {
    /// Greater than this (excluded).
    pub gt: Option<BigInt>,
    /// This or greater.
    pub gte: Option<BigInt>,
    /// Less than this (excluded).
    pub lt: Option<BigInt>,
    /// This or less.
    pub lte: Option<BigInt>,
}

impl From<BigIntRange> for Range<i64> {
    fn from(r: BigIntRange) -> Self {
        Self { gt: r.gt.map(|v| v.0), gte: r.gte.map(|v| v.0), lt: r.lt.map(|v| v.0), lte: r.lte.map(|v| v.0) }
    }
}

/// Orders of one status, or of any of several.
#[derive(InputObject, Clone, Debug, Default)]
pub struct OrderStatusFilter {
    /// Exactly this status.
    pub eq: Option<OrderStatus>,
    /// Any of these (at most 8).
    #[graphql(name = "in")]
    pub any: Option<Vec<OrderStatus>>,
}

/// One id.
#[derive(InputObject, Clone, Debug)]
pub struct IdEquals {
    /// The id.
    pub eq: ID,
}

/// Which orders a list holds. Without `search` or `customerId`, each sort
/// serves its own filters: `PLACED_AT` with `status` and `placedAt`,
/// `TOTAL_CENTS` with `totalCents`; anything else is refused with
/// VALIDATION, naming what is offered (no filter reads the whole view).
#[derive(InputObject, Clone, Debug, Default)]
pub struct OrderFilter {
    /// By status (`eq`, or `in` a few).
    pub status: Option<OrderStatusFilter>,
    /// One customer's orders: with it, any other filter and sort.
    pub customer_id: Option<IdEquals>,
    /// When the order was placed (a range, bounds optional).
    pub placed_at: Option<DateTimeRange>,
    /// The order's total in cents (a range).
    pub total_cents: Option<IntRange>,
}

impl OrderFilter {
    /// The query side's filter.
    pub fn into_query(self) -> async_graphql::Result<crate::query::orders::OrderFilter> {
        let statuses = match self.status {
            None => None,
            Some(OrderStatusFilter { eq: Some(_), any: Some(_) }) => {
                return Err(validation("filter.status takes `eq` or `in`, not both"));
            }
            Some(OrderStatusFilter { eq: Some(s), any: None }) => Some(vec![status_str(s)]),
            Some(OrderStatusFilter { eq: None, any: Some(list) }) => Some(list.into_iter().map(status_str).collect()),
            Some(OrderStatusFilter { eq: None, any: None }) => None,
        };
        Ok(crate::query::orders::OrderFilter {
            statuses,
            customer_id: self.customer_id.map(|c| uuid("filter.customerId.eq", &c.eq)).transpose()?,
            placed_at: self.placed_at.map(Range::from).unwrap_or_default(),
            total_cents: self.total_cents.map(Range::from).unwrap_or_default(),
        })
    }
}

fn status_str(s: OrderStatus) -> &'static str {
    crate::domain::order::OrderStatus::from(s).as_str()
}

/// What orders sort by.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderSortField {
    /// When the order was placed.
    PlacedAt,
    /// The order's total.
    TotalCents,
}

/// One sort of orders (ties are broken by id, in the same direction).
#[derive(InputObject, Clone, Debug)]
pub struct OrderOrderBy {
    /// What to sort by.
    pub field: OrderSortField,
    /// Which way (default `DESC`).
    #[graphql(default_with = "SortDirection::Desc")]
    pub direction: SortDirection,
}

/// Which customers a list holds. Without `search`, each sort serves its
/// own filter: `LIFETIME_VALUE` with `lifetimeValueCents`, `ORDERS_PLACED`
/// with `ordersPlaced`.
#[derive(InputObject, Clone, Debug, Default)]
pub struct CustomerFilter {
    /// What the customer has spent in all, in cents (a range).
    pub lifetime_value_cents: Option<BigIntRange>,
    /// How many orders the customer has placed (a range).
    pub orders_placed: Option<BigIntRange>,
}

/// What customers sort by.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum CustomerSortField {
    /// Registration order.
    RegisteredAt,
    /// What the customer has spent in all.
    LifetimeValue,
    /// How many orders the customer has placed.
    OrdersPlaced,
}

/// One sort of customers (ties are broken by id, in the same direction).
#[derive(InputObject, Clone, Debug)]
pub struct CustomerOrderBy {
    /// What to sort by.
    pub field: CustomerSortField,
    /// Which way (default `DESC`).
    #[graphql(default_with = "SortDirection::Desc")]
    pub direction: SortDirection,
}

/// Which products a list holds. Without `search`, each sort serves its own
/// filter: `PRICE` with `priceCents`, `UNITS_SOLD` with `unitsSold`.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ProductFilter {
    /// The unit price in cents (a range).
    pub price_cents: Option<IntRange>,
    /// How many units have sold (a range).
    pub units_sold: Option<BigIntRange>,
}

/// What products sort by.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProductSortField {
    /// The order products were added in.
    AddedAt,
    /// The unit price.
    Price,
    /// How many units have sold.
    UnitsSold,
}

/// One sort of products (ties are broken by id, in the same direction).
#[derive(InputObject, Clone, Debug)]
pub struct ProductOrderBy {
    /// What to sort by.
    pub field: ProductSortField,
    /// Which way (default `DESC`).
    #[graphql(default_with = "SortDirection::Desc")]
    pub direction: SortDirection,
}

/// The one sort of an `orderBy` list, as the query side names it.
pub fn one_sort<T: Clone>(order_by: Option<Vec<T>>) -> async_graphql::Result<Option<T>> {
    match order_by {
        None => Ok(None),
        Some(list) if list.len() <= 1 => Ok(list.into_iter().next()),
        Some(list) => Err(validation(format!("orderBy takes one field (ties are broken by id), got {}", list.len()))),
    }
}

impl OrderSortField {
    /// The query side's name of the sort.
    pub fn name(self) -> &'static str {
        match self {
            Self::PlacedAt => "PLACED_AT",
            Self::TotalCents => "TOTAL_CENTS",
        }
    }
}

impl CustomerSortField {
    /// The query side's name of the sort.
    pub fn name(self) -> &'static str {
        match self {
            Self::RegisteredAt => "REGISTERED_AT",
            Self::LifetimeValue => "LIFETIME_VALUE",
            Self::OrdersPlaced => "ORDERS_PLACED",
        }
    }
}

impl ProductSortField {
    /// The query side's name of the sort.
    pub fn name(self) -> &'static str {
        match self {
            Self::AddedAt => "ADDED_AT",
            Self::Price => "PRICE",
            Self::UnitsSold => "UNITS_SOLD",
        }
    }
}

/// What a root field that runs a query costs beyond its selection: a field
/// that hits the database must cost what it costs, so that a document of
/// aliases cannot turn a small request into thousands of statements.
pub const QUERY_COST: usize = 10;
/// A page costs its query plus its selection once per row it may return.
pub(super) fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first
        .map_or(crate::query::DEFAULT_PAGE_SIZE as usize, |n| n.clamp(0, crate::query::MAX_PAGE_SIZE as i32) as usize);
    QUERY_COST + rows.max(1) * child_complexity
}

/// The list `orders` (and, without search, `Customer.orders`) reads.
#[allow(clippy::too_many_arguments)]
pub(super) fn order_list(
    search: Option<String>,
    filter: Option<OrderFilter>,
    order_by: Option<Vec<OrderOrderBy>>,
    status: Option<OrderStatus>,
    customer_id: Option<ID>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<ListQuery> {
    let order_by = one_sort(order_by)?;
    let mut list = ListQuery::new(&ORDERS, page_size(first).map_err(from_query)?)
        .search(search.as_deref(), order_by.is_some())
        .map_err(from_query)?;
    if let Some(sort) = order_by {
        list = list.order_by(sort.field.name(), sort.direction.into()).map_err(from_query)?;
    }
    let mut filter = filter.unwrap_or_default();
    // The arguments from before `filter`, kept for the clients that send them.
    if let Some(status) = status {
        if filter.status.is_some() {
            return Err(validation("give the status once: `filter.status` (`status` is deprecated)"));
        }
        filter.status = Some(OrderStatusFilter { eq: Some(status), any: None });
    }
    if let Some(customer_id) = customer_id {
        if filter.customer_id.is_some() {
            return Err(validation("give the customer once: `filter.customerId` (`customerId` is deprecated)"));
        }
        filter.customer_id = Some(IdEquals { eq: customer_id });
    }
    filter.into_query()?.apply(&mut list).map_err(from_query)?;
    self::after(list, after)
}

/// The columns the selected fields of a page's orders show (through
/// `edges { node }` and `nodes`, fragments included). A field this list
/// does not know reads the whole row: a new field is never shown empty.
pub(super) fn order_columns(ctx: &Context<'_>) -> crate::query::orders::OrderColumns {
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
                    "placedAt" | "searchRank" => continue,
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
