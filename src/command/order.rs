//! `PlaceOrder`, `CancelOrder`, `ShipOrder`.
use serde::Serialize;
use uuid::Uuid;

use super::idempotency::{self, Key};
use super::store::{self, Lock};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::event::SalesChannel;
use crate::domain::order::{validate_lines, LineRequest, Order};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    /// Client-chosen order id (makes placement retry-safe without a
    /// commandId); generated when absent. A duplicate id is rejected.
    pub order_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub lines: Vec<PlaceOrderLine>,
    /// Where the order comes from (`UNKNOWN` when the client does not say).
    pub channel: SalesChannel,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrderLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelOrder {
    pub order_id: Uuid,
    pub reason: Option<String>,
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipOrder {
    pub order_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
    pub expected_version: Option<i64>,
}

impl CommandService {
    pub async fn place_order(&self, cmd: PlaceOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "PlaceOrder", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let lines: Vec<LineRequest> =
                cmd.lines.iter().map(|l| LineRequest { product_id: l.product_id, quantity: l.quantity }).collect();
            validate_lines(&lines)?;
            let order_id = cmd.order_id.unwrap_or_else(Uuid::now_v7);
            let uow = self.begin(key.command_type, &meta).await?;
            // Share-lock what the order depends on: a concurrent rename or
            // price change is ordered entirely before or after this order.
            let customer = store::load_customer(uow.txn(), cmd.customer_id, Lock::ForShare).await?;
            let product_ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
            let products = store::load_products(uow.txn(), &product_ids).await?;
            idempotency::claim(uow.txn(), &key).await?;
            // A duplicate order id is caught by the primary key on insert (one round trip fewer).
            let event = Order::place(order_id, &customer, &lines, &products, cmd.channel)?;
            let order =
                Order::apply(None, &event).ok_or_else(|| CommandError::Internal("placement did not apply".into()))?;
            store::insert_order(uow.txn(), &order).await?;
            uow.commit(self, &key, Some(order_id), vec![(event, order.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }

    pub async fn cancel_order(&self, cmd: CancelOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "CancelOrder", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let uow = self.begin(key.command_type, &meta).await?;
            let order = store::load_order(uow.txn(), cmd.order_id, Lock::ForUpdate).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let event = order.cancel(cmd.reason.as_deref(), cmd.expected_version)?;
            let order = Order::apply(Some(order), &event)
                .ok_or_else(|| CommandError::Internal("cancellation did not apply".into()))?;
            store::update_order(uow.txn(), &order).await?;
            uow.commit(self, &key, None, vec![(event, order.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }

    pub async fn ship_order(&self, cmd: ShipOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "ShipOrder", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let uow = self.begin(key.command_type, &meta).await?;
            let order = store::load_order(uow.txn(), cmd.order_id, Lock::ForUpdate).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let event = order.ship(&cmd.carrier, &cmd.tracking_number, cmd.expected_version)?;
            let order = Order::apply(Some(order), &event)
                .ok_or_else(|| CommandError::Internal("shipment did not apply".into()))?;
            store::update_order(uow.txn(), &order).await?;
            uow.commit(self, &key, None, vec![(event, order.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }
}
