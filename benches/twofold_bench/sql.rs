//! Plain-SQL writes straight into the write model and the event log: the
//! baseline for command throughput (what the database can do with no
//! service in front of it), and the fast way to grow the log to the size
//! the rebuild is measured at.
//!
//! The rows are exactly what the command path writes (the events are built
//! and serialized by the service's own `DomainEvent`), so the running
//! projector folds them like any other event.
use anyhow::Context;
use chrono::Utc;
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, EntityTrait};
use serde_json::{json, Value};
use uuid::Uuid;

use entity::log::event;
use entity::write::{customer_order, order_line};
use twofold::db::Db;
use twofold::domain::event::DomainEvent;

use crate::workload::{Catalog, OrderSpec};

/// What becomes of an order written by [`append_orders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Placed,
    Cancelled,
    Shipped,
}

/// One `placeOrder` as plain SQL, in one transaction: the order row, its
/// lines and one event row. No reads, no idempotency record; only the
/// appender lock every event writer takes first (see `Db::begin_append`).
pub async fn insert_order(db: &Db, catalog: &Catalog, order: &OrderSpec) -> anyhow::Result<()> {
    let rows = OrderRows::build(catalog, order, Fate::Placed)?;
    let txn = db.begin_append().await?;
    customer_order::Entity::insert(rows.header).exec_without_returning(&*txn).await?;
    order_line::Entity::insert_many(rows.lines).exec_without_returning(&*txn).await?;
    event::Entity::insert_many(rows.events).exec_without_returning(&*txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Appends many orders in one transaction with multi-row INSERTs, each
/// with its final state and every event that led there. Returns the number
/// of events appended.
pub async fn append_orders(db: &Db, catalog: &Catalog, orders: &[(OrderSpec, Fate)]) -> anyhow::Result<u64> {
    let mut headers = Vec::with_capacity(orders.len());
    let mut lines = Vec::new();
    let mut events = Vec::new();
    for (order, fate) in orders {
        let rows = OrderRows::build(catalog, order, *fate)?;
        headers.push(rows.header);
        lines.extend(rows.lines);
        events.extend(rows.events);
    }
    let appended = events.len() as u64;
    let txn = db.begin_append().await?;
    customer_order::Entity::insert_many(headers).exec_without_returning(&*txn).await?;
    // Stay well below the bind-parameter limits (PostgreSQL 65,535; SQLite 32,766).
    for chunk in chunked(lines, 2_000) {
        order_line::Entity::insert_many(chunk).exec_without_returning(&*txn).await?;
    }
    for chunk in chunked(events, 1_000) {
        event::Entity::insert_many(chunk).exec_without_returning(&*txn).await?;
    }
    txn.commit().await?;
    Ok(appended)
}

fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut iter = items.into_iter().peekable();
    while iter.peek().is_some() {
        chunks.push(iter.by_ref().take(size).collect());
    }
    chunks
}

/// The rows one order contributes to the write model and the log.
struct OrderRows {
    header: customer_order::ActiveModel,
    lines: Vec<order_line::ActiveModel>,
    events: Vec<event::ActiveModel>,
}

impl OrderRows {
    fn build(catalog: &Catalog, order: &OrderSpec, fate: Fate) -> anyhow::Result<Self> {
        let now = Utc::now();
        let customer = &catalog.customers[order.customer];
        let lines: Vec<Value> = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, (p, quantity))| {
                let product = &catalog.products[*p];
                json!({
                    "lineNo": i + 1,
                    "productId": product.id,
                    "sku": product.sku,
                    "title": product.title,
                    "quantity": quantity,
                    "unitPriceCents": product.price_cents,
                })
            })
            .collect();
        let total_cents = catalog.total_cents(order);
        let mut events = vec![event(
            "OrderPlaced",
            json!({
                "orderId": order.order_id,
                "customerId": customer.id,
                "customerName": customer.name,
                "customerEmail": customer.email,
                "customerVersion": 1,
                "lines": lines,
                "totalCents": total_cents,
            }),
        )?];
        let tracking = format!("1Z{}", order.order_id.simple());
        match fate {
            Fate::Placed => {}
            Fate::Cancelled => {
                let reversed: Vec<Value> = order
                    .lines
                    .iter()
                    .map(|(p, q)| {
                        let product = &catalog.products[*p];
                        json!({ "productId": product.id, "quantity": q, "lineTotalCents": product.price_cents * i64::from(*q) })
                    })
                    .collect();
                events.push(event(
                    "OrderCancelled",
                    json!({ "orderId": order.order_id, "customerId": customer.id, "reason": "bench", "totalCents": total_cents, "lines": reversed }),
                )?);
            }
            Fate::Shipped => events.push(event(
                "OrderShipped",
                json!({ "orderId": order.order_id, "customerId": customer.id, "carrier": "DHL", "trackingNumber": tracking }),
            )?),
        }
        let (status, reason, carrier, tracking_number) = match fate {
            Fate::Placed => ("PLACED", None, None, None),
            Fate::Cancelled => ("CANCELLED", Some("bench".to_owned()), None, None),
            Fate::Shipped => ("SHIPPED", None, Some("DHL".to_owned()), Some(tracking)),
        };
        let header = customer_order::ActiveModel {
            id: Set(order.order_id),
            customer_id: Set(customer.id),
            status: Set(status.to_owned()),
            total_cents: Set(total_cents),
            cancel_reason: Set(reason),
            carrier: Set(carrier),
            tracking_number: Set(tracking_number),
            version: Set(events.len() as i64),
            placed_at: Set(now),
            updated_at: Set(now),
        };
        let lines = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, (p, quantity))| order_line::ActiveModel {
                order_id: Set(order.order_id),
                line_no: Set(i as i32 + 1),
                product_id: Set(catalog.products[*p].id),
                quantity: Set(*quantity),
                unit_price_cents: Set(catalog.products[*p].price_cents),
            })
            .collect();
        let events = events.iter().enumerate().map(|(i, e)| event_row(e, i as i64 + 1, now)).collect();
        Ok(Self { header, lines, events })
    }
}

/// A domain event from its schema-v1 JSON. Going through the service's own
/// decoder (which upcasts old versions) keeps these rows in the current
/// schema even as events gain fields.
fn event(event_type: &str, v1_payload: Value) -> anyhow::Result<DomainEvent> {
    DomainEvent::decode(event_type, 1, &v1_payload).with_context(|| format!("build a {event_type} event"))
}

/// An event row as `command::log::append` writes it.
fn event_row(e: &DomainEvent, stream_version: i64, now: chrono::DateTime<Utc>) -> event::ActiveModel {
    let (stream_type, stream_id): (_, Uuid) = e.stream();
    event::ActiveModel {
        position: NotSet,
        tx_id: NotSet,
        stream_type: Set(stream_type.as_str().to_owned()),
        stream_id: Set(stream_id),
        stream_version: Set(stream_version),
        event_type: Set(e.event_type().to_owned()),
        event_version: Set(e.schema_version()),
        payload: Set(e.to_payload().expect("an encodable event")),
        metadata: Set(
            json!({ "commandType": "PlaceOrder", "commandId": null, "correlationId": null, "actor": "twofold_bench" }),
        ),
        recorded_at: Set(now),
    }
}
