//! `order_summary`: one wide row per order, with the customer's name and
//! email (kept current on rename) and the lines' skus and titles (as at
//! order time) joined in once, here, instead of on every read.
//!
//! Applied a batch at a time through the fold pipeline ([`super::fold`]):
//! the rows the batch touches are loaded in one query, the events are
//! folded into them in memory ([`fold`], the view's own code), and the
//! result is written back in one upsert. The upsert merges by version (a
//! column group is only overwritten by a newer order or customer version),
//! so it is idempotent and safe against concurrent inline writers.
use std::collections::HashMap;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use entity::read::order_summary::Model as Row;

use super::apply::{ApplyContext, ApplyError, Projection};
use super::fold::{Column, Kind, Table};
use super::sql::execute;
use crate::domain::event::RecordedEvent;
use crate::domain::order::OrderStatus;
use crate::domain::DomainEvent;

pub struct OrderSummary;

pub const NAME: &str = crate::catalog::View::OrderSummary.name();

/// The table, and every column of `order_summary` once: loads and writes
/// are built from this list (by [`super::fold`]), and a test holds it
/// equal to the entity's columns.
pub(super) const TABLE: Table<Row> = Table {
    name: NAME,
    key: "order_id",
    key_kind: Kind::Uuid,
    columns: &[
        Column { name: "order_id", kind: Kind::Uuid, value: |r| r.order_id.into() },
        Column { name: "customer_id", kind: Kind::Uuid, value: |r| r.customer_id.into() },
        Column { name: "customer_name", kind: Kind::Text, value: |r| r.customer_name.clone().into() },
        Column { name: "customer_email", kind: Kind::Text, value: |r| r.customer_email.clone().into() },
        Column { name: "customer_version", kind: Kind::BigInt, value: |r| r.customer_version.into() },
        Column { name: "lines", kind: Kind::Text, value: |r| r.lines.clone().into() },
        Column { name: "line_count", kind: Kind::Int, value: |r| r.line_count.into() },
        Column { name: "total_cents", kind: Kind::BigInt, value: |r| r.total_cents.into() },
        Column { name: "status", kind: Kind::Text, value: |r| r.status.clone().into() },
        Column { name: "cancel_reason", kind: Kind::OptText, value: |r| r.cancel_reason.clone().into() },
        Column { name: "carrier", kind: Kind::OptText, value: |r| r.carrier.clone().into() },
        Column { name: "tracking_number", kind: Kind::OptText, value: |r| r.tracking_number.clone().into() },
        Column { name: "placed_at", kind: Kind::Time, value: |r| r.placed_at.into() },
        Column { name: "cancelled_at", kind: Kind::OptTime, value: |r| r.cancelled_at.into() },
        Column { name: "shipped_at", kind: Kind::OptTime, value: |r| r.shipped_at.into() },
        Column { name: "placed_position", kind: Kind::BigInt, value: |r| r.placed_position.into() },
        Column { name: "version", kind: Kind::BigInt, value: |r| r.version.into() },
        Column { name: "last_tx_id", kind: Kind::BigInt, value: |r| r.last_tx_id.into() },
        Column { name: "last_position", kind: Kind::BigInt, value: |r| r.last_position.into() },
        Column { name: "channel", kind: Kind::Text, value: |r| r.channel.clone().into() },
        Column { name: "search_name", kind: Kind::OptText, value: |r| r.search_name.clone().into() },
        Column { name: "search_text", kind: Kind::OptText, value: |r| r.search_text.clone().into() },
    ],
};

