//! `daily_sales`: per UTC day, orders placed and cancelled, gross revenue
//! (totals of orders placed that day), cancellations (totals of orders
//! cancelled that day) and net (gross − cancellations): a cash-flow view in
//! which a cancellation counts on the day it happens, so past days never
//! change.
use sea_orm::DatabaseTransaction;

use super::sql::{advance_marker, execute, not_yet_applied};
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct DailySales;

pub const NAME: &str = "daily_sales";

#[async_trait::async_trait]
impl Projection for DailySales {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, txn: &DatabaseTransaction, events: &[RecordedEvent], ctx: ApplyContext) -> Result<(), ApplyError> {
        for e in events {
            let (placed, cancelled, gross, refund) = match &e.event {
                DomainEvent::OrderPlaced(p) => (1i64, 0i64, p.total_cents, 0i64),
                DomainEvent::OrderCancelled(c) => (0, 1, 0, c.total_cents),
                _ => continue,
            };
            let day = e.recorded_at.format("%Y-%m-%d").to_string();
            // Upsert; on conflict, add only if the row has not applied this event yet.
            let sql = format!(
                "INSERT INTO daily_sales (day, orders_placed, orders_cancelled, gross_cents, cancelled_cents, net_cents, last_tx_id, last_position) \
                 VALUES ($1, $5, $6, $7, $8, $7 - $8, $2, $3) \
                 ON CONFLICT (day) DO UPDATE SET orders_placed = daily_sales.orders_placed + $5, \
                 orders_cancelled = daily_sales.orders_cancelled + $6, gross_cents = daily_sales.gross_cents + $7, \
                 cancelled_cents = daily_sales.cancelled_cents + $8, net_cents = daily_sales.net_cents + $7 - $8, {} \
                 WHERE {}",
                advance_marker(2, 3).replace("last_tx_id, last_position) <", "daily_sales.last_tx_id, daily_sales.last_position) <")
                    .replace("ELSE last_", "ELSE daily_sales.last_"),
                not_yet_applied(2, 3, 4).replace("(last_tx_id, last_position)", "(daily_sales.last_tx_id, daily_sales.last_position)"),
            );
            execute(
                txn,
                &sql,
                vec![day.into(), e.tx_id.into(), e.position.into(), i32::from(ctx.position_guard).into(), placed.into(), cancelled.into(), gross.into(), refund.into()],
            )
            .await?;
        }
        Ok(())
    }
}
