//! Mutations: one task-based command each. Each returns only the id it
//! created (if any) and a consistency token, never a read view.
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};

use super::error::{from_command, validation};
use super::request::RequestId;
use super::scalars::{uuid, Token};
use super::types::SalesChannel;
use crate::command::customer::{RegisterCustomer, RenameCustomer};
use crate::command::order::{CancelOrder, LineRequest, OrderLines, PlaceOrder, ShipOrder};
use crate::command::product::{AddProduct, ChangeProductPrice};
use crate::command::{Ack, CommandMeta, CommandService};

/// Acknowledges a command that created something.
#[derive(SimpleObject)]
pub struct Created {
    /// The id of what was created.
    pub id: ID,
    /// Pass to `consistentWith` or `writeVisible` to read your own write.
    pub token: Token,
}

/// Acknowledges a command on an existing aggregate.
#[derive(SimpleObject)]
pub struct Accepted {
    /// Pass to `consistentWith` or `writeVisible` to read your own write.
    pub token: Token,
}

#[derive(InputObject)]
pub struct RegisterCustomerInput {
    pub name: String,
    pub email: String,
    /// Idempotency key: a retry with the same key returns the first result.
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct RenameCustomerInput {
    pub customer_id: ID,
    pub name: String,
    /// Reject with CONFLICT unless the customer is at this version.
    pub expected_version: Option<i32>,
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct AddProductInput {
    pub sku: String,
    pub title: String,
    /// Price in integer cents, from 1 to 100,000,000 ($1,000,000.00).
    pub price_cents: i32,
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct ChangeProductPriceInput {
    pub product_id: ID,
    /// The new price in integer cents, from 1 to 100,000,000.
    pub price_cents: i32,
    pub expected_version: Option<i32>,
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct OrderLineInput {
    pub product_id: ID,
    pub quantity: i32,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    /// Optional client-chosen order id (a UUID); a duplicate is rejected.
    pub order_id: Option<ID>,
    /// Whose order it is. A customer may leave it out (its own) and may
    /// not name another; staff must give it.
    pub customer_id: Option<ID>,
    pub lines: Vec<OrderLineInput>,
    /// Where the order comes from (default UNKNOWN).
    pub channel: Option<SalesChannel>,
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct CancelOrderInput {
    pub order_id: ID,
    pub reason: Option<String>,
    pub expected_version: Option<i32>,
    pub command_id: Option<String>,
}

#[derive(InputObject)]
pub struct ShipOrderInput {
    pub order_id: ID,
    pub carrier: String,
    pub tracking_number: String,
    pub expected_version: Option<i32>,
    pub command_id: Option<String>,
}

fn meta(ctx: &Context<'_>, command_id: Option<String>) -> CommandMeta {
    CommandMeta {
        command_id,
        request_id: ctx.data_opt::<RequestId>().map(|r| r.0.clone()),
        correlation_id: ctx.data_opt::<super::request::Caller>().and_then(|c| c.correlation_id.clone()),
        actor: super::access::actor(ctx),
    }
}

fn created(ack: Ack) -> async_graphql::Result<Created> {
    let id = ack.id.ok_or_else(|| validation("the command created nothing"))?;
    Ok(Created { id: ID(id.to_string()), token: Token(ack.token) })
}

fn accepted(ack: Ack) -> Accepted {
    Accepted { token: Token(ack.token) }
}

fn version(expected: Option<i32>) -> async_graphql::Result<Option<i64>> {
    match expected {
        Some(v) if v < 1 => Err(validation(format!("expectedVersion must be at least 1, got {v}"))),
        other => Ok(other.map(i64::from)),
    }
}

/// Acknowledges an admin operation started in the background.
#[derive(SimpleObject)]
pub struct RebuildStarted {
    pub projection: String,
    /// Follow progress in `projections` (status `rebuilding`, `rebuildPercent`) or `projectionUpdated`.
    pub accepted: bool,
}

/// An operator's action on a dead letter is a command like any other: it
/// answers an ack whose token is the projection's checkpoint afterwards
/// (wait on it with `writeVisible`); the dead letter itself is read with
/// the `deadLetters` query.
fn resolution(done: crate::admin::Resolved) -> Accepted {
    Accepted { token: Token(done.checkpoint) }
}

fn dead_letter_error(e: crate::admin::DeadLetterError) -> async_graphql::Error {
    use crate::admin::DeadLetterError;
    match e {
        DeadLetterError::NotFound(_) => super::error::coded(super::error::NOT_FOUND, e.to_string()),
        DeadLetterError::AlreadyResolved { .. } | DeadLetterError::Refused(_) => {
            super::error::coded(super::error::INVARIANT_VIOLATION, e.to_string())
        }
        DeadLetterError::Database(e) => super::error::from_db(e),
    }
}

fn dead_letter_id(id: &ID) -> async_graphql::Result<i64> {
    id.as_str().parse::<i64>().map_err(|_| {
        validation(format!("'{}' is not a dead letter id", id.as_str().chars().take(40).collect::<String>()))
    })
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Registers a customer. Email addresses are unique (case-insensitive).
    /// A customer token registers itself (the new customer's id is its
    /// `customer_id`); staff register anyone.
    async fn register_customer(
        &self,
        ctx: &Context<'_>,
        input: RegisterCustomerInput,
    ) -> async_graphql::Result<Created> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = RegisterCustomer { name: input.name, email: input.email };
        created(commands.register_customer(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?)
    }

    /// Renames a customer; every order summary shows the new name. A
    /// customer may rename only itself.
    async fn rename_customer(&self, ctx: &Context<'_>, input: RenameCustomerInput) -> async_graphql::Result<Accepted> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = RenameCustomer {
            customer_id: uuid("customerId", &input.customer_id)?,
            name: input.name,
            expected_version: version(input.expected_version)?,
        };
        Ok(accepted(commands.rename_customer(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?))
    }

    /// Adds a product to the catalog. SKUs are unique.
    async fn add_product(&self, ctx: &Context<'_>, input: AddProductInput) -> async_graphql::Result<Created> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = AddProduct { sku: input.sku, title: input.title, price_cents: i64::from(input.price_cents) };
        created(commands.add_product(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?)
    }

    /// Changes a product's price; orders already placed keep their prices.
    async fn change_product_price(
        &self,
        ctx: &Context<'_>,
        input: ChangeProductPriceInput,
    ) -> async_graphql::Result<Accepted> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = ChangeProductPrice {
            product_id: uuid("productId", &input.product_id)?,
            price_cents: i64::from(input.price_cents),
            expected_version: version(input.expected_version)?,
        };
        Ok(accepted(commands.change_product_price(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?))
    }

    /// Places an order, pricing each line at the product's current price.
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> async_graphql::Result<Created> {
        let commands = ctx.data::<CommandService>()?;
        // Every malformed id is reported, each with its path, not only the first.
        let mut ids = super::scalars::Ids::default();
        let order_id = input.order_id.as_ref().map(|id| ids.parse("orderId", id));
        let customer_id = input.customer_id.as_ref().map(|id| ids.parse("customerId", id));
        let mut lines = Vec::with_capacity(input.lines.len());
        for (i, line) in input.lines.iter().enumerate() {
            lines.push(LineRequest {
                product_id: ids.parse(&format!("lines[{i}].productId"), &line.product_id),
                quantity: line.quantity,
            });
        }
        ids.check()?;
        let cmd = PlaceOrder {
            order_id,
            customer_id,
            lines: OrderLines::parse(lines).map_err(super::error::from_domain)?,
            channel: input.channel.map_or(crate::domain::event::SalesChannel::Unknown, Into::into),
        };
        created(commands.place_order(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?)
    }

    /// Cancels a placed order. A shipped or cancelled order cannot be cancelled.
    async fn cancel_order(&self, ctx: &Context<'_>, input: CancelOrderInput) -> async_graphql::Result<Accepted> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = CancelOrder {
            order_id: uuid("orderId", &input.order_id)?,
            reason: input.reason,
            expected_version: version(input.expected_version)?,
        };
        Ok(accepted(commands.cancel_order(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?))
    }

    /// Admin: rebuilds a projection by replaying the event log into fresh
    /// tables while the old ones keep serving, then switches atomically.
    /// Requires the admin role.
    async fn rebuild_projection(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<RebuildStarted> {
        let admin = super::access::require_admin(ctx, "rebuild projections")?;
        admin.start_rebuild(&name).map_err(|e| match e {
            crate::admin::StartRebuildError::AlreadyRebuilding(_) => {
                super::error::coded(super::error::CONFLICT, e.to_string())
            }
            crate::admin::StartRebuildError::Unknown { .. } | crate::admin::StartRebuildError::NotRebuildable(_) => {
                validation(e.to_string())
            }
        })?;
        Ok(RebuildStarted { projection: name, accepted: true })
    }

    /// Admin: the projection, stopped at this dead letter (after the cause
    /// was fixed), tries its event again. The token is the projection's
    /// checkpoint afterwards; `deadLetters(includeResolved: true)` shows the
    /// letter's resolution.
    async fn retry_dead_letter(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Accepted> {
        let admin = super::access::require_admin(ctx, "retry dead letters")?;
        Ok(resolution(admin.retry_dead_letter(dead_letter_id(&id)?).await.map_err(dead_letter_error)?))
    }

    /// Admin: the projection, stopped at this dead letter, moves past its
    /// event (which then never shows in that view). The token is the
    /// projection's checkpoint afterwards.
    async fn skip_dead_letter(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Accepted> {
        let admin = super::access::require_admin(ctx, "skip dead letters")?;
        Ok(resolution(admin.skip_dead_letter(dead_letter_id(&id)?).await.map_err(dead_letter_error)?))
    }

    /// Ships a placed order. A cancelled or shipped order cannot be shipped.
    async fn ship_order(&self, ctx: &Context<'_>, input: ShipOrderInput) -> async_graphql::Result<Accepted> {
        let commands = ctx.data::<CommandService>()?;
        let cmd = ShipOrder {
            order_id: uuid("orderId", &input.order_id)?,
            carrier: input.carrier,
            tracking_number: input.tracking_number,
            expected_version: version(input.expected_version)?,
        };
        Ok(accepted(commands.ship_order(cmd, meta(ctx, input.command_id)).await.map_err(from_command)?))
    }
}
