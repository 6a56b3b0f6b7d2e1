//! `daily_sales`: per UTC day, orders placed and cancelled, gross revenue
//! (totals of orders placed that day), cancellations (totals of orders
//! cancelled that day) and net (gross − cancellations): a cash-flow view in
//! which a cancellation counts on the day it happens, so past days never
//! change.
//!
//! A batch is summed per day in memory (skipping events a day's row has
//! already applied) and written with one additive upsert per day, so
//! concurrent inline writers add up instead of overwriting each other.
use std::collections::BTreeMap;

use sea_orm::DatabaseTransaction;

use super::apply::{checked_add, ApplyContext, ApplyError, Projection};
use super::sql::{execute, load_markers, pending};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;
use crate::token::LogPosition;

pub struct DailySales;

pub const NAME: &str = crate::catalog::View::DailySales.name();

/// What a batch adds to one day.
#[derive(Default)]
struct Delta {
    placed: i64,
    cancelled: i64,
    gross: i64,
    refunds: i64,
    last: LogPosition,
}

#[async_trait::async_trait]
impl Projection for DailySales {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        let day_of = |e: &RecordedEvent| e.recorded_at.format("%Y-%m-%d").to_string();
        let mut days: Vec<String> = events.iter().filter(|e| counts(&e.event)).map(day_of).collect();
        days.sort();
        days.dedup();
        if days.is_empty() {
            return Ok(());
        }
        let markers =
            if ctx.position_guard { load_markers(txn, "daily_sales", "day", &days).await? } else { Default::default() };
        let mut deltas: BTreeMap<String, Delta> = BTreeMap::new();
        for e in events.iter().filter(|e| counts(&e.event)) {
            let day = day_of(e);
            let at = LogPosition::new(e.tx_id, e.position);
            if !pending(markers.get(&day), at, ctx.position_guard) {
                continue;
            }
            let d = deltas.entry(day).or_default();
            match &e.event {
                DomainEvent::OrderPlaced(p) => {
                    d.placed = checked_add(d.placed, 1, e, "ordersPlaced")?;
                    d.gross = checked_add(d.gross, p.total_cents, e, "grossCents")?;
                }
                DomainEvent::OrderCancelled(c) => {
                    d.cancelled = checked_add(d.cancelled, 1, e, "ordersCancelled")?;
                    d.refunds = checked_add(d.refunds, c.total_cents, e, "cancelledCents")?;
                }
                _ => {}
            }
            // The net moves by gross − refunds: check that difference too.
            checked_add(d.gross, d.refunds.checked_neg().unwrap_or(i64::MIN), e, "netCents")?;
            d.last = d.last.max(at);
        }
        for (day, d) in deltas {
            execute(
                txn,
                "INSERT INTO daily_sales (day, orders_placed, orders_cancelled, gross_cents, cancelled_cents, net_cents, last_tx_id, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $4 - $5, $6, $7) \
                 ON CONFLICT (day) DO UPDATE SET orders_placed = daily_sales.orders_placed + $2, \
                 orders_cancelled = daily_sales.orders_cancelled + $3, gross_cents = daily_sales.gross_cents + $4, \
                 cancelled_cents = daily_sales.cancelled_cents + $5, net_cents = daily_sales.net_cents + $4 - $5, \
                 last_tx_id = CASE WHEN (daily_sales.last_tx_id, daily_sales.last_position) < ($6, $7) THEN $6 ELSE daily_sales.last_tx_id END, \
                 last_position = CASE WHEN (daily_sales.last_tx_id, daily_sales.last_position) < ($6, $7) THEN $7 ELSE daily_sales.last_position END",
                vec![day.into(), d.placed.into(), d.cancelled.into(), d.gross.into(), d.refunds.into(), d.last.tx_id.into(), d.last.position.into()],
            )
            .await?;
        }
        Ok(())
    }
}

fn counts(event: &DomainEvent) -> bool {
    matches!(event, DomainEvent::OrderPlaced(_) | DomainEvent::OrderCancelled(_))
}
