//! `order_summary`: one wide row per order, with the customer's name and
//! email (kept current on rename) and the lines' skus and titles (as at
//! order time) joined in once, here, instead of on every read.
//!
//! Applied a batch at a time: the rows the batch touches are loaded in one
//! query, the events are folded into them in memory, and the result is
//! written back with multi-row upserts. The upsert merges by version (a
//! column group is only overwritten by a newer order or customer version),
//! so it is idempotent and safe against concurrent inline writers.
use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Value};
use uuid::Uuid;

use entity::read::order_summary::{self, Model as Row};

use super::sql::{execute, insert_records, insert_rows};
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct OrderSummary;

pub const NAME: &str = "order_summary";

/// The columns with their PostgreSQL types (for the JSON bulk path).
const TYPED_COLUMNS: [(&str, &str); 20] = [
    ("order_id", "uuid"), ("customer_id", "uuid"), ("customer_name", "text"), ("customer_email", "text"), ("customer_version", "bigint"),
    ("lines", "text"), ("line_count", "integer"), ("total_cents", "bigint"), ("status", "text"), ("cancel_reason", "text"),
    ("carrier", "text"), ("tracking_number", "text"), ("placed_at", "timestamptz"), ("cancelled_at", "timestamptz"),
    ("shipped_at", "timestamptz"), ("placed_position", "bigint"), ("version", "bigint"), ("last_tx_id", "bigint"),
    ("last_position", "bigint"), ("channel", "text"),
];

const COLUMNS: [&str; 20] = [
    "order_id", "customer_id", "customer_name", "customer_email", "customer_version", "lines", "line_count", "total_cents", "status",
    "cancel_reason", "carrier", "tracking_number", "placed_at", "cancelled_at", "shipped_at", "placed_position", "version",
    "last_tx_id", "last_position", "channel",
];

/// Rows per INSERT statement (20 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

#[async_trait::async_trait]
impl Projection for OrderSummary {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, txn: &DatabaseTransaction, events: &[RecordedEvent], _ctx: ApplyContext) -> Result<(), ApplyError> {
        // Rows are loaded only for orders placed before this batch: an order
        // placed in the batch starts from its event, and if it turns out to
        // exist already (a replay), the version merge of the upsert keeps
        // the stored row.
        let placed_here: std::collections::HashSet<Uuid> =
            events.iter().filter(|e| matches!(e.event, DomainEvent::OrderPlaced(_))).map(|e| e.stream_id).collect();
        let order_ids: Vec<Uuid> =
            events.iter().filter(|e| is_order_event(&e.event) && !placed_here.contains(&e.stream_id)).map(|e| e.stream_id).collect();
        let mut rows: HashMap<Uuid, Row> = HashMap::new();
        for chunk in order_ids.chunks(1000) {
            let existing = order_summary::Entity::find().filter(order_summary::Column::OrderId.is_in(chunk.iter().copied())).all(txn).await?;
            rows.extend(existing.into_iter().map(|r| (r.order_id, r)));
        }
        let mut dirty: Vec<Uuid> = Vec::new();
        for e in events {
            match &e.event {
                DomainEvent::CustomerRenamed(r) => {
                    // Rows outside this batch, in the database…
                    execute(
                        txn,
                        "UPDATE order_summary SET customer_name = $1, customer_version = $2 WHERE customer_id = $3 AND customer_version < $2",
                        vec![r.name.clone().into(), e.stream_version.into(), r.customer_id.into()],
                    )
                    .await?;
                    // …and the ones folded in memory.
                    for row in rows.values_mut().filter(|row| row.customer_id == r.customer_id && row.customer_version < e.stream_version) {
                        row.customer_name = r.name.clone();
                        row.customer_version = e.stream_version;
                    }
                }
                event if is_order_event(event) && fold(&mut rows, e)? => dirty.push(e.stream_id),
                _ => {}
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        let changed: Vec<&Row> = dirty.iter().filter_map(|id| rows.get(id)).collect();
        upsert(txn, &changed).await?;
        Ok(())
    }
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
            .map(|l| LineView {
                product_id: l.product_id,
                sku: &l.sku,
                title: &l.title,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
                line_total_cents: l.line_total_cents(),
            })
            .collect();
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
                status: "PLACED".into(),
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
            },
        );
        return Ok(true);
    }
    let Some(row) = rows.get_mut(&e.stream_id) else {
        return Err(poison(e, format!("order {} has no summary row; version {} arrived before OrderPlaced", e.stream_id, e.stream_version)));
    };
    if row.version >= e.stream_version {
        return Ok(false); // replayed
    }
    if row.version + 1 != e.stream_version {
        return Err(poison(e, format!("order {} is at version {}; version {} arrived out of order", e.stream_id, row.version, e.stream_version)));
    }
    match &e.event {
        DomainEvent::OrderCancelled(c) => {
            row.status = "CANCELLED".into();
            row.cancel_reason = c.reason.clone();
            row.cancelled_at = Some(e.recorded_at);
        }
        DomainEvent::OrderShipped(s) => {
            row.status = "SHIPPED".into();
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

/// Writes rows with multi-row upserts that merge by version: a column group
/// is only overwritten by a newer order (or customer) version.
async fn upsert(txn: &DatabaseTransaction, rows: &[&Row]) -> Result<(), ApplyError> {
    let on_conflict = merge_clause();
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        insert_records(txn, "order_summary", &TYPED_COLUMNS, rows, &on_conflict).await?;
        return Ok(());
    }
    let values: Vec<Vec<Value>> = rows
        .iter()
        .map(|row| {
            vec![
                row.order_id.into(),
                row.customer_id.into(),
                row.customer_name.clone().into(),
                row.customer_email.clone().into(),
                row.customer_version.into(),
                row.lines.clone().into(),
                row.line_count.into(),
                row.total_cents.into(),
                row.status.clone().into(),
                row.cancel_reason.clone().into(),
                row.carrier.clone().into(),
                row.tracking_number.clone().into(),
                row.placed_at.into(),
                row.cancelled_at.into(),
                row.shipped_at.into(),
                row.placed_position.into(),
                row.version.into(),
                row.last_tx_id.into(),
                row.last_position.into(),
                row.channel.clone().into(),
            ]
        })
        .collect();
    insert_rows(txn, "order_summary", &COLUMNS, values, &on_conflict, ROWS_PER_STATEMENT).await?;
    Ok(())
}

/// `ON CONFLICT` clause that merges by version: a column group is only
/// overwritten by a newer order (or customer) version.
fn merge_clause() -> String {
    let newer_order = "excluded.version > order_summary.version";
    let newer_customer = "excluded.customer_version > order_summary.customer_version";
    let merge = |column: &str, condition: &str| format!("{column} = CASE WHEN {condition} THEN excluded.{column} ELSE order_summary.{column} END");
    // (In an UPDATE every CASE sees the old row, so the order of these does not matter.)
    let mut sets: Vec<String> = ["status", "cancel_reason", "carrier", "tracking_number", "cancelled_at", "shipped_at", "last_tx_id", "last_position", "version"]
        .iter()
        .map(|c| merge(c, newer_order))
        .collect();
    sets.extend(["customer_name", "customer_email", "customer_version"].iter().map(|c| merge(c, newer_customer)));
    format!("ON CONFLICT (order_id) DO UPDATE SET {}", sets.join(", "))
}

pub(crate) fn poison(e: &RecordedEvent, reason: String) -> ApplyError {
    ApplyError::Poison { position: e.position, reason }
}