#[async_trait::async_trait]
impl Projection for OrderSummary {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        _ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        // Rows are loaded only for orders placed before this batch: an order
        // placed in the batch starts from its event, and if it turns out to
        // exist already (a replay), the version merge of the upsert keeps
        // the stored row.
        let placed_here: std::collections::HashSet<Uuid> =
            events.iter().filter(|e| matches!(e.event, DomainEvent::OrderPlaced(_))).map(|e| e.stream_id).collect();
        let order_ids: Vec<Uuid> = events
            .iter()
            .filter(|e| is_order_event(&e.event) && !placed_here.contains(&e.stream_id))
            .map(|e| e.stream_id)
            .collect();
        let mut rows: HashMap<Uuid, Row> = HashMap::new();
        for existing in TABLE.load(txn, &order_ids).await? {
            rows.insert(existing.order_id, existing);
        }
        let mut dirty: Vec<Uuid> = Vec::new();
        for e in events {
            match &e.event {
                DomainEvent::CustomerRenamed(r) => {
                    // Rows outside this batch, in the database (one search
                    // name for all of them)…
                    let search_name = crate::search::document([r.name.as_str()]);
                    execute(
                        txn,
                        "UPDATE order_summary SET customer_name = $1, customer_version = $2, search_name = $4 \
                         WHERE customer_id = $3 AND customer_version < $2",
                        vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into(), search_name.into()],
                    )
                    .await?;
                    // …and the ones folded in memory.
                    for row in rows
                        .values_mut()
                        .filter(|row| row.customer_id == r.customer_id && row.customer_version < e.stream_version)
                    {
                        row.customer_name = r.name.clone();
                        row.customer_version = e.stream_version;
                        dirty.push(row.order_id);
                    }
                }
                event if is_order_event(event) && fold(&mut rows, e)? => dirty.push(e.stream_id),
                _ => {}
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for id in &dirty {
            if let Some(row) = rows.get_mut(id) {
                index(row);
            }
        }
        let changed: Vec<&Row> = dirty.iter().filter_map(|id| rows.get(id)).collect();
        TABLE.write(txn, &changed, &merge_clause()).await?;
        Ok(())
    }
}

/// Sets what finds the order in a search (see [`crate::search`]): the
/// customer's name, and the email, the lines' titles and SKUs, the
/// tracking number and the id. Computed from the row itself, so a row
/// folded from any event (or backfilled) gets the same words.
pub(super) fn index(row: &mut Row) {
    #[derive(serde::Deserialize)]
    struct Line {
        sku: String,
        title: String,
    }
    let lines: Vec<Line> = serde_json::from_str(&row.lines).unwrap_or_default();
    let id = row.order_id.to_string();
    let mut parts: Vec<&str> = vec![&row.customer_email];
    for line in &lines {
        parts.push(&line.title);
        parts.push(&line.sku);
    }
    parts.extend(row.tracking_number.as_deref());
    parts.push(&id);
    row.search_name = Some(crate::search::document([row.customer_name.as_str()]));
    row.search_text = Some(crate::search::document(parts));
}

/// One line as the view stores it (JSON text in `lines`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LineView<'a> {
    product_id: Uuid,
    sku: &'a str,
    title: &'a str,
    quantity: i32,
    unit_price_cents: i64,
    line_total_cents: i64,
}

fn is_order_event(event: &DomainEvent) -> bool {
    matches!(event, DomainEvent::OrderPlaced(_) | DomainEvent::OrderCancelled(_) | DomainEvent::OrderShipped(_))
}

