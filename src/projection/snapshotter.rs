//! Snapshots of the lazy views: their rows folded and stored, with the
//! checkpoint they are folded to, so a read folds only the tail after them.
//!
//! Nothing keeps a lazy view current; the snapshotter moves it now and then,
//! with the projection's own batch apply (the same step as an async
//! runner's, so rows and checkpoint commit together and a crash mid-write
//! leaves the previous snapshot):
//!
//! - **every N events**: when the log has grown `every_events` past the
//!   view's checkpoint;
//! - **every T**: whatever has come meanwhile;
//! - **on a wish**: a list read (which cannot fold a page) asks for the
//!   view up to its token; a key whose fold was long (more than K events
//!   or M milliseconds, Axon's load-time trigger, see `crate::lazy`) has
//!   its rows stored folded to the head, so a key read often never folds a
//!   long tail twice.
//!
//! A key's rows are stored by applying that key's stream to the view (the
//! view's upsert merges by version, so it is idempotent and never goes
//! back); the view's checkpoint does not move for it.
use std::collections::HashMap;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::apply::ApplyContext;
use super::projector::Projector;
pub use super::runtime::SnapshotSettings;
use super::runtime::StepOutcome;
use crate::catalog::View;
use crate::db::Db;
use crate::token::LogPosition;

/// A key of a lazy view whose rows should be stored folded to the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotKey {
    pub view: View,
    pub key: Uuid,
}

/// What a reader asks of the snapshotter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotWish {
    /// Store this key's rows (its fold was long).
    Key(HotKey),
    /// Bring the view up to this token (a list read waits for it).
    Upto(View, LogPosition),
}

/// Wishes a reader may send at once before they are dropped (a snapshot
/// every N events or T comes anyway).
pub const WISHES: usize = 1_024;

/// Runs until `shutdown`: snapshots each lazy view by the triggers above.
pub async fn run(
    projectors: Vec<Projector>,
    log_db: Db,
    settings: SnapshotSettings,
    mut wishes: mpsc::Receiver<SnapshotWish>,
    mut appended: watch::Receiver<LogPosition>,
    shutdown: CancellationToken,
) {
    let by_view: HashMap<View, Projector> =
        projectors.into_iter().filter_map(|p| View::parse(p.name()).map(|v| (v, p))).collect();
    if by_view.is_empty() {
        return;
    }
    // The first tick one period after start, not at once: a snapshot
    // when the process starts would store whatever the log holds by
    // whenever this task happens to run (a race a loaded machine showed
    // in `lazy::lazy_views_fold_and_lists_wait_for_a_snapshot`); the
    // event-count trigger covers a long tail sooner.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + settings.every, settings.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due: Vec<View> = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => by_view.keys().copied().collect(),
            Ok(()) = appended.changed() => {
                let head = *appended.borrow_and_update();
                by_view
                    .iter()
                    .filter(|(_, p)| {
                        let at = p.known_checkpoint().unwrap_or(LogPosition::START);
                        head.position.saturating_sub(at.position) >= settings.every_events as i64
                    })
                    .map(|(v, _)| *v)
                    .collect()
            }
            Some(wish) = wishes.recv() => match wish {
                SnapshotWish::Upto(view, token) => {
                    let behind = by_view.get(&view).is_some_and(|p| p.known_checkpoint().is_none_or(|at| at < token));
                    if behind { vec![view] } else { Vec::new() }
                }
                SnapshotWish::Key(hot) => {
                    if let Some(p) = by_view.get(&hot.view) {
                        if let Err(e) = store_key(p, &log_db, hot.key).await {
                            tracing::warn!(view = hot.view.name(), key = %hot.key, error = %e, "could not store a hot key's rows");
                        }
                    }
                    Vec::new()
                }
            },
        };
        for view in due {
            if let Some(p) = by_view.get(&view) {
                snapshot(p).await;
            }
        }
    }
}

/// Steps the view to the head (batch by batch, each committing its rows
/// and the checkpoint together).
async fn snapshot(projector: &Projector) {
    let started = std::time::Instant::now();
    let mut events = 0;
    loop {
        match projector.step().await {
            Ok(StepOutcome::Applied { events: n, .. }) => events += n,
            Ok(StepOutcome::Fenced | StepOutcome::DeadLettered { .. }) => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(view = projector.name(), error = %e, "a snapshot of a lazy view failed; the next trigger tries again");
                break;
            }
        }
    }
    if events > 0 {
        metrics::counter!(crate::metrics::SNAPSHOTS, "projection" => projector.name()).increment(1);
        tracing::debug!(
            view = projector.name(),
            events,
            ms = started.elapsed().as_millis() as u64,
            "lazy view snapshot"
        );
    }
}

/// Stores one key's rows folded to the head: its stream (and, for an
/// order, its customer's: the renames its row shows) applied by the view in
/// log order (version-merged, so idempotent and never going back).
async fn store_key(projector: &Projector, log_db: &Db, key: Uuid) -> Result<(), super::ApplyError> {
    let stream = |id: Uuid| super::reader::read_stream(&log_db.conn, id, 0, None, crate::catalog::REPLAY_BATCH);
    let mut events: Vec<_> = stream(key).await?.into_iter().filter_map(Result::ok).collect();
    let customer = events.iter().find_map(|e| match &e.event {
        crate::domain::DomainEvent::OrderPlaced(p) => Some(p.customer_id),
        _ => None,
    });
    if let Some(customer) = customer {
        events.extend(stream(customer).await?.into_iter().filter_map(Result::ok));
        events.sort_by_key(|e| LogPosition::new(e.tx_id, e.position));
    }
    if events.is_empty() {
        return Ok(());
    }
    let txn = projector.views().begin_write_as("the lazy-view snapshotter", &mut |_| {}).await?;
    projector.projection.apply(&txn, &events, ApplyContext { position_guard: true }).await?;
    txn.commit().await?;
    metrics::counter!(crate::metrics::SNAPSHOT_KEYS, "projection" => projector.name()).increment(1);
    Ok(())
}
