//! `order_summary.lines` as TEXT holding JSON on PostgreSQL too (it always
//! was on SQLite). The read model never queries inside it; it only hands it
//! to the API, so storing the JSON text saves converting to and from JSONB on
//! every write and every read.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000006_order_lines_text"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE order_summary ALTER COLUMN lines TYPE TEXT USING lines::text")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE order_summary ALTER COLUMN lines TYPE JSONB USING lines::jsonb")
                .await?;
        }
        Ok(())
    }
}
