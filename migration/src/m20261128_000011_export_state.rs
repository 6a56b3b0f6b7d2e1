//! The exporter's own durable record (issue 14): the JetStream stream it
//! publishes the log to and the stream sequence of the last message it
//! published, written in the same read-database transaction as its
//! checkpoint. Every publish expects that sequence to be the stream's last
//! (`Nats-Expected-Last-Sequence`), so a retry after the duplicate window,
//! or a second exporter that wrongly thinks it leads, is refused by the
//! broker instead of publishing an event twice.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000011_export_state"
    }
}

const POSTGRES: &str = r#"
CREATE TABLE export_state (
    consumer      TEXT PRIMARY KEY NOT NULL,
    stream        TEXT NOT NULL,
    last_sequence BIGINT NOT NULL CONSTRAINT export_state_sequence_not_negative CHECK (last_sequence >= 0),
    updated_at    TIMESTAMPTZ NOT NULL
)
"#;

const SQLITE: &str = r#"
CREATE TABLE export_state (
    consumer      TEXT PRIMARY KEY NOT NULL,
    stream        TEXT NOT NULL,
    last_sequence INTEGER NOT NULL CONSTRAINT export_state_sequence_not_negative CHECK (last_sequence >= 0),
    updated_at    TEXT NOT NULL
)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, "DROP TABLE export_state").await
    }
}
