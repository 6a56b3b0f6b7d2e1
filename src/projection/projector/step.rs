//! One step of one projection, as the module docs of [`crate::projection`]
//! describe it: read a batch after the checkpoint, commit it (see
//! [`super::commit`]), or, when an event in it cannot be applied, hand it
//! to poison handling (see [`super::poison`]). Tests drive
//! [`Projector::step`] directly; runners call it between their own
//! book-keeping.
use super::Projector;
use entity::read::projection_checkpoint::StoredStatus;

use crate::domain::event::RecordedEvent;
use crate::projection::apply::ApplyError;
use crate::projection::reader::Undecodable;
use crate::projection::runtime::{Mode, StepError, StepOutcome};
use crate::token::LogPosition;

impl Projector {
    /// One step, applying events (async mode, a lazy view's snapshot, and
    /// start-up catch-up).
    pub async fn step(&self) -> Result<StepOutcome, StepError> {
        self.step_with(self.mode != Mode::Inline).await
    }

    /// Brings an inline projection up to the head before commands start
    /// applying it themselves (e.g. after switching from async to inline).
    pub async fn catch_up(&self) -> Result<(), StepError> {
        loop {
            match self.step_with(true).await? {
                StepOutcome::Idle | StepOutcome::Stopped | StepOutcome::Outdated { .. } => return Ok(()),
                _ => continue,
            }
        }
    }

    /// One step. `apply` is false for inline projections, whose events were
    /// applied by the commands themselves: the step then only advances the
    /// checkpoint and publishes.
    pub async fn step_with(&self, apply: bool) -> Result<StepOutcome, StepError> {
        let outcome = self.step_inner(apply).await;
        match &outcome {
            Ok(StepOutcome::Applied { checkpoint, .. }) => self.remember_checkpoint(*checkpoint),
            Ok(StepOutcome::Idle) => {}
            _ => self.forget_checkpoint(),
        }
        outcome
    }

    async fn step_inner(&self, apply: bool) -> Result<StepOutcome, StepError> {
        let known = self.known_checkpoint();
        let from = match known {
            Some(from) => from,
            None => {
                let checkpoint = self.checkpoint().await?;
                if checkpoint.status == StoredStatus::Stopped {
                    return Ok(StepOutcome::Stopped);
                }
                let from = LogPosition::new(checkpoint.last_tx_id, checkpoint.last_position);
                self.remember_checkpoint(from);
                from
            }
        };
        // The log is append-only and the reader never passes the horizon, so
        // a batch read ahead after `from` is what reading now would return
        // (or a prefix of it).
        let batch = match self.take_read_ahead(from) {
            Some(batch) => batch,
            None => self.read_after(from).await?,
        };
        if batch.is_empty() {
            if apply {
                self.projection.probe().await?;
            }
            return Ok(StepOutcome::Idle);
        }
        // Undecodable rows are poison for every projection that applies.
        let decoded_prefix: Vec<RecordedEvent> = batch.iter().map_while(|e| e.as_ref().ok().cloned()).collect();
        if apply && decoded_prefix.is_empty() {
            if let Some(Err(bad)) = batch.first() {
                if bad.newer {
                    return self.stand_down(from, bad).await;
                }
                return self.dead_letter(from, bad.clone()).await;
            }
        }
        let events: Vec<RecordedEvent> =
            if apply { decoded_prefix } else { batch.iter().filter_map(|e| e.as_ref().ok().cloned()).collect() };
        let last = match batch.last() {
            Some(Ok(e)) if !apply || events.len() == batch.len() => LogPosition::new(e.tx_id, e.position),
            Some(Err(bad)) if !apply => LogPosition::new(bad.tx_id, bad.position),
            _ => match events.last() {
                Some(e) => LogPosition::new(e.tx_id, e.position),
                None => return Ok(StepOutcome::Idle),
            },
        };
        let span = super::batch_span(&[self.name()], &events);
        tracing::Instrument::instrument(self.commit_step(from, last, batch, events, apply), span).await
    }

    /// The step's commit (see [`Projector::step_inner`]), in its batch's span.
    async fn commit_step(
        &self,
        from: LogPosition,
        last: LogPosition,
        batch: Vec<crate::projection::reader::ReadEvent>,
        events: Vec<RecordedEvent>,
        apply: bool,
    ) -> Result<StepOutcome, StepError> {
        // Inline runners acknowledge the whole batch; appliers what they applied.
        let counted = if apply { events.len() } else { batch.len() };
        // A full batch of a consumer that reads ahead: read the next one
        // while this one is applied, kept only if this one committed.
        let read_ahead =
            apply && self.projection.reads_ahead() && events.len() == batch.len() && self.fills_a_batch(batch.len());
        let committed = if read_ahead {
            let (committed, next) =
                tokio::join!(self.commit_batch(from, last, &events, apply, counted), self.read_after(last));
            if let (Ok(Ok(StepOutcome::Applied { checkpoint, .. })), Ok(next)) = (&committed, next) {
                if *checkpoint == last && !next.is_empty() {
                    self.keep_read_ahead(last, next);
                }
            }
            committed
        } else {
            self.commit_batch(from, last, &events, apply, counted).await
        };
        match committed? {
            Ok(outcome) => Ok(outcome),
            Err(ApplyError::Poison { position, reason }) => {
                // Commit what precedes the poison event, then dead-letter it.
                let before: Vec<RecordedEvent> =
                    events.iter().take_while(|e| e.position != position).cloned().collect();
                let mut from = from;
                if let Some(prev) = before.last() {
                    let upto = LogPosition::new(prev.tx_id, prev.position);
                    match self.commit_batch(from, upto, &before, true, before.len()).await? {
                        Ok(StepOutcome::Applied { .. }) => from = upto,
                        Ok(other) => return Ok(other),
                        Err(e) => return Err(e.into()),
                    }
                }
                let Some(bad) = events.iter().find(|e| e.position == position) else {
                    return Err(StepError::Internal(format!("poison event {position} not in batch")));
                };
                let bad = Undecodable {
                    position,
                    tx_id: bad.tx_id,
                    stream_id: bad.stream_id,
                    event_type: bad.event.event_type().to_owned(),
                    error: reason,
                    newer: false,
                };
                self.dead_letter(from, bad).await
            }
            Err(ApplyError::Database(e)) if crate::db::classify(&e).recovery() == crate::db::Recovery::Isolate => {
                tracing::warn!(projection = self.name(), error = %e, "a batch failed deterministically; applying it event by event to find the poison event");
                self.isolate(from, &events).await
            }
            Err(other) => Err(other.into()),
        }
    }
}
