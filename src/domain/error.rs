//! Why a command was rejected. Each variant maps to one GraphQL
//! `extensions.code` at the API boundary.

/// A rejected command. The message is written for a person and is shown to
/// the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input is malformed (blank name, bad email, quantity ≤ 0, …).
    #[error("{0}")]
    Validation(String),
    /// A referenced customer, product or order does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The command is well-formed but the current state forbids it.
    #[error("{0}")]
    InvariantViolation(String),
    /// A stale `expectedVersion`, a lost race, or a reused command id.
    #[error("{0}")]
    Conflict(String),
    /// No (valid) credentials where they are needed.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that may not do this.
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn invariant(msg: impl Into<String>) -> Self {
        Self::InvariantViolation(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        Self::Unauthenticated(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }

    /// Checks an optional `expectedVersion` against the aggregate's version.
    pub fn check_expected_version(what: &str, expected: Option<i64>, actual: i64) -> Result<(), Self> {
        match expected {
            Some(expected) if expected != actual => Err(Self::conflict(format!(
                "{what} is at version {actual}, not the expected version {expected}; reload it and retry"
            ))),
            _ => Ok(()),
        }
    }
}
