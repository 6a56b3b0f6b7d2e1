//! A [`Projector`]: one projection bound to its databases, and what it
//! keeps of its checkpoint row (registration, the checkpoint it last
//! committed, the fence it took the projection over with).
//!
//! The step itself is spread over the files below, each adding methods to
//! [`Projector`] and using only the ones before it, never the other way:
//!
//! - [`commit`]: moving a checkpoint and committing a batch, alone or in a
//!   group (the one place the claim SQL and the after-commit metrics live);
//! - [`poison`]: what happens to an event that cannot be applied (dead
//!   letter, isolation by bisection to one event, standing down for a newer
//!   release, the event a panic happened at);
//! - [`step`]: one step, which reads the log and chooses between the two.
//!
//! This file is the bottom of that stack: it uses none of them, so the
//! fields stay private to the projector's files and the rest of the
//! runtime goes through the named methods here and in [`commit`].
pub(super) mod commit;
pub(super) mod poison;
mod step;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, DbErr, EntityTrait};
use tokio::sync::watch;

use entity::read::projection_checkpoint::{self, StoredMode, StoredStatus};

use super::apply::Projection;
use super::reader::{ReadEvent, Upcaster};
use super::runtime::{Mode, PoisonPolicy, RuntimeSettings, StepError};
use super::segment::Segment;
use crate::db::{Db, WriteTxn};
use crate::domain::event::RecordedEvent;
use crate::notice::progress::{Progress, Wait};
use crate::notice::Notices;
use crate::token::LogPosition;

/// The span of a batch applied to `names` (traces only): one per batch,
/// linked to the command of each of its events (at most
/// [`crate::telemetry::MAX_LINKS`]), as the messaging conventions link a
/// consumer to its producers.
pub(crate) fn batch_span(names: &[&str], events: &[crate::domain::event::RecordedEvent]) -> tracing::Span {
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "project",
        otel.name = %format_args!("project {}", names.join(", ")),
        otel.kind = "consumer",
        twofold.projections = %names.join(","),
        twofold.events = events.len(),
    );
    crate::telemetry::link(&span, events.iter().filter_map(|e| e.meta.traceparent.as_deref()));
    span
}

/// How a mode is stored in the checkpoint row.
pub(crate) fn stored_mode(mode: Mode) -> StoredMode {
    match mode {
        Mode::Async => StoredMode::Async,
        Mode::Inline => StoredMode::Inline,
        Mode::Lazy => StoredMode::Lazy,
    }
}

