//! Who acts, and what each role may do. The rules live here, next to the
//! aggregates they protect; the command side asks them before it decides,
//! and the read side turns an actor into the scope its queries filter by.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::DomainError;

/// Whom a request asks to act as when it narrows its role: a customer
/// always with its id, every other role without one, so a bad pairing
/// cannot be expressed (the HTTP layer reports it in its headers' words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrowing {
    Anonymous,
    Customer(Uuid),
    Staff,
    Admin,
}

impl Narrowing {
    pub fn role(self) -> Role {
        match self {
            Self::Anonymous => Role::Anonymous,
            Self::Customer(_) => Role::Customer,
            Self::Staff => Role::Staff,
            Self::Admin => Role::Admin,
        }
    }
}

/// The roles of the identity model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No credentials (with keys configured): may read the product catalog only.
    Anonymous,
    /// A shopper: acts only for its own customer record.
    Customer,
    /// The back office: everything but operations on projections.
    Staff,
    /// Staff plus rebuilds and dead letters.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Anonymous, Role::Customer, Role::Staff, Role::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Customer => "customer",
            Self::Staff => "staff",
            Self::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// The identity a request acts as: recorded in every event's metadata and
/// the command log, and the source of every permission check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// Who acts (a token's `sub`; `open`, `anonymous` or an operator command otherwise).
    pub sub: String,
    pub role: Role,
    /// The customer a `customer` acts as (always set for that role, never for others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
}

/// Why an actor cannot be narrowed to a target: it would widen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Widening {
    #[error("a role can be narrowed, never widened: this request acts as {} and cannot act as {}", from.as_str(), to.as_str())]
    Role { from: Role, to: Role },
    #[error("a customer can act only as itself")]
    OtherCustomer,
}

impl Actor {
    /// Open development mode (no keys configured): everyone is staff.
    pub fn open() -> Self {
        Self { sub: "open".into(), role: Role::Staff, customer_id: None }
    }

    pub fn anonymous() -> Self {
        Self { sub: "anonymous".into(), role: Role::Anonymous, customer_id: None }
    }

    /// An operator command run on the server (`twofold demo-data`, …).
    pub fn operator(command: &str) -> Self {
        Self { sub: format!("twofold {command}"), role: Role::Admin, customer_id: None }
    }

    /// A customer acting as itself.
    pub fn customer(sub: impl Into<String>, customer_id: Uuid) -> Self {
        Self { sub: sub.into(), role: Role::Customer, customer_id: Some(customer_id) }
    }

    pub fn staff(sub: impl Into<String>) -> Self {
        Self { sub: sub.into(), role: Role::Staff, customer_id: None }
    }

    pub fn admin(sub: impl Into<String>) -> Self {
        Self { sub: sub.into(), role: Role::Admin, customer_id: None }
    }

