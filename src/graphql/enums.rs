//! The enums several GraphQL types and inputs share, each the domain's
//! own (`remote` holds the variants equal), in a file of their own so the
//! output types and the list inputs can both use them.
use async_graphql::Enum;

// The variants are the domain's; `remote` makes the compiler hold the two
// lists equal (one source of truth, no string matching).
/// Where an order stands: placed, then cancelled or shipped.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::domain::order::OrderStatus")]
pub enum OrderStatus {
    /// Placed, not yet shipped or cancelled.
    Placed,
    /// Cancelled (with a reason).
    Cancelled,
    /// Shipped (with a carrier and tracking number).
    Shipped,
}

// The domain's variants, held equal by `remote` as above.
/// Where an order was placed.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::domain::event::SalesChannel")]
pub enum SalesChannel {
    /// The web shop.
    Web,
    /// The mobile app.
    Mobile,
    /// The API, by another system.
    Api,
    /// Not recorded (orders placed before channels were tracked, or the client did not say).
    Unknown,
}
