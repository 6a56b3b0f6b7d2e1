//! The query layer's error classes, which the API maps to codes.
use sea_orm::DbErr;

use super::durable::NotProjected;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Validation(String),
    /// The projections did not reach the token within the wait.
    #[error("{0}")]
    NotVisibleYet(String),
    /// The projections did not reach the token within the wait, behind a
    /// stalled projection (`wait` says on what).
    #[error("{message}")]
    Stalled { message: String, projection: String, wait: Box<crate::notice::progress::Wait> },
    /// The write will not become visible without an operator.
    #[error("the write {1} will not become visible in {projection}: {reason}", projection = .0.projection(), reason = .0.reason())]
    NotProjected(NotProjected, crate::token::LogPosition),
    /// The read database is unreachable, or no connection was free in time.
    #[error("read database unavailable: {0}")]
    Unavailable(String),
    /// Anything unexpected (logged with an incident id at the API boundary).
    #[error("database error: {0}")]
    Internal(String),
}

impl From<DbErr> for QueryError {
    fn from(e: DbErr) -> Self {
        match crate::db::classify(&e) {
            crate::db::DbFailure::Unavailable => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}
