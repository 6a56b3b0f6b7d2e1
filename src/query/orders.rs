//! Orders: `order_summary` and `order_activity`.
use std::collections::HashMap;

use sea_orm::{ColumnTrait, DbErr, EntityTrait, IdenStatic, QueryFilter, QueryOrder, QueryResult};
use uuid::Uuid;

use entity::read::{order_activity, order_summary};

use super::list::{Condition, Cursor, Direction, Filter, ListQuery, Order, Range, SortSpec, ViewSpec};
use super::{ActivityRow, OrderSummaryRow, QueryError, ReadModel, Scope};

/// The columns of `order_summary` a page may leave unread: the API picks
/// them from the fields a document selects, so a page of ids and names
/// decodes four columns instead of twenty-one. The key (`order_id`) and the
/// sort keys are always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderColumn {
    CustomerId,
    CustomerName,
    CustomerEmail,
    Lines,
    LineCount,
    TotalCents,
    Status,
    CancelReason,
    Carrier,
    TrackingNumber,
    CancelledAt,
    ShippedAt,
    Version,
    Channel,
    /// `customer_version`, `placed_position`, `last_tx_id`,
    /// `last_position`: the projection's own book-keeping, which no field
    /// shows.
    Bookkeeping,
}

/// A set of [`OrderColumn`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderColumns(u32);

impl OrderColumns {
    /// The key and the cursor only.
    pub const KEY: Self = Self(0);
    /// Every column: the whole row.
    pub const ALL: Self = Self(u32::MAX);

    #[must_use]
    pub fn with(self, column: OrderColumn) -> Self {
        Self(self.0 | 1 << column as u32)
    }

    pub fn has(self, column: OrderColumn) -> bool {
        self.0 & (1 << column as u32) != 0
    }
}

/// Which entity columns each [`OrderColumn`] reads.
const COLUMNS: &[(OrderColumn, &[order_summary::Column])] = {
    use order_summary::Column as C;
    &[
        (OrderColumn::CustomerId, &[C::CustomerId]),
        (OrderColumn::CustomerName, &[C::CustomerName]),
        (OrderColumn::CustomerEmail, &[C::CustomerEmail]),
        (OrderColumn::Lines, &[C::Lines]),
        (OrderColumn::LineCount, &[C::LineCount]),
        (OrderColumn::TotalCents, &[C::TotalCents]),
        (OrderColumn::Status, &[C::Status]),
        (OrderColumn::CancelReason, &[C::CancelReason]),
        (OrderColumn::Carrier, &[C::Carrier]),
        (OrderColumn::TrackingNumber, &[C::TrackingNumber]),
        (OrderColumn::CancelledAt, &[C::CancelledAt]),
        (OrderColumn::ShippedAt, &[C::ShippedAt]),
        (OrderColumn::Version, &[C::Version]),
        (OrderColumn::Channel, &[C::Channel]),
        (OrderColumn::Bookkeeping, &[C::CustomerVersion, C::LastTxId, C::LastPosition]),
    ]
};

