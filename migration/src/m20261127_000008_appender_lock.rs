//! PostgreSQL: every transaction that appends to the event log holds a
//! shared, transaction-scoped advisory lock (classid 1953984358 "twof",
//! objid 1) while it does, so projectors can tell event writers from every
//! other transaction on the server and wait only for the former (see the
//! horizon in the service's `projection::reader`).
//!
//! Commands take the lock themselves as their first statement, before they
//! have an xid. This trigger takes it for any other transaction that
//! inserts events (an operator's script, a test), at the start of its
//! INSERT: such a transaction must make the insert its first write, so that
//! it holds the lock before it gets an xid.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000008_appender_lock"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        conn.execute_unprepared(
            r#"CREATE FUNCTION event_appender_lock() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1953984358, 1);
    RETURN NULL;
END
$body$"#,
        )
        .await?;
        conn.execute_unprepared(
            "CREATE TRIGGER event_appender_lock BEFORE INSERT ON event FOR EACH STATEMENT EXECUTE FUNCTION event_appender_lock()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        conn.execute_unprepared("DROP TRIGGER IF EXISTS event_appender_lock ON event").await?;
        conn.execute_unprepared("DROP FUNCTION IF EXISTS event_appender_lock()").await?;
        Ok(())
    }
}
