//! Projections: folds of the event log into denormalized read views.
//!
//! Each projection (one file each) owns its read tables and implements
//! [`Projection::apply`] for a batch of events. A [`projector::Projector`]
//! steps one projection: it reads the log after the projection's
//! checkpoint, applies a batch and advances the checkpoint in the same
//! read-database transaction, then publishes a notice. Modes:
//!
//! - `async` (default): the runtime applies; reads are eventually consistent.
//! - `inline`: the command applies the projection in its own transaction
//!   ([`inline_applier`]; strong consistency, same database only); the
//!   runtime then only moves the checkpoint forward and publishes notices.
//!
//! The runtime, one file per job, each using only those listed before it:
//!
//! - [`runtime`]: the shared vocabulary (settings, what a step did);
//! - [`projector`]: the step and its commit, and poison handling;
//! - [`runner`]: one projection's state between steps (leadership,
//!   back-off, what blocks it);
//! - [`group`]: the loop that drives runners, and the grouped step (every
//!   async projection a node leads applied in one transaction per batch);
//! - [`supervisor`]: restarts a loop after a panic; one task runs all the
//!   async projections of a node, and each inline projection and the
//!   exporter runs in a task of its own;
//! - [`inline_applier`]: the inline projections, for the command side.
//!
//! Wake-ups: the command side bumps a watch after every commit; on
//! PostgreSQL, commits of other instances arrive by LISTEN/NOTIFY
//! (`crate::notice::postgres`), which bumps the same watch; a slow poll
//! (`poll_interval`) is the safety net for a missed notification.
//!
//! Leadership (PostgreSQL): one runner per projection across instances,
//! held by a session advisory lock ([`leader`]) and fenced on every
//! checkpoint write. A standby waits for a release notice, or tries again
//! every `standby_retry` (a leader killed without one).
//!
//! Idempotency: every read row remembers what it last applied — the stream
//! version for rows keyed by one stream, the `(tx_id, position)` of the last
//! event for rows folded from many streams — and an event at or below that
//! changes nothing. An event more than one version ahead of its row is an
//! out-of-order delivery and is reported, never silently applied.
//!
//! This layer reads `entity::log` and writes `entity::read`; it never touches
//! the write model or the command side.
pub mod customer_view;
pub mod daily_sales;
pub mod dead_letters;
pub mod group;
pub mod heartbeat;
pub mod inline_applier;
pub mod leader;
pub mod order_activity;
pub mod order_summary;
pub mod product_catalog;
pub mod projector;
pub mod reader;
pub mod rebuild;
pub mod runner;
pub mod runtime;
pub mod sql;
pub mod stall;
pub mod supervisor;

use std::sync::Arc;

use sea_orm::{DatabaseTransaction, DbErr};

use crate::domain::event::RecordedEvent;

/// Why applying an event failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Deterministic: applying this event again will fail again (a poison
    /// event). Goes to the dead-letter table and the projection's policy.
    #[error("event at position {position}: {reason}")]
    Poison { position: i64, reason: String },
    /// Transient (connection lost, lock timeout…): retried with back-off.
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
}

/// Every projection, in a fixed order.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(order_summary::OrderSummary),
        Arc::new(customer_view::CustomerView),
        Arc::new(product_catalog::ProductCatalog),
        Arc::new(daily_sales::DailySales),
        Arc::new(order_activity::OrderActivity),
    ]
}

/// The names of every projection (see [`crate::catalog::View`]).
pub fn names() -> Vec<&'static str> {
    crate::catalog::View::names()
}

/// Operational status of the projections, for the API and the CLI.
pub mod status {
    use sea_orm::DbErr;

    use crate::db::Db;
    use crate::token::LogPosition;

    /// How many committed events `checkpoint` is behind the head of the log.
    pub async fn lag(events_db: &Db, checkpoint: LogPosition) -> Result<i64, DbErr> {
        super::reader::count_after(&events_db.conn, checkpoint).await
    }
}