/// Folds one order event into its row; `Ok(false)` for a duplicate.
fn fold(rows: &mut HashMap<Uuid, Row>, e: &RecordedEvent) -> Result<bool, ApplyError> {
    if let DomainEvent::OrderPlaced(p) = &e.event {
        if rows.contains_key(&p.order_id) {
            return Ok(false); // placed twice in one batch: a duplicate
        }
        if e.stream_version != 1 {
            return Err(poison(e, format!("OrderPlaced at stream version {} (expected 1)", e.stream_version)));
        }
        let lines: Vec<LineView> = p
            .lines
            .iter()
            .map(|l| {
                Ok(LineView {
                    product_id: l.product_id,
                    sku: &l.sku,
                    title: &l.title,
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price_cents,
                    line_total_cents: super::apply::line_total(l, e)?,
                })
            })
            .collect::<Result<_, ApplyError>>()?;
        rows.insert(
            p.order_id,
            Row {
                order_id: p.order_id,
                customer_id: p.customer_id,
                customer_name: p.customer_name.clone(),
                customer_email: p.customer_email.clone(),
                customer_version: p.customer_version,
                lines: serde_json::to_string(&lines).unwrap_or_else(|_| "[]".to_owned()),
                line_count: p.lines.len() as i32,
                total_cents: p.total_cents,
                status: OrderStatus::Placed.as_str().into(),
                cancel_reason: None,
                carrier: None,
                tracking_number: None,
                placed_at: e.recorded_at,
                cancelled_at: None,
                shipped_at: None,
                placed_position: e.position,
                version: 1,
                last_tx_id: e.tx_id,
                last_position: e.position,
                channel: p.channel.as_str().to_owned(),
                search_name: None,
                search_text: None,
            },
        );
        return Ok(true);
    }
    let Some(row) = rows.get_mut(&e.stream_id) else {
        return Err(poison(
            e,
            format!(
                "order {} has no summary row; version {} arrived before OrderPlaced",
                e.stream_id, e.stream_version
            ),
        ));
    };
    if row.version >= e.stream_version {
        return Ok(false); // replayed
    }
    if row.version + 1 != e.stream_version {
        return Err(poison(
            e,
            format!(
                "order {} is at version {}; version {} arrived out of order",
                e.stream_id, row.version, e.stream_version
            ),
        ));
    }
    match &e.event {
        DomainEvent::OrderCancelled(c) => {
            row.status = OrderStatus::Cancelled.as_str().into();
            row.cancel_reason = c.reason.clone();
            row.cancelled_at = Some(e.recorded_at);
        }
        DomainEvent::OrderShipped(s) => {
            row.status = OrderStatus::Shipped.as_str().into();
            row.carrier = Some(s.carrier.clone());
            row.tracking_number = Some(s.tracking_number.clone());
            row.shipped_at = Some(e.recorded_at);
        }
        _ => return Ok(false),
    }
    row.version = e.stream_version;
    row.last_tx_id = e.tx_id;
    row.last_position = e.position;
    Ok(true)
}

/// `ON CONFLICT` clause that merges by version: a column group is only
/// overwritten by a newer order (or customer) version.
fn merge_clause() -> String {
    let newer_order = "excluded.version > order_summary.version";
    let newer_customer = "excluded.customer_version > order_summary.customer_version";
    let merge = |column: &str, condition: &str| {
        format!("{column} = CASE WHEN {condition} THEN excluded.{column} ELSE order_summary.{column} END")
    };
    // (In an UPDATE every CASE sees the old row, so the order of these does not matter.)
    let mut sets: Vec<String> = [
        "search_text",
        "status",
        "cancel_reason",
        "carrier",
        "tracking_number",
        "cancelled_at",
        "shipped_at",
        "last_tx_id",
        "last_position",
        "version",
    ]
    .iter()
    .map(|c| merge(c, newer_order))
    .collect();
    sets.extend(
        ["customer_name", "customer_email", "customer_version", "search_name"].iter().map(|c| merge(c, newer_customer)),
    );
    format!("ON CONFLICT (order_id) DO UPDATE SET {}", sets.join(", "))
}

pub(crate) fn poison(e: &RecordedEvent, reason: String) -> ApplyError {
    ApplyError::Poison { position: e.position, reason }
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    /// Loads and writes are built from `TABLE`: a column added to the
    /// entity (or renamed) must be added here too, in the entity's order.
    #[test]
    fn the_column_list_is_the_entitys() {
        let entity: Vec<&str> = entity::read::order_summary::Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(super::TABLE.column_names(), entity);
    }
}
