//! Operations on the request path: what operators, health checks and
//! `/metrics` need of the running service. It reads projection state that
//! the query side must not (the log's head, for lag; the appender locks,
//! for the horizon) and starts the admin operations (rebuilds, dead-letter
//! actions). The GraphQL admin fields and the HTTP health endpoints call it;
//! the `twofold` operator commands (`crate::cli`) call the same
//! projection functions directly.
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{DbErr, EntityTrait, QueryOrder};

use entity::read::dead_letter;
use entity::read::projection_checkpoint::{self, StoredMode, StoredStatus};

use crate::catalog::{Mode, Status, View, EXPORTER};
use crate::db::Db;
use crate::notice::progress::{DurableFacts, Failing, Wait};
use crate::notice::Notices;
use crate::projection::dead_letters;

pub mod replicas;
use crate::projection::rebuild::{self, RebuildOptions};
use crate::token::LogPosition;

pub use crate::projection::dead_letters::DeadLetterError;

/// Why a rebuild could not start: the caller named something that is not a
/// projection (or one that cannot be rebuilt), or one already rebuilding
/// here, which is a state of the service, not a malformed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRebuildError {
    #[error("unknown projection '{projection}'; known: {known}")]
    Unknown { projection: String, known: String },
    #[error("{0}")]
    NotRebuildable(String),
    #[error("{0} is already being rebuilt")]
    AlreadyRebuilding(String),
}

/// An event a projection failed to apply deterministically (a
/// `dead_letter` row). The row itself, behind accessors, so `graphql` and
/// `http` never hold an `entity` type and nothing copies it field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter(dead_letter::Model);

impl DeadLetter {
    pub fn id(&self) -> i64 {
        self.0.id
    }
    pub fn projection(&self) -> &str {
        &self.0.projection
    }
    /// The event's position in the log.
    pub fn event(&self) -> LogPosition {
        LogPosition::new(self.0.event_tx_id, self.0.event_position)
    }
    pub fn stream_id(&self) -> uuid::Uuid {
        self.0.stream_id
    }
    pub fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// Why it could not be applied.
    pub fn error(&self) -> &str {
        &self.0.error
    }
    pub fn recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.recorded_at
    }
    /// What an operator did with it; `None` while open.
    pub fn resolution(&self) -> Option<crate::catalog::Resolution> {
        self.0.resolution.map(dead_letters::resolved)
    }
    pub fn resolved_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.resolved_at
    }
}

/// What a dead-letter action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub dead_letter: DeadLetter,
    /// The projection's checkpoint afterwards.
    pub checkpoint: LogPosition,
}

impl From<dead_letters::Resolved> for Resolved {
    fn from(r: dead_letters::Resolved) -> Self {
        Self { dead_letter: DeadLetter(r.dead_letter), checkpoint: r.checkpoint }
    }
}

/// A projection's checkpoint row, how far behind the log it is, and its
/// status as derived from those facts now (see `crate::notice::progress`).
/// The row is held as read, behind accessors (no copy of its fields).
#[derive(Debug, Clone)]
pub struct ProjectionState {
    row: projection_checkpoint::Model,
    /// Committed events not applied yet.
    pub lag: i64,
    /// How long it has been behind without progress (zero at the head).
    pub behind_for: Duration,
    /// While stalled: what it waits on.
    pub waiting_on: Option<Wait>,
    /// While its runner's steps fail: how often in a row, and why.
    pub failing: Option<Failing>,
    /// Whether a rebuild stands behind a stored `rebuilding` (one that
    /// stopped reporting died with its process).
    pub rebuild_alive: bool,
}

impl ProjectionState {
    /// The status, from the facts as they are now. Only what an operator
    /// (or a newer release) must end is stored: `stopped`, `outdated`, and
    /// `rebuilding` while its rebuild reports. Everything else is derived
    /// whenever asked, so no status outlives its cause: `stalled` while
    /// behind with no progress for the stall bound, `retrying` while the
    /// runner's last steps failed, else `running`.
    pub fn status(&self) -> Status {
        match self.row.status {
            StoredStatus::Stopped => Status::Stopped,
            StoredStatus::Outdated => Status::Outdated,
            StoredStatus::Rebuilding if self.rebuild_alive => Status::Rebuilding,
            // Running, a `retrying` stored by an older release, a dead
            // rebuild: what the runner's facts say.
            StoredStatus::Running | StoredStatus::LegacyRetrying | StoredStatus::Rebuilding => {
                if self.waiting_on.is_some() {
                    Status::Stalled
                } else if self.failing.is_some() {
                    Status::Retrying
                } else {
                    Status::Running
                }
            }
        }
    }

