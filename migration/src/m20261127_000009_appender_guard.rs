//! PostgreSQL: the appender-lock trigger of migration 8 now refuses what it
//! used to trust. A transaction that inserts events after it already wrote
//! something else got its xid *before* it took the appender lock, so a
//! projector reading at that moment saw an xid that belonged to no event
//! writer, read past it, and lost its events for good when it committed.
//! That is exactly what a plain-SQL script that inserts the order row first
//! and the event second does.
//!
//! Now the trigger takes the lock only when the transaction has no xid
//! yet; otherwise it raises `55000` (object_not_in_prerequisite_state) and
//! the transaction rolls back whole: a loud failure instead of a silently
//! lost event. A transaction that took the lock itself as its first
//! statement says so with the transaction-local setting
//! `twofold.appender = on` (as the service's commands do, through
//! `Db::begin_append`), and the trigger lets it through.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000009_appender_guard"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                r#"CREATE OR REPLACE FUNCTION event_appender_lock() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF current_setting('twofold.appender', true) IS DISTINCT FROM 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'this transaction wrote before it appended to the event log'
                USING ERRCODE = '55000',
                      HINT = 'make the event INSERT its first write, or start with SELECT pg_advisory_xact_lock_shared(1953984358, 1), set_config(''twofold.appender'', ''on'', true)';
        END IF;
        PERFORM pg_advisory_xact_lock_shared(1953984358, 1);
        PERFORM set_config('twofold.appender', 'on', true);
    END IF;
    RETURN NULL;
END
$body$"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                r#"CREATE OR REPLACE FUNCTION event_appender_lock() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1953984358, 1);
    RETURN NULL;
END
$body$"#,
            )
            .await?;
        Ok(())
    }
}
