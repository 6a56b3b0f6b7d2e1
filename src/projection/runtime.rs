//! The projection runtime: a [`Projector`] steps one projection, a
//! [`Runner`] keeps its state between steps (leadership, back-off, what
//! blocks it), and the loop in [`super::group`] drives the runners of a
//! node (every async projection in one grouped loop; each inline one and
//! the exporter in a loop of its own).
//!
//! A step (see [`Projector::step`], which tests drive directly) is:
//!
//! 1. read up to `batch_size` committed events after the checkpoint from the
//!    event log (commit-safe order, see [`super::reader`]);
//! 2. in ONE read-database transaction: lock the checkpoint row and check it
//!    has not moved (fencing: a second runner, or a stale one, that read the
//!    same batch finds the checkpoint moved and applies nothing), apply the
//!    batch, advance the checkpoint, commit;
//! 3. only then publish a [`ProjectionUpdated`] notice.
//!
//! A crash anywhere before the commit leaves both the rows and the
//! checkpoint as they were; the batch is simply read again.
//!
//! Wake-ups: the command side bumps a watch after every commit; on
//! PostgreSQL, commits of other instances arrive by LISTEN/NOTIFY
//! (`crate::notice::postgres`), which bumps the same watch; a slow poll
//! (`poll_interval`) is the safety net for a missed notification.
//!
//! Leadership (PostgreSQL): one runner per projection across instances,
//! held by a session advisory lock ([`super::leader`]) and fenced on every
//! checkpoint write. A standby waits for a release notice, or tries again
//! every `standby_retry` (a leader killed without one).
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use entity::read::{dead_letter, projection_checkpoint};

use super::reader::{self, Undecodable};
use super::{ApplyContext, ApplyError, Projection};
use crate::backoff::Backoff;
use crate::db::Db;
use crate::domain::event::RecordedEvent;
use crate::inline::InlineProjections;
use crate::notice::{Notices, ProjectionUpdated};
use crate::token::LogPosition;

use crate::catalog::Status;
pub use crate::catalog::{Mode, PoisonPolicy};

/// Settings shared by every projector.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub batch_size: u64,
    /// Safety-net poll when no wake-up arrives.
    pub poll_interval: Duration,
    /// How often a standby tries to take over when no release notice
    /// wakes it (the leader died without one).
    pub standby_retry: Duration,
    pub modes: HashMap<String, Mode>,
    pub policies: HashMap<String, PoisonPolicy>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            standby_retry: Duration::from_secs(1),
            modes: HashMap::new(),
            policies: HashMap::new(),
        }
    }
}

impl RuntimeSettings {
    pub fn mode_of(&self, name: &str) -> Mode {
        self.modes.get(name).copied().unwrap_or_default()
    }
    pub fn policy_of(&self, name: &str) -> PoisonPolicy {
        self.policies.get(name).copied().unwrap_or_default()
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// A batch was committed (or, for inline projections, acknowledged).
    Applied { events: usize, checkpoint: LogPosition },
    /// A poison event was dead-lettered (and, under `stop`, the projection stopped).
    DeadLettered { position: i64 },
    /// Another runner moved the checkpoint first; nothing was applied.
    Fenced,
    /// Nothing new in the log.
    Idle,
    /// The projection is stopped (after a poison event under `stop`).
    Stopped,
    /// The next event was written by a newer release: this runner stood
    /// down (the event is at `position`).
    Outdated { at: LogPosition },
    /// (Within a grouped step: this projection goes alone, on the path
    /// that finds a poison event. Never returned by a step.)
    #[doc(hidden)]
    Solo,
}

/// Runs one projection.
pub struct Projector {
    pub projection: Arc<dyn Projection>,
    pub mode: Mode,
    pub policy: PoisonPolicy,
    events_db: Db,
    read_db: Db,
    notices: Notices,
    batch_size: u64,
    standby_retry: Duration,
    /// The checkpoint this runner last committed (saves a read per batch;
    /// the fence in every batch catches a checkpoint moved by anyone else).
    cached: std::sync::Mutex<Option<LogPosition>>,
    /// Decodes newer event versions first (tests play a newer release with it).
    upcaster: Option<super::reader::Upcaster>,
    /// The fence this runner took the projection over with (leadership only).
    fence_token: std::sync::Mutex<Option<i64>>,
}

impl Projector {
    pub fn new(
        projection: Arc<dyn Projection>,
        events_db: Db,
        read_db: Db,
        notices: Notices,
        settings: &RuntimeSettings,
    ) -> Self {
        let name = projection.name();
        Self {
            mode: settings.mode_of(name),
            policy: settings.policy_of(name),
            projection,
            events_db,
            read_db,
            notices,
            batch_size: settings.batch_size.max(1),
            standby_retry: settings.standby_retry,
            cached: std::sync::Mutex::new(None),
            upcaster: None,
            fence_token: std::sync::Mutex::new(None),
        }
    }

