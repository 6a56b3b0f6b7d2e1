//! Orders: `order_summary` and `order_activity`.
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use entity::read::{order_activity, order_summary};

use super::{ActivityRow, OrderSummaryRow, QueryError, ReadModel, Scope};

/// The columns of `order_summary` a page may leave unread: the API picks
/// them from the fields a document selects, so a page of ids and names
/// decodes four columns instead of twenty-one. The key (`order_id`) and the
/// cursor (`placed_position`) are always read.
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
    PlacedAt,
    CancelledAt,
    ShippedAt,
    Version,
    Channel,
    /// `customer_version`, `last_tx_id`, `last_position`: the projection's
    /// own book-keeping, which no field shows.
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
        (OrderColumn::PlacedAt, &[C::PlacedAt]),
        (OrderColumn::CancelledAt, &[C::CancelledAt]),
        (OrderColumn::ShippedAt, &[C::ShippedAt]),
        (OrderColumn::Version, &[C::Version]),
        (OrderColumn::Channel, &[C::Channel]),
        (OrderColumn::Bookkeeping, &[C::CustomerVersion, C::LastTxId, C::LastPosition]),
    ]
};

/// A row of only `columns`; what was not read keeps an empty value that no
/// field of the request shows (the API asked for exactly what it shows).
fn decode(row: &QueryResult, columns: OrderColumns) -> Result<OrderSummaryRow, DbErr> {
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
        placed_position: row.try_get("", "placed_position")?,
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
        placed_at: read(row, columns, O::PlacedAt, "placed_at")?,
        cancelled_at: read(row, columns, O::CancelledAt, "cancelled_at")?,
        shipped_at: read(row, columns, O::ShippedAt, "shipped_at")?,
        version: read(row, columns, O::Version, "version")?,
        last_tx_id: read(row, columns, O::Bookkeeping, "last_tx_id")?,
        last_position: read(row, columns, O::Bookkeeping, "last_position")?,
        channel: read(row, columns, O::Channel, "channel")?,
    })
}

/// A page of orders, newest first, plus whether more follow.
pub struct OrderPage {
    pub rows: Vec<OrderSummaryRow>,
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

    /// Orders newest first (by the log position of `OrderPlaced`), filtered
    /// by status and/or customer, after the cursor `after` (a placed_position),
    /// reading only `columns` beyond the key and the cursor.
    pub async fn orders(
        &self,
        status: Option<&str>,
        customer_id: Option<Uuid>,
        first: u64,
        after: Option<i64>,
        scope: Scope,
        columns: OrderColumns,
    ) -> Result<OrderPage, QueryError> {
        let mut select = order_summary::Entity::find()
            .select_only()
            .column(order_summary::Column::OrderId)
            .column(order_summary::Column::PlacedPosition);
        for (column, read) in COLUMNS {
            if columns.has(*column) {
                select = select.columns(read.iter().copied());
            }
        }
        if let Scope::Customer(own) = scope {
            select = select.filter(order_summary::Column::CustomerId.eq(own));
        }
        if let Some(status) = status {
            select = select.filter(order_summary::Column::Status.eq(status));
        }
        if let Some(customer_id) = customer_id {
            select = select.filter(order_summary::Column::CustomerId.eq(customer_id));
        }
        if let Some(after) = after {
            select = select.filter(order_summary::Column::PlacedPosition.lt(after));
        }
        let conn = self.conn();
        let statement = select
            .order_by_desc(order_summary::Column::PlacedPosition)
            .limit(first + 1)
            .build(conn.get_database_backend());
        let mut rows: Vec<OrderSummaryRow> =
            conn.query_all_raw(statement).await?.iter().map(|row| decode(row, columns)).collect::<Result<_, _>>()?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Ok(OrderPage { rows, has_next })
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
