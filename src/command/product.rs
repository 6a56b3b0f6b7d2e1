//! `AddProduct`, `ChangeProductPrice`.
use serde::Serialize;
use uuid::Uuid;

use super::pipeline::{Changes, Changing, Creates, Creating};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::product::Product;
use crate::domain::{Actor, DomainError, DomainEvent};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddProduct {
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeProductPrice {
    pub product_id: Uuid,
    pub price_cents: i64,
    pub expected_version: Option<i64>,
}

/// A taken sku is refused by the unique constraint when the row is inserted.
impl Creates for AddProduct {
    type Aggregate = Product;
    fn permitted(&self, by: &Actor) -> Result<(), DomainError> {
        by.require_staff("add products")
    }
    fn decide(&self, id: Uuid) -> Result<DomainEvent, DomainError> {
        Product::add(id, &self.sku, &self.title, self.price_cents)
    }
}

impl Changes for ChangeProductPrice {
    type Aggregate = Product;
    fn permitted(&self, by: &Actor) -> Result<(), DomainError> {
        by.require_staff("change prices")
    }
    fn target(&self) -> Uuid {
        self.product_id
    }
    fn decide(&self, product: &Product) -> Result<DomainEvent, DomainError> {
        product.change_price(self.price_cents, self.expected_version)
    }
}

impl CommandService {
    pub async fn add_product(&self, cmd: AddProduct, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("AddProduct", Creating(cmd), meta).await
    }

    pub async fn change_product_price(&self, cmd: ChangeProductPrice, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("ChangeProductPrice", Changing(cmd), meta).await
    }
}