/// Runs one projection.
pub struct Projector {
    pub projection: Arc<dyn Projection>,
    /// The part of the view this runner applies (the whole view unless split).
    pub segment: Segment,
    /// Its checkpoint row and leadership lock: the view's name, or its
    /// segment's ([`crate::catalog::segment_name`]).
    name: &'static str,
    pub mode: Mode,
    pub policy: PoisonPolicy,
    events_db: Db,
    read_db: Db,
    notices: Notices,
    batch_size: u64,
    standby_retry: Duration,
    /// Under load, the least time from one batch's start to the next's.
    pub(in crate::projection) gather: Duration,
    /// The checkpoint this runner last committed (saves a read per batch;
    /// the fence in every batch catches a checkpoint moved by anyone else).
    cached: std::sync::Mutex<Option<LogPosition>>,
    /// Decodes newer event versions first (tests play a newer release with it).
    upcaster: Option<Upcaster>,
    /// The fence this runner took the projection over with (leadership only).
    fence_token: std::sync::Mutex<Option<i64>>,
    /// The batch read after a checkpoint while the batch before it was
    /// committed ([`Projection::reads_ahead`]), kept with that checkpoint:
    /// used only by a step from exactly there.
    read_ahead: std::sync::Mutex<Option<(LogPosition, Vec<ReadEvent>)>>,
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
            segment: Segment::WHOLE,
            name,
            projection,
            events_db,
            read_db,
            notices,
            batch_size: settings.batch_size.max(1),
            standby_retry: settings.standby_retry,
            gather: settings.gather,
            cached: std::sync::Mutex::new(None),
            upcaster: None,
            fence_token: std::sync::Mutex::new(None),
            read_ahead: std::sync::Mutex::new(None),
        }
    }

    /// Reads the log through `upcaster` first (a newer release's decoding).
    pub fn with_upcaster(mut self, upcaster: Upcaster) -> Self {
        self.upcaster = Some(upcaster);
        self
    }

    /// This runner's part of a split view (see [`super::segment`]).
    pub fn in_segment(mut self, segment: Segment) -> Self {
        self.segment = segment;
        self.name = intern(crate::catalog::segment_name(self.projection.name(), segment.index, segment.count));
        self
    }

    /// The name of its checkpoint row and lock: the view's, or its segment's.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The view it applies (its table).
    pub fn view(&self) -> &'static str {
        self.projection.name()
    }

    /// The events of `events` this runner applies (all, unless split).
    pub(super) fn own(&self, events: &[RecordedEvent]) -> Vec<RecordedEvent> {
        events.iter().filter(|e| self.segment.holds(e)).cloned().collect()
    }

    /// Creates the checkpoint row if missing and records the configured mode.
    /// A segment's first row starts where its view's own row stands (see
    /// `super::segment`), so the view's row is registered first.
    pub async fn register(&self) -> Result<projection_checkpoint::Model, DbErr> {
        let base = if self.segment.is_split()
            && projection_checkpoint::Entity::find_by_id(self.name()).one(&self.read_db.conn).await?.is_none()
        {
            let row = self.register_row(self.view(), LogPosition::START).await?;
            LogPosition::new(row.last_tx_id, row.last_position)
        } else {
            LogPosition::START
        };
        self.register_row(self.name(), base).await
    }

    /// The checkpoint row `name` (this runner's, or its view's), created at
    /// `base` if missing, with this runner's mode recorded.
    async fn register_row(&self, name: &'static str, base: LogPosition) -> Result<projection_checkpoint::Model, DbErr> {
        let conn = &self.read_db.conn;
        let existing = projection_checkpoint::Entity::find_by_id(name).one(conn).await?;
        let row = match existing {
            Some(row) if row.mode == stored_mode(self.mode) => row,
            Some(row) => {
                let mut active: projection_checkpoint::ActiveModel = row.into();
                active.mode = Set(stored_mode(self.mode));
                active.updated_at = Set(chrono::Utc::now());
                active.update(conn).await?
            }
            None => {
                let row = projection_checkpoint::ActiveModel {
                    name: Set(name.to_owned()),
                    mode: Set(stored_mode(self.mode)),
                    status: Set(StoredStatus::Running),
                    last_tx_id: Set(base.tx_id),
                    last_position: Set(base.position),
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
                    rebuild_reported_at: Set(None),
                };
                // Two instances may register at once; the loser just reads the row.
                projection_checkpoint::Entity::insert(row)
                    .on_conflict_do_nothing()
                    .exec_without_returning(conn)
                    .await?;
                projection_checkpoint::Entity::find_by_id(name)
                    .one(conn)
                    .await?
                    .ok_or_else(|| DbErr::RecordNotFound(format!("checkpoint of {name}")))?
            }
        };
        self.notices.advance(name, LogPosition::new(row.last_tx_id, row.last_position));
        Ok(row)
    }

    /// The checkpoint row, registered first if missing.
    async fn checkpoint(&self) -> Result<projection_checkpoint::Model, DbErr> {
        match projection_checkpoint::Entity::find_by_id(self.name()).one(&self.read_db.conn).await? {
            Some(row) => Ok(row),
            None => self.register().await,
        }
    }

    /// The checkpoint this runner knows, if any.
    pub fn known_checkpoint(&self) -> Option<LogPosition> {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_checkpoint(&self, at: LogPosition) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Reads the checkpoint again before the next step (it moved, or this
    /// runner's view of it cannot be trusted).
    pub(super) fn forget_checkpoint(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.read_ahead.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Keeps `batch`, read after `at`, for the next step from `at`.
    fn keep_read_ahead(&self, at: LogPosition, batch: Vec<ReadEvent>) {
        *self.read_ahead.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, batch));
    }

    /// The batch read ahead after `from`, if one was (anything else kept is dropped).
    fn take_read_ahead(&self, from: LogPosition) -> Option<Vec<ReadEvent>> {
        let kept = self.read_ahead.lock().unwrap_or_else(|p| p.into_inner()).take();
        kept.and_then(|(at, batch)| (at == from).then_some(batch))
    }

    /// Up to a batch of the log after `from`, decoded (through the
    /// upcaster, if any).
    pub(super) async fn read_after(&self, from: LogPosition) -> Result<Vec<ReadEvent>, DbErr> {
        super::reader::read_after_with(&self.events_db.conn, from, self.batch_size, self.upcaster.as_ref()).await
    }

    /// Begins a read-database transaction for the projections `names`
    /// (what it waits on shows in their progress).
    pub(super) async fn begin(&self, names: &[&str]) -> Result<WriteTxn, DbErr> {
        super::stall::begin_observed(&self.read_db, self.notices.progress(), names).await
    }

    fn fence_token(&self) -> Option<i64> {
        *self.fence_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The durable checkpoint (for a runner that stood down, to see whether
    /// a newer instance has moved past the event).
    pub(super) async fn durable_checkpoint(&self) -> Result<LogPosition, DbErr> {
        let row = self.checkpoint().await?;
        Ok(LogPosition::new(row.last_tx_id, row.last_position))
    }

    /// Records this process as the projection's runner and bumps the fence.
    /// The new fence value is this runner's token: every batch it claims
    /// must find it unchanged, so a runner that lost its lock without
    /// noticing applies nothing once another has taken over.
    pub(super) async fn take_over(&self) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait;
        // A segment's row may be gone (a rebuild removes them).
        if self.segment.is_split() {
            self.checkpoint().await?;
        }
        let sql = "UPDATE projection_checkpoint SET fence = fence + 1, owner = $1, updated_at = $2 WHERE name = $3 RETURNING fence";
        let values = vec![self.notices.instance_id().into(), chrono::Utc::now().into(), self.name().into()];
        let row = self.read_db.conn.query_one_raw(super::sql::statement(self.read_db.backend(), sql, values)).await?;
        let fence: i64 =
            row.ok_or_else(|| DbErr::RecordNotFound(format!("checkpoint of {}", self.name())))?.try_get("", "fence")?;
        *self.fence_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(fence);
        tracing::info!(projection = self.name(), instance = self.notices.instance_id(), fence, "running projection");
        Ok(())
    }

    /// The database the view's rows and checkpoint live in.
    pub(super) fn views(&self) -> &Db {
        &self.read_db
    }

    /// What this node knows of its projections' progress (leadership,
    /// health, what blocks them).
    pub(super) fn progress(&self) -> &Progress {
        self.notices.progress()
    }

    /// Release notices of leadership, which wake standbys.
    pub(super) fn watch_released(&self) -> watch::Receiver<u64> {
        self.notices.watch_released()
    }

    /// How often a standby tries to take over without a release notice.
    pub(super) fn standby_retry(&self) -> Duration {
        self.standby_retry
    }

    /// Whether `events` read is a full batch (the log may hold more).
    pub(super) fn fills_a_batch(&self, events: usize) -> bool {
        events as u64 >= self.batch_size
    }

    /// Why nothing below the horizon is readable yet.
    pub(super) async fn horizon_wait(&self) -> Wait {
        super::stall::horizon(&self.events_db).await
    }

    /// What a failed step waits on (a lock names the sessions holding it).
    pub(super) async fn cause_of(&self, error: &StepError) -> Wait {
        let tables = [self.view(), "projection_checkpoint", "event"];
        super::stall::cause_of(error, &self.read_db, &tables).await
    }
}

/// A segment's name for the life of the process (a handful per view, made
/// once each: a restarted runner finds its name again).
fn intern(name: String) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.push(leaked);
    leaked
}
