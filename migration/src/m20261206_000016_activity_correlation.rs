//! Correlation and causation in the timeline (issue 37): each event's
//! metadata records the command that caused it and the work it belongs to
//! (`twofold::domain::event::EventMeta`), and `order_activity` shows both.
//!
//! Rows projected before this release keep them empty: the log is
//! append-only and the timeline is a view, so `twofold rebuild
//! order_activity` (blue/green, online) fills them from the log, where
//! older events read their `commandId` as both ids.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000016_activity_correlation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            manager,
            "ALTER TABLE order_activity ADD COLUMN correlation_id TEXT NULL;\n\
             ALTER TABLE order_activity ADD COLUMN causation_id TEXT NULL",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            manager,
            "ALTER TABLE order_activity DROP COLUMN causation_id;\n\
             ALTER TABLE order_activity DROP COLUMN correlation_id",
        )
        .await
    }
}
