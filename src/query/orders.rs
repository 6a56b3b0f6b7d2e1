//! Orders: `order_summary` and `order_activity`.
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use entity::read::{order_activity, order_summary};

use super::{ActivityRow, OrderSummaryRow, QueryError, ReadModel, Scope};

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
    /// by status and/or customer, after the cursor `after` (a placed_position).
    pub async fn orders(
        &self,
        status: Option<&str>,
        customer_id: Option<Uuid>,
        first: u64,
        after: Option<i64>,
        scope: Scope,
    ) -> Result<OrderPage, QueryError> {
        let mut select = order_summary::Entity::find();
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
        let mut rows: Vec<OrderSummaryRow> = select
            .order_by_desc(order_summary::Column::PlacedPosition)
            .limit(first + 1)
            .all(self.conn())
            .await?
            .into_iter()
            .map(OrderSummaryRow::from)
            .collect();
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