    /// Reads the log through `upcaster` first (a newer release's decoding).
    pub fn with_upcaster(mut self, upcaster: super::reader::Upcaster) -> Self {
        self.upcaster = Some(upcaster);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Creates the checkpoint row if missing and records the configured mode.
    pub async fn register(&self) -> Result<projection_checkpoint::Model, DbErr> {
        let conn = &self.read_db.conn;
        let existing = projection_checkpoint::Entity::find_by_id(self.name()).one(conn).await?;
        let row = match existing {
            Some(row) if row.mode == self.mode.as_str() => row,
            Some(row) => {
                let mut active: projection_checkpoint::ActiveModel = row.into();
                active.mode = Set(self.mode.as_str().to_owned());
                active.updated_at = Set(chrono::Utc::now());
                active.update(conn).await?
            }
            None => {
                let row = projection_checkpoint::ActiveModel {
                    name: Set(self.name().to_owned()),
                    mode: Set(self.mode.as_str().to_owned()),
                    status: Set(Status::Running.as_str().to_owned()),
                    last_tx_id: Set(0),
                    last_position: Set(0),
                    events_applied: Set(0),
                    last_error: Set(None),
                    owner: Set(None),
                    fence: Set(0),
                    updated_at: Set(chrono::Utc::now()),
                    rebuild_done: Set(0),
                    rebuild_total: Set(0),
                    attempts: Set(0),
                    heartbeat_at: Set(None),
                    progressed_at: Set(None),
                    waiting_on: Set(None),
                };
                // Two instances may register at once; the loser just reads the row.
                let _ = projection_checkpoint::Entity::insert(row)
                    .on_conflict_do_nothing()
                    .exec_without_returning(conn)
                    .await?;
                projection_checkpoint::Entity::find_by_id(self.name())
                    .one(conn)
                    .await?
                    .ok_or_else(|| DbErr::RecordNotFound(format!("checkpoint of {}", self.name())))?
            }
        };
        self.notices.advance(self.name(), LogPosition::new(row.last_tx_id, row.last_position));
        Ok(row)
    }

    async fn checkpoint(&self) -> Result<projection_checkpoint::Model, DbErr> {
        match projection_checkpoint::Entity::find_by_id(self.name()).one(&self.read_db.conn).await? {
            Some(row) => Ok(row),
            None => self.register().await,
        }
    }

    /// One step, applying events (async mode and start-up catch-up).
    pub async fn step(&self) -> Result<StepOutcome, DbErr> {
        self.step_with(self.mode == Mode::Async).await
    }

    /// Brings an inline projection up to the head before commands start
    /// applying it themselves (e.g. after switching from async to inline).
    pub async fn catch_up(&self) -> Result<(), DbErr> {
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
    pub async fn step_with(&self, apply: bool) -> Result<StepOutcome, DbErr> {
        let outcome = self.step_inner(apply).await;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match &outcome {
            Ok(StepOutcome::Applied { checkpoint, .. }) => *cached = Some(*checkpoint),
            Ok(StepOutcome::Idle) => {}
            _ => *cached = None,
        }
        outcome
    }

    /// The checkpoint this runner knows, if any.
    pub fn known_checkpoint(&self) -> Option<LogPosition> {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn step_inner(&self, apply: bool) -> Result<StepOutcome, DbErr> {
        let known = self.known_checkpoint();
        let from = match known {
            Some(from) => from,
            None => {
                let checkpoint = self.checkpoint().await?;
                if checkpoint.status == Status::Stopped.as_str() {
                    return Ok(StepOutcome::Stopped);
                }
                let from = LogPosition::new(checkpoint.last_tx_id, checkpoint.last_position);
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                from
            }
        };
        let batch =
            reader::read_after_with(&self.events_db.conn, from, self.batch_size, self.upcaster.as_ref()).await?;
        if batch.is_empty() {
            if apply {
                self.projection.probe().await.map_err(into_db_err)?;
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
        // Inline runners acknowledge the whole batch; appliers what they applied.
        let counted = if apply { events.len() } else { batch.len() };
        match self.commit_batch(from, last, &events, apply, counted).await? {
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
                        Err(e) => return Err(DbErr::Custom(e.to_string())),
                    }
                }
                let Some(bad) = events.iter().find(|e| e.position == position) else {
                    return Err(DbErr::Custom(format!("poison event {position} not in batch")));
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
            Err(ApplyError::Database(e)) if crate::db::classify(&e).is_deterministic() => {
                tracing::warn!(projection = self.name(), error = %e, "a batch failed deterministically; applying it event by event to find the poison event");
                self.isolate(from, &events).await
            }
            Err(ApplyError::Database(e)) => Err(e),
            Err(ApplyError::Unavailable(message)) => Err(DbErr::Custom(message)),
        }
    }

    /// Applies `events` one per transaction, so that the event a
    /// deterministic database failure (a sum out of range, a constraint)
    /// belongs to is found and dead-lettered instead of retried forever.
    async fn isolate(&self, mut from: LogPosition, events: &[RecordedEvent]) -> Result<StepOutcome, DbErr> {
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
                Err(ApplyError::Database(err)) if crate::db::classify(&err).is_deterministic() => err.to_string(),
                Err(ApplyError::Database(err)) => return Err(err),
                Err(ApplyError::Unavailable(message)) => return Err(DbErr::Custom(message)),
            };
            let bad = Undecodable::poison(e, reason);
            return self.dead_letter(from, bad).await;
        }
        // Each event applied alone: the failure needed the batch as a whole.
        Ok(StepOutcome::Applied { events: applied, checkpoint: from })
    }

    /// Applies `events` and moves the checkpoint from `from` to `to`, in one
    /// transaction, then publishes. `Ok(Err(poison))` rolls everything back.
    async fn commit_batch(
        &self,
        from: LogPosition,
        to: LogPosition,
        events: &[RecordedEvent],
        apply: bool,
        read: usize,
    ) -> Result<Result<StepOutcome, ApplyError>, DbErr> {
        let started = std::time::Instant::now();
        let update = self.update(to, events);
        let txn = super::stall::begin_observed(&self.read_db, self.notices.progress(), &[self.name()]).await?;
        // First statement: claim the batch by moving the checkpoint (a
        // compare-and-set that also locks the row and queues the NOTIFY,
        // delivered at commit). Should the apply fail, the rollback undoes both.
        if !self.claim(&txn, from, to, read, &update).await? {
            return Ok(Ok(StepOutcome::Fenced));
        }
        if apply {
            if let Err(e) = self.projection.apply(&txn, events, ApplyContext { position_guard: true }).await {
                return Ok(Err(e));
            }
        }
        txn.commit().await?;
        self.notices.publish(update);
        metrics::histogram!(crate::metrics::BATCH_SIZE, "projection" => self.name()).record(read as f64);
        metrics::histogram!(crate::metrics::BATCH_DURATION, "projection" => self.name())
            .record(started.elapsed().as_secs_f64());
        if let Some(newest) = events.iter().map(|e| e.recorded_at).max() {
            let latency = (chrono::Utc::now() - newest).to_std().unwrap_or_default();
            metrics::histogram!(crate::metrics::NOTICE_LATENCY, "projection" => self.name())
                .record(latency.as_secs_f64());
        }
        Ok(Ok(StepOutcome::Applied { events: read, checkpoint: to }))
    }

    /// Moves the checkpoint from `from` to `to` if it is still at `from` and
    /// the projection is not stopped (fencing), in one statement; on
    /// PostgreSQL the same statement queues the cross-instance NOTIFY.
    async fn claim(
        &self,
        txn: &DatabaseTransaction,
        from: LogPosition,
        to: LogPosition,
        read: usize,
        update: &ProjectionUpdated,
    ) -> Result<bool, DbErr> {
        use sea_orm::ConnectionTrait;
        let now = chrono::Utc::now();
        let mut values: Vec<sea_orm::Value> = vec![
            to.tx_id.into(),
            to.position.into(),
            (read as i64).into(),
            now.into(),
            self.name().into(),
            from.tx_id.into(),
            from.position.into(),
        ];
        // A batch applied past an event an older release stood down at ends
        // the `outdated` status.
        let cas = "UPDATE projection_checkpoint SET last_tx_id = $1, last_position = $2, events_applied = events_applied + $3, updated_at = $4, \
                   status = CASE WHEN status = 'outdated' THEN 'running' ELSE status END, \
                   last_error = CASE WHEN status = 'outdated' THEN NULL ELSE last_error END \
                   WHERE name = $5 AND last_tx_id = $6 AND last_position = $7 AND status <> 'stopped' \
                   AND fence = COALESCE($8, fence)";
        values.push((*self.fence_token.lock().unwrap_or_else(|p| p.into_inner())).into());
        if self.read_db.is_postgres() {
            values.push(crate::notice::postgres::PROJECTION_CHANNEL.into());
            values.push(crate::notice::postgres::encoded(self.notices.instance_id(), update)?.into());
            let sql = format!("WITH claimed AS ({cas} RETURNING 1) SELECT pg_notify($9, $10) FROM claimed");
            let rows = txn.query_all_raw(super::sql::statement(sea_orm::DbBackend::Postgres, &sql, values)).await?;
            Ok(rows.len() == 1)
        } else {
            let result = txn.execute_raw(super::sql::statement(txn.get_database_backend(), cas, values)).await?;
            Ok(result.rows_affected() == 1)
        }
    }

    /// Locks the checkpoint row and checks it is still at `from`.
    async fn fence(&self, txn: &DatabaseTransaction, from: LogPosition) -> Result<bool, DbErr> {
        let row = projection_checkpoint::Entity::find_by_id(self.name()).lock_exclusive().one(txn).await?;
        let fence = *self.fence_token.lock().unwrap_or_else(|p| p.into_inner());
        Ok(matches!(row, Some(r) if r.last_tx_id == from.tx_id && r.last_position == from.position
            && r.status != Status::Stopped.as_str() && fence.is_none_or(|f| f == r.fence)))
    }

    pub(super) fn notices(&self) -> &Notices {
        &self.notices
    }

    pub(super) fn read_db(&self) -> &Db {
        &self.read_db
    }

    pub(super) fn events_db_conn(&self) -> &sea_orm::DatabaseConnection {
        &self.events_db.conn
    }

    pub(super) fn batch_size(&self) -> u64 {
        self.batch_size
    }

    pub(super) fn fence_token(&self) -> Option<i64> {
        *self.fence_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn forget_checkpoint(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(super) fn remember_checkpoint(&self, at: LogPosition) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// The checkpoint rows of `names` (one query).
    pub(super) async fn checkpoints_of(
        &self,
        names: impl Iterator<Item = &'static str>,
    ) -> Result<Vec<projection_checkpoint::Model>, DbErr> {
        let names: Vec<&str> = names.collect();
        projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(names))
            .all(&self.read_db.conn)
            .await
    }

    /// The checkpoint rows of `names`, locked for the rest of `txn` (in
    /// name order, like every other taker of several of them).
    pub(super) async fn checkpoints_locked(
        &self,
        txn: &DatabaseTransaction,
        names: impl Iterator<Item = &'static str>,
    ) -> Result<Vec<projection_checkpoint::Model>, DbErr> {
        use sea_orm::QueryOrder;
        let names: Vec<&str> = names.collect();
        projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(names))
            .order_by_asc(projection_checkpoint::Column::Name)
            .lock_exclusive()
            .all(txn)
            .await
    }

    /// After a grouped batch committed: remember, announce, measure.
    pub(super) fn committed(
        &self,
        to: LogPosition,
        update: ProjectionUpdated,
        read: usize,
        seconds: f64,
        events: &[RecordedEvent],
    ) {
        self.remember_checkpoint(to);
        self.notices.publish(update);
        metrics::histogram!(crate::metrics::BATCH_SIZE, "projection" => self.name()).record(read as f64);
        metrics::histogram!(crate::metrics::BATCH_DURATION, "projection" => self.name()).record(seconds);
        if let Some(newest) = events.iter().map(|e| e.recorded_at).max() {
            let latency = (chrono::Utc::now() - newest).to_std().unwrap_or_default();
            metrics::histogram!(crate::metrics::NOTICE_LATENCY, "projection" => self.name())
                .record(latency.as_secs_f64());
        }
    }

    pub(super) fn update_for(&self, to: LogPosition, events: &[RecordedEvent]) -> ProjectionUpdated {
        self.update(to, events)
    }

    fn update(&self, to: LogPosition, events: &[RecordedEvent]) -> ProjectionUpdated {
        let streams: std::collections::BTreeMap<uuid::Uuid, Option<uuid::Uuid>> =
            events.iter().map(|e| (e.stream_id, e.event.owner())).collect();
        let event_types: BTreeSet<&str> = events.iter().map(|e| e.event.event_type()).collect();
        ProjectionUpdated {
            projection: self.name().to_owned(),
            token: to,
            stream_ids: streams.keys().copied().collect(),
            owners: streams.values().copied().collect(),
            event_types: event_types.into_iter().map(str::to_owned).collect(),
            complete: true,
            rebuild_percent: None,
        }
    }

    /// Records a poison event and applies the policy, in one transaction.
    async fn dead_letter(&self, from: LogPosition, bad: Undecodable) -> Result<StepOutcome, DbErr> {
        tracing::error!(projection = self.name(), position = bad.position, error = %bad.error, "poison event dead-lettered");
        metrics::counter!(crate::metrics::DEAD_LETTERS, "projection" => self.name()).increment(1);
        let txn = super::stall::begin_observed(&self.read_db, self.notices.progress(), &[self.name()]).await?;
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
                .col_expr(projection_checkpoint::Column::Status, Status::Stopped.as_str().into())
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
    pub async fn dead_letter_panic(&self, reason: &str) -> Result<(), DbErr> {
        use futures_util::FutureExt;
        let row = self.checkpoint().await?;
        if row.status == Status::Stopped.as_str() {
            return Ok(());
        }
        let mut from = LogPosition::new(row.last_tx_id, row.last_position);
        let batch =
            reader::read_after_with(&self.events_db.conn, from, self.batch_size, self.upcaster.as_ref()).await?;
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
                Ok(Ok(Err(ApplyError::Database(e)))) | Ok(Err(e)) => return Err(e),
                Ok(Ok(Err(ApplyError::Unavailable(message)))) => return Err(DbErr::Custom(message)),
                Err(_) => format!("the projector panicked applying this event: {reason}"),
            };
            let bad = Undecodable::poison(&e, why);
            return self.dead_letter(from, bad).await.map(|_| ());
        }
        Ok(())
    }

    /// Marks the projection `outdated` (if nobody moved it meanwhile): this
    /// release cannot read the next event, a newer one must apply it.
    async fn stand_down(&self, from: LogPosition, bad: &Undecodable) -> Result<StepOutcome, DbErr> {
        tracing::warn!(projection = self.name(), position = bad.position, error = %bad.error, "an event from a newer release: standing down for a newer instance");
        let txn = super::stall::begin_observed(&self.read_db, self.notices.progress(), &[self.name()]).await?;
        if !self.fence(&txn, from).await? {
            return Ok(StepOutcome::Fenced);
        }
        let message = format!(
            "event at position {}: {}; this instance stands down until a newer one applies it",
            bad.position, bad.error
        );
        projection_checkpoint::Entity::update_many()
            .col_expr(projection_checkpoint::Column::Status, Status::Outdated.as_str().into())
            .col_expr(projection_checkpoint::Column::LastError, Some(message).into())
            .col_expr(projection_checkpoint::Column::UpdatedAt, chrono::Utc::now().into())
            .filter(projection_checkpoint::Column::Name.eq(self.name()))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        self.notices.status_changed();
        Ok(StepOutcome::Outdated { at: LogPosition::new(bad.tx_id, bad.position) })
    }

    /// The durable checkpoint (for a runner that stood down, to see whether
    /// a newer instance has moved past the event).
    async fn durable_checkpoint(&self) -> Result<LogPosition, DbErr> {
        let row = self.checkpoint().await?;
        Ok(LogPosition::new(row.last_tx_id, row.last_position))
    }

    /// Records this process as the projection's runner and bumps the fence.
    /// The new fence value is this runner's token: every batch it claims
    /// must find it unchanged, so a runner that lost its lock without
    /// noticing applies nothing once another has taken over.
    async fn take_over(&self) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait;
        let sql = "UPDATE projection_checkpoint SET fence = fence + 1, owner = $1, updated_at = $2 WHERE name = $3 RETURNING fence";
        let values = vec![self.notices.instance_id().into(), chrono::Utc::now().into(), self.name().into()];
        let row = self.read_db.conn.query_one_raw(super::sql::statement(self.read_db.backend(), sql, values)).await?;
        let fence: i64 =
            row.ok_or_else(|| DbErr::RecordNotFound(format!("checkpoint of {}", self.name())))?.try_get("", "fence")?;
        *self.fence_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(fence);
        tracing::info!(projection = self.name(), instance = self.notices.instance_id(), fence, "running projection");
        Ok(())
    }

