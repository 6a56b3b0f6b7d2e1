//! The event log (append-only; it is the outbox and the audit trail) and the
//! command log (idempotency keys).
//!
//! `tx_id` is the PostgreSQL transaction id of the appending transaction,
//! taken by the column default `pg_current_xact_id()` (an `xid8`, stored as
//! BIGINT: the same 64-bit, epoch-extended, never-wrapping number, but a type
//! every client maps to `i64`). Projectors read in `(tx_id, position)` order
//! below the snapshot's xmin horizon, so an event that commits late is never
//! skipped. SQLite serializes writers, so there `tx_id` is 0 and `position`
//! (the rowid) is already commit order.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000002_event_log"
    }
}

const POSTGRES: &str = r#"
CREATE TABLE event (
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream_type    TEXT NOT NULL,
    stream_id      UUID NOT NULL,
    stream_version BIGINT NOT NULL CONSTRAINT event_stream_version_positive CHECK (stream_version > 0),
    event_type     TEXT NOT NULL,
    event_version  INTEGER NOT NULL CONSTRAINT event_version_positive CHECK (event_version > 0),
    payload        JSONB NOT NULL,
    metadata       JSONB NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT event_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX event_tx_position_idx ON event (tx_id, position);
CREATE TABLE command_log (
    command_id   TEXT PRIMARY KEY,
    command_type TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    result       JSONB NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL
)
"#;

/// Statements whose bodies contain `;`, run one by one.
const POSTGRES_TRIGGERS: [&str; 2] = [
    r#"CREATE FUNCTION event_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END
$body$"#,
    "CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event FOR EACH ROW EXECUTE FUNCTION event_log_is_append_only()",
];

const SQLITE: &str = r#"
CREATE TABLE event (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id          INTEGER NOT NULL DEFAULT 0,
    stream_type    TEXT NOT NULL,
    stream_id      BLOB NOT NULL,
    stream_version INTEGER NOT NULL CONSTRAINT event_stream_version_positive CHECK (stream_version > 0),
    event_type     TEXT NOT NULL,
    event_version  INTEGER NOT NULL CONSTRAINT event_version_positive CHECK (event_version > 0),
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    CONSTRAINT event_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX event_tx_position_idx ON event (tx_id, position);
CREATE TABLE command_log (
    command_id   TEXT PRIMARY KEY NOT NULL,
    command_type TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    result       TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
)
"#;

const SQLITE_TRIGGERS: [&str; 2] = [
    "CREATE TRIGGER event_no_update BEFORE UPDATE ON event BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
    "CREATE TRIGGER event_no_delete BEFORE DELETE ON event BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await?;
        let triggers = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => POSTGRES_TRIGGERS,
            _ => SQLITE_TRIGGERS,
        };
        for statement in triggers {
            manager.get_connection().execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, "DROP TABLE command_log; DROP TABLE event").await
    }
}
