//! What a projection is: the [`Projection`] trait, how an apply is run
//! ([`ApplyContext`]) and how it fails ([`ApplyError`]), with the checked
//! arithmetic the views share. Every projection file and the runtime use
//! this file and nothing of `mod.rs`, which only lists them.
use sea_orm::{DatabaseTransaction, DbErr};

use crate::domain::event::RecordedEvent;

/// Why applying an event failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Deterministic: applying this event again will fail again (a poison
    /// event). Goes to the dead-letter table and the projection's policy.
    #[error("event at position {position}: {reason}")]
    Poison { position: i64, reason: String },
    /// A database failure: its class decides ([`crate::db::DbFailure::recovery`]):
    /// an outage, contention, a lock timeout or the deployment's own fault
    /// is retried with back-off; the data's (a constraint, a value out of
    /// range, a decode error) isolates the event that causes it.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// Something other than the database failed (the exporter's broker is
    /// unreachable…): retried with back-off, like a database error.
    #[error("{0}")]
    Unavailable(String),
}

/// The largest batch any consumer of the log is given at once.
pub const MAX_BATCH: usize = 5_000;

/// `total + amount`, or the event is a poison event: a view's sum must
/// never wrap around or leave the column's range.
pub(crate) fn checked_add(total: i64, amount: i64, event: &RecordedEvent, what: &str) -> Result<i64, ApplyError> {
    total.checked_add(amount).ok_or_else(|| ApplyError::Poison {
        position: event.position,
        reason: format!("{what} would leave the 64-bit integer range ({total} + {amount})"),
    })
}

/// A line total read from an event, or the event is a poison event.
pub(crate) fn line_total(line: &crate::domain::event::PlacedLine, event: &RecordedEvent) -> Result<i64, ApplyError> {
    line.line_total_cents().ok_or_else(|| ApplyError::Poison {
        position: event.position,
        reason: format!("line {} of the order: quantity × unit price leaves the 64-bit integer range", line.line_no),
    })
}

/// How an apply is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    /// Skip events at or below a row's last applied `(tx_id, position)`.
    /// On for the async runtime and rebuilds, which apply in log order.
    /// Off for inline application: each event is applied exactly once,
    /// atomically with its append, but concurrent commands on PostgreSQL may
    /// commit out of xid order, so a position guard would wrongly skip.
    pub position_guard: bool,
}

/// A read view built from the log.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name, used for the checkpoint row and in the API.
    fn name(&self) -> &'static str;

    /// Applies events, in log order, inside `txn`.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
    ) -> Result<(), ApplyError>;

    /// Called by the runtime when there is nothing to apply: checks what the
    /// projection needs besides the databases (the exporter: its broker).
    /// An error counts as a failed attempt (`retrying`, back-off), so an
    /// outage shows even while the log is quiet.
    async fn probe(&self) -> Result<(), ApplyError> {
        Ok(())
    }

    /// Whether the runtime reads the next batch while this one is applied
    /// and committed (a full batch only). For a consumer whose apply mostly
    /// waits on something else (the exporter: the broker's acknowledgements),
    /// so the log read overlaps that wait. Off for the views: their apply is
    /// database work on the same machine, which a second read would only
    /// compete with.
    fn reads_ahead(&self) -> bool {
        false
    }
}
