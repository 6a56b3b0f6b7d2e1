//! Who did what: the actor of each order event in `order_activity` (and the
//! customer the order belongs to, so a customer's reads filter by it in
//! SQL), and the actor of each command in `command_log`.
//!
//! Existing `order_activity` rows get their customer from `order_summary`;
//! their actor stays NULL (unknown) until `twofold rebuild order_activity`,
//! which reads it from the events' metadata (NULL there too for events
//! written before actors were recorded).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000010_actors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let uuid = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "UUID",
            _ => "BLOB",
        };
        let conn = manager.get_connection();
        for statement in [
            format!("ALTER TABLE order_activity ADD COLUMN customer_id {uuid}"),
            "ALTER TABLE order_activity ADD COLUMN actor_sub TEXT".to_owned(),
            "ALTER TABLE order_activity ADD COLUMN actor_role TEXT".to_owned(),
            "UPDATE order_activity SET customer_id = \
             (SELECT s.customer_id FROM order_summary s WHERE s.order_id = order_activity.order_id)"
                .to_owned(),
            "ALTER TABLE command_log ADD COLUMN actor TEXT".to_owned(),
        ] {
            conn.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for statement in [
            "ALTER TABLE command_log DROP COLUMN actor",
            "ALTER TABLE order_activity DROP COLUMN actor_role",
            "ALTER TABLE order_activity DROP COLUMN actor_sub",
            "ALTER TABLE order_activity DROP COLUMN customer_id",
        ] {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
