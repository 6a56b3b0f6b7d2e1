//! `product_catalog`: the catalog with current prices and per-product sales
//! (units and revenue over orders that are not cancelled).
use std::collections::BTreeMap;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::sql::{advance_marker, execute, not_yet_applied};
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct ProductCatalog;

pub const NAME: &str = "product_catalog";

#[async_trait::async_trait]
impl Projection for ProductCatalog {
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

/// Adds `(units, revenue)` per product for one event. Lines of the same
/// product are summed first: the row's marker admits one update per event.
async fn add_sales(txn: &DatabaseTransaction, e: &RecordedEvent, ctx: ApplyContext, per_product: BTreeMap<Uuid, (i64, i64)>) -> Result<(), ApplyError> {
    let sql = format!(
        "UPDATE product_catalog SET units_sold = units_sold + $5, revenue_cents = revenue_cents + $6, {} \
         WHERE product_id = $1 AND {}",
        advance_marker(2, 3),
        not_yet_applied(2, 3, 4)
    );
    for (product_id, (units, revenue)) in per_product {
        execute(
            txn,
            &sql,
            vec![product_id.into(), e.tx_id.into(), e.position.into(), i32::from(ctx.position_guard).into(), units.into(), revenue.into()],
        )
        .await?;
    }
    Ok(())
}

async fn apply_one(txn: &DatabaseTransaction, e: &RecordedEvent, ctx: ApplyContext) -> Result<(), ApplyError> {
    match &e.event {
        DomainEvent::ProductAdded(p) => {
            execute(
                txn,
                "INSERT INTO product_catalog (product_id, sku, title, price_cents, units_sold, revenue_cents, added_at, added_position, \
                 version, last_tx_id, last_position) VALUES ($1, $2, $3, $4, 0, 0, $5, $6, 1, $7, $6) ON CONFLICT (product_id) DO NOTHING",
                vec![
                    p.product_id.into(),
                    p.sku.clone().into(),
                    p.title.clone().into(),
                    p.price_cents.into(),
                    e.recorded_at.into(),
                    e.position.into(),
                    e.tx_id.into(),
                ],
            )
            .await?;
        }
        DomainEvent::ProductPriceChanged(p) => {
            execute(
                txn,
                "UPDATE product_catalog SET price_cents = $1, version = $2 WHERE product_id = $3 AND version < $2",
                vec![p.price_cents.into(), e.stream_version.into(), p.product_id.into()],
            )
            .await?;
        }
        DomainEvent::OrderPlaced(o) => {
            let mut per_product: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
            for l in &o.lines {
                let entry = per_product.entry(l.product_id).or_default();
                entry.0 += i64::from(l.quantity);
                entry.1 += l.line_total_cents();
            }
            add_sales(txn, e, ctx, per_product).await?;
        }
        DomainEvent::OrderCancelled(c) => {
            let mut per_product: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
            for l in &c.lines {
                let entry = per_product.entry(l.product_id).or_default();
                entry.0 -= i64::from(l.quantity);
                entry.1 -= l.line_total_cents;
            }
            add_sales(txn, e, ctx, per_product).await?;
        }
        DomainEvent::CustomerRegistered(_) | DomainEvent::CustomerRenamed(_) | DomainEvent::OrderShipped(_) => {}
    }
    Ok(())
}
