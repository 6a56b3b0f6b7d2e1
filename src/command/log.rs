//! Appending to the event log (the outbox), inside the command's transaction.
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryTrait, Statement,
};

use entity::log::event;

use super::contract::{CommandError, CommandMeta};
use crate::db::is_unique_violation;
use crate::domain::event::RecordedEvent;
use crate::domain::{DomainError, DomainEvent};

/// Appends `events` (each with the stream version it brings its aggregate
/// to) in one multi-row INSERT and returns them with their log positions and
/// transaction id. A duplicate `(stream_id, stream_version)` — a concurrent
/// writer got there first — is a `CONFLICT`, never silently ignored.
///
/// On PostgreSQL the same statement also queues `NOTIFY twofold_log` with
/// the appended token ([`crate::notice::postgres::LOG_CHANNEL`]): delivered
/// at commit, it wakes the projectors of every instance, and folding it
/// into the INSERT saves the command a round trip of its own.
pub async fn append(
    txn: &DatabaseTransaction,
    events: &[(DomainEvent, i64)],
    meta: &CommandMeta,
    command_type: &str,
) -> Result<Vec<RecordedEvent>, CommandError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let now = chrono::Utc::now();
    let causation_id = meta.causation_id();
    let event_meta = crate::domain::event::EventMeta::caused_by(
        causation_id,
        meta.correlation_id.clone(),
        // The command's transaction span, when traced: what comes of the
        // event later (a projector batch, a NATS message) links back to it.
        crate::telemetry::traceparent(&tracing::Span::current()),
    );
    let metadata = serde_json::json!({
        "commandType": command_type,
        "commandId": meta.command_id,
        "requestId": meta.request_id,
        "correlationId": event_meta.correlation_id,
        "causationId": event_meta.causation_id,
        "traceparent": event_meta.traceparent,
        "actor": meta.actor,
    });
    let rows = events.iter().map(|(e, version)| {
        let (stream_type, stream_id) = e.stream();
        let payload =
            e.to_payload().map_err(|err| CommandError::Internal(format!("cannot encode {}: {err}", e.event_type())))?;
        Ok(event::ActiveModel {
            position: NotSet,
            tx_id: NotSet,
            stream_type: Set(stream_type.as_str().to_owned()),
            stream_id: Set(stream_id),
            stream_version: Set(*version),
            event_type: Set(e.event_type().to_owned()),
            event_version: Set(e.schema_version()),
            payload: Set(payload),
            metadata: Set(metadata.clone()),
            recorded_at: Set(now),
        })
    });
    let rows: Vec<event::ActiveModel> = rows.collect::<Result<_, CommandError>>()?;
    let inserted = insert_announced(txn, rows).await.map_err(|e| {
        if !is_unique_violation(&e, "event_stream_version_key") {
            return CommandError::from(e);
        }
        // A new stream whose first version is taken: its id belongs to
        // another aggregate, and no retry can succeed.
        match events.iter().find(|(_, version)| *version == 1) {
            Some((event, _)) => CommandError::Rejected(DomainError::invariant(format!(
                "the id {} is already in use by another customer, product or order; choose another id",
                event.stream().1
            ))),
            None => CommandError::Rejected(DomainError::conflict(
                "another command changed this aggregate at the same time; reload it and retry",
            )),
        }
    })?;
    // Match rows to events by (stream, version): RETURNING order is not promised.
    let mut recorded = Vec::with_capacity(inserted.len());
    for row in inserted {
        let event = events
            .iter()
            .find(|(e, version)| *version == row.stream_version && e.stream().1 == row.stream_id)
            .map(|(e, _)| e.clone())
            .ok_or_else(|| CommandError::Internal("an appended event came back unrecognized".into()))?;
        recorded.push(RecordedEvent {
            position: row.position,
            tx_id: row.tx_id,
            stream_id: row.stream_id,
            stream_version: row.stream_version,
            recorded_at: row.recorded_at,
            actor: Some(meta.actor.clone()),
            meta: event_meta.clone(),
            event,
        });
    }
    recorded.sort_by_key(|e| e.position);
    metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(recorded.len() as u64);
    Ok(recorded)
}

/// The multi-row INSERT, returning the rows; on PostgreSQL with the log
/// notice in the same statement: a data-modifying CTE inserts, and a
/// one-row subquery over its output calls `pg_notify` once with the last
/// `(tx_id, position)` appended, the token format [`crate::token::LogPosition`] prints.
async fn insert_announced(
    txn: &DatabaseTransaction,
    rows: Vec<event::ActiveModel>,
) -> Result<Vec<event::Model>, DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return event::Entity::insert_many(rows).exec_with_returning(txn).await;
    }
    let mut insert = event::Entity::insert_many(rows).into_query();
    insert.returning_all();
    let built = sea_orm::StatementBuilder::build(&insert, &DbBackend::Postgres);
    let mut values = built.values.map(|v| v.0).unwrap_or_default();
    values.push(crate::notice::postgres::LOG_CHANNEL.into());
    let sql = format!(
        "WITH e AS ({insert}) SELECT e.* FROM e CROSS JOIN \
         (SELECT pg_notify(${channel}, (SELECT max(tx_id)::text || '.' || max(position)::text FROM e))) AS notice",
        insert = built.sql,
        channel = values.len(),
    );
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    event::Model::find_by_statement(statement).all(txn).await
}
