//! `order_summary.channel`, from `OrderPlaced` v2 (v1 orders: `UNKNOWN`).
//! Existing rows get the default; `twofold rebuild order_summary` fills in
//! the channels recorded since v2.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000005_order_channel"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE order_summary ADD COLUMN channel TEXT NOT NULL DEFAULT 'UNKNOWN'")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("ALTER TABLE order_summary DROP COLUMN channel").await?;
        Ok(())
    }
}
