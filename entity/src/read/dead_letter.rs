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
    /// What an operator did with it; `None` while open.
    pub resolution: Option<Resolution>,
    pub resolved_at: Option<ChronoDateTimeUtc>,
}

/// What an operator did with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Resolution {
    /// The projection was set to apply the event again.
    #[sea_orm(string_value = "retried")]
    Retried,
    /// The projection moved past the event, which stays unapplied.
    #[sea_orm(string_value = "skipped")]
    Skipped,
}

/// The stored text, for messages.
impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
