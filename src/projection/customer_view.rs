//! `customer_view`: a customer dashboard — profile, order counts by status,
//! lifetime value (totals of orders not cancelled) and last order time.
//!
//! A batch is applied as: new customers in one multi-row insert, renames
//! (rare) one by one under a version guard, and the order counters summed per
//! customer in memory — skipping events a row has already applied — then
//! written with one additive update per customer. Additive updates keep
//! concurrent inline writers from overwriting each other.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};
use uuid::Uuid;

use super::apply::{checked_add, ApplyContext, ApplyError, Projection};
use super::sql::{array, execute, insert_rows, load_markers, pending};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;
use crate::token::LogPosition;

pub struct CustomerView;

pub const NAME: &str = crate::catalog::View::CustomerView.name();

/// What a batch adds to one customer's counters.
#[derive(Default)]
struct Delta {
    placed: i64,
    open: i64,
    cancelled: i64,
    shipped: i64,
    lifetime_value: i64,
    last_order_at: Option<DateTime<Utc>>,
    last: LogPosition,
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
        insert_registrations(txn, events).await?;
        for e in events {
            if let DomainEvent::CustomerRenamed(r) = &e.event {
                execute(
                    txn,
                    "UPDATE customer_view SET name = $1, version = $2 WHERE customer_id = $3 AND version < $2",
                    vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into()],
                )
                .await?;
            }
        }
        let mut customers: Vec<Uuid> = events.iter().filter_map(|e| order_customer(&e.event)).collect();
        customers.sort_unstable();
        customers.dedup();
        if customers.is_empty() {
            return Ok(());
        }
        let markers = if ctx.position_guard {
            load_markers(txn, "customer_view", "customer_id", &customers).await?
        } else {
            Default::default()
        };
        let mut deltas: BTreeMap<Uuid, Delta> = BTreeMap::new();
        for e in events {
            let Some(customer) = order_customer(&e.event) else {
                continue;
            };
            let at = LogPosition::new(e.tx_id, e.position);
            if !pending(markers.get(&customer), at, ctx.position_guard) {
                continue;
            }
            let d = deltas.entry(customer).or_default();
            match &e.event {
                DomainEvent::OrderPlaced(p) => {
                    d.placed = checked_add(d.placed, 1, e, "ordersPlaced")?;
                    d.open = checked_add(d.open, 1, e, "ordersOpen")?;
                    d.lifetime_value = checked_add(d.lifetime_value, p.total_cents, e, "lifetimeValueCents")?;
                    d.last_order_at = d.last_order_at.max(Some(e.recorded_at));
                }
                DomainEvent::OrderCancelled(c) => {
                    d.open = checked_add(d.open, -1, e, "ordersOpen")?;
                    d.cancelled = checked_add(d.cancelled, 1, e, "ordersCancelled")?;
                    let refund = c.total_cents.checked_neg().unwrap_or(i64::MIN);
                    d.lifetime_value = checked_add(d.lifetime_value, refund, e, "lifetimeValueCents")?;
                }
                DomainEvent::OrderShipped(_) => {
                    d.open = checked_add(d.open, -1, e, "ordersOpen")?;
                    d.shipped = checked_add(d.shipped, 1, e, "ordersShipped")?;
                }
                _ => {}
            }
            d.last = d.last.max(at);
        }
        // One statement for all rows on PostgreSQL when a single runner
        // applies (async, rebuild). Inline, concurrent commands update rows
        // one by one in key order instead, so their row locks cannot deadlock.
        if ctx.position_guard && txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            return add_deltas_unnest(txn, &deltas).await;
        }
        for (customer, d) in deltas {
            execute(
                txn,
                "UPDATE customer_view SET orders_placed = orders_placed + $2, orders_open = orders_open + $3, \
                 orders_cancelled = orders_cancelled + $4, orders_shipped = orders_shipped + $5, \
                 lifetime_value_cents = lifetime_value_cents + $6, \
                 last_order_at = CASE WHEN $7 IS NOT NULL AND (last_order_at IS NULL OR last_order_at < $7) THEN $7 ELSE last_order_at END, \
                 last_tx_id = CASE WHEN (last_tx_id, last_position) < ($8, $9) THEN $8 ELSE last_tx_id END, \
                 last_position = CASE WHEN (last_tx_id, last_position) < ($8, $9) THEN $9 ELSE last_position END \
                 WHERE customer_id = $1",
                vec![
                    customer.into(),
                    d.placed.into(),
                    d.open.into(),
                    d.cancelled.into(),
                    d.shipped.into(),
                    d.lifetime_value.into(),
                    d.last_order_at.into(),
                    d.last.tx_id.into(),
                    d.last.position.into(),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// PostgreSQL: every customer's delta in one `UPDATE … FROM UNNEST`.
async fn add_deltas_unnest(txn: &DatabaseTransaction, deltas: &BTreeMap<Uuid, Delta>) -> Result<(), ApplyError> {
    use sea_orm::sea_query::ArrayType;
    let col =
        |ty: ArrayType, f: &dyn Fn(&Uuid, &Delta) -> Value| array(ty, deltas.iter().map(|(k, d)| f(k, d)).collect());
    let values = vec![
        col(ArrayType::Uuid, &|k, _| (*k).into()),
        col(ArrayType::BigInt, &|_, d| d.placed.into()),
        col(ArrayType::BigInt, &|_, d| d.open.into()),
        col(ArrayType::BigInt, &|_, d| d.cancelled.into()),
        col(ArrayType::BigInt, &|_, d| d.shipped.into()),
        col(ArrayType::BigInt, &|_, d| d.lifetime_value.into()),
        // NULL cannot travel in these arrays: '' stands for "no order placed".
        col(ArrayType::String, &|_, d| d.last_order_at.map(|t| t.to_rfc3339()).unwrap_or_default().into()),
        col(ArrayType::BigInt, &|_, d| d.last.tx_id.into()),
        col(ArrayType::BigInt, &|_, d| d.last.position.into()),
    ];
    execute(
        txn,
        "UPDATE customer_view c SET orders_placed = c.orders_placed + u.placed, orders_open = c.orders_open + u.open, \
         orders_cancelled = c.orders_cancelled + u.cancelled, orders_shipped = c.orders_shipped + u.shipped, \
         lifetime_value_cents = c.lifetime_value_cents + u.ltv, \
         last_order_at = GREATEST(c.last_order_at, NULLIF(u.last_order_at, '')::timestamptz), \
         last_tx_id = CASE WHEN (c.last_tx_id, c.last_position) < (u.tx, u.pos) THEN u.tx ELSE c.last_tx_id END, \
         last_position = CASE WHEN (c.last_tx_id, c.last_position) < (u.tx, u.pos) THEN u.pos ELSE c.last_position END \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[]) \
              AS u(id, placed, open, cancelled, shipped, ltv, last_order_at, tx, pos) \
         WHERE c.customer_id = u.id",
        values,
    )
    .await?;
    Ok(())
}

/// The customer whose counters an order event moves.
fn order_customer(event: &DomainEvent) -> Option<Uuid> {
    match event {
        DomainEvent::OrderPlaced(p) => Some(p.customer_id),
        DomainEvent::OrderCancelled(c) => Some(c.customer_id),
        DomainEvent::OrderShipped(s) => Some(s.customer_id),
        _ => None,
    }
}

async fn insert_registrations(txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), ApplyError> {
    let rows: Vec<Vec<Value>> = events
        .iter()
        .filter_map(|e| match &e.event {
            DomainEvent::CustomerRegistered(r) => Some(vec![
                r.customer_id.into(),
                r.name.clone().into(),
                r.email.clone().into(),
                e.recorded_at.into(),
                e.position.into(),
                0i64.into(),
                0i64.into(),
                0i64.into(),
                0i64.into(),
                0i64.into(),
                Option::<DateTime<Utc>>::None.into(),
                1i64.into(),
                e.tx_id.into(),
                e.position.into(),
            ]),
            _ => None,
        })
        .collect();
    let columns = [
        "customer_id",
        "name",
        "email",
        "registered_at",
        "registered_position",
        "orders_placed",
        "orders_open",
        "orders_cancelled",
        "orders_shipped",
        "lifetime_value_cents",
        "last_order_at",
        "version",
        "last_tx_id",
        "last_position",
    ];
    insert_rows(txn, "customer_view", &columns, rows, "ON CONFLICT (customer_id) DO NOTHING", 500).await?;
    Ok(())
}
