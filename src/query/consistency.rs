//! Read-your-own-writes: wait until the projections a query reads have
//! reached a token, or fail with `NOT_VISIBLE_YET` — never answer with data
//! that silently predates the client's own write.
//!
//! The wait subscribes to in-process checkpoint notices first and then reads
//! the durable checkpoints once, so no advance can fall between the two
//! (a watch always holds the newest checkpoint this process has heard of).
//! After that it only listens: the notices are fed by this process's
//! projectors, by LISTEN/NOTIFY from other instances and by the periodic
//! checkpoint poll (PostgreSQL).
//!
//! The durable read is shared: however many waiters arrive at once (a
//! burst of `writeVisible` subscriptions), one query is in flight and all of
//! them take its answer. A waiter never holds a pool connection while it
//! waits.
//!
//! A wait also ends early, with a reason, when the write can never become
//! visible without an operator: a projection it waits on is stopped before
//! the token, or the token's event was dead-lettered. A wait behind a
//! *stalled* projection (see `crate::notice::progress`) waits out its
//! timeout, since the stall may clear; if it does not, the answer names the
//! projection and what it waits on instead of a bare timeout.
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};
use tokio::time::Instant;

use entity::read::dead_letter::{self, Resolution};
use entity::read::projection_checkpoint::{self, StoredMode, StoredStatus};

use super::durable::{Durable, DurableReadFailed};
pub use super::durable::{NotProjected, Visibility};
use super::{QueryError, ReadModel};
use crate::notice::progress::DurableFacts;
use crate::token::LogPosition;

impl ReadModel {
    /// Clamps a client-requested wait to the configured maximum.
    pub fn wait_for(&self, timeout_ms: Option<i32>) -> Result<Duration, QueryError> {
        match timeout_ms {
            None => Ok(self.consistency.default_wait),
            Some(ms) if ms < 0 => Err(QueryError::Validation(format!("timeoutMs must not be negative, got {ms}"))),
            Some(ms) => Ok(Duration::from_millis(ms as u64).min(self.consistency.max_wait)),
        }
    }

    async fn load_durable(&self) -> Result<Durable, sea_orm::DbErr> {
        // A split view's segments read as the view (see `crate::notice::segments`).
        let rows = crate::notice::segments::fold(projection_checkpoint::Entity::find().all(self.primary()).await?);
        let dead = dead_letter::Entity::find()
            .select_only()
            .columns([
                dead_letter::Column::Projection,
                dead_letter::Column::EventTxId,
                dead_letter::Column::EventPosition,
            ])
            .filter(
                Condition::any()
                    .add(dead_letter::Column::Resolution.is_null())
                    .add(dead_letter::Column::Resolution.eq(Resolution::Skipped)),
            )
            .limit(100_000)
            .into_tuple::<(String, i64, i64)>()
            .all(self.primary())
            .await?;
        let mut durable = Durable::default();
        for row in rows {
            let at = LogPosition::new(row.last_tx_id, row.last_position);
            self.notices.advance(&row.name, at);
            let stopped = row.status == StoredStatus::Stopped;
            let facts = DurableFacts {
                progressed_at: row.progressed_at,
                heartbeat_at: row.heartbeat_at,
                waiting_on: row.waiting_on,
                owner: row.owner,
                attempts: row.attempts,
            };
            durable.facts.insert(row.name.clone(), facts);
            // Inline and lazy views are current whatever their checkpoint says.
            let current = matches!(row.mode, StoredMode::Inline | StoredMode::Lazy);
            durable.checkpoints.insert(row.name, (at, current, stopped));
        }
        durable.dead = dead
            .into_iter()
            .map(|(p, tx, pos)| (crate::catalog::view_of(&p).to_owned(), LogPosition::new(tx, pos)))
            .collect();
        Ok(durable)
    }

