//! `product_catalog`: the catalog with current prices and per-product sales
//! (units and revenue over orders that are not cancelled).
//!
//! A batch goes through the fold pipeline ([`super::fold`]): new products
//! as whole rows (a stored one is kept), price changes one by one under a
//! version guard, and what each order event adds to each product's sales
//! ([`deltas`], this view's own part) summed per product and added in one
//! statement.
use std::collections::BTreeMap;

use sea_orm::{DatabaseTransaction, Value};
use uuid::Uuid;

use entity::read::product_catalog::Model as Row;

use super::apply::{checked_add, line_total, ApplyContext, ApplyError, Projection};
use super::fold::{Column, Counters, Delta, DeltaColumn, Kind, Merge, Table};
use super::sql::execute;
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct ProductCatalog;

pub const NAME: &str = crate::catalog::View::ProductCatalog.name();

/// Every column of `product_catalog`, in the entity's order (new products
/// are written through it; a test holds it equal to the entity's).
pub(super) const TABLE: Table<Row> = Table {
    name: NAME,
    key: "product_id",
    key_kind: Kind::Uuid,
    columns: &[
        Column { name: "product_id", kind: Kind::Uuid, value: |r| r.product_id.into() },
        Column { name: "sku", kind: Kind::Text, value: |r| r.sku.clone().into() },
        Column { name: "title", kind: Kind::Text, value: |r| r.title.clone().into() },
        Column { name: "price_cents", kind: Kind::BigInt, value: |r| r.price_cents.into() },
        Column { name: "units_sold", kind: Kind::BigInt, value: |r| r.units_sold.into() },
        Column { name: "revenue_cents", kind: Kind::BigInt, value: |r| r.revenue_cents.into() },
        Column { name: "added_at", kind: Kind::Time, value: |r| r.added_at.into() },
        Column { name: "added_position", kind: Kind::BigInt, value: |r| r.added_position.into() },
        Column { name: "version", kind: Kind::BigInt, value: |r| r.version.into() },
        Column { name: "last_tx_id", kind: Kind::BigInt, value: |r| r.last_tx_id.into() },
        Column { name: "last_position", kind: Kind::BigInt, value: |r| r.last_position.into() },
        Column { name: "search_name", kind: Kind::OptText, value: |r| r.search_name.clone().into() },
        Column { name: "search_text", kind: Kind::OptText, value: |r| r.search_text.clone().into() },
    ],
};

/// What order events add to one product's sales.
#[derive(Default)]
pub(super) struct Sales {
    units: i64,
    revenue: i64,
}

impl Delta for Sales {
    fn add(&mut self, other: &Self, e: &RecordedEvent) -> Result<(), ApplyError> {
        self.units = checked_add(self.units, other.units, e, "unitsSold")?;
        self.revenue = checked_add(self.revenue, other.revenue, e, "revenueCents")?;
        Ok(())
    }
}

const COUNTERS: Counters<Sales> = Counters {
    table: NAME,
    key: "product_id",
    key_kind: Kind::Uuid,
    columns: &[
        DeltaColumn { name: "units_sold", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.units.into() },
        DeltaColumn { name: "revenue_cents", kind: Kind::BigInt, merge: Merge::Sum, value: |d| d.revenue.into() },
    ],
    creates_rows: false,
};

/// What an order event adds to each product's sales, lines of one product
/// summed (with checked arithmetic: an overflow makes the event poison).
pub(super) fn deltas(e: &RecordedEvent) -> Result<Vec<(Uuid, Sales)>, ApplyError> {
    let mut per_product: BTreeMap<Uuid, Sales> = BTreeMap::new();
    match &e.event {
        DomainEvent::OrderPlaced(o) => {
            for l in &o.lines {
                let line = Sales { units: i64::from(l.quantity), revenue: line_total(l, e)? };
                per_product.entry(l.product_id).or_default().add(&line, e)?;
            }
        }
        DomainEvent::OrderCancelled(c) => {
            for l in &c.lines {
                let refund = l.line_total_cents.checked_neg().unwrap_or(i64::MIN);
                let line = Sales { units: -i64::from(l.quantity), revenue: refund };
                per_product.entry(l.product_id).or_default().add(&line, e)?;
            }
        }
        _ => {}
    }
    Ok(per_product.into_iter().collect())
}

/// The row a product's addition creates.
fn added(e: &RecordedEvent) -> Option<Row> {
    let DomainEvent::ProductAdded(p) = &e.event else { return None };
    Some(Row {
        product_id: p.product_id,
        sku: p.sku.clone(),
        title: p.title.clone(),
        price_cents: p.price_cents,
        units_sold: 0,
        revenue_cents: 0,
        added_at: e.recorded_at,
        added_position: e.position,
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

/// Sets what finds the product in a search (see [`crate::search`]): the
/// title, and the SKU.
pub(super) fn index(row: &mut Row) {
    row.search_name = Some(crate::search::document([row.title.as_str()]));
    row.search_text = Some(crate::search::document([row.sku.as_str()]));
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
        let new: Vec<Row> = events.iter().filter_map(added).collect();
        TABLE.write(txn, &new.iter().collect::<Vec<_>>(), "ON CONFLICT (product_id) DO NOTHING").await?;
        for e in events {
            if let DomainEvent::ProductPriceChanged(p) = &e.event {
                let values: Vec<Value> = vec![p.price_cents.into(), e.stream_version.into(), p.product_id.into()];
                execute(
                    txn,
                    "UPDATE product_catalog SET price_cents = $1, version = $2 WHERE product_id = $3 AND version < $2",
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
        let entity: Vec<&str> = entity::read::product_catalog::Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(super::TABLE.column_names(), entity);
    }
}
