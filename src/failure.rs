//! What a failed database call means to a client: retry later, retry now,
//! or report it. Commands, queries and operator actions each wrap this one
//! type, and the API maps it to codes once; `db` decides the class from the
//! database's own error (`impl From<sea_orm::DbErr> for DbError` there).
//! A leaf, so that the API can name the classes without reaching the pools.

/// A database failure, classed by what the client can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The database is unreachable, or no connection was free in time:
    /// retry later (`UNAVAILABLE`).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A serialization failure or deadlock: the same request may simply be
    /// retried.
    #[error("contention: {0}")]
    Contention(String),
    /// Anything else (logged with an incident id at the API boundary). Each
    /// layer that wraps this type keeps a one-line `From<sea_orm::DbErr>`
    /// forwarding here, because `?` converts in one step.
    #[error("database error: {0}")]
    Internal(String),
}
