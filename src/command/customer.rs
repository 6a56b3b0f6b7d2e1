//! `RegisterCustomer`, `RenameCustomer`.
use serde::Serialize;
use uuid::Uuid;

use super::idempotency::{self, Key};
use super::store::{self, Lock};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::customer::Customer;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterCustomer {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenameCustomer {
    pub customer_id: Uuid,
    pub name: String,
    pub expected_version: Option<i64>,
}

impl CommandService {
    pub async fn register_customer(&self, cmd: RegisterCustomer, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "RegisterCustomer", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let event = Customer::register(Uuid::now_v7(), &cmd.name, &cmd.email)?;
            let uow = self.begin(key.command_type, &meta).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let customer = Customer::apply(None, &event)
                .ok_or_else(|| CommandError::Internal("registration did not apply".into()))?;
            store::insert_customer(uow.txn(), &customer).await?;
            uow.commit(self, &key, Some(customer.id), vec![(event, customer.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }

    pub async fn rename_customer(&self, cmd: RenameCustomer, meta: CommandMeta) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), "RenameCustomer", &cmd)?;
        if let Some(ack) = idempotency::replay(&self.db().conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let uow = self.begin(key.command_type, &meta).await?;
            let customer = store::load_customer(uow.txn(), cmd.customer_id, Lock::ForUpdate).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let event = customer.rename(&cmd.name, cmd.expected_version)?;
            let customer = Customer::apply(Some(customer), &event)
                .ok_or_else(|| CommandError::Internal("rename did not apply".into()))?;
            store::update_customer(uow.txn(), &customer).await?;
            uow.commit(self, &key, None, vec![(event, customer.version)]).await
        };
        let attempt = tracing::Instrument::instrument(attempt, super::span(key.command_type, &meta)).await;
        self.settle(attempt, &key, started).await
    }
}
