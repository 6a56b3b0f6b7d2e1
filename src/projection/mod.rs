//! Projections: folds of the event log into denormalized read views.
//!
//! Each projection (one file each) owns its read tables and implements
//! [`Projection::apply`] for a batch of events, through the one fold
//! pipeline ([`fold`]: keys, markers, deltas or whole rows, one bulk
//! statement per store), supplying only what is its own. A [`projector::Projector`]
//! steps one projection: it reads the log after the projection's
//! checkpoint, applies a batch and advances the checkpoint in the same
//! read-database transaction, then publishes a notice. Modes:
//!
//! - `async` (default): the runtime applies; reads are eventually consistent.
//! - `inline`: the command applies the projection in its own transaction
//!   ([`inline_applier`]; strong consistency, same database only); the
//!   runtime then only moves the checkpoint forward and publishes notices.
//!
//! What a projection is lives in [`apply`] (the trait, how an apply runs
//! and fails); the projections and the runtime use it, not this file,
//! which lists them ([`all`]) and re-exports it.
//!
//! The runtime, one file per job, each using only those listed before it:
//!
//! - [`runtime`]: the shared vocabulary (settings, what a step did, why one failed);
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
//! checkpoint write. A view split into segments ([`segment`],
//! `--projection-segments`) has one runner, checkpoint, lock and fence per
//! segment, spread over the live instances. A standby waits for a release notice, or tries again
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
pub mod apply;
pub mod customer_view;
pub mod daily_sales;
pub mod dead_letters;
pub mod fold;
pub mod group;
pub mod heartbeat;
pub mod inline_applier;
pub mod leader;
pub mod order_activity;
pub mod order_summary;
pub mod portable;
pub mod product_catalog;
pub mod projector;
pub mod reader;
pub mod rebuild;
pub mod recovery;
pub mod runner;
pub mod runtime;
pub mod search_backfill;
pub mod segment;
pub mod shadow;
pub mod snapshotter;
pub mod sql;
pub mod stall;
pub mod supervisor;

use std::sync::Arc;

pub use apply::{ApplyContext, ApplyError, Projection, MAX_BATCH};

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