    /// `lastError`, for the status it explains: what a stalled projection
    /// waits on, why a retrying one failed, the stored reason of a stopped
    /// or outdated one; none while it runs.
    pub fn last_error(&self) -> Option<String> {
        match self.status() {
            Status::Stalled => self.waiting_on.as_ref().map(Wait::describe),
            Status::Retrying => self.failing.as_ref().map(Failing::describe),
            Status::Running => None,
            Status::Stopped | Status::Outdated | Status::Rebuilding => self.row.last_error.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    pub fn mode(&self) -> Mode {
        match self.row.mode {
            StoredMode::Async => Mode::Async,
            StoredMode::Inline => Mode::Inline,
            StoredMode::Lazy => Mode::Lazy,
        }
    }

    /// Every write with a token at or before this one is visible in it.
    pub fn checkpoint(&self) -> LogPosition {
        LogPosition::new(self.row.last_tx_id, self.row.last_position)
    }

    pub fn events_applied(&self) -> i64 {
        self.row.events_applied
    }

    /// While `rebuilding`: how far the replay has come, in percent.
    pub fn rebuild_percent(&self) -> Option<f64> {
        (self.status() == Status::Rebuilding && self.row.rebuild_total > 0)
            .then(|| 100.0 * self.row.rebuild_done as f64 / self.row.rebuild_total as f64)
    }

    pub fn updated_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.row.updated_at
    }

    /// Consecutive failed steps while `retrying` (0 otherwise).
    pub fn attempts(&self) -> i64 {
        self.failing.as_ref().map_or(0, |f| f.attempts)
    }
}

/// What the readiness check found.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub write_database: bool,
    pub read_database: bool,
    /// `None` when the checkpoints could not be read.
    pub projections: Option<Vec<ProjectionState>>,
    pub horizon: Horizon,
}

/// Which horizon projectors read below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Horizon {
    /// PostgreSQL, waiting only for event writers (the oldest open for this long).
    Appenders {
        oldest_appender_seconds: f64,
    },
    /// PostgreSQL, the global horizon: a writer's xid is not visible to this role.
    Global,
    /// SQLite: writers are serialized.
    Serial,
    Unknown,
}

/// The operations service.
#[derive(Clone)]
pub struct Admin {
    /// Pools to check for readiness: commands and queries.
    write_db: Db,
    read_db: Db,
    /// The projectors' pools: the log, and the views and checkpoints.
    log_db: Db,
    views_db: Db,
    notices: Notices,
    running: Arc<Mutex<HashSet<String>>>,
    /// Statements issued for projection status (a document of aliases must not multiply them).
    statements: Arc<AtomicU64>,
}

/// Longest a readiness check waits for a database.
const READY_CHECK: Duration = Duration::from_millis(800);

impl Admin {
    pub fn new(write_db: Db, read_db: Db, log_db: Db, views_db: Db, notices: Notices) -> Self {
        Self { write_db, read_db, log_db, views_db, notices, running: Arc::default(), statements: Arc::default() }
    }

