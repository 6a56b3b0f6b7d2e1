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

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, FromQueryResult, QueryFilter, Value,
};
use uuid::Uuid;

use entity::read::order_summary::{self, Model as Row};

use super::sql::{array, execute, insert_rows};
use super::{ApplyContext, ApplyError, Projection};
use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;

pub struct OrderSummary;

pub const NAME: &str = crate::catalog::View::OrderSummary.name();

const COLUMNS: [&str; 20] = [
    "order_id",
    "customer_id",
    "customer_name",
    "customer_email",
    "customer_version",
    "lines",
    "line_count",
    "total_cents",
    "status",
    "cancel_reason",
    "carrier",
    "tracking_number",
    "placed_at",
    "cancelled_at",
    "shipped_at",
    "placed_position",
    "version",
    "last_tx_id",
    "last_position",
    "channel",
];

/// Rows per INSERT statement (20 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

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
        for existing in load_rows(txn, &order_ids).await? {
            rows.insert(existing.order_id, existing);
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
                    for row in rows
                        .values_mut()
                        .filter(|row| row.customer_id == r.customer_id && row.customer_version < e.stream_version)
                    {
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

/// The stored rows of these orders (one array parameter on PostgreSQL).
async fn load_rows(txn: &DatabaseTransaction, ids: &[Uuid]) -> Result<Vec<Row>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        let ids: Vec<Value> = ids.iter().map(|id| (*id).into()).collect();
        let ids = array(sea_orm::sea_query::ArrayType::Uuid, ids);
        let stmt = super::sql::statement(
            sea_orm::DbBackend::Postgres,
            "SELECT * FROM order_summary WHERE order_id = ANY($1)",
            vec![ids],
        );
        return Row::find_by_statement(stmt).all(txn).await;
    }
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        rows.extend(
            order_summary::Entity::find()
                .filter(order_summary::Column::OrderId.is_in(chunk.iter().copied()))
                .all(txn)
                .await?,
        );
    }
    Ok(rows)
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
                    line_total_cents: super::line_total(l, e)?,
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
        return upsert_unnest(txn, rows, &on_conflict).await;
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

/// PostgreSQL bulk path: one array parameter per column, expanded by
/// `UNNEST` — one statement and twenty parameters per batch however many
/// rows, in the binary protocol (no VALUES list to parse and plan, no JSON
/// to parse). Arrays cannot carry NULLs here, so nullable text travels as ''
/// (never a stored value: those fields are either absent or non-blank).
async fn upsert_unnest(txn: &DatabaseTransaction, rows: &[&Row], on_conflict: &str) -> Result<(), ApplyError> {
    use sea_orm::sea_query::ArrayType;
    fn text(v: &Option<String>) -> Value {
        v.clone().unwrap_or_default().into()
    }
    fn time(v: &Option<chrono::DateTime<chrono::Utc>>) -> Value {
        v.map(|t| t.to_rfc3339()).unwrap_or_default().into()
    }
    let col = |ty: ArrayType, f: &dyn Fn(&Row) -> Value| array(ty, rows.iter().map(|r| f(r)).collect());
    let values = vec![
        col(ArrayType::Uuid, &|r| r.order_id.into()),
        col(ArrayType::Uuid, &|r| r.customer_id.into()),
        col(ArrayType::String, &|r| r.customer_name.clone().into()),
        col(ArrayType::String, &|r| r.customer_email.clone().into()),
        col(ArrayType::BigInt, &|r| r.customer_version.into()),
        col(ArrayType::String, &|r| r.lines.clone().into()),
        col(ArrayType::Int, &|r| r.line_count.into()),
        col(ArrayType::BigInt, &|r| r.total_cents.into()),
        col(ArrayType::String, &|r| r.status.clone().into()),
        col(ArrayType::String, &|r| text(&r.cancel_reason)),
        col(ArrayType::String, &|r| text(&r.carrier)),
        col(ArrayType::String, &|r| text(&r.tracking_number)),
        col(ArrayType::ChronoDateTimeUtc, &|r| r.placed_at.into()),
        col(ArrayType::String, &|r| time(&r.cancelled_at)),
        col(ArrayType::String, &|r| time(&r.shipped_at)),
        col(ArrayType::BigInt, &|r| r.placed_position.into()),
        col(ArrayType::BigInt, &|r| r.version.into()),
        col(ArrayType::BigInt, &|r| r.last_tx_id.into()),
        col(ArrayType::BigInt, &|r| r.last_position.into()),
        col(ArrayType::String, &|r| r.channel.clone().into()),
    ];
    let sql = format!(
        "INSERT INTO order_summary ({}) \
         SELECT order_id, customer_id, customer_name, customer_email, customer_version, lines, line_count, total_cents, status, \
                NULLIF(cancel_reason, ''), NULLIF(carrier, ''), NULLIF(tracking_number, ''), placed_at, \
                NULLIF(cancelled_at, '')::timestamptz, NULLIF(shipped_at, '')::timestamptz, placed_position, version, \
                last_tx_id, last_position, channel \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::int[], $8::bigint[], \
                     $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::text[], $15::text[], \
                     $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::text[]) \
              AS u({}) {on_conflict}",
        COLUMNS.join(", "),
        COLUMNS.join(", ")
    );
    execute(txn, &sql, values).await?;
    Ok(())
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
    sets.extend(["customer_name", "customer_email", "customer_version"].iter().map(|c| merge(c, newer_customer)));
    format!("ON CONFLICT (order_id) DO UPDATE SET {}", sets.join(", "))
}

pub(crate) fn poison(e: &RecordedEvent, reason: String) -> ApplyError {
    ApplyError::Poison { position: e.position, reason }
}
