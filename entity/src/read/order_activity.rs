use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An order's timeline: one human-readable row per order event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "order_activity")]
pub struct Model {
    /// The event's log position (one row per order event).
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i64,
    pub tx_id: i64,
    pub order_id: Uuid,
    pub stream_version: i64,
    pub event_type: String,
    pub description: String,
    pub occurred_at: ChronoDateTimeUtc,
    /// The customer the order belongs to (a customer's reads filter by it).
    pub customer_id: Option<Uuid>,
    /// Who caused the event (`sub`; NULL for events recorded before actors were).
    pub actor_sub: Option<String>,
    /// The actor's role (`customer`, `staff`, `admin`, `anonymous`).
    pub actor_role: Option<String>,
    /// The work the event belongs to (the request's `Twofold-Correlation-Id`, or the root command's id).
    pub correlation_id: Option<String>,
    /// The command (or event) that caused it.
    pub causation_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
