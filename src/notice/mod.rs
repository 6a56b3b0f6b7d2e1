//! In-process signals between the layers, so none of them imports another:
//! projectors publish here after each committed batch; the query side and
//! the subscriptions listen.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::token::LogPosition;

pub mod postgres;

/// One committed projection batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionUpdated {
    pub projection: String,
    /// The projection's checkpoint after the batch.
    pub token: LogPosition,
    pub stream_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
    /// False when `stream_ids` is unknown or cut short (a notice relayed
    /// from another instance with a large batch, or synthesized by the
    /// checkpoint poll): a stream filter must then let it through.
    pub complete: bool,
    /// Set on progress notices of a rebuild (the checkpoint does not move).
    pub rebuild_percent: Option<f64>,
}

impl ProjectionUpdated {
    /// Whether this notice may concern `stream_id`.
    pub fn may_touch(&self, stream_id: &Uuid) -> bool {
        !self.complete || self.stream_ids.contains(stream_id)
    }
}

/// The notice bus: a broadcast of batches plus a watch per projection that
/// always holds its latest known checkpoint (a late subscriber cannot miss
/// where a projection is, only intermediate steps).
#[derive(Clone)]
pub struct Notices {
    /// This process, in cross-instance notifications.
    instance_id: Arc<str>,
    updates: broadcast::Sender<ProjectionUpdated>,
    checkpoints: Arc<Mutex<HashMap<String, watch::Sender<LogPosition>>>>,
}

impl Default for Notices {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Notices {
    pub fn new(capacity: usize) -> Self {
        let instance = format!("{}-{}", std::process::id(), &Uuid::new_v4().simple().to_string()[..8]);
        Self { instance_id: instance.into(), updates: broadcast::channel(capacity).0, checkpoints: Arc::default() }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Publishes a committed batch (call only after the commit). A notice
    /// that does not move the projection forward — the same batch heard
    /// twice, through NOTIFY and the poll — is dropped; returns whether it
    /// was published.
    pub fn publish(&self, update: ProjectionUpdated) -> bool {
        if !self.advance(&update.projection, update.token) {
            return false;
        }
        // No receiver is not an error: nobody is listening right now.
        let _ = self.updates.send(update);
        true
    }

    /// Announces a rebuild's progress (the projection's checkpoint does not move).
    pub fn publish_progress(&self, projection: &str, percent: f64) {
        let _ = self.updates.send(ProjectionUpdated {
            projection: projection.to_owned(),
            token: self.known(projection),
            stream_ids: Vec::new(),
            event_types: Vec::new(),
            complete: false,
            rebuild_percent: Some(percent),
        });
    }

    /// Records that `projection` is known to be at `token` (never moves
    /// back); returns whether that is news.
    pub fn advance(&self, projection: &str, token: LogPosition) -> bool {
        let sender = self.checkpoint_sender(projection);
        sender.send_if_modified(|current| {
            let newer = token > *current;
            if newer {
                *current = token;
            }
            newer
        })
    }

    /// The latest checkpoint known for `projection`.
    pub fn known(&self, projection: &str) -> LogPosition {
        *self.checkpoint_sender(projection).borrow()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ProjectionUpdated> {
        self.updates.subscribe()
    }

    pub fn watch_checkpoint(&self, projection: &str) -> watch::Receiver<LogPosition> {
        self.checkpoint_sender(projection).subscribe()
    }

    fn checkpoint_sender(&self, projection: &str) -> watch::Sender<LogPosition> {
        let mut map = self.checkpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(projection.to_owned()).or_insert_with(|| watch::channel(LogPosition::START).0).clone()
    }
}
