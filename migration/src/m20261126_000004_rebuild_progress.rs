//! Rebuild progress on the checkpoint row, so `projections` can show it.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000004_rebuild_progress"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared("ALTER TABLE projection_checkpoint ADD COLUMN rebuild_done BIGINT NOT NULL DEFAULT 0")
            .await?;
        conn.execute_unprepared("ALTER TABLE projection_checkpoint ADD COLUMN rebuild_total BIGINT NOT NULL DEFAULT 0")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared("ALTER TABLE projection_checkpoint DROP COLUMN rebuild_done").await?;
        conn.execute_unprepared("ALTER TABLE projection_checkpoint DROP COLUMN rebuild_total").await?;
        Ok(())
    }
}
