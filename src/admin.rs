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

use entity::read::projection_checkpoint;

use crate::catalog::{Status, View, EXPORTER};
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

/// A projection's checkpoint row (`projection_checkpoint`), as admin hands
/// it out: its own type, so `graphql` and `http` never hold an `entity` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub name: String,
    /// `async` or `inline`.
    pub mode: String,
    /// `running`, `stopped`, `rebuilding` or `outdated` (`retrying` and `stalled` are derived, never stored).
    pub status: String,
    /// The checkpoint: every event at or before `(last_tx_id, last_position)` is applied.
    pub last_tx_id: i64,
    pub last_position: i64,
    pub events_applied: i64,
    pub last_error: Option<String>,
    /// The instance currently running the projection, when known.
    pub owner: Option<String>,
    /// Fencing counter: bumped by every runner that takes the projection over.
    pub fence: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// While `rebuilding`: events replayed so far, and the log's size when the rebuild began.
    pub rebuild_done: i64,
    pub rebuild_total: i64,
    /// Consecutive failed attempts of the runner (0 while healthy).
    pub attempts: i64,
    /// The leading runner's last heartbeat (none: no runner ever led it).
    pub heartbeat_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the leading runner was last healthy: it applied a batch or
    /// stood at the head of the log.
    pub progressed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What the leading runner waits on (JSON), while something blocks it.
    pub waiting_on: Option<String>,
    /// While `rebuilding`: when the rebuild last said it is alive.
    pub rebuild_reported_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<projection_checkpoint::Model> for CheckpointRow {
    fn from(m: projection_checkpoint::Model) -> Self {
        Self {
            name: m.name,
            mode: m.mode,
            status: m.status,
            last_tx_id: m.last_tx_id,
            last_position: m.last_position,
            events_applied: m.events_applied,
            last_error: m.last_error,
            owner: m.owner,
            fence: m.fence,
            updated_at: m.updated_at,
            rebuild_done: m.rebuild_done,
            rebuild_total: m.rebuild_total,
            attempts: m.attempts,
            heartbeat_at: m.heartbeat_at,
            progressed_at: m.progressed_at,
            waiting_on: m.waiting_on,
            rebuild_reported_at: m.rebuild_reported_at,
        }
    }
}

/// An event a projection failed to apply deterministically (a `dead_letter` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub projection: String,
    pub event_position: i64,
    pub event_tx_id: i64,
    pub stream_id: uuid::Uuid,
    pub event_type: String,
    pub error: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// What an operator did with it: `retried` or `skipped`; `None` while open.
    pub resolution: Option<String>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<dead_letters::DeadLetter> for DeadLetter {
    fn from(m: dead_letters::DeadLetter) -> Self {
        Self {
            id: m.id,
            projection: m.projection,
            event_position: m.event_position,
            event_tx_id: m.event_tx_id,
            stream_id: m.stream_id,
            event_type: m.event_type,
            error: m.error,
            recorded_at: m.recorded_at,
            resolution: m.resolution,
            resolved_at: m.resolved_at,
        }
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
        Self { dead_letter: r.dead_letter.into(), checkpoint: r.checkpoint }
    }
}

/// A projection's checkpoint row, how far behind the log it is, and its
/// status as derived from those facts now (see `crate::notice::progress`).
#[derive(Debug, Clone)]
pub struct ProjectionState {
    pub row: CheckpointRow,
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
    pub fn status(&self) -> Option<Status> {
        match Status::parse(&self.row.status) {
            Some(stored @ (Status::Stopped | Status::Outdated)) => Some(stored),
            Some(Status::Rebuilding) if self.rebuild_alive => Some(Status::Rebuilding),
            // Running, a `retrying` stored by an older release, a dead
            // rebuild: what the runner's facts say.
            Some(_) if self.waiting_on.is_some() => Some(Status::Stalled),
            Some(_) if self.failing.is_some() => Some(Status::Retrying),
            Some(_) => Some(Status::Running),
            None => None,
        }
    }

    /// The status's name (the stored text for one this release does not know).
    pub fn status_name(&self) -> &str {
        match self.status() {
            Some(status) => status.as_str(),
            None => &self.row.status,
        }
    }

    /// `lastError`, for the status it explains: what a stalled projection
    /// waits on, why a retrying one failed, the stored reason of a stopped
    /// or outdated one; none while it runs.
    pub fn last_error(&self) -> Option<String> {
        match self.status() {
            Some(Status::Stalled) => self.waiting_on.as_ref().map(Wait::describe),
            Some(Status::Retrying) => self.failing.as_ref().map(Failing::describe),
            Some(Status::Running) => None,
            _ => self.row.last_error.clone(),
        }
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
        let mut out = Vec::with_capacity(rows.len());
        let progress = self.notices.progress();
        let now = chrono::Utc::now();
        for row in rows {
            let checkpoint = LogPosition::new(row.last_tx_id, row.last_position);
            let lag = crate::projection::status::lag(&self.log_db, checkpoint).await?;
            let rebuild_alive = crate::projection::rebuild::reports_now(row.rebuild_reported_at, now);
            // What the runner says, for every status the facts decide (all
            // but a stopped or outdated projection and a live rebuild).
            let judged = match Status::parse(&row.status) {
                Some(Status::Stopped | Status::Outdated) | None => false,
                Some(Status::Rebuilding) => !rebuild_alive,
                Some(_) => true,
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
            out.push(ProjectionState { row: row.into(), lag, behind_for, waiting_on, failing, rebuild_alive });
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
        let rows = projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(names.iter().copied()))
            .all(&self.read_db.conn)
            .await?;
        if rows.iter().any(|r| r.mode == crate::catalog::Mode::Inline.as_str()) {
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
            u8::from(s.status() == Some(Status::Retrying)).to_string()
        });
        gauge("twofold_projection_stopped", "1 when a poison event stopped the projection.", &|s| {
            u8::from(s.status() == Some(Status::Stopped)).to_string()
        });
        gauge(
            "twofold_projection_outdated",
            "1 when this release stood down for an event a newer release wrote.",
            &|s| u8::from(s.status() == Some(Status::Outdated)).to_string(),
        );
        gauge(
            "twofold_projection_stalled",
            "1 while the projection is behind the log with no progress for --stall-after-ms (see /readyz for what it waits on).",
            &|s| u8::from(s.status() == Some(Status::Stalled)).to_string(),
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
        Ok(rows.into_iter().map(DeadLetter::from).collect())
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