/// A row of only `columns`; what was not read keeps an empty value that no
/// field of the request shows (the API asked for exactly what it shows).
fn decode(row: &QueryResult, columns: OrderColumns, ranked: bool) -> Result<OrderSummaryRow, DbErr> {
    fn read<T: sea_orm::TryGetable + Default>(
        row: &QueryResult,
        columns: OrderColumns,
        column: OrderColumn,
        name: &str,
    ) -> Result<T, DbErr> {
        if columns.has(column) {
            row.try_get("", name)
        } else {
            Ok(T::default())
        }
    }
    use OrderColumn as O;
    Ok(OrderSummaryRow {
        order_id: row.try_get("", "order_id")?,
        placed_at: row.try_get("", "placed_at")?,
        placed_position: read(row, columns, O::Bookkeeping, "placed_position")?,
        customer_id: read(row, columns, O::CustomerId, "customer_id")?,
        customer_name: read(row, columns, O::CustomerName, "customer_name")?,
        customer_email: read(row, columns, O::CustomerEmail, "customer_email")?,
        customer_version: read(row, columns, O::Bookkeeping, "customer_version")?,
        lines: read(row, columns, O::Lines, "lines")?,
        line_count: read(row, columns, O::LineCount, "line_count")?,
        total_cents: read(row, columns, O::TotalCents, "total_cents")?,
        status: read(row, columns, O::Status, "status")?,
        cancel_reason: read(row, columns, O::CancelReason, "cancel_reason")?,
        carrier: read(row, columns, O::Carrier, "carrier")?,
        tracking_number: read(row, columns, O::TrackingNumber, "tracking_number")?,
        cancelled_at: read(row, columns, O::CancelledAt, "cancelled_at")?,
        shipped_at: read(row, columns, O::ShippedAt, "shipped_at")?,
        version: read(row, columns, O::Version, "version")?,
        last_tx_id: read(row, columns, O::Bookkeeping, "last_tx_id")?,
        last_position: read(row, columns, O::Bookkeeping, "last_position")?,
        channel: read(row, columns, O::Channel, "channel")?,
        search_rank: if ranked { Some(row.try_get("", "rank")?) } else { None },
    })
}

/// The column list for a page: the key and the default sort key always,
/// the list's sort key, and `columns`.
fn select_list(columns: OrderColumns, order: Order) -> String {
    let mut names: Vec<&str> = vec!["order_id", "placed_at"];
    if let Order::By(sort, _) = order {
        names.push(sort.column);
    }
    for (column, read) in COLUMNS {
        if columns.has(*column) {
            names.extend(read.iter().map(|c| c.as_str()));
        }
    }
    if columns.has(OrderColumn::Bookkeeping) {
        names.push("placed_position");
    }
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// Orders as lists show them: newest first by default; sorted by when
/// they were placed or by total; filtered by status and when placed
/// (served by the `placed_at` indexes) or by total (by the `total_cents`
/// one); any filter within one customer's orders or a search.
pub static ORDERS: ViewSpec = ViewSpec {
    list: "orders",
    table: "order_summary",
    key: "order_id",
    fts: "order_summary_fts",
    default_sort: PLACED_AT,
    default_direction: Direction::Desc,
    sorts: &[PLACED_AT, TOTAL_CENTS],
};

const PLACED_AT: SortSpec =
    SortSpec { name: "PLACED_AT", column: "placed_at", time: true, serves: &["status", "placedAt"] };
const TOTAL_CENTS: SortSpec =
    SortSpec { name: "TOTAL_CENTS", column: "total_cents", time: false, serves: &["totalCents"] };

/// What orders a list holds, beyond a search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFilter {
    /// Any of these statuses (`placed`, `cancelled`, `shipped`).
    pub statuses: Option<Vec<&'static str>>,
    /// One customer's orders.
    pub customer_id: Option<Uuid>,
    pub placed_at: Range<chrono::DateTime<chrono::Utc>>,
    pub total_cents: Range<i64>,
}

impl OrderFilter {
    /// Adds the filter to `list` (a customer bounds it: one customer's
    /// orders are few enough for any filter and sort).
    pub fn apply(self, list: &mut ListQuery) -> Result<(), QueryError> {
        if let Some(statuses) = self.statuses {
            if statuses.is_empty() || statuses.len() > super::list::MAX_IN_VALUES {
                return Err(QueryError::Validation(format!(
                    "filter.status.in takes 1 to {} statuses, got {}",
                    super::list::MAX_IN_VALUES,
                    statuses.len()
                )));
            }
            let mut statuses = statuses;
            statuses.sort_unstable();
            statuses.dedup();
            let condition = match statuses.as_slice() {
                [one] => Condition::eq("status", *one),
                _ => Condition::In { column: "status", values: statuses.iter().map(|s| (*s).into()).collect() },
            };
            list.filters.push(Filter { name: "status", conditions: vec![condition] });
        }
        if let Some(customer) = self.customer_id {
            list.bound.push(Condition::eq("customer_id", customer));
        }
        list.filters.extend(Filter::range("placedAt", "placed_at", &self.placed_at));
        list.filters.extend(Filter::range("totalCents", "total_cents", &self.total_cents));
        Ok(())
    }
}

