//! Appending to the event log (the outbox), inside the command's transaction.
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, DatabaseTransaction, EntityTrait};

use entity::log::event;

use super::{CommandError, CommandMeta};
use crate::db::is_unique_violation;
use crate::domain::event::RecordedEvent;
use crate::domain::{DomainError, DomainEvent};

/// Appends `events` (each with the stream version it brings its aggregate
/// to) in one multi-row INSERT and returns them with their log positions and
/// transaction id. A duplicate `(stream_id, stream_version)` — a concurrent
/// writer got there first — is a `CONFLICT`, never silently ignored.
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
    let metadata = serde_json::json!({
        "commandType": command_type,
        "commandId": meta.command_id,
        "correlationId": meta.correlation_id,
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
    let inserted = event::Entity::insert_many(rows).exec_with_returning(txn).await.map_err(|e| {
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
            event,
        });
    }
    recorded.sort_by_key(|e| e.position);
    metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(recorded.len() as u64);
    Ok(recorded)
}
