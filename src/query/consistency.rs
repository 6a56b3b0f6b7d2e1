//! Read-your-own-writes: wait until the projections a query reads have
//! reached a token, or fail with `NOT_VISIBLE_YET` — never answer with data
//! that silently predates the client's own write.
//!
//! The wait subscribes to in-process checkpoint notices first and then reads
//! the durable checkpoints once, so no advance can fall between the two.
//! After that it only listens: the notices are fed by this process's
//! projectors, by LISTEN/NOTIFY from other instances and by the periodic
//! checkpoint poll (PostgreSQL), so a thousand waiting clients cost no
//! database queries until one last durable check at the deadline.
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::time::Instant;

use entity::read::projection_checkpoint;

use super::{QueryError, ReadModel};
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

    /// True when every named projection has reached `token` (durably).
    /// Inline projections are visible as soon as the command committed.
    pub async fn visible(&self, projections: &[&str], token: LogPosition) -> Result<bool, QueryError> {
        let rows = projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(projections.iter().copied()))
            .all(self.conn())
            .await?;
        let mut reached = 0;
        for row in &rows {
            let at = LogPosition::new(row.last_tx_id, row.last_position);
            self.notices.advance(&row.name, at);
            if row.mode == "inline" || at >= token {
                reached += 1;
            }
        }
        Ok(reached == projections.len())
    }

    /// Waits up to `wait` for `projections` to reach `token`.
    pub async fn wait_visible(
        &self,
        projections: &[&str],
        token: LogPosition,
        wait: Duration,
    ) -> Result<bool, QueryError> {
        let mut watches: Vec<_> = projections.iter().map(|p| self.notices.watch_checkpoint(p)).collect();
        let deadline = Instant::now() + wait;
        // Subscribed first; now the durable truth (this also seeds the watches).
        if self.visible(projections, token).await? {
            return Ok(true);
        }
        loop {
            if watches.iter_mut().all(|w| *w.borrow_and_update() >= token) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                // A last look at the database, in case a notice went missing.
                return self.visible(projections, token).await;
            }
            let changed = futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            let _ = tokio::time::timeout(deadline - now, changed).await;
        }
    }

    /// Waits for `token` when given; `NOT_VISIBLE_YET` if it is not reached in time.
    pub async fn ensure_visible(&self, projections: &[&str], token: Option<LogPosition>) -> Result<(), QueryError> {
        let Some(token) = token else { return Ok(()) };
        let wait = self.consistency.default_wait;
        if self.wait_visible(projections, token, wait).await? {
            Ok(())
        } else {
            Err(QueryError::NotVisibleYet(format!(
                "the write {token} is not yet visible in {} after {} ms; retry, or subscribe to writeVisible",
                projections.join(", "),
                wait.as_millis()
            )))
        }
    }
}
