//! What a caller sends with a command and what it gets back: the ack (an
//! id and a consistency token, never a read view), the metadata recorded
//! with its events, and the error classes the API maps to codes. Its own
//! file so that every step of the unit of work can name them without
//! importing the service that runs it.
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Actor, DomainError};
use crate::token::LogPosition;

/// What a successful command returns: the id it created (if any) and the
/// consistency token of its last event. Never a read view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub id: Option<Uuid>,
    pub token: LogPosition,
}

/// Who sent a command and why, recorded in each event's metadata and the
/// command log.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// The client's idempotency key.
    pub command_id: Option<String>,
    /// The HTTP request id, to find the request's log lines.
    pub request_id: Option<String>,
    /// The work this command belongs to (`Twofold-Correlation-Id`); none:
    /// the command is the root, and its own id correlates.
    pub correlation_id: Option<String>,
    /// Who acts: every permission check asks it.
    pub actor: Actor,
}

impl CommandMeta {
    /// A command by `actor`, with no idempotency key or request id.
    pub fn by(actor: Actor) -> Self {
        Self { command_id: None, request_id: None, correlation_id: None, actor }
    }

    /// What caused the events: the command's id (its `commandId`, or one
    /// made for it once, so a command without a key is still named).
    pub fn causation_id(&self) -> String {
        self.command_id.clone().unwrap_or_else(|| format!("cmd-{}", Uuid::now_v7()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The idempotency key was claimed by a concurrent transaction that has
    /// since committed; the caller replays its result.
    #[error("command already executed")]
    AlreadyExecuted,
    /// The write database failed (unreachable, contention, anything else).
    #[error("write {0}")]
    Database(#[from] crate::failure::DbError),
    /// Anything unexpected (logged with an incident id at the API boundary).
    #[error("{0}")]
    Internal(String),
}

/// `?` on a sea-orm error (see [`crate::failure::DbError`]).
impl From<DbErr> for CommandError {
    fn from(e: DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// An inline projection's database failure is the command's: contention
/// and an unreachable database keep their class (the client may retry);
/// an event it cannot apply is internal.
impl From<crate::inline::InlineError> for CommandError {
    fn from(e: crate::inline::InlineError) -> Self {
        match e {
            crate::inline::InlineError::Database { source, .. } => Self::from(source),
            failed @ crate::inline::InlineError::Failed { .. } => Self::Internal(failed.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inline::InlineError;

    #[test]
    fn an_inline_projections_database_failure_keeps_its_class() {
        let unreachable = InlineError::Database {
            projection: "customer_view",
            source: DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout),
        };
        assert!(matches!(
            CommandError::from(unreachable),
            CommandError::Database(crate::failure::DbError::Unavailable(_))
        ));
        let poison = InlineError::Failed { projection: "customer_view", reason: "bad event".into() };
        assert!(matches!(CommandError::from(poison), CommandError::Internal(m) if m.contains("customer_view")));
    }
}
