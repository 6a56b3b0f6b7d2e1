//! `AddProduct`, `ChangeProductPrice`.
use serde::Serialize;
use uuid::Uuid;

use super::idempotency::{self, Key};
use super::store::{self, Lock};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::product::Product;

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

impl CommandService {
    pub async fn add_product(&self, cmd: AddProduct, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "AddProduct", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let event = Product::add(Uuid::now_v7(), &cmd.sku, &cmd.title, cmd.price_cents)?;
            let uow = self.begin(key.command_type, &meta).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let product =
                Product::apply(None, &event).ok_or_else(|| CommandError::Internal("addition did not apply".into()))?;
            store::insert_product(uow.txn(), &product).await?;
            uow.commit(self, &key, Some(product.id), vec![(event, product.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }

    pub async fn change_product_price(&self, cmd: ChangeProductPrice, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "ChangeProductPrice", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let uow = self.begin(key.command_type, &meta).await?;
            let product = store::load_product(uow.txn(), cmd.product_id, Lock::ForUpdate).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let event = product.change_price(cmd.price_cents, cmd.expected_version)?;
            let product = Product::apply(Some(product), &event)
                .ok_or_else(|| CommandError::Internal("price change did not apply".into()))?;
            store::update_product(uow.txn(), &product).await?;
            uow.commit(self, &key, None, vec![(event, product.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }
}
