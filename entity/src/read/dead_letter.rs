use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An event a projection failed to apply deterministically (a poison event).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "dead_letter")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub projection: String,
    pub event_position: i64,
    pub event_tx_id: i64,
    pub stream_id: Uuid,
    pub event_type: String,
    pub error: String,
    pub recorded_at: ChronoDateTimeUtc,
    /// What an operator did with it: `retried` or `skipped`; `None` while open.
    pub resolution: Option<String>,
    pub resolved_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
