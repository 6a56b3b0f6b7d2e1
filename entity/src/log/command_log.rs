use sea_orm::entity::prelude::*;

/// One executed command, keyed by the client's idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "command_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_id: String,
    pub command_type: String,
    /// A digest of the command's input: the same key with another input is a conflict.
    pub fingerprint: String,
    /// The acknowledgement first returned (ids and token), returned again on retry.
    pub result: Json,
    pub recorded_at: ChronoDateTimeUtc,
    /// Who sent the command (the actor as JSON; NULL before actors were recorded).
    pub actor: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