    /// This actor with a role no wider than its own, for one request: a
    /// developer (in open mode, where everyone is staff) or staff sees
    /// exactly what a customer, or an anonymous visitor, would. A customer
    /// stays the customer it is; nothing widens. `sub` is kept, so the
    /// events record who really acted. The target cannot pair a role with
    /// the wrong id (see [`Narrowing`]); only rank and self are checked here.
    pub fn narrowed_to(&self, target: Narrowing) -> Result<Actor, Widening> {
        let rank = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap_or(0);
        let role = target.role();
        if rank(role) > rank(self.role) {
            return Err(Widening::Role { from: self.role, to: role });
        }
        match target {
            Narrowing::Customer(id) if self.role == Role::Customer && self.customer_id != Some(id) => {
                Err(Widening::OtherCustomer)
            }
            Narrowing::Customer(id) => Ok(Actor::customer(self.sub.clone(), id)),
            Narrowing::Anonymous | Narrowing::Staff | Narrowing::Admin => {
                Ok(Actor { sub: self.sub.clone(), role, customer_id: None })
            }
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.role == Role::Anonymous
    }

    /// Who this is, as one string (for keys that must differ between
    /// callers who may see different answers).
    pub fn identity_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.role.as_str(),
            self.sub,
            self.customer_id.map(|c| c.to_string()).unwrap_or_default()
        )
    }

    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Staff | Role::Admin)
    }

    /// The one customer this actor may see and act for; `None` for staff
    /// and admin, who see everyone (and for anonymous, who sees no one:
    /// check [`Actor::require_signed_in`] first).
    pub fn own_customer(&self) -> Option<Uuid> {
        match self.role {
            Role::Customer => self.customer_id,
            _ => None,
        }
    }

    /// Anything beyond the product catalog needs credentials.
    pub fn require_signed_in(&self) -> Result<(), DomainError> {
        match self.role {
            Role::Anonymous => {
                Err(DomainError::unauthenticated("sign in: this needs a bearer token (Authorization: Bearer <token>)"))
            }
            _ => Ok(()),
        }
    }

    /// Shipping, the catalog, other customers' records: staff or admin.
    pub fn require_staff(&self, action: &str) -> Result<(), DomainError> {
        self.require_signed_in()?;
        if self.is_staff() {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!("only staff may {action}")))
        }
    }

    /// Rebuilds and dead letters: admin only.
    pub fn require_admin(&self, action: &str) -> Result<(), DomainError> {
        self.require_signed_in()?;
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!("only an admin may {action}")))
        }
    }

    /// A customer acts only for itself; staff for anyone.
    pub fn require_acting_for(&self, customer_id: Uuid, action: &str) -> Result<(), DomainError> {
        self.require_signed_in()?;
        match self.own_customer() {
            Some(own) if own != customer_id => {
                Err(DomainError::forbidden(format!("a customer may only {action} for itself")))
            }
            _ if self.role == Role::Customer && self.customer_id.is_none() => {
                Err(DomainError::forbidden("this customer token names no customer"))
            }
            _ => Ok(()),
        }
    }

    /// The customer an order is placed for: a customer's own (the input may
    /// omit it, and must not name another); staff must name one.
    pub fn order_customer(&self, requested: Option<Uuid>) -> Result<Uuid, DomainError> {
        self.require_signed_in()?;
        match (self.own_customer(), requested) {
            (Some(own), None) => Ok(own),
            (Some(own), Some(requested)) if requested == own => Ok(own),
            (Some(_), Some(_)) => Err(DomainError::forbidden("a customer may only place orders for itself")),
            (None, Some(requested)) if self.is_staff() => Ok(requested),
            (None, None) if self.is_staff() => Err(DomainError::validation("customerId is required")),
            (None, _) => Err(DomainError::forbidden("this token may not place orders")),
        }
    }

    /// The id of the customer a registration creates: a customer registers
    /// itself under its token's `customer_id`; staff create new ids
    /// (`None`: the caller picks one).
    pub fn registration_id(&self) -> Result<Option<Uuid>, DomainError> {
        self.require_signed_in()?;
        match self.role {
            Role::Customer => self
                .customer_id
                .map(Some)
                .ok_or_else(|| DomainError::forbidden("this customer token names no customer")),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_acts_only_for_itself() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let customer = Actor::customer("me", me);
        assert!(customer.require_acting_for(me, "cancel orders").is_ok());
        assert!(matches!(customer.require_acting_for(other, "cancel orders"), Err(DomainError::Forbidden(_))));
        assert_eq!(customer.order_customer(None), Ok(me));
        assert!(matches!(customer.order_customer(Some(other)), Err(DomainError::Forbidden(_))));
        assert!(matches!(customer.require_staff("ship orders"), Err(DomainError::Forbidden(_))));
        assert_eq!(customer.registration_id(), Ok(Some(me)));
    }

    #[test]
    fn staff_act_for_anyone_but_only_admins_operate() {
        let staff = Actor::staff("s");
        let anyone = Uuid::new_v4();
        assert!(staff.require_acting_for(anyone, "rename customers").is_ok());
        assert_eq!(staff.order_customer(Some(anyone)), Ok(anyone));
        assert!(matches!(staff.order_customer(None), Err(DomainError::Validation(_))));
        assert!(matches!(staff.require_admin("rebuild"), Err(DomainError::Forbidden(_))));
        assert!(Actor::admin("a").require_admin("rebuild").is_ok());
    }

    #[test]
    fn anonymous_must_sign_in_first() {
        let nobody = Actor::anonymous();
        assert!(matches!(nobody.require_staff("ship orders"), Err(DomainError::Unauthenticated(_))));
        assert!(matches!(nobody.order_customer(None), Err(DomainError::Unauthenticated(_))));
        assert!(matches!(nobody.registration_id(), Err(DomainError::Unauthenticated(_))));
    }
}
