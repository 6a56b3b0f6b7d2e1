//! Poison handling: what happens to an event a projection cannot apply.
//!
//! - [`Projector::dead_letter`] records it in `dead_letter` and applies the
//!   projection's policy (`stop`, or `skip` past it), in one transaction;
//! - [`Projector::isolate`] applies a batch that failed deterministically
//!   one event per transaction, to find which event it was;
//! - [`Projector::stand_down`] marks the projection `outdated` when the
//!   event was written by a newer release this one cannot read;
//! - [`Projector::dead_letter_panic`] finds, after a panic, the event the
//!   projector was at, and dead-letters it with the panic as its reason.
//!
//! All of them fence like a commit does: a runner that lost the projection
//! to another records nothing.
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use entity::read::dead_letter;
use entity::read::projection_checkpoint::{self, StoredStatus};

use super::Projector;
use crate::domain::event::RecordedEvent;
use crate::projection::apply::ApplyError;
use crate::projection::reader::Undecodable;
use crate::projection::runtime::{PoisonPolicy, StepError, StepOutcome};
use crate::token::LogPosition;

/// A panic's message, for the log and the dead letter.
pub(in crate::projection) fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Projector {
    /// Applies `events` one per transaction, so that the event a
    /// deterministic database failure (a sum out of range, a constraint)
    /// belongs to is found and dead-lettered instead of retried forever.
    pub(super) async fn isolate(
        &self,
        mut from: LogPosition,
        events: &[RecordedEvent],
    ) -> Result<StepOutcome, StepError> {
        let mut applied = 0;
        for e in events {
            let to = LogPosition::new(e.tx_id, e.position);
            let reason = match self.commit_batch(from, to, std::slice::from_ref(e), true, 1).await? {
                Ok(StepOutcome::Applied { .. }) => {
                    from = to;
                    applied += 1;
                    continue;
                }
                Ok(other) => return Ok(other),
                Err(ApplyError::Poison { reason, .. }) => reason,
                Err(ApplyError::Database(err))
                    if crate::db::classify(&err).recovery() == crate::db::Recovery::Isolate =>
                {
                    err.to_string()
                }
                Err(other) => return Err(other.into()),
            };
            let bad = Undecodable::poison(e, reason);
            return self.dead_letter(from, bad).await;
        }
        // Each event applied alone: the failure needed the batch as a whole.
        Ok(StepOutcome::Applied { events: applied, checkpoint: from })
    }

    /// Records a poison event and applies the policy, in one transaction.
    pub(super) async fn dead_letter(&self, from: LogPosition, bad: Undecodable) -> Result<StepOutcome, StepError> {
        tracing::error!(projection = self.name(), position = bad.position, error = %bad.error, "poison event dead-lettered");
        metrics::counter!(crate::metrics::DEAD_LETTERS, "projection" => self.name()).increment(1);
        let txn = self.begin(&[self.name()]).await?;
        if !self.fence(&txn, from).await? {
            return Ok(StepOutcome::Fenced);
        }
        let row = dead_letter::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            projection: Set(self.name().to_owned()),
            event_position: Set(bad.position),
            event_tx_id: Set(bad.tx_id),
            stream_id: Set(bad.stream_id),
            event_type: Set(bad.event_type.clone()),
            error: Set(bad.error.clone()),
            recorded_at: Set(chrono::Utc::now()),
            resolution: Set(None),
            resolved_at: Set(None),
        };
        // An event retried by an operator that fails again reopens its dead letter.
        let reopen = sea_orm::sea_query::OnConflict::columns([
            dead_letter::Column::Projection,
            dead_letter::Column::EventPosition,
        ])
        .update_columns([
            dead_letter::Column::Error,
            dead_letter::Column::RecordedAt,
            dead_letter::Column::Resolution,
            dead_letter::Column::ResolvedAt,
        ])
        .to_owned();
        dead_letter::Entity::insert(row).on_conflict(reopen).exec_without_returning(&*txn).await?;
        let message = format!("event at position {} ({}): {}", bad.position, bad.event_type, bad.error);
        let mut update = projection_checkpoint::Entity::update_many()
            .col_expr(projection_checkpoint::Column::LastError, Some(message).into())
            .col_expr(projection_checkpoint::Column::UpdatedAt, chrono::Utc::now().into())
            .filter(projection_checkpoint::Column::Name.eq(self.name()));
        let skipped_to = LogPosition::new(bad.tx_id, bad.position);
        update = match self.policy {
            PoisonPolicy::Stop => update
                .col_expr(projection_checkpoint::Column::Status, StoredStatus::Stopped.into())
                .col_expr(projection_checkpoint::Column::Attempts, 0i64.into()),
            PoisonPolicy::Skip => update
                .col_expr(projection_checkpoint::Column::LastTxId, skipped_to.tx_id.into())
                .col_expr(projection_checkpoint::Column::LastPosition, skipped_to.position.into()),
        };
        update.exec(&*txn).await?;
        if self.read_db.is_postgres() {
            // Waiters on other instances re-check at once (delivered at commit).
            crate::notice::postgres::announce_status(&*txn, self.name()).await?;
        }
        txn.commit().await?;
        if self.policy == PoisonPolicy::Skip {
            self.notices.advance(self.name(), skipped_to);
        }
        self.notices.status_changed();
        Ok(StepOutcome::DeadLettered { position: bad.position })
    }

    /// After a panic: applies the events after the checkpoint one per
    /// transaction, catching panics, to find the event that panics; it is
    /// dead-lettered with the panic as its reason (under the projection's
    /// policy), and what precedes it is applied.
    pub async fn dead_letter_panic(&self, reason: &str) -> Result<(), StepError> {
        use futures_util::FutureExt;
        let row = self.checkpoint().await?;
        if row.status == StoredStatus::Stopped {
            return Ok(());
        }
        let mut from = LogPosition::new(row.last_tx_id, row.last_position);
        let batch = self.read_after(from).await?;
        for read in batch {
            let e = match read {
                Ok(e) => e,
                Err(undecodable) => return self.dead_letter(from, undecodable).await.map(|_| ()),
            };
            let to = LogPosition::new(e.tx_id, e.position);
            let attempt = std::panic::AssertUnwindSafe(self.commit_batch(from, to, std::slice::from_ref(&e), true, 1));
            let why = match attempt.catch_unwind().await {
                Ok(Ok(Ok(StepOutcome::Applied { .. }))) => {
                    from = to;
                    continue;
                }
                Ok(Ok(Ok(_))) => return Ok(()),
                Ok(Ok(Err(ApplyError::Poison { reason, .. }))) => reason,
                Ok(Ok(Err(other))) => return Err(other.into()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => format!("the projector panicked applying this event: {reason}"),
            };
            let bad = Undecodable::poison(&e, why);
            return self.dead_letter(from, bad).await.map(|_| ());
        }
        Ok(())
    }

    /// Marks the projection `outdated` (if nobody moved it meanwhile): this
    /// release cannot read the next event, a newer one must apply it.
    pub(super) async fn stand_down(&self, from: LogPosition, bad: &Undecodable) -> Result<StepOutcome, StepError> {
        tracing::warn!(projection = self.name(), position = bad.position, error = %bad.error, "an event from a newer release: standing down for a newer instance");
        let txn = self.begin(&[self.name()]).await?;
        if !self.fence(&txn, from).await? {
            return Ok(StepOutcome::Fenced);
        }
        let message = format!(
            "event at position {}: {}; this instance stands down until a newer one applies it",
            bad.position, bad.error
        );
        projection_checkpoint::Entity::update_many()
            .col_expr(projection_checkpoint::Column::Status, StoredStatus::Outdated.into())
            .col_expr(projection_checkpoint::Column::LastError, Some(message).into())
            .col_expr(projection_checkpoint::Column::UpdatedAt, chrono::Utc::now().into())
            .filter(projection_checkpoint::Column::Name.eq(self.name()))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        self.notices.status_changed();
        Ok(StepOutcome::Outdated { at: LogPosition::new(bad.tx_id, bad.position) })
    }
}