/// A page of orders.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub rows: Vec<OrderSummaryRow>,
    /// Each row's cursor.
    pub cursors: Vec<Cursor>,
    pub has_next: bool,
}

impl ReadModel {
    /// One order, if it exists and is in `scope` (another customer's
    /// order reads as absent, exactly like a missing one).
    pub async fn order(&self, id: Uuid, scope: Scope) -> Result<Option<OrderSummaryRow>, QueryError> {
        let mut select = order_summary::Entity::find_by_id(id);
        if let Scope::Customer(own) = scope {
            select = select.filter(order_summary::Column::CustomerId.eq(own));
        }
        Ok(select.one(self.conn()).await?.map(OrderSummaryRow::from))
    }

    /// A list of orders in `scope`, reading only `columns` beyond the key
    /// and the sort keys.
    pub async fn orders(
        &self,
        mut list: ListQuery,
        scope: Scope,
        columns: OrderColumns,
    ) -> Result<OrderPage, QueryError> {
        if let Scope::Customer(own) = scope {
            list.bound.push(Condition::eq("customer_id", own));
        }
        let raw = self.page_rows(&list, &select_list(columns, list.order)).await?;
        let ranked = list.order == Order::Relevance;
        let mut rows = Vec::with_capacity(raw.len());
        let mut cursors = Vec::with_capacity(raw.len());
        for row in raw.iter().take(list.first as usize) {
            let decoded = decode(row, columns, ranked)?;
            cursors.push(list.cursor(row, decoded.order_id)?);
            rows.push(decoded);
        }
        Ok(OrderPage { rows, cursors, has_next: raw.len() as u64 > list.first })
    }

    /// How many orders `list` holds in `scope`.
    pub async fn count_orders(&self, mut list: ListQuery, scope: Scope) -> Result<i64, QueryError> {
        if let Scope::Customer(own) = scope {
            list.bound.push(Condition::eq("customer_id", own));
        }
        self.count(&list).await
    }

    /// The pages of several customers' orders at once (`Customer.orders`
    /// under a list of customers: one statement, not one per customer).
    pub async fn orders_of_customers(
        &self,
        customers: &[Uuid],
        list: &ListQuery,
        columns: OrderColumns,
    ) -> Result<HashMap<Uuid, OrderPage>, QueryError> {
        let select = select_list(columns.with(OrderColumn::CustomerId), list.order);
        let raw = self.partition_rows(list, &select, "customer_id", customers).await?;
        let mut pages: HashMap<Uuid, OrderPage> = HashMap::new();
        for row in &raw {
            let decoded = decode(row, columns.with(OrderColumn::CustomerId), false)?;
            let page = pages.entry(decoded.customer_id).or_insert_with(|| OrderPage {
                rows: Vec::new(),
                cursors: Vec::new(),
                has_next: false,
            });
            if page.rows.len() as u64 >= list.first {
                page.has_next = true;
                continue;
            }
            page.cursors.push(list.cursor(row, decoded.order_id)?);
            page.rows.push(decoded);
        }
        Ok(pages)
    }

    /// How many orders each of `customers` has in `list` (one statement).
    pub async fn count_orders_of_customers(
        &self,
        customers: &[Uuid],
        list: &ListQuery,
    ) -> Result<HashMap<Uuid, i64>, QueryError> {
        self.partition_counts(list, "customer_id", customers).await
    }

    pub async fn order_activity(&self, order_id: Uuid, scope: Scope) -> Result<Vec<ActivityRow>, QueryError> {
        let mut select = order_activity::Entity::find().filter(order_activity::Column::OrderId.eq(order_id));
        if let Scope::Customer(own) = scope {
            select = select.filter(order_activity::Column::CustomerId.eq(own));
        }
        Ok(select
            .order_by_asc(order_activity::Column::StreamVersion)
            .order_by_asc(order_activity::Column::Position)
            .all(self.conn())
            .await?
            .into_iter()
            .map(ActivityRow::from)
            .collect())
    }
}
