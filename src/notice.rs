//! In-process signals between the layers, so none of them imports another:
//! projectors publish here after each committed batch; the query side and
//! the subscriptions listen.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::token::LogPosition;

/// One committed projection batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionUpdated {
    pub projection: String,
    /// The projection's checkpoint after the batch.
    pub token: LogPosition,
    pub stream_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
}

/// The notice bus: a broadcast of batches plus a watch per projection that
/// always holds its latest known checkpoint (a late subscriber cannot miss
/// where a projection is, only intermediate steps).
#[derive(Clone)]
pub struct Notices {
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
        Self { updates: broadcast::channel(capacity).0, checkpoints: Arc::default() }
    }

    /// Publishes a committed batch. Call only after the commit.
    pub fn publish(&self, update: ProjectionUpdated) {
        self.advance(&update.projection, update.token);
        // No receiver is not an error: nobody is listening right now.
        let _ = self.updates.send(update);
    }

    /// Records that `projection` is known to be at `token` (never moves back).
    pub fn advance(&self, projection: &str, token: LogPosition) {
        let sender = self.checkpoint_sender(projection);
        sender.send_if_modified(|current| {
            let newer = token > *current;
            if newer {
                *current = token;
            }
            newer
        });
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
