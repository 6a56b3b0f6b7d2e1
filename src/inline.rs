//! The seam between the command side and inline projections: the command
//! side calls [`InlineProjections`] inside its transaction without knowing
//! the projection layer, which implements it. Neither imports the other.
use sea_orm::DatabaseTransaction;

use crate::domain::event::RecordedEvent;

/// Projections applied inside the command's own transaction (mode `inline`).
#[async_trait::async_trait]
pub trait InlineProjections: Send + Sync {
    async fn apply_inline(&self, txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), String>;
}
