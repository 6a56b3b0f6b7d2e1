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
    /// The read database failed (unreachable, contention, anything else).
    #[error("read {0}")]
    Database(#[from] crate::failure::DbError),
}

/// `?` on a sea-orm error (see [`crate::failure::DbError`]).
impl From<DbErr> for QueryError {
    fn from(e: DbErr) -> Self {
        Self::Database(e.into())
    }
}
