//! Error codes at the API boundary: every error a client sees carries
//! `extensions.code` from this closed set and a message written for a person.
//! Internal causes are logged, never shown.
use async_graphql::{Error, ErrorExtensions};

use crate::command::CommandError;
use crate::domain::DomainError;
use crate::query::QueryError;

pub const VALIDATION: &str = "VALIDATION";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const INVARIANT_VIOLATION: &str = "INVARIANT_VIOLATION";
pub const CONFLICT: &str = "CONFLICT";
pub const NOT_VISIBLE_YET: &str = "NOT_VISIBLE_YET";
pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const INTERNAL: &str = "INTERNAL";

pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn validation(message: impl Into<String>) -> Error {
    coded(VALIDATION, message)
}

fn internal(detail: &dyn std::fmt::Display) -> Error {
    let incident = uuid::Uuid::new_v4();
    tracing::error!(%incident, error = %detail, "internal error");
    coded(INTERNAL, format!("internal error (incident {incident}); it has been logged"))
}

pub fn from_domain(e: DomainError) -> Error {
    match e {
        DomainError::Validation(m) => coded(VALIDATION, m),
        DomainError::NotFound(m) => coded(NOT_FOUND, m),
        DomainError::InvariantViolation(m) => coded(INVARIANT_VIOLATION, m),
        DomainError::Conflict(m) => coded(CONFLICT, m),
    }
}

pub fn from_command(e: CommandError) -> Error {
    match e {
        CommandError::Rejected(d) => from_domain(d),
        CommandError::AlreadyExecuted => coded(CONFLICT, "this command is being executed concurrently; retry"),
        CommandError::Database(db) if is_serialization_failure(&db.to_string()) => {
            coded(CONFLICT, "another command changed this aggregate at the same time; reload it and retry")
        }
        CommandError::Database(db) => internal(&db),
        CommandError::Internal(m) => internal(&m),
    }
}

pub fn from_query(e: QueryError) -> Error {
    match e {
        QueryError::Validation(m) => coded(VALIDATION, m),
        QueryError::NotVisibleYet(m) => coded(NOT_VISIBLE_YET, m),
        QueryError::Database(db) => internal(&db),
    }
}

/// PostgreSQL deadlock or serialization failure: the client may retry.
fn is_serialization_failure(text: &str) -> bool {
    text.contains("40001")
        || text.contains("40P01")
        || text.contains("deadlock detected")
        || text.contains("could not serialize")
}
