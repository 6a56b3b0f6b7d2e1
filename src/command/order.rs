//! `PlaceOrder`, `CancelOrder`, `ShipOrder`.
use std::collections::HashMap;

use sea_orm::DatabaseTransaction;
use serde::Serialize;
use uuid::Uuid;

use super::pipeline::{Changes, Changing, Decision, Handler};
use super::store;
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::customer::Customer;
pub use crate::domain::event::SalesChannel;
use crate::domain::order::Order;
pub use crate::domain::order::{LineRequest, OrderLines};
use crate::domain::product::Product;
use crate::domain::{Actor, DomainError, DomainEvent};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    /// Client-chosen order id (makes placement retry-safe without a
    /// commandId); generated when absent. An id already in use is rejected.
    pub order_id: Option<Uuid>,
    /// A customer may leave it out (its own); staff must name one.
    pub customer_id: Option<Uuid>,
    /// Checked when they were parsed (see [`OrderLines::parse`]).
    pub lines: OrderLines,
    /// Where the order comes from (`UNKNOWN` when the client does not say).
    pub channel: SalesChannel,
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

#[async_trait::async_trait]
impl Handler for PlaceOrder {
    type Loaded = (Customer, HashMap<Uuid, Product>);
    type State = Order;

    /// Share-locks what the order depends on: a concurrent rename or price
    /// change is ordered entirely before or after this order.
    async fn load(&self, txn: &DatabaseTransaction, by: &Actor) -> Result<Self::Loaded, CommandError> {
        let customer = by.order_customer(self.customer_id)?;
        store::load_customer_and_products(txn, customer, &self.lines.product_ids()).await
    }

    /// A duplicate order id is refused by the primary key when the row is inserted.
    fn decide(&self, (customer, products): Self::Loaded, _: &Actor) -> Result<Decision<Order>, CommandError> {
        let order_id = self.order_id.unwrap_or_else(Uuid::now_v7);
        Decision::after(None, Order::place(order_id, &customer, &self.lines, &products, self.channel)?)
    }
}

impl Changes for CancelOrder {
    type Aggregate = Order;
    fn target(&self) -> Uuid {
        self.order_id
    }
    fn decide(&self, order: &Order) -> Result<DomainEvent, DomainError> {
        order.cancel(self.reason.as_deref(), self.expected_version)
    }
}

impl Changes for ShipOrder {
    type Aggregate = Order;
    fn permitted(&self, by: &Actor) -> Result<(), DomainError> {
        by.require_staff("ship orders")
    }
    fn target(&self) -> Uuid {
        self.order_id
    }
    fn decide(&self, order: &Order) -> Result<DomainEvent, DomainError> {
        order.ship(&self.carrier, &self.tracking_number, self.expected_version)
    }
}

impl CommandService {
    pub async fn place_order(&self, cmd: PlaceOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("PlaceOrder", cmd, meta).await
    }

    pub async fn cancel_order(&self, cmd: CancelOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("CancelOrder", Changing(cmd), meta).await
    }

    pub async fn ship_order(&self, cmd: ShipOrder, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("ShipOrder", Changing(cmd), meta).await
    }
}
