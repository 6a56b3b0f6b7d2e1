//! The seam between the command side and inline projections: the command
//! side calls [`InlineProjections`] inside its transaction without knowing
//! the projection layer, which implements it. Neither imports the other.
use sea_orm::{DatabaseTransaction, DbErr};

use crate::domain::event::RecordedEvent;

/// Projections applied inside the command's own transaction (mode `inline`).
#[async_trait::async_trait]
pub trait InlineProjections: Send + Sync {
    async fn apply_inline(&self, txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), InlineError>;
}

/// Why an inline projection failed its command. Typed, so the command side
/// can tell a database failure (contention, an unreachable database: the
/// client may retry) from an event the projection cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    /// The database failed under the projection; its class is the command's.
    #[error("inline projection {projection}: {source}")]
    Database {
        projection: &'static str,
        #[source]
        source: DbErr,
    },
    /// The projection cannot apply the event (a poison event): the command fails.
    #[error("inline projection {projection} failed: {reason}")]
    Failed { projection: &'static str, reason: String },
}
