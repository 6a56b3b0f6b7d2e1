//! Statuses from facts (issue 33): `retrying` is no longer stored. A runner
//! whose steps fail says so in its heartbeat (`attempts`, `waiting_on`), and
//! every instance derives `retrying` from that, so the status ends with the
//! failure, even when the write that would have cleared it failed too. Rows
//! an older release left `retrying` become `running` here; the facts say
//! the rest.
//!
//! A rebuild now reports while it runs (`rebuild_reported_at`): a
//! `rebuilding` whose rebuild stopped reporting (its process was killed)
//! is not believed, and the projection shows what its runner says.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000013_derived_retrying"
    }
}

const POSTGRES: &str = r#"
ALTER TABLE projection_checkpoint ADD COLUMN rebuild_reported_at TIMESTAMPTZ NULL;
UPDATE projection_checkpoint SET status = 'running', last_error = NULL, attempts = 0 WHERE status = 'retrying'
"#;

const SQLITE: &str = r#"
ALTER TABLE projection_checkpoint ADD COLUMN rebuild_reported_at TEXT NULL;
UPDATE projection_checkpoint SET status = 'running', last_error = NULL, attempts = 0 WHERE status = 'retrying'
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, "ALTER TABLE projection_checkpoint DROP COLUMN rebuild_reported_at").await
    }
}
