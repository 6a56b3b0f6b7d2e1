//! The replica set's vocabulary: positions, settings, and where a replica
//! stands (what `/readyz` shows). A leaf of `replica`.
use std::time::Duration;

/// A checkpoint: the token's `(tx_id, position)`.
pub type Position = (i64, i64);

/// `application_name` of replica sessions.
pub const REPLICA_APPLICATION: &str = "twofold-replica";

/// How replicas are judged.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaSettings {
    /// Further behind than this, a replica leaves rotation.
    pub max_lag: Duration,
    /// How often health and lag are measured.
    pub check_interval: Duration,
}

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Not measured yet.
    Starting,
    /// Serves queries.
    InRotation,
    /// Healthy, catching up with the writes clients were told are visible:
    /// waits count it already (so that set stops growing), reads not yet.
    Joining,
    /// Reachable but too far behind, or not yet holding every write a client
    /// was told is visible.
    Lagging,
    /// Could not be reached (or failed a statement).
    Unreachable,
    /// No longer in recovery: promoted to a primary of its own.
    Promoted,
}

impl ReplicaState {
    /// Whether waits wait for it (it serves reads, or is about to).
    pub(super) fn awaited(self) -> bool {
        matches!(self, Self::InRotation | Self::Joining)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::InRotation => "in_rotation",
            Self::Joining => "joining",
            Self::Lagging => "lagging",
            Self::Unreachable => "unreachable",
            Self::Promoted => "promoted",
        }
    }
}

/// A replica's state as `/readyz` shows it.
#[derive(Debug, Clone)]
pub struct ReplicaReport {
    /// Its URL, password redacted.
    pub name: String,
    pub state: ReplicaState,
    /// Seconds behind the primary (last measure; `None` before the first).
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
}
