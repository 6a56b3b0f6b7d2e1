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

use super::apply::{ApplyContext, ApplyError, Projection};
use super::sql::{array, execute, insert_rows};
use crate::domain::event::RecordedEvent;
use crate::domain::order::OrderStatus;
use crate::domain::DomainEvent;

pub struct OrderSummary;

pub const NAME: &str = crate::catalog::View::OrderSummary.name();

/// How a column travels in the PostgreSQL `UNNEST` path: its array type,
/// and for nullable columns the '' that stands for NULL (arrays here
/// cannot carry NULLs; those fields are never stored blank).
#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Text,
    /// Nullable text: '' in the array, `NULLIF(…, '')` on the way in.
    OptText,
    Int,
    BigInt,
    Time,
    /// Nullable timestamp: RFC 3339 text or '' in the array.
    OptTime,
}

/// One column of the view: its name, how it travels, and the row's value.
struct Column {
    name: &'static str,
    kind: Kind,
    value: fn(&Row) -> Value,
}

/// Every column of `order_summary`, once: both write paths (the multi-row
/// VALUES upsert and the PostgreSQL `UNNEST` upsert) are built from this
/// list, and a test holds it equal to the entity's columns.
const COLUMNS: [Column; 20] = [
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
];

fn column_names() -> Vec<&'static str> {
    COLUMNS.iter().map(|c| c.name).collect()
}

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

/// Writes rows with multi-row upserts that merge by version: a column group
/// is only overwritten by a newer order (or customer) version.
async fn upsert(txn: &DatabaseTransaction, rows: &[&Row]) -> Result<(), ApplyError> {
    let on_conflict = merge_clause();
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        return upsert_unnest(txn, rows, &on_conflict).await;
    }
    let values: Vec<Vec<Value>> = rows.iter().map(|row| COLUMNS.iter().map(|c| (c.value)(row)).collect()).collect();
    insert_rows(txn, "order_summary", &column_names(), values, &on_conflict, ROWS_PER_STATEMENT).await?;
    Ok(())
}

/// PostgreSQL bulk path: one array parameter per column, expanded by
/// `UNNEST` — one statement and twenty parameters per batch however many
/// rows, in the binary protocol (no VALUES list to parse and plan, no JSON
/// to parse). Arrays cannot carry NULLs here, so nullable text travels as ''
/// (never a stored value: those fields are either absent or non-blank).
async fn upsert_unnest(txn: &DatabaseTransaction, rows: &[&Row], on_conflict: &str) -> Result<(), ApplyError> {
    use sea_orm::sea_query::ArrayType;
    let mut values = Vec::with_capacity(COLUMNS.len());
    let (mut selects, mut arrays) = (Vec::new(), Vec::new());
    for (i, column) in COLUMNS.iter().enumerate() {
        let (ty, sql_type, select) = match column.kind {
            Kind::Uuid => (ArrayType::Uuid, "uuid", column.name.to_owned()),
            Kind::Text => (ArrayType::String, "text", column.name.to_owned()),
            Kind::OptText => (ArrayType::String, "text", format!("NULLIF({}, '')", column.name)),
            Kind::Int => (ArrayType::Int, "int", column.name.to_owned()),
            Kind::BigInt => (ArrayType::BigInt, "bigint", column.name.to_owned()),
            Kind::Time => (ArrayType::ChronoDateTimeUtc, "timestamptz", column.name.to_owned()),
            Kind::OptTime => (ArrayType::String, "text", format!("NULLIF({}, '')::timestamptz", column.name)),
        };
        let items = rows.iter().map(|row| blank_for_null(column.kind, (column.value)(row))).collect();
        values.push(array(ty, items));
        selects.push(select);
        arrays.push(format!("${}::{sql_type}[]", i + 1));
    }
    let names = column_names().join(", ");
    let sql = format!(
        "INSERT INTO order_summary ({names}) SELECT {} FROM UNNEST({}) AS u({names}) {on_conflict}",
        selects.join(", "),
        arrays.join(", ")
    );
    execute(txn, &sql, values).await?;
    Ok(())
}

/// A nullable column's value as its array element: '' for NULL, and a
/// timestamp as RFC 3339 text.
fn blank_for_null(kind: Kind, value: Value) -> Value {
    match (kind, value) {
        (Kind::OptText, Value::String(v)) => Value::String(Some(v.unwrap_or_default())),
        (Kind::OptTime, Value::ChronoDateTimeUtc(v)) => {
            Value::String(Some(v.map(|t| t.to_rfc3339()).unwrap_or_default()))
        }
        (_, value) => value,
    }
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

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    /// Both write paths are built from `COLUMNS`: a column added to the
    /// entity (or renamed) must be added here too, in the entity's order.
    #[test]
    fn the_column_list_is_the_entitys() {
        let entity: Vec<&str> = entity::read::order_summary::Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(super::column_names(), entity);
    }
}
