//! Twofold's schema, as sea-orm-migration migrations.
//!
//! The DDL is written per backend (PostgreSQL and SQLite) as plain SQL rather
//! than through the schema builder: the constraints are the point of the write
//! model (named CHECK, UNIQUE and FOREIGN KEY constraints that the command
//! layer maps to client errors), and PostgreSQL needs a column default
//! (`pg_current_xact_id()`) that the builder cannot express portably.
//!
//! This crate never imports `entity`: migrations describe history, entities
//! describe the present.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_write_model;
mod m20261126_000002_event_log;
mod m20261126_000003_read_model;
mod m20261126_000004_rebuild_progress;
mod m20261126_000005_order_channel;
mod m20261126_000006_order_lines_text;
mod m20261127_000007_hardening;
mod m20261127_000008_appender_lock;
mod m20261127_000009_appender_guard;
mod m20261127_000010_actors;
mod m20261128_000011_export_state;
mod m20261204_000012_runner_heartbeat;
mod m20261206_000013_derived_retrying;
mod m20261206_000014_search_documents;
mod m20261206_000015_search_and_filter_indexes;
mod m20261206_000016_activity_correlation;
mod m20261206_000017_customer_total_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_write_model::Migration),
            Box::new(m20261126_000002_event_log::Migration),
            Box::new(m20261126_000003_read_model::Migration),
            Box::new(m20261126_000004_rebuild_progress::Migration),
            Box::new(m20261126_000005_order_channel::Migration),
            Box::new(m20261126_000006_order_lines_text::Migration),
            Box::new(m20261127_000007_hardening::Migration),
            Box::new(m20261127_000008_appender_lock::Migration),
            Box::new(m20261127_000009_appender_guard::Migration),
            Box::new(m20261127_000010_actors::Migration),
            Box::new(m20261128_000011_export_state::Migration),
            Box::new(m20261204_000012_runner_heartbeat::Migration),
            Box::new(m20261206_000013_derived_retrying::Migration),
            Box::new(m20261206_000014_search_documents::Migration),
            Box::new(m20261206_000015_search_and_filter_indexes::Migration),
            Box::new(m20261206_000016_activity_correlation::Migration),
            Box::new(m20261206_000017_customer_total_index::Migration),
        ]
    }
}

/// Runs each statement of a `;`-separated script (no statement may contain a `;`).
pub(crate) async fn run_script(manager: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Picks the script for the connected backend.
pub(crate) fn pick<'a>(manager: &SchemaManager<'_>, postgres: &'a str, sqlite: &'a str) -> Result<&'a str, DbErr> {
    match manager.get_database_backend() {
        sea_orm::DbBackend::Postgres => Ok(postgres),
        sea_orm::DbBackend::Sqlite => Ok(sqlite),
        other => Err(DbErr::Migration(format!("unsupported database backend {other:?}: use PostgreSQL or SQLite"))),
    }
}
