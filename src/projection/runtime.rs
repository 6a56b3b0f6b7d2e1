//! The projection runtime's shared vocabulary: the settings every
//! projector is built with, what one step did ([`StepOutcome`]) and why
//! one failed ([`StepError`]).
//!
//! A leaf, so that the files that step, handle poison, run and group
//! projectors can all speak of outcomes and settings without importing one
//! another. How the runtime is put together is told in [`super`]'s docs.
use std::collections::HashMap;
use std::time::Duration;

use sea_orm::DbErr;

use crate::token::LogPosition;

pub use crate::catalog::{Mode, PoisonPolicy};

/// Settings shared by every projector.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub batch_size: u64,
    /// Safety-net poll when no wake-up arrives.
    pub poll_interval: Duration,
    /// Under load, the least time from one batch's start to the next's.
    pub gather: Duration,
    /// How often a standby tries to take over when no release notice
    /// wakes it (the leader died without one).
    pub standby_retry: Duration,
    pub modes: HashMap<String, Mode>,
    pub policies: HashMap<String, PoisonPolicy>,
    /// Segments per view (`--projection-segments`; 1 when not named).
    pub segments: HashMap<String, u32>,
    /// When lazy views are snapshotted.
    pub snapshots: SnapshotSettings,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        use crate::defaults::{BATCH_SIZE, POLL_INTERVAL_MS, PROJECTION_GATHER_MS, STANDBY_RETRY_MS};
        Self {
            batch_size: BATCH_SIZE,
            poll_interval: Duration::from_millis(POLL_INTERVAL_MS),
            gather: Duration::from_millis(PROJECTION_GATHER_MS),
            standby_retry: Duration::from_millis(STANDBY_RETRY_MS),
            modes: HashMap::new(),
            policies: HashMap::new(),
            segments: HashMap::new(),
            snapshots: Default::default(),
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
    /// How many segments `name` is split into (1: not split).
    pub fn segments_of(&self, name: &str) -> u32 {
        self.segments.get(name).copied().unwrap_or(1).max(1)
    }
    /// Whether any view is split into more than one segment.
    pub fn segmented(&self) -> bool {
        self.most_segments() > 1
    }
    /// The largest segment count of any view (1: nothing split): how many
    /// grouped loops, and projector connections past the base, a node runs.
    pub fn most_segments(&self) -> u32 {
        self.segments.values().copied().max().unwrap_or(1).max(1)
    }
}

/// When the snapshotter stores a lazy view (each a `serve` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Snapshot once the log has grown this many events past the view.
    pub every_events: u64,
    /// Snapshot at least this often when anything came.
    pub every: Duration,
    /// A key whose fold took more events than this is stored at once…
    pub hot_events: usize,
    /// …or more time than this.
    pub hot_time: Duration,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        use crate::defaults::{LAZY_HOT_EVENTS, LAZY_HOT_MS, LAZY_SNAPSHOT_EVENTS, LAZY_SNAPSHOT_MS};
        Self {
            every_events: LAZY_SNAPSHOT_EVENTS,
            every: Duration::from_millis(LAZY_SNAPSHOT_MS),
            hot_events: LAZY_HOT_EVENTS,
            hot_time: Duration::from_millis(LAZY_HOT_MS),
        }
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

/// Why a step failed, typed end to end so the runner picks its pause from
/// the cause and the status shows the cause's own words (no failure
/// outside the database dressed up as a database error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    /// The database failed; [`crate::db::classify`] says how.
    #[error(transparent)]
    Database(#[from] DbErr),
    /// Something besides the database cannot be reached (the exporter's
    /// broker): retried like an outage.
    #[error("{0}")]
    Unavailable(String),
    /// A statement got no answer within `0` (status writes are bounded so
    /// that a dying database cannot hold a runner).
    #[error("no answer within {} ms", .0.as_millis())]
    NoAnswer(Duration),
    /// Checkpoints this step had locked and checked could not all be moved:
    /// the group's transaction is given up and the step tried again.
    #[error("{moved} of {claimed} locked checkpoints could be moved")]
    CheckpointsMoved { moved: usize, claimed: usize },
    /// The runtime broke one of its own rules (a bug): logged with its
    /// words, retried at the failing pace.
    #[error("{0}")]
    Internal(String),
}

/// How long a runner pauses after a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The database or a broker is out: the outage back-off.
    Outage,
    /// A lock wait timed out: the lock back-off.
    Locked,
    /// Anything else: the failing back-off.
    Failing,
}

impl StepError {
    /// Which back-off the runner uses for this failure.
    pub fn pause(&self) -> Pause {
        match self {
            Self::Database(e) => match crate::db::classify(e) {
                crate::db::DbFailure::Unavailable => Pause::Outage,
                crate::db::DbFailure::LockTimeout => Pause::Locked,
                _ => Pause::Failing,
            },
            Self::Unavailable(_) | Self::NoAnswer(_) => Pause::Outage,
            Self::CheckpointsMoved { .. } | Self::Internal(_) => Pause::Failing,
        }
    }

    /// The database error, when the database is what failed.
    pub fn database(&self) -> Option<&DbErr> {
        match self {
            Self::Database(e) => Some(e),
            _ => None,
        }
    }
}

/// An apply's failure met outside an apply (a probe's, a whole batch's
/// that could not be isolated): a poison event there is reported in its
/// own words, like an unavailable resource.
impl From<super::apply::ApplyError> for StepError {
    fn from(error: super::apply::ApplyError) -> Self {
        match error {
            super::apply::ApplyError::Database(e) => Self::Database(e),
            super::apply::ApplyError::Unavailable(message) => Self::Unavailable(message),
            poison @ super::apply::ApplyError::Poison { .. } => Self::Unavailable(poison.to_string()),
        }
    }
}
