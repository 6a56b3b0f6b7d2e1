use sea_orm::entity::prelude::*;

/// One recorded fact. Append-only: a trigger rejects UPDATE and DELETE.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event")]
pub struct Model {
    /// Global position, assigned at insert (monotonic, not commit-ordered on PostgreSQL).
    #[sea_orm(primary_key)]
    pub position: i64,
    /// PostgreSQL transaction id of the appending transaction (0 on SQLite).
    pub tx_id: i64,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub stream_version: i64,
    pub event_type: String,
    /// Schema version of `payload`.
    pub event_version: i32,
    pub payload: Json,
    pub metadata: Json,
    pub recorded_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
