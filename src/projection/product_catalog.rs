//! `product_catalog`: the catalog with current prices and per-product sales
//! (units and revenue over orders that are not cancelled).
//!
//! A batch is applied as: new products in one multi-row insert, price
//! changes one by one under a version guard, and sales summed per product in
//! memory — skipping events a row has already applied — then written with
//! one additive update per product.
use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};
use uuid::Uuid;

use super::apply::{checked_add, line_total, ApplyContext, ApplyError, Projection};
use super::sql::{array, execute, insert_rows, load_markers, pending};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;
use crate::token::LogPosition;

pub struct ProductCatalog;

pub const NAME: &str = crate::catalog::View::ProductCatalog.name();

#[derive(Default)]
struct Delta {
    units: i64,
    revenue: i64,
    last: LogPosition,
}

/// `(product, units, revenue)` an order event moves, lines of one product
/// summed (with checked arithmetic: an overflow makes the event poison).
fn sales(e: &RecordedEvent) -> Result<Vec<(Uuid, i64, i64)>, ApplyError> {
    let mut per_product: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    match &e.event {
        DomainEvent::OrderPlaced(o) => {
            for l in &o.lines {
                let entry = per_product.entry(l.product_id).or_default();
                entry.0 = checked_add(entry.0, i64::from(l.quantity), e, "unitsSold")?;
                entry.1 = checked_add(entry.1, line_total(l, e)?, e, "revenueCents")?;
            }
        }
        DomainEvent::OrderCancelled(c) => {
            for l in &c.lines {
                let entry = per_product.entry(l.product_id).or_default();
                entry.0 = checked_add(entry.0, -i64::from(l.quantity), e, "unitsSold")?;
                entry.1 =
                    checked_add(entry.1, l.line_total_cents.checked_neg().unwrap_or(i64::MIN), e, "revenueCents")?;
            }
        }
        _ => {}
    }
    Ok(per_product.into_iter().map(|(p, (u, r))| (p, u, r)).collect())
}

#[async_trait::async_trait]
impl Projection for ProductCatalog {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        insert_products(txn, events).await?;
        for e in events {
            if let DomainEvent::ProductPriceChanged(p) = &e.event {
                execute(
                    txn,
                    "UPDATE product_catalog SET price_cents = $1, version = $2 WHERE product_id = $3 AND version < $2",
                    vec![p.price_cents.into(), e.stream_version.into(), p.product_id.into()],
                )
                .await?;
            }
        }
        let per_event: Vec<Vec<(Uuid, i64, i64)>> = events.iter().map(sales).collect::<Result<_, _>>()?;
        let mut products: Vec<Uuid> = per_event.iter().flatten().map(|(p, _, _)| *p).collect();
        products.sort_unstable();
        products.dedup();
        if products.is_empty() {
            return Ok(());
        }
        let markers = if ctx.position_guard {
            load_markers(txn, "product_catalog", "product_id", &products).await?
        } else {
            Default::default()
        };
        let mut deltas: BTreeMap<Uuid, Delta> = BTreeMap::new();
        for (e, sales) in events.iter().zip(per_event) {
            let at = LogPosition::new(e.tx_id, e.position);
            for (product, units, revenue) in sales {
                if !pending(markers.get(&product), at, ctx.position_guard) {
                    continue;
                }
                let d = deltas.entry(product).or_default();
                d.units = checked_add(d.units, units, e, "unitsSold")?;
                d.revenue = checked_add(d.revenue, revenue, e, "revenueCents")?;
                d.last = d.last.max(at);
            }
        }
        // One statement for all rows on PostgreSQL when a single runner
        // applies (async, rebuild). Inline, concurrent commands update rows
        // one by one in key order instead, so their row locks cannot deadlock.
        if ctx.position_guard && txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            return add_sales_unnest(txn, &deltas).await;
        }
        for (product, d) in deltas {
            execute(
                txn,
                "UPDATE product_catalog SET units_sold = units_sold + $2, revenue_cents = revenue_cents + $3, \
                 last_tx_id = CASE WHEN (last_tx_id, last_position) < ($4, $5) THEN $4 ELSE last_tx_id END, \
                 last_position = CASE WHEN (last_tx_id, last_position) < ($4, $5) THEN $5 ELSE last_position END \
                 WHERE product_id = $1",
                vec![product.into(), d.units.into(), d.revenue.into(), d.last.tx_id.into(), d.last.position.into()],
            )
            .await?;
        }
        Ok(())
    }
}

/// PostgreSQL: every product's sales delta in one `UPDATE … FROM UNNEST`.
async fn add_sales_unnest(txn: &DatabaseTransaction, deltas: &BTreeMap<Uuid, Delta>) -> Result<(), ApplyError> {
    use sea_orm::sea_query::ArrayType;
    let col =
        |ty: ArrayType, f: &dyn Fn(&Uuid, &Delta) -> Value| array(ty, deltas.iter().map(|(k, d)| f(k, d)).collect());
    let values = vec![
        col(ArrayType::Uuid, &|k, _| (*k).into()),
        col(ArrayType::BigInt, &|_, d| d.units.into()),
        col(ArrayType::BigInt, &|_, d| d.revenue.into()),
        col(ArrayType::BigInt, &|_, d| d.last.tx_id.into()),
        col(ArrayType::BigInt, &|_, d| d.last.position.into()),
    ];
    execute(
        txn,
        "UPDATE product_catalog p SET units_sold = p.units_sold + u.units, revenue_cents = p.revenue_cents + u.revenue, \
         last_tx_id = CASE WHEN (p.last_tx_id, p.last_position) < (u.tx, u.pos) THEN u.tx ELSE p.last_tx_id END, \
         last_position = CASE WHEN (p.last_tx_id, p.last_position) < (u.tx, u.pos) THEN u.pos ELSE p.last_position END \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(id, units, revenue, tx, pos) \
         WHERE p.product_id = u.id",
        values,
    )
    .await?;
    Ok(())
}

async fn insert_products(txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), ApplyError> {
    let rows: Vec<Vec<Value>> = events
        .iter()
        .filter_map(|e| match &e.event {
            DomainEvent::ProductAdded(p) => Some(vec![
                p.product_id.into(),
                p.sku.clone().into(),
                p.title.clone().into(),
                p.price_cents.into(),
                0i64.into(),
                0i64.into(),
                e.recorded_at.into(),
                e.position.into(),
                1i64.into(),
                e.tx_id.into(),
                e.position.into(),
            ]),
            _ => None,
        })
        .collect();
    let columns = [
        "product_id",
        "sku",
        "title",
        "price_cents",
        "units_sold",
        "revenue_cents",
        "added_at",
        "added_position",
        "version",
        "last_tx_id",
        "last_position",
    ];
    insert_rows(txn, "product_catalog", &columns, rows, "ON CONFLICT (product_id) DO NOTHING", 500).await?;
    Ok(())
}
