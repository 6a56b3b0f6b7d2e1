//! The facts a projection's status is derived from (issue 21): the runner
//! that leads a projection writes a heartbeat into its checkpoint row,
//! with when it was last healthy (it applied a batch or stood at the head)
//! and what it waits on, if anything. Any instance asked for the status
//! reads them: a heartbeat that stopped means no runner; a runner behind
//! the log and not healthy for the stall bound is stalled, and says why.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000012_runner_heartbeat"
    }
}

const POSTGRES: &str = r#"
ALTER TABLE projection_checkpoint ADD COLUMN heartbeat_at TIMESTAMPTZ NULL;
ALTER TABLE projection_checkpoint ADD COLUMN progressed_at TIMESTAMPTZ NULL;
ALTER TABLE projection_checkpoint ADD COLUMN waiting_on TEXT NULL
"#;

const SQLITE: &str = r#"
ALTER TABLE projection_checkpoint ADD COLUMN heartbeat_at TEXT NULL;
ALTER TABLE projection_checkpoint ADD COLUMN progressed_at TEXT NULL;
ALTER TABLE projection_checkpoint ADD COLUMN waiting_on TEXT NULL
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            manager,
            "ALTER TABLE projection_checkpoint DROP COLUMN waiting_on;\n\
             ALTER TABLE projection_checkpoint DROP COLUMN progressed_at;\n\
             ALTER TABLE projection_checkpoint DROP COLUMN heartbeat_at",
        )
        .await
    }
}
