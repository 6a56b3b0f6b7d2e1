//! `RegisterCustomer`, `RenameCustomer`.
use serde::Serialize;
use uuid::Uuid;

use super::pipeline::{Changes, Changing, Creates, Creating};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::customer::Customer;
use crate::domain::{Actor, DomainError, DomainEvent};

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

/// A taken email is refused by the unique constraint when the row is
/// inserted. A customer registers itself, under its token's customer id.
impl Creates for RegisterCustomer {
    type Aggregate = Customer;
    fn chosen_id(&self, by: &Actor) -> Result<Option<Uuid>, DomainError> {
        by.registration_id()
    }
    fn decide(&self, id: Uuid) -> Result<DomainEvent, DomainError> {
        Customer::register(id, &self.name, &self.email)
    }
}

impl Changes for RenameCustomer {
    type Aggregate = Customer;
    fn target(&self) -> Uuid {
        self.customer_id
    }
    fn decide(&self, customer: &Customer) -> Result<DomainEvent, DomainError> {
        customer.rename(&self.name, self.expected_version)
    }
}

impl CommandService {
    pub async fn register_customer(&self, cmd: RegisterCustomer, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("RegisterCustomer", Creating(cmd), meta).await
    }

    pub async fn rename_customer(&self, cmd: RenameCustomer, meta: CommandMeta) -> Result<Ack, CommandError> {
        self.execute("RenameCustomer", Changing(cmd), meta).await
    }
}
