//! `customer_view`: a customer dashboard — profile, order counts by status,
//! lifetime value (totals of orders not cancelled) and last order time.
use sea_orm::{DatabaseTransaction, Value};

use super::sql::{advance_marker, execute, not_yet_applied};
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct CustomerView;

pub const NAME: &str = "customer_view";

#[async_trait::async_trait]
impl Projection for CustomerView {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, txn: &DatabaseTransaction, events: &[RecordedEvent], ctx: ApplyContext) -> Result<(), ApplyError> {
        for e in events {
            apply_one(txn, e, ctx).await?;
        }
        Ok(())
    }
}

/// Applies an order event's effect on the customer's counters, once.
async fn bump(txn: &DatabaseTransaction, e: &RecordedEvent, ctx: ApplyContext, customer_id: uuid::Uuid, set: &str, extra: Vec<Value>) -> Result<(), ApplyError> {
    // $1 customer, $2 tx, $3 position, $4 guard, then the `set` fragment's own values from $5.
    let sql = format!(
        "UPDATE customer_view SET {set}, {} WHERE customer_id = $1 AND {}",
        advance_marker(2, 3),
        not_yet_applied(2, 3, 4)
    );
    let mut values = vec![customer_id.into(), e.tx_id.into(), e.position.into(), i32::from(ctx.position_guard).into()];
    values.extend(extra);
    execute(txn, &sql, values).await?;
    Ok(())
}

async fn apply_one(txn: &DatabaseTransaction, e: &RecordedEvent, ctx: ApplyContext) -> Result<(), ApplyError> {
    match &e.event {
        DomainEvent::CustomerRegistered(r) => {
            execute(
                txn,
                "INSERT INTO customer_view (customer_id, name, email, registered_at, registered_position, orders_placed, orders_open, \
                 orders_cancelled, orders_shipped, lifetime_value_cents, last_order_at, version, last_tx_id, last_position) \
                 VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, 0, NULL, 1, $6, $5) ON CONFLICT (customer_id) DO NOTHING",
                vec![r.customer_id.into(), r.name.clone().into(), r.email.clone().into(), e.recorded_at.into(), e.position.into(), e.tx_id.into()],
            )
            .await?;
        }
        DomainEvent::CustomerRenamed(r) => {
            execute(
                txn,
                "UPDATE customer_view SET name = $1, version = $2 WHERE customer_id = $3 AND version < $2",
                vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into()],
            )
            .await?;
        }
        DomainEvent::OrderPlaced(p) => {
            bump(
                txn,
                e,
                ctx,
                p.customer_id,
                "orders_placed = orders_placed + 1, orders_open = orders_open + 1, lifetime_value_cents = lifetime_value_cents + $5, \
                 last_order_at = CASE WHEN last_order_at IS NULL OR last_order_at < $6 THEN $6 ELSE last_order_at END",
                vec![p.total_cents.into(), e.recorded_at.into()],
            )
            .await?;
        }
        DomainEvent::OrderCancelled(c) => {
            bump(
                txn,
                e,
                ctx,
                c.customer_id,
                "orders_open = orders_open - 1, orders_cancelled = orders_cancelled + 1, lifetime_value_cents = lifetime_value_cents - $5",
                vec![c.total_cents.into()],
            )
            .await?;
        }
        DomainEvent::OrderShipped(s) => {
            bump(txn, e, ctx, s.customer_id, "orders_open = orders_open - 1, orders_shipped = orders_shipped + 1", vec![]).await?;
        }
        DomainEvent::ProductAdded(_) | DomainEvent::ProductPriceChanged(_) => {}
    }
    Ok(())
}