    /// The durable state, read once for every caller that asks meanwhile.
    pub async fn durable(&self) -> Result<Arc<Durable>, QueryError> {
        let read = {
            let mut slot = self.durable_read.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(read) => read.clone(),
                None => {
                    // Its own task: the read finishes (and gives its pooled
                    // connection back) even when every waiter has gone.
                    let me = self.clone();
                    let task = tokio::spawn(async move { me.load_durable().await.map(Arc::new) });
                    let read = async move {
                        match task.await {
                            Ok(read) => read.map_err(|e| DurableReadFailed::Database(Arc::new(e))),
                            Err(lost) => Err(DurableReadFailed::Lost(lost.to_string())),
                        }
                    }
                    .boxed()
                    .shared();
                    *slot = Some(read.clone());
                    read
                }
            }
        };
        let result = read.clone().await;
        let mut slot = self.durable_read.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|s| s.ptr_eq(&read)) {
            *slot = None;
        }
        drop(slot);
        result.map_err(|failed| match failed {
            DurableReadFailed::Database(e) => QueryError::from((*e).clone()),
            lost @ DurableReadFailed::Lost(_) => {
                QueryError::Database(crate::failure::DbError::Internal(lost.to_string()))
            }
        })
    }

    /// Where `token` stands in `projections`, from the durable state.
    pub async fn visibility(&self, projections: &[&str], token: LogPosition) -> Result<Visibility, QueryError> {
        Ok(self.durable().await?.verdict(projections, token))
    }

    /// At the end of a wait: where `token` stands, and, when it is still
    /// pending, whether a projection it waits on is stalled.
    async fn final_visibility(&self, projections: &[&str], token: LogPosition) -> Result<Visibility, QueryError> {
        let durable = self.durable().await?;
        let verdict = durable.verdict(projections, token);
        if verdict != Visibility::Pending {
            return Ok(verdict);
        }
        let now = chrono::Utc::now();
        for p in projections {
            let behind = durable.checkpoints.get(*p).is_some_and(|(at, inline, _)| !*inline && *at < token);
            let Some(facts) = durable.facts.get(*p).filter(|_| behind) else { continue };
            if let Some(wait) = self.notices.progress().judge(p, facts, None, now).wait {
                return Ok(Visibility::Stalled { projection: (*p).to_owned(), wait });
            }
        }
        Ok(Visibility::Pending)
    }

    /// Waits up to `wait` for `projections` to reach `token`; ends early when
    /// the write can never become visible without an operator.
    pub async fn wait_visible(
        &self,
        projections: &[&str],
        token: LogPosition,
        wait: Duration,
    ) -> Result<Visibility, QueryError> {
        let mut watches: Vec<_> = projections.iter().map(|p| self.notices.watch_checkpoint(p)).collect();
        let mut status = self.notices.watch_status();
        let deadline = Instant::now() + wait;
        // Subscribed first; now the durable truth (this also seeds the watches).
        status.borrow_and_update();
        match self.visibility(projections, token).await? {
            Visibility::Pending => {}
            other => return Ok(other),
        }
        loop {
            if watches.iter_mut().all(|w| *w.borrow_and_update() >= token) {
                return Ok(Visibility::Visible);
            }
            let now = Instant::now();
            if now >= deadline {
                // A last look at the database, in case a notice went missing
                // (and, still pending, at what stands in the way).
                return self.final_visibility(projections, token).await;
            }
            let changed = futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
                // A projection stopped or dead-lettered something: look again.
                Ok(()) = status.changed() => match self.visibility(projections, token).await? {
                    Visibility::Pending => {}
                    other => return Ok(other),
                },
            }
        }
    }

    /// Asks the snapshotter for a lazy view up to `token` and waits (at
    /// most `wait`) for its checkpoint to reach it.
    async fn snapshot_upto(
        &self,
        view: crate::catalog::View,
        token: LogPosition,
        wait: Duration,
    ) -> Result<(), QueryError> {
        let mut checkpoint = self.notices.watch_checkpoint(view.name());
        if *checkpoint.borrow_and_update() >= token {
            return Ok(());
        }
        self.durable().await?;
        if let Some(folding) = &self.folding {
            folding.folder.wish(view, token);
        }
        let reached = tokio::time::timeout(wait, checkpoint.wait_for(|at| *at >= token)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(QueryError::NotVisibleYet(format!(
                "the write {token} is not yet in a snapshot of the lazy view {view} after {} ms; retry, or read a single key (it folds)",
                wait.as_millis()
            ))),
        }
    }

    /// Waits for `token` when given; `NOT_VISIBLE_YET` if it is not reached
    /// in time, `NOT_PROJECTED` if it never will be without an operator.
    pub async fn ensure_visible(&self, projections: &[&str], token: Option<LogPosition>) -> Result<(), QueryError> {
        let Some(token) = token else { return Ok(()) };
        let wait = self.consistency.default_wait;
        // A lazy view's rows (what a list reads) hold a write once a
        // snapshot has passed it: ask for one and wait for it.
        for view in projections.iter().filter_map(|p| crate::catalog::View::parse(p)).filter(|v| self.is_lazy(*v)) {
            self.snapshot_upto(view, token, wait).await?;
        }
        match self.wait_served(projections, token, wait).await? {
            Visibility::Visible => Ok(()),
            Visibility::Pending => Err(QueryError::NotVisibleYet(format!(
                "the write {token} is not yet visible in {} after {} ms; retry, or subscribe to writeVisible",
                projections.join(", "),
                wait.as_millis()
            ))),
            Visibility::Stalled { projection, wait: stall } => Err(QueryError::Stalled {
                message: format!(
                    "the write {token} is not yet visible after {} ms: the projection {projection} is {}; retry later",
                    wait.as_millis(),
                    stall.describe()
                ),
                projection,
                wait: Box::new(stall),
            }),
            Visibility::NotProjected(why) => Err(QueryError::NotProjected(why, token)),
        }
    }
}