    /// Records a failed attempt, so `projections`, `/readyz` and `/metrics`
    /// tell the truth while the runner retries (best effort: the database
    /// may be the thing that is failing).
    async fn report_failure(&self, attempts: i64, error: &DbErr) {
        metrics::gauge!(crate::metrics::PROJECTION_ATTEMPTS, "projection" => self.name()).set(attempts as f64);
        let message: String =
            format!("retrying (attempt {attempts}): {}", super::stall::describe(error)).chars().take(500).collect();
        let update = projection_checkpoint::Entity::update_many()
            .col_expr(
                projection_checkpoint::Column::Status,
                sea_orm::sea_query::Expr::case(
                    projection_checkpoint::Column::Status.eq(Status::Running.as_str()),
                    sea_orm::sea_query::Expr::val(Status::Retrying.as_str()),
                )
                .finally(sea_orm::sea_query::Expr::col(projection_checkpoint::Column::Status))
                .into(),
            )
            .col_expr(projection_checkpoint::Column::LastError, Some(message).into())
            .col_expr(projection_checkpoint::Column::Attempts, attempts.into())
            .col_expr(projection_checkpoint::Column::UpdatedAt, chrono::Utc::now().into())
            .filter(projection_checkpoint::Column::Name.eq(self.name()));
        let failed = match tokio::time::timeout(STATUS_WRITE, update.exec(&self.read_db.conn)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", STATUS_WRITE.as_millis()),
        };
        metrics::counter!(crate::metrics::STATUS_WRITE_FAILURES, "projection" => self.name()).increment(1);
        tracing::debug!(projection = self.name(), error = %failed, "could not record the retrying status");
    }

