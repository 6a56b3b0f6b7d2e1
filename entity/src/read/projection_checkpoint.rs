use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where each projection is in the log, and how it is doing.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "projection_checkpoint")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub mode: StoredMode,
    /// What an operator, a rebuild or a newer release must end. `retrying`
    /// and `stalled` are derived from the runner's facts, never stored.
    pub status: StoredStatus,
    /// The checkpoint: every event at or before `(last_tx_id, last_position)` is applied.
    pub last_tx_id: i64,
    pub last_position: i64,
    pub events_applied: i64,
    pub last_error: Option<String>,
    /// The instance currently running the projection, when known.
    pub owner: Option<String>,
    /// Fencing counter: bumped by every runner that takes the projection over.
    pub fence: i64,
    pub updated_at: ChronoDateTimeUtc,
    /// While `rebuilding`: events replayed so far, and the log's size when the rebuild began.
    pub rebuild_done: i64,
    pub rebuild_total: i64,
    /// Consecutive failed steps of the leading runner, as of its heartbeat (0 while healthy).
    pub attempts: i64,
    /// The leading runner's last heartbeat (none: no runner ever led it).
    pub heartbeat_at: Option<ChronoDateTimeUtc>,
    /// When the leading runner was last healthy: it applied a batch or
    /// stood at the head of the log.
    pub progressed_at: Option<ChronoDateTimeUtc>,
    /// What the leading runner waits on (JSON), while something blocks it.
    pub waiting_on: Option<String>,
    /// While `rebuilding`: when the rebuild last said it is alive.
    pub rebuild_reported_at: Option<ChronoDateTimeUtc>,
}

/// The stored part of a projection's status: what only an operator, a
/// rebuild or a newer release ends. (The status a client sees adds what is
/// derived from facts: `retrying`, `stalled`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum StoredStatus {
    /// Nothing stands in its way that someone must end.
    #[sea_orm(string_value = "running")]
    Running,
    /// A poison event under the `stop` policy: an operator retries or skips it.
    #[sea_orm(string_value = "stopped")]
    Stopped,
    /// A rebuild replays the log into shadow tables (believed while it reports).
    #[sea_orm(string_value = "rebuilding")]
    Rebuilding,
    /// This release met an event a newer one wrote and stood down.
    #[sea_orm(string_value = "outdated")]
    Outdated,
    /// Written by releases before `retrying` was derived (issue 33; their
    /// rows were migrated, but one may still run during a rolling upgrade):
    /// read as `running`, the facts say the rest.
    #[sea_orm(string_value = "retrying")]
    LegacyRetrying,
}

/// Where a projection is applied, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum StoredMode {
    #[sea_orm(string_value = "async")]
    Async,
    #[sea_orm(string_value = "inline")]
    Inline,
    #[sea_orm(string_value = "lazy")]
    Lazy,
}

/// The stored text, for messages.
impl std::fmt::Display for StoredStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}

/// The stored text, for messages.
impl std::fmt::Display for StoredMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
