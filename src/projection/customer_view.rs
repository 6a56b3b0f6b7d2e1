//! `customer_view`: a customer dashboard — profile, order counts by status,
//! lifetime value (totals of orders not cancelled) and last order time.
//!
//! A batch goes through the fold pipeline ([`super::fold`]): new customers
//! as whole rows (a stored one is kept), renames (rare) one by one under a
//! version guard, and what each order event adds to its customer's
//! counters ([`deltas`], this view's own part) summed per customer and
//! added in one statement.
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, Value};
use uuid::Uuid;

use entity::read::customer_view::Model as Row;

use super::apply::{checked_add, ApplyContext, ApplyError, Projection};
use super::fold::{Column, Counters, Delta, DeltaColumn, Kind, Merge, Table};
use super::sql::execute;
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct CustomerView;

pub const NAME: &str = crate::catalog::View::CustomerView.name();

/// Every column of `customer_view`, in the entity's order (new customers
/// are written through it; a test holds it equal to the entity's).
pub(super) const TABLE: Table<Row> = Table {
    name: NAME,
    key: "customer_id",
    key_kind: Kind::Uuid,
    columns: &[
        Column { name: "customer_id", kind: Kind::Uuid, value: |r| r.customer_id.into() },
        Column { name: "name", kind: Kind::Text, value: |r| r.name.clone().into() },
        Column { name: "email", kind: Kind::Text, value: |r| r.email.clone().into() },
        Column { name: "registered_at", kind: Kind::Time, value: |r| r.registered_at.into() },
        Column { name: "registered_position", kind: Kind::BigInt, value: |r| r.registered_position.into() },
        Column { name: "orders_placed", kind: Kind::BigInt, value: |r| r.orders_placed.into() },
        Column { name: "orders_open", kind: Kind::BigInt, value: |r| r.orders_open.into() },
        Column { name: "orders_cancelled", kind: Kind::BigInt, value: |r| r.orders_cancelled.into() },
        Column { name: "orders_shipped", kind: Kind::BigInt, value: |r| r.orders_shipped.into() },
        Column { name: "lifetime_value_cents", kind: Kind::BigInt, value: |r| r.lifetime_value_cents.into() },
        Column { name: "last_order_at", kind: Kind::OptTime, value: |r| r.last_order_at.into() },
        Column { name: "version", kind: Kind::BigInt, value: |r| r.version.into() },
        Column { name: "last_tx_id", kind: Kind::BigInt, value: |r| r.last_tx_id.into() },
        Column { name: "last_position", kind: Kind::BigInt, value: |r| r.last_position.into() },
        Column { name: "search_name", kind: Kind::OptText, value: |r| r.search_name.clone().into() },
        Column { name: "search_text", kind: Kind::OptText, value: |r| r.search_text.clone().into() },
    ],
};

/// What order events add to one customer's counters.
#[derive(Default)]
pub(super) struct OrderCounts {
    placed: i64,
    open: i64,
    cancelled: i64,
    shipped: i64,
    lifetime_value: i64,
    last_order_at: Option<DateTime<Utc>>,
}

impl Delta for OrderCounts {
    fn add(&mut self, other: &Self, e: &RecordedEvent) -> Result<(), ApplyError> {
        self.placed = checked_add(self.placed, other.placed, e, "ordersPlaced")?;
        self.open = checked_add(self.open, other.open, e, "ordersOpen")?;
        self.cancelled = checked_add(self.cancelled, other.cancelled, e, "ordersCancelled")?;
        self.shipped = checked_add(self.shipped, other.shipped, e, "ordersShipped")?;
        self.lifetime_value = checked_add(self.lifetime_value, other.lifetime_value, e, "lifetimeValueCents")?;
        self.last_order_at = self.last_order_at.max(other.last_order_at);
        Ok(())
    }
}

const COUNTERS: Counters<OrderCounts> = Counters {
    table: NAME,
    key: "customer_id",
    key_kind: Kind::Uuid,
    columns: &[
        DeltaColumn { name: "orders_placed", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.placed.into() },
        DeltaColumn { name: "orders_open", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.open.into() },
        DeltaColumn { name: "orders_cancelled", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.cancelled.into() },
        DeltaColumn { name: "orders_shipped", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.shipped.into() },
        DeltaColumn {
            name: "lifetime_value_cents",
            kind: Kind::BigInt,
            merge: Merge::Sum,
            value: |d| d.lifetime_value.into(),
        },
        DeltaColumn {
            name: "last_order_at",
            kind: Kind::OptTime,
            merge: Merge::Latest,
            value: |d| d.last_order_at.into(),
        },
    ],
    creates_rows: false,
};

/// What an order event adds to its customer's counters.
pub(super) fn deltas(e: &RecordedEvent) -> Result<Vec<(Uuid, OrderCounts)>, ApplyError> {
    Ok(match &e.event {
        DomainEvent::OrderPlaced(p) => vec![(
            p.customer_id,
            OrderCounts {
                placed: 1,
                open: 1,
                lifetime_value: p.total_cents,
                last_order_at: Some(e.recorded_at),
                ..Default::default()
            },
        )],
        DomainEvent::OrderCancelled(c) => vec![(
            c.customer_id,
            OrderCounts {
                open: -1,
                cancelled: 1,
                lifetime_value: c.total_cents.checked_neg().unwrap_or(i64::MIN),
                ..Default::default()
            },
        )],
        DomainEvent::OrderShipped(s) => {
            vec![(s.customer_id, OrderCounts { open: -1, shipped: 1, ..Default::default() })]
        }
        _ => Vec::new(),
    })
}

/// The row a registration creates.
fn registered(e: &RecordedEvent) -> Option<Row> {
    let DomainEvent::CustomerRegistered(r) = &e.event else { return None };
    Some(Row {
        customer_id: r.customer_id,
        name: r.name.clone(),
        email: r.email.clone(),
        registered_at: e.recorded_at,
        registered_position: e.position,
        orders_placed: 0,
        orders_open: 0,
        orders_cancelled: 0,
        orders_shipped: 0,
        lifetime_value_cents: 0,
        last_order_at: None,
        version: 1,
        last_tx_id: e.tx_id,
        last_position: e.position,
        search_name: None,
        search_text: None,
    })
    .map(|mut row| {
        index(&mut row);
        row
    })
}

/// Sets what finds the customer in a search (see [`crate::search`]): the
/// name, and the email.
pub(super) fn index(row: &mut Row) {
    row.search_name = Some(crate::search::document([row.name.as_str()]));
    row.search_text = Some(crate::search::document([row.email.as_str()]));
}

#[async_trait::async_trait]
impl Projection for CustomerView {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        let new: Vec<Row> = events.iter().filter_map(registered).collect();
        TABLE.write(txn, &new.iter().collect::<Vec<_>>(), "ON CONFLICT (customer_id) DO NOTHING").await?;
        for e in events {
            if let DomainEvent::CustomerRenamed(r) = &e.event {
                let search_name = crate::search::document([r.name.as_str()]);
                let values: Vec<Value> =
                    vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into(), search_name.into()];
                execute(
                    txn,
                    "UPDATE customer_view SET name = $1, version = $2, search_name = $4 WHERE customer_id = $3 AND version < $2",
                    values,
                )
                .await?;
            }
        }
        COUNTERS.apply(txn, events, ctx, deltas).await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    #[test]
    fn the_column_list_is_the_entitys() {
        let entity: Vec<&str> = entity::read::customer_view::Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(super::TABLE.column_names(), entity);
    }
}