    /// Clears the retrying state after a successful step (within
    /// [`STATUS_WRITE`]: the caller counts and logs a failure, and tries
    /// again after its next successful step).
    async fn report_recovered(&self) -> Result<(), DbErr> {
        metrics::gauge!(crate::metrics::PROJECTION_ATTEMPTS, "projection" => self.name()).set(0.0);
        let clear = projection_checkpoint::Entity::update_many()
            .col_expr(projection_checkpoint::Column::Status, Status::Running.as_str().into())
            .col_expr(projection_checkpoint::Column::LastError, Option::<String>::None.into())
            .col_expr(projection_checkpoint::Column::Attempts, 0i64.into())
            .filter(projection_checkpoint::Column::Name.eq(self.name()))
            .filter(projection_checkpoint::Column::Status.eq(Status::Retrying.as_str()));
        match tokio::time::timeout(STATUS_WRITE, clear.exec(&self.read_db.conn)).await {
            Ok(done) => done.map(|_| ()),
            Err(_) => Err(DbErr::Custom(format!("no answer within {} ms", STATUS_WRITE.as_millis()))),
        }
    }

    /// Runs until `shutdown`: step while there is work, then sleep until a
    /// wake-up or the poll interval. Database errors back off and retry
    /// (and show as `retrying`). With `locks` (PostgreSQL) only the holder
    /// of the projection's advisory lock steps; the others stand by and take
    /// over when it goes away or hands over. On shutdown the runner finishes
    /// its batch and releases its lock at once.
    pub async fn run(
        self,
        appended: watch::Receiver<LogPosition>,
        poll_interval: Duration,
        shutdown: CancellationToken,
        locks: Option<Arc<super::leader::Locks>>,
    ) {
        super::group::run(vec![self], appended, poll_interval, shutdown, locks, false).await;
    }
}

/// The longest a runner waits to record its retrying or recovered status.
const STATUS_WRITE: Duration = Duration::from_secs(1);

/// The longest pause between two tries of a projection set aside by a lock.
const LOCK_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a runner asks of the loop before a step.
pub(crate) enum Prepared {
    /// It leads (or needs no leadership) and may step.
    Ready,
    /// It waits: a standby (for a release notice, or `standby_retry`), a
    /// runner that stood down for a newer release, a failed take-over.
    Wait { retry_in: Duration, on_release: bool },
}

/// One projection's runner state between steps: leadership, back-off,
/// retry accounting. The loop ([`super::group::run`]) drives one or many.
pub(crate) struct Runner {
    pub(crate) projector: Projector,
    lease: super::leader::Lease,
    /// Pauses after a failed step or take-over, by what failed: an outage
    /// (first retry at once, at most 500 ms apart, so a link that comes
    /// back is used within that), a lock (at most 1 s), anything else (5 s).
    outage: Backoff,
    locked: Backoff,
    failing: Backoff,
    behind_retry: Duration,
    attempts: i64,
    /// Where this runner stood down for a newer release: it stays a
    /// standby until someone has applied past that event.
    outdated_at: Option<LogPosition>,
    /// Since when an open event writer below the horizon holds this projection back.
    held_since: Option<std::time::Instant>,
    /// A batch was fenced out while this runner kept its lock (a rebuild's
    /// switch bumps the fence): take the projection over again.
    retake: bool,
    fenced_in_a_row: u32,
    /// A lock wait set it aside from the group (PostgreSQL): it steps alone,
    /// in its own transaction, until a step succeeds.
    pub(crate) solo: bool,
    /// When the horizon was last looked at for a cause (at most once a second).
    horizon_looked_at: Option<std::time::Instant>,
    /// When the believed checkpoint was last held against the durable one.
    verified_at: Option<std::time::Instant>,
}

impl Runner {
    pub(crate) fn new(projector: Projector) -> Self {
        Self {
            projector,
            lease: super::leader::Lease::default(),
            outage: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)).immediate_first(),
            locked: Backoff::new(Duration::from_millis(100), LOCK_BACKOFF_MAX),
            failing: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            behind_retry: Duration::from_millis(2),
            attempts: 0,
            outdated_at: None,
            held_since: None,
            retake: false,
            fenced_in_a_row: 0,
            solo: false,
            horizon_looked_at: None,
            verified_at: None,
        }
    }

    /// Leadership and stand-down before a step. The caller marks every
    /// release notice so far as seen *before* it prepares its runners: a
    /// release that lands after a failed try then still wakes its wait
    /// (marking after the try could swallow it, e.g. when another
    /// projection's release woke the runner and its own came a moment later).
    pub(crate) async fn prepare(
        &mut self,
        locks: Option<&Arc<super::leader::Locks>>,
        poll_interval: Duration,
    ) -> Prepared {
        let p = &self.projector;
        let progress = p.notices.progress();
        if let Some(at) = self.outdated_at {
            match p.durable_checkpoint().await {
                Ok(checkpoint) if checkpoint >= at => self.outdated_at = None,
                _ => {
                    progress.set_leading(p.name(), false);
                    return Prepared::Wait { retry_in: poll_interval, on_release: false };
                }
            }
        }
        let Some(locks) = locks else {
            progress.set_leading(p.name(), true);
            return Prepared::Ready;
        };
        let take_over = match locks.hold(p.name(), &mut self.lease).await {
            super::leader::Held::Acquired => true,
            super::leader::Held::Kept => self.retake,
            super::leader::Held::No => {
                self.outage.reset();
                progress.set_leading(p.name(), false);
                return Prepared::Wait { retry_in: p.standby_retry, on_release: true };
            }
            super::leader::Held::Unreachable => {
                progress.blocked(
                    p.name(),
                    crate::notice::progress::Wait::new(
                        crate::catalog::WaitKind::DatabaseOutage,
                        "the database cannot be reached for the leadership lock",
                    ),
                );
                return Prepared::Wait { retry_in: self.outage.next_pause(), on_release: true };
            }
        };
        if take_over {
            // Run only once the take-over is recorded: a runner that could
            // not bump the fence releases and retries.
            if let Err(e) = p.take_over().await {
                tracing::warn!(projection = p.name(), error = %e, "could not record the take-over; releasing and retrying");
                locks.release(p.name(), &mut self.lease).await;
                let retry_in = match crate::db::classify(&e) {
                    crate::db::DbFailure::Unavailable => self.outage.next_pause(),
                    _ => self.failing.next_pause(),
                };
                return Prepared::Wait { retry_in, on_release: false };
            }
            self.retake = false;
            *p.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        progress.set_leading(p.name(), true);
        Prepared::Ready
    }

    /// Accounts for a step's outcome; returns how long to wait before the
    /// next one (`None`: step again at once).
    pub(crate) async fn settle(
        &mut self,
        outcome: Result<StepOutcome, DbErr>,
        head: LogPosition,
        poll_interval: Duration,
        locks: Option<&Arc<super::leader::Locks>>,
    ) -> Option<Duration> {
        let p = &self.projector;
        let progress = p.notices.progress();
        if outcome.is_ok() && self.attempts > 0 {
            if let Err(e) = p.report_recovered().await {
                // Tried again after the next successful step.
                metrics::counter!(crate::metrics::STATUS_WRITE_FAILURES, "projection" => p.name()).increment(1);
                tracing::warn!(projection = p.name(), error = %e, "could not clear the retrying status");
            } else {
                self.attempts = 0;
            }
        }
        let held_back = matches!(outcome, Ok(StepOutcome::Idle)) && p.known_checkpoint().is_some_and(|c| head > c);
        match (held_back, self.held_since) {
            (true, None) => self.held_since = Some(std::time::Instant::now()),
            (false, Some(since)) => {
                metrics::histogram!(crate::metrics::HORIZON_WAIT, "projection" => p.name())
                    .record(since.elapsed().as_secs_f64());
                self.held_since = None;
            }
            _ => {}
        }
        // What the step says of the projection's progress.
        match &outcome {
            Ok(StepOutcome::Applied { .. } | StepOutcome::DeadLettered { .. } | StepOutcome::Solo) => {
                progress.healthy(p.name());
                self.solo = false;
            }
            Ok(StepOutcome::Idle) if !held_back => {
                // Now and then, hold what this runner believes against the
                // durable checkpoint: a commit that did not persist (a
                // transaction left open on a pooled connection made every
                // later one a savepoint) would otherwise look healthy forever.
                let verify = self.verified_at.is_none_or(|at| at.elapsed() >= progress.stall_after());
                let mut diverged = None;
                if verify {
                    self.verified_at = Some(std::time::Instant::now());
                    if let (Some(believed), Ok(durable)) = (p.known_checkpoint(), p.durable_checkpoint().await) {
                        if durable < believed {
                            diverged = Some((believed, durable));
                        }
                    }
                }
                match diverged {
                    None => progress.healthy(p.name()),
                    Some((believed, durable)) => {
                        tracing::error!(projection = p.name(), %believed, %durable, "this runner's checkpoint is ahead of the durable one: its commits did not persist; reading it again");
                        p.forget_checkpoint();
                        progress.blocked(
                            p.name(),
                            crate::notice::progress::Wait::new(
                                crate::catalog::WaitKind::Unknown,
                                format!("its runner believed it was at {believed}, but the durable checkpoint is {durable}: its commits did not persist"),
                            ),
                        );
                    }
                }
            }
            Ok(StepOutcome::Idle) => {
                metrics::counter!(crate::metrics::PROJECTOR_HELD_BACK, "projection" => p.name()).increment(1);
                tracing::debug!(projection = p.name(), %head, "nothing readable yet below the horizon");
                let look = self.horizon_looked_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
                if look {
                    self.horizon_looked_at = Some(std::time::Instant::now());
                    progress.blocked(p.name(), super::stall::horizon(&p.events_db).await);
                    metrics::counter!(crate::metrics::PROJECTOR_WAITS, "projection" => p.name(), "on" => crate::catalog::WaitKind::Horizon.as_str()).increment(1);
                }
            }
            Ok(StepOutcome::Fenced) => {
                metrics::counter!(crate::metrics::PROJECTOR_FENCED, "projection" => p.name()).increment(1);
                tracing::debug!(projection = p.name(), "fenced out: another runner moved the checkpoint or the fence");
            }
            Ok(StepOutcome::Stopped | StepOutcome::Outdated { .. }) => {}
            Err(e) => {
                let tables = [p.name(), "projection_checkpoint", "event"];
                let cause = super::stall::cause_of(e, &p.read_db, &tables).await;
                metrics::counter!(crate::metrics::PROJECTOR_WAITS, "projection" => p.name(), "on" => cause.kind.as_str()).increment(1);
                if cause.kind == crate::catalog::WaitKind::Lock {
                    metrics::counter!(crate::metrics::PROJECTOR_SET_ASIDE, "projection" => p.name()).increment(1);
                    tracing::warn!(projection = p.name(), cause = %cause.describe(), "set aside: a lock wait ran past lock_timeout; the other projections go on");
                    self.solo = true;
                }
                progress.blocked(p.name(), cause);
            }
        }
        self.fenced_in_a_row = if matches!(outcome, Ok(StepOutcome::Fenced)) { self.fenced_in_a_row + 1 } else { 0 };
        match outcome {
            // Someone else moved the checkpoint or the fence: read it again
            // (and, holding the lock, take over again). Never a hot loop:
            // after a few in a row, back off.
            Ok(StepOutcome::Fenced) => {
                *p.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.retake = true;
                if self.fenced_in_a_row <= 3 {
                    return None;
                }
                Some(self.failing.next_pause())
            }
            Ok(StepOutcome::Applied { .. } | StepOutcome::DeadLettered { .. } | StepOutcome::Solo) => {
                self.outage.reset();
                self.locked.reset();
                self.failing.reset();
                self.behind_retry = Duration::from_millis(2);
                None
            }
            // Nothing readable, yet this process appended past the
            // checkpoint: an open transaction holds the horizon back. Look
            // again soon (backing off) rather than at the next poll.
            Ok(StepOutcome::Idle) if held_back => {
                let pause = self.behind_retry;
                self.behind_retry = (self.behind_retry * 2).min(poll_interval);
                Some(pause)
            }
            Ok(StepOutcome::Idle) => Some(poll_interval),
            Ok(StepOutcome::Stopped) => Some(poll_interval * 4),
            Ok(StepOutcome::Outdated { at }) => {
                progress.set_leading(p.name(), false);
                self.outdated_at = Some(at);
                *p.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if let Some(locks) = locks {
                    locks.release(p.name(), &mut self.lease).await;
                }
                None
            }
            Err(e) => {
                self.attempts += 1;
                let pause = match crate::db::classify(&e) {
                    crate::db::DbFailure::Unavailable => self.outage.next_pause(),
                    crate::db::DbFailure::LockTimeout => self.locked.next_pause(),
                    _ => self.failing.next_pause(),
                };
                tracing::warn!(projection = p.name(), error = %super::stall::describe(&e), attempts = self.attempts, retry_in_ms = pause.as_millis() as u64, "projection step failed");
                p.report_failure(self.attempts, &e).await;
                Some(pause)
            }
        }
    }

    /// Hands the projection back at shutdown.
    pub(crate) async fn release(&mut self, locks: Option<&Arc<super::leader::Locks>>) {
        self.projector.notices.progress().forget(self.projector.name());
        if let Some(locks) = locks {
            locks.release(self.projector.name(), &mut self.lease).await;
        }
    }
}

