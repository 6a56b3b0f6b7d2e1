//! Idempotent retries: a command sent again with the same `commandId`
//! returns the first acknowledgement and appends nothing; the same
//! `commandId` with a different command, or with the same command and
//! different input, is a `CONFLICT` that says which.
//!
//! The key is claimed by inserting its `command_log` row early in the
//! command's transaction (right after the aggregate locks). A concurrent
//! duplicate blocks on that row's unique index until the first commits, then
//! fails, rolls back and replays the recorded result.
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait};

use entity::log::command_log;

use super::contract::{Ack, CommandError};
use crate::db::is_unique_violation;
use crate::domain::{Actor, DomainError};

pub const MAX_COMMAND_ID_CHARS: usize = 200;

/// A command's idempotency key and the fingerprint of its input.
#[derive(Debug, Clone)]
pub struct Key {
    pub command_id: Option<String>,
    pub command_type: &'static str,
    /// The command's input as canonical JSON: equal inputs, equal fingerprints.
    pub fingerprint: String,
    /// Who sends it, as JSON: a key is its sender's, and another actor
    /// that sends the same key is refused, never answered with the first
    /// sender's acknowledgement.
    pub actor: String,
}

impl Key {
    pub fn new(
        command_id: Option<&str>,
        command_type: &'static str,
        input: &impl serde::Serialize,
        actor: &Actor,
    ) -> Result<Self, DomainError> {
        let command_id = match command_id {
            None => None,
            Some(id) if id.trim().is_empty() => return Err(DomainError::validation("commandId must not be blank")),
            Some(id) if id.chars().count() > MAX_COMMAND_ID_CHARS => {
                return Err(DomainError::validation(format!(
                    "commandId must be at most {MAX_COMMAND_ID_CHARS} characters"
                )))
            }
            Some(id) => Some(id.to_owned()),
        };
        let fingerprint = serde_json::to_string(input).map_err(|e| DomainError::validation(e.to_string()))?;
        let actor = serde_json::to_string(actor).map_err(|e| DomainError::validation(e.to_string()))?;
        Ok(Self { command_id, command_type, fingerprint, actor })
    }
}

/// The recorded result for this key, if the command already ran; a
/// `CONFLICT` if the key was used for a different command or input.
pub async fn replay(db: &impl ConnectionTrait, key: &Key) -> Result<Option<Ack>, CommandError> {
    let Some(command_id) = &key.command_id else {
        return Ok(None);
    };
    let Some(row) = command_log::Entity::find_by_id(command_id.clone()).one(db).await? else {
        return Ok(None);
    };
    if row.actor.as_deref().is_some_and(|actor| actor != key.actor) {
        return Err(DomainError::conflict(format!(
            "commandId '{command_id}' was already used by someone else; use a new commandId"
        ))
        .into());
    }
    if row.command_type != key.command_type {
        return Err(DomainError::conflict(format!(
            "commandId '{command_id}' was already used for a different command ({}); use a new commandId for a new command",
            row.command_type
        ))
        .into());
    }
    // The same command with other input is most often a client that
    // changed a form and retried with the old key: say that, so whoever
    // reads it knows which of the two it must change.
    if row.fingerprint != key.fingerprint {
        return Err(DomainError::conflict(format!(
            "commandId '{command_id}' was already used for a {} with different input; a retry must send the same input, a new command needs a new commandId",
            row.command_type
        ))
        .into());
    }
    let ack: Ack = serde_json::from_value(row.result)
        .map_err(|e| CommandError::Internal(format!("unreadable command_log result for {command_id}: {e}")))?;
    Ok(Some(ack))
}

/// Claims the key inside the command's transaction. Call it after taking the
/// aggregate locks and before deciding.
pub async fn claim(txn: &impl ConnectionTrait, key: &Key) -> Result<(), CommandError> {
    let Some(command_id) = &key.command_id else {
        return Ok(());
    };
    let row = command_log::ActiveModel {
        command_id: Set(command_id.clone()),
        command_type: Set(key.command_type.to_owned()),
        fingerprint: Set(key.fingerprint.clone()),
        result: Set(serde_json::Value::Null),
        recorded_at: Set(chrono::Utc::now()),
        actor: Set(Some(key.actor.clone())),
    };
    match command_log::Entity::insert(row).exec_without_returning(txn).await {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e, "command_log_pkey") => Err(CommandError::AlreadyExecuted),
        Err(e) => Err(e.into()),
    }
}

/// Stores the acknowledgement under the claimed key (same transaction).
pub async fn record(txn: &impl ConnectionTrait, key: &Key, ack: &Ack) -> Result<(), CommandError> {
    let Some(command_id) = &key.command_id else {
        return Ok(());
    };
    let result = serde_json::to_value(ack).map_err(|e| CommandError::Internal(e.to_string()))?;
    command_log::ActiveModel { command_id: Set(command_id.clone()), result: Set(result), ..Default::default() }
        .update(txn)
        .await?;
    Ok(())
}