    /// Every projection's checkpoint, status and lag.
    pub async fn projections(&self) -> Result<Vec<ProjectionState>, DbErr> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let rows = projection_checkpoint::Entity::find()
            .order_by_asc(projection_checkpoint::Column::Name)
            .all(&self.views_db.conn)
            .await?;
        // A split view's segments read as the view (see `crate::notice::segments`).
        let rows = crate::notice::segments::fold(rows);
        let mut out = Vec::with_capacity(rows.len());
        let progress = self.notices.progress();
        let now = chrono::Utc::now();
        for row in rows {
            let checkpoint = LogPosition::new(row.last_tx_id, row.last_position);
            let lag = crate::projection::status::lag(&self.log_db, checkpoint).await?;
            let rebuild_alive = crate::projection::rebuild::reports_now(row.rebuild_reported_at, now);
            // What the runner says, for every status the facts decide (all
            // but a stopped or outdated projection and a live rebuild).
            // (A lazy view has no runner to judge: its reads fold, and its
            // lag is only how far its snapshot is behind.)
            let judged = row.mode != StoredMode::Lazy
                && match row.status {
                    StoredStatus::Stopped | StoredStatus::Outdated => false,
                    StoredStatus::Rebuilding => !rebuild_alive,
                    StoredStatus::Running | StoredStatus::LegacyRetrying => true,
                };
            let facts = DurableFacts {
                progressed_at: row.progressed_at,
                heartbeat_at: row.heartbeat_at,
                waiting_on: row.waiting_on.clone(),
                owner: row.owner.clone(),
                attempts: row.attempts,
            };
            let (mut behind_for, mut waiting_on) = (Duration::ZERO, None);
            if lag > 0 && judged {
                let oldest = crate::projection::reader::oldest_after(&self.log_db.conn, checkpoint).await?;
                let judged = progress.judge(&row.name, &facts, oldest, now);
                (behind_for, waiting_on) = (judged.behind_for, judged.wait);
            }
            let failing = if judged { progress.failing(&row.name, &facts, now) } else { None };
            out.push(ProjectionState { row, lag, behind_for, waiting_on, failing, rebuild_alive });
        }
        Ok(out)
    }

    /// Times [`Admin::projections`] read the checkpoints.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The checkpoints of `views`, in their order (for conditional GETs:
    /// one small query on the query pool, never the log). `None` when one
    /// of them is applied inline: its rows change with each command, before
    /// its checkpoint moves, so the checkpoint cannot key its answers.
    pub async fn checkpoints(&self, views: &[View]) -> Result<Option<Vec<LogPosition>>, DbErr> {
        use sea_orm::{ColumnTrait, QueryFilter};
        let names: Vec<&str> = views.iter().map(|v| v.name()).collect();
        // The views' rows and their segments' (`view#k/N`), read as the views.
        let mut filter =
            sea_orm::Condition::any().add(projection_checkpoint::Column::Name.is_in(names.iter().copied()));
        for name in &names {
            filter = filter.add(projection_checkpoint::Column::Name.starts_with(format!("{name}#")));
        }
        let rows = projection_checkpoint::Entity::find().filter(filter).all(&self.read_db.conn).await?;
        let rows = crate::notice::segments::fold(rows);
        if rows.iter().any(|r| matches!(r.mode, StoredMode::Inline | StoredMode::Lazy)) {
            return Ok(None);
        }
        Ok(Some(
            names
                .iter()
                .map(|name| {
                    rows.iter()
                        .find(|r| r.name == *name)
                        .map_or(LogPosition::START, |r| LogPosition::new(r.last_tx_id, r.last_position))
                })
                .collect(),
        ))
    }

    /// Pings both databases, reads the projections and the horizon, each
    /// within a bound, so the check itself answers within a second.
    pub async fn readiness(&self) -> Readiness {
        async fn ping(db: &Db) -> bool {
            matches!(tokio::time::timeout(READY_CHECK, db.conn.ping()).await, Ok(Ok(())))
        }
        let (write_database, read_database) = tokio::join!(ping(&self.write_db), ping(&self.read_db));
        if !(write_database && read_database) {
            return Readiness { write_database, read_database, projections: None, horizon: Horizon::Unknown };
        }
        let (projections, probe) = tokio::join!(
            tokio::time::timeout(READY_CHECK, self.projections()),
            tokio::time::timeout(READY_CHECK, crate::projection::reader::horizon_probe(&self.log_db.conn)),
        );
        let horizon = match probe {
            Ok(Ok(Some(probe))) if probe.fallback => Horizon::Global,
            Ok(Ok(Some(probe))) => Horizon::Appenders { oldest_appender_seconds: probe.oldest_appender_age },
            Ok(Ok(None)) => Horizon::Serial,
            _ => Horizon::Unknown,
        };
        Readiness { write_database, read_database, projections: projections.ok().and_then(Result::ok), horizon }
    }

    /// The per-projection lines of `/metrics`, read from the checkpoints now,
    /// so each instance reports the truth of its store.
    pub async fn metrics_text(&self) -> String {
        let Ok(states) = self.projections().await else { return String::new() };
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: &dyn Fn(&ProjectionState) -> String| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for s in &states {
                out.push_str(&format!("{name}{{projection=\"{}\"}} {}\n", s.row.name, value(s)));
            }
        };
        gauge("twofold_projection_checkpoint_position", "Log position of each projection's checkpoint.", &|s| {
            s.row.last_position.to_string()
        });
        gauge("twofold_projection_lag_events", "Committed events each projection has not applied yet.", &|s| {
            s.lag.to_string()
        });
        gauge("twofold_projection_retrying", "1 while the projection's runner retries after failures.", &|s| {
            u8::from(s.status() == Status::Retrying).to_string()
        });
        gauge("twofold_projection_stopped", "1 when a poison event stopped the projection.", &|s| {
            u8::from(s.status() == Status::Stopped).to_string()
        });
        gauge(
            "twofold_projection_outdated",
            "1 when this release stood down for an event a newer release wrote.",
            &|s| u8::from(s.status() == Status::Outdated).to_string(),
        );
        gauge(
            "twofold_projection_stalled",
            "1 while the projection is behind the log with no progress for --stall-after-ms (see /readyz for what it waits on).",
            &|s| u8::from(s.status() == Status::Stalled).to_string(),
        );
        gauge(
            "twofold_projection_seconds_since_progress",
            "How long the projection has been behind the log without progress (0 at the head).",
            &|s| format!("{:.3}", s.behind_for.as_secs_f64()),
        );
        if let Some(exporter) = states.iter().find(|s| s.row.name == EXPORTER) {
            let checkpoint = LogPosition::new(exporter.row.last_tx_id, exporter.row.last_position);
            let oldest = crate::projection::reader::oldest_after(&self.log_db.conn, checkpoint).await.ok().flatten();
            let seconds = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).to_std().unwrap_or_default().as_secs_f64());
            out.push_str(&format!(
                "# HELP twofold_export_lag_events Committed events not exported yet.\n# TYPE twofold_export_lag_events gauge\ntwofold_export_lag_events {}\n",
                exporter.lag
            ));
            out.push_str(&format!(
                "# HELP twofold_export_lag_seconds How long the oldest event not exported yet has waited (0 when none waits).\n# TYPE twofold_export_lag_seconds gauge\ntwofold_export_lag_seconds {seconds:.3}\n"
            ));
        }
        out
    }

    /// Open dead letters (or all), newest first.
    pub async fn dead_letters(
        &self,
        projection: Option<&str>,
        include_resolved: bool,
        limit: u64,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let rows = dead_letters::list(&self.views_db, projection, include_resolved, limit).await?;
        Ok(rows.into_iter().map(DeadLetter).collect())
    }

    /// Retries a dead letter (its projection, stopped at it, tries it again).
    pub async fn retry_dead_letter(&self, id: i64) -> Result<Resolved, DeadLetterError> {
        dead_letters::retry(&self.views_db, &self.notices, id).await.map(Resolved::from)
    }

    /// Skips a dead letter (its projection, stopped at it, moves past it).
    pub async fn skip_dead_letter(&self, id: i64) -> Result<Resolved, DeadLetterError> {
        dead_letters::skip(&self.views_db, &self.notices, id).await.map(Resolved::from)
    }

    /// Starts a rebuild in the background; progress shows in `projections`
    /// and `projectionUpdated`. Refuses a projection already rebuilding here.
    pub fn start_rebuild(&self, projection: &str) -> Result<(), StartRebuildError> {
        if projection == EXPORTER {
            return Err(StartRebuildError::NotRebuildable(rebuild::RebuildError::NotRebuildable.to_string()));
        }
        if View::parse(projection).is_none() {
            return Err(StartRebuildError::Unknown {
                projection: projection.chars().take(64).collect(),
                known: View::names().join(", "),
            });
        }
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(projection.to_owned()) {
            return Err(StartRebuildError::AlreadyRebuilding(projection.to_owned()));
        }
        let this = self.clone();
        let name = projection.to_owned();
        tokio::spawn(async move {
            let options = RebuildOptions {
                projections: vec![name.clone()],
                until: None,
                copy_name: None,
                batch_size: rebuild::REPLAY_BATCH,
                from_snapshot: None,
            };
            let notices = this.notices.clone();
            let mut last = Instant::now();
            let progress = |p: rebuild::Progress| {
                metrics::gauge!(crate::metrics::REBUILD_PROGRESS, "projection" => name.clone())
                    .set(p.done as f64 / p.total.max(1) as f64);
                if last.elapsed() >= Duration::from_millis(250) || p.done == p.total {
                    notices.publish_progress(&name, 100.0 * p.done as f64 / p.total.max(1) as f64);
                    last = Instant::now();
                }
            };
            match rebuild::rebuild(&this.log_db, &this.views_db, &options, progress).await {
                Ok(reports) => {
                    for r in reports {
                        tracing::info!(projection = %r.projection, events = r.events, events_per_second = r.events_per_second() as u64, "rebuild finished");
                        this.notices.advance(&r.projection, r.checkpoint);
                    }
                }
                Err(e) => tracing::error!(projection = %name, error = %e, "rebuild failed"),
            }
            this.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
        });
        Ok(())
    }
}