/// One projection's share of a grouped batch: move its checkpoint from
/// `from` to `to` (`read` events) and announce `update`.
pub(super) struct Claim<'a> {
    pub projector: &'a Projector,
    pub from: LogPosition,
    pub to: LogPosition,
    pub read: usize,
    pub update: &'a ProjectionUpdated,
}

/// Moves every claimed checkpoint in `txn` (their rows are locked and
/// checked already). PostgreSQL: one statement for all, which also queues
/// each projection's NOTIFY; SQLite: one small statement each.
pub(super) async fn claim_all(txn: &DatabaseTransaction, claims: &[Claim<'_>]) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    let Some(first) = claims.first() else { return Ok(()) };
    if !first.projector.read_db.is_postgres() {
        for c in claims {
            if !c.projector.claim(txn, c.from, c.to, c.read, c.update).await? {
                return Err(DbErr::Custom(format!("{}: its locked checkpoint moved", c.projector.name())));
            }
        }
        return Ok(());
    }
    use sea_orm::sea_query::ArrayType;
    let to = first.to;
    let mut notices = Vec::with_capacity(claims.len());
    for c in claims {
        notices
            .push(sea_orm::Value::from(crate::notice::postgres::encoded(c.projector.notices.instance_id(), c.update)?));
    }
    let array = |ty: ArrayType, items: Vec<sea_orm::Value>| super::sql::array(ty, items);
    let values: Vec<sea_orm::Value> = vec![
        to.tx_id.into(),
        to.position.into(),
        chrono::Utc::now().into(),
        array(ArrayType::String, claims.iter().map(|c| c.projector.name().into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| (c.read as i64).into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.from.tx_id.into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.from.position.into()).collect()),
        array(ArrayType::String, notices),
        crate::notice::postgres::PROJECTION_CHANNEL.into(),
    ];
    let sql = "WITH claimed AS (\
         UPDATE projection_checkpoint AS c SET last_tx_id = $1, last_position = $2, \
           events_applied = c.events_applied + u.n, updated_at = $3, \
           status = CASE WHEN c.status = 'outdated' THEN 'running' ELSE c.status END, \
           last_error = CASE WHEN c.status = 'outdated' THEN NULL ELSE c.last_error END \
         FROM UNNEST($4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[]) AS u(name, n, from_tx, from_pos, notice) \
         WHERE c.name = u.name AND c.last_tx_id = u.from_tx AND c.last_position = u.from_pos AND c.status <> 'stopped' \
         RETURNING u.notice) \
       SELECT pg_notify($9, notice) FROM claimed";
    let rows = txn.query_all_raw(super::sql::statement(sea_orm::DbBackend::Postgres, sql, values)).await?;
    if rows.len() != claims.len() {
        return Err(DbErr::Custom(format!("{} of {} locked checkpoints could be moved", rows.len(), claims.len())));
    }
    Ok(())
}

/// Runs the projector `make` builds until `shutdown`, and outlives its
/// panics: a panic is logged with its message, counted
/// (`twofold_projector_panics_total`), the event the projector was at is
/// dead-lettered with the panic as its reason (so the projection's policy
/// applies, and `dead-letters retry|skip` can act on it), and a new
/// projector starts after a back-off.
pub async fn supervise(
    make: impl Fn() -> Projector,
    appended: watch::Receiver<LogPosition>,
    poll_interval: Duration,
    shutdown: CancellationToken,
    locks: Option<Arc<super::leader::Locks>>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let projector = make();
        let name = projector.name();
        let running = tokio::spawn(projector.run(appended.clone(), poll_interval, shutdown.clone(), locks.clone()));
        let panic = match running.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return,
        };
        let reason = panic_reason(panic.as_ref());
        tracing::error!(projection = name, reason = %reason, "the projector panicked; dead-lettering the event it was at and restarting it");
        metrics::counter!(crate::metrics::PROJECTOR_PANICS, "projection" => name).increment(1);
        if let Err(e) = make().dead_letter_panic(&reason).await {
            tracing::warn!(projection = name, error = %e, "could not record the panic");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// A panic's message, for the log and the dead letter.
pub(crate) fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// [`ApplyError`] as the step's error: a poison event here (a probe's) is
/// reported like an unavailable resource.
fn into_db_err(error: ApplyError) -> DbErr {
    match error {
        ApplyError::Database(e) => e,
        other => DbErr::Custom(other.to_string()),
    }
}

/// The inline projections, applied by commands inside their transaction.
pub struct InlineApplier {
    projections: Vec<Arc<dyn Projection>>,
}

impl InlineApplier {
    /// `None` when no projection is inline.
    pub fn new(settings: &RuntimeSettings) -> Option<Self> {
        let projections: Vec<_> =
            super::all().into_iter().filter(|p| settings.mode_of(p.name()) == Mode::Inline).collect();
        (!projections.is_empty()).then_some(Self { projections })
    }
}

#[async_trait::async_trait]
impl InlineProjections for InlineApplier {
    async fn apply_inline(&self, txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), String> {
        for projection in &self.projections {
            projection
                .apply(txn, events, ApplyContext { position_guard: false })
                .await
                .map_err(|e| format!("inline projection {} failed: {e}", projection.name()))?;
        }
        Ok(())
    }
}
