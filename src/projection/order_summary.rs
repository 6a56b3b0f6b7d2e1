//! `order_summary`: one wide row per order, with the customer's name and
//! email (kept current on rename) and the lines' skus and titles (as at
//! order time) joined in once, here, instead of on every read.
use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};
use serde_json::json;

use super::sql::execute;
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct OrderSummary;

pub const NAME: &str = "order_summary";

#[async_trait::async_trait]
impl Projection for OrderSummary {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, txn: &DatabaseTransaction, events: &[RecordedEvent], _ctx: ApplyContext) -> Result<(), ApplyError> {
        for e in events {
            apply_one(txn, e).await?;
        }
        Ok(())
    }
}

async fn apply_one(txn: &DatabaseTransaction, e: &RecordedEvent) -> Result<(), ApplyError> {
    let (tx, pos) = (Value::from(e.tx_id), Value::from(e.position));
    match &e.event {
        DomainEvent::OrderPlaced(p) => {
            let lines: Vec<_> = p
                .lines
                .iter()
                .map(|l| {
                    json!({
                        "productId": l.product_id, "sku": l.sku, "title": l.title, "quantity": l.quantity,
                        "unitPriceCents": l.unit_price_cents, "lineTotalCents": l.line_total_cents(),
                    })
                })
                .collect();
            if e.stream_version != 1 {
                return Err(poison(e, format!("OrderPlaced at stream version {} (expected 1)", e.stream_version)));
            }
            // The first event of the stream creates the row; a replay finds it and changes nothing.
            execute(
                txn,
                "INSERT INTO order_summary (order_id, customer_id, customer_name, customer_email, customer_version, lines, \
                 line_count, total_cents, status, placed_at, placed_position, version, last_tx_id, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PLACED', $9, $10, 1, $11, $12) ON CONFLICT (order_id) DO NOTHING",
                vec![
                    p.order_id.into(),
                    p.customer_id.into(),
                    p.customer_name.clone().into(),
                    p.customer_email.clone().into(),
                    p.customer_version.into(),
                    json_value(txn, serde_json::Value::Array(lines)),
                    (p.lines.len() as i32).into(),
                    p.total_cents.into(),
                    e.recorded_at.into(),
                    pos.clone(),
                    tx,
                    pos,
                ],
            )
            .await?;
        }
        DomainEvent::OrderCancelled(c) => {
            let updated = execute(
                txn,
                "UPDATE order_summary SET status = 'CANCELLED', cancel_reason = $1, cancelled_at = $2, version = $3, \
                 last_tx_id = $4, last_position = $5 WHERE order_id = $6 AND version = $3 - 1",
                vec![c.reason.clone().into(), e.recorded_at.into(), e.stream_version.into(), tx, pos, c.order_id.into()],
            )
            .await?;
            if updated.rows_affected() == 0 {
                check_duplicate(txn, e).await?;
            }
        }
        DomainEvent::OrderShipped(s) => {
            let updated = execute(
                txn,
                "UPDATE order_summary SET status = 'SHIPPED', carrier = $1, tracking_number = $2, shipped_at = $3, version = $4, \
                 last_tx_id = $5, last_position = $6 WHERE order_id = $7 AND version = $4 - 1",
                vec![
                    s.carrier.clone().into(),
                    s.tracking_number.clone().into(),
                    e.recorded_at.into(),
                    e.stream_version.into(),
                    tx,
                    pos,
                    s.order_id.into(),
                ],
            )
            .await?;
            if updated.rows_affected() == 0 {
                check_duplicate(txn, e).await?;
            }
        }
        DomainEvent::CustomerRenamed(r) => {
            // Every order of the customer shows the current name; the
            // customer version guard makes a replayed rename a no-op.
            execute(
                txn,
                "UPDATE order_summary SET customer_name = $1, customer_version = $2 WHERE customer_id = $3 AND customer_version < $2",
                vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into()],
            )
            .await?;
        }
        DomainEvent::CustomerRegistered(_) | DomainEvent::ProductAdded(_) | DomainEvent::ProductPriceChanged(_) => {}
    }
    Ok(())
}

/// An update matched no row: fine if the row already applied this version
/// (a duplicate); otherwise the stream arrived out of order.
async fn check_duplicate(txn: &DatabaseTransaction, e: &RecordedEvent) -> Result<(), ApplyError> {
    let row = txn
        .query_one_raw(super::sql::statement(
            txn.get_database_backend(),
            "SELECT version FROM order_summary WHERE order_id = $1",
            vec![e.stream_id.into()],
        ))
        .await?;
    let applied: Option<i64> = row.map(|r| r.try_get("", "version")).transpose()?;
    match applied {
        Some(v) if v >= e.stream_version => Ok(()),
        Some(v) => Err(poison(e, format!("order {} is at version {v}; version {} arrived out of order", e.stream_id, e.stream_version))),
        None => Err(poison(e, format!("order {} has no summary row; version {} arrived before OrderPlaced", e.stream_id, e.stream_version))),
    }
}

pub(crate) fn poison(e: &RecordedEvent, reason: String) -> ApplyError {
    ApplyError::Poison { position: e.position, reason }
}

/// A JSON value bound for the backend: JSONB on PostgreSQL, TEXT on SQLite.
pub(crate) fn json_value(txn: &DatabaseTransaction, value: serde_json::Value) -> Value {
    match txn.get_database_backend() {
        sea_orm::DbBackend::Postgres => value.into(),
        _ => value.to_string().into(),
    }
}
