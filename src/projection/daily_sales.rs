//! `daily_sales`: per UTC day, orders placed and cancelled, gross revenue
//! (totals of orders placed that day), cancellations (totals of orders
//! cancelled that day) and net (gross − cancellations): a cash-flow view in
//! which a cancellation counts on the day it happens, so past days never
//! change.
//!
//! A batch goes through the fold pipeline ([`super::fold`]): what each
//! event adds to its day ([`deltas`], this view's own part) is summed per
//! day and added with one upsert (a day's first event creates its row), so
//! concurrent inline writers add up instead of overwriting each other.
use sea_orm::DatabaseTransaction;

use super::apply::{checked_add, ApplyContext, ApplyError, Projection};
use super::fold::{Counters, Delta, DeltaColumn, Kind, Merge};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct DailySales;

pub const NAME: &str = crate::catalog::View::DailySales.name();

/// What events add to one day.
#[derive(Default)]
pub(super) struct Day {
    placed: i64,
    cancelled: i64,
    gross: i64,
    refunds: i64,
    net: i64,
}

impl Delta for Day {
    fn add(&mut self, other: &Self, e: &RecordedEvent) -> Result<(), ApplyError> {
        self.placed = checked_add(self.placed, other.placed, e, "ordersPlaced")?;
        self.cancelled = checked_add(self.cancelled, other.cancelled, e, "ordersCancelled")?;
        self.gross = checked_add(self.gross, other.gross, e, "grossCents")?;
        self.refunds = checked_add(self.refunds, other.refunds, e, "cancelledCents")?;
        self.net = checked_add(self.net, other.net, e, "netCents")?;
        Ok(())
    }
}

const COUNTERS: Counters<Day> = Counters {
    table: NAME,
    key: "day",
    key_kind: Kind::Text,
    columns: &[
        DeltaColumn { name: "orders_placed", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.placed.into() },
        DeltaColumn { name: "orders_cancelled", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.cancelled.into() },
        DeltaColumn { name: "gross_cents", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.gross.into() },
        DeltaColumn { name: "cancelled_cents", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.refunds.into() },
        DeltaColumn { name: "net_cents", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.net.into() },
    ],
    creates_rows: true,
};

/// The UTC day an event counts on, `YYYY-MM-DD`.
pub fn day_of(e: &RecordedEvent) -> String {
    e.recorded_at.format("%Y-%m-%d").to_string()
}

/// What an order placed or cancelled adds to its day.
pub(super) fn deltas(e: &RecordedEvent) -> Result<Vec<(String, Day)>, ApplyError> {
    let day = match &e.event {
        DomainEvent::OrderPlaced(p) => {
            Day { placed: 1, gross: p.total_cents, net: p.total_cents, ..Default::default() }
        }
        DomainEvent::OrderCancelled(c) => Day {
            cancelled: 1,
            refunds: c.total_cents,
            net: c.total_cents.checked_neg().unwrap_or(i64::MIN),
            ..Default::default()
        },
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(day_of(e), day)])
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
        COUNTERS.apply(txn, events, ctx, deltas).await
    }
}
