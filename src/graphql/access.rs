//! Who the request acts as, and the checks resolvers ask before they read.
//! The rules themselves are the domain's ([`Actor`]); rows outside a
//! customer's scope are filtered in SQL by the query layer ([`Scope`]).
use async_graphql::{Context, Enum, SimpleObject, ID};

use super::error::from_domain;
use crate::domain::{Actor, Role};
use crate::query::Scope;

/// The request's actor, set by the transport (anonymous when absent, so a
/// forgotten attachment fails closed).
pub fn actor(ctx: &Context<'_>) -> Actor {
    ctx.data_opt::<Actor>().cloned().unwrap_or_else(Actor::anonymous)
}

/// Whose rows this request may read: everyone's for staff, its own for a
/// customer; anonymous requests may not read customer data at all.
pub fn scope(ctx: &Context<'_>) -> async_graphql::Result<Scope> {
    let actor = actor(ctx);
    actor.require_signed_in().map_err(from_domain)?;
    Ok(match actor.own_customer() {
        Some(own) => Scope::Customer(own),
        None if actor.is_staff() => Scope::Everyone,
        None => {
            return Err(from_domain(crate::domain::DomainError::forbidden("this token may not read customer data")))
        }
    })
}

pub fn require_staff(ctx: &Context<'_>, action: &str) -> async_graphql::Result<()> {
    actor(ctx).require_staff(action).map_err(from_domain)
}

/// The operations service, for an admin.
pub fn require_admin(ctx: &Context<'_>, action: &str) -> async_graphql::Result<crate::admin::Admin> {
    actor(ctx).require_admin(action).map_err(from_domain)?;
    Ok(ctx.data::<crate::admin::Admin>()?.clone())
}

/// A role of the identity model.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Role", remote = "crate::domain::Role")]
pub enum ViewerRole {
    Anonymous,
    Customer,
    Staff,
    Admin,
}

/// Who this request acts as.
#[derive(SimpleObject)]
pub struct Viewer {
    /// The token's `sub` (`open` in open development mode, `anonymous` without a token).
    pub sub: String,
    pub role: ViewerRole,
    /// Set for a customer: the customer it acts as.
    pub customer_id: Option<ID>,
}

impl From<Actor> for Viewer {
    fn from(actor: Actor) -> Self {
        let role: Role = actor.role;
        Self { sub: actor.sub, role: role.into(), customer_id: actor.customer_id.map(|id| ID(id.to_string())) }
    }
}
