//! In-process signals between the layers, so none of them imports another:
//! projectors publish here after each committed batch; the query side and
//! the subscriptions listen.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::token::LogPosition;

pub mod postgres;
pub mod progress;
pub mod segments;

pub use progress::Progress;

/// Tells the runners that a command committed at `token`: the head they
/// know of moves up to it, and every one of them wakes, whether or not it
/// moved. A writer whose transaction began below a newer token and commits
/// after it brings no newer token, yet its commit is the one a runner held
/// back by it waits for. Waking only on a newer head left that runner on
/// its back-off timer (up to the poll interval) while the write below, and
/// every write above it, was already readable.
pub fn commit_heard(appended: &watch::Sender<LogPosition>, token: LogPosition) {
    appended.send_modify(|head| *head = (*head).max(token));
}

/// One committed projection batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionUpdated {
    pub projection: String,
    /// The projection's checkpoint after the batch.
    pub token: LogPosition,
    pub stream_ids: Vec<Uuid>,
    /// The customer each of `stream_ids` belongs to, in the same order
    /// (`None`: a catalog stream everyone may see). Empty when unknown (an
    /// older instance's notice): then no stream is shown to a customer.
    pub owners: Vec<Option<Uuid>>,
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

    /// The stream ids `customer` may see: its own and the catalog's.
    pub fn visible_to(&self, customer: Uuid) -> Vec<Uuid> {
        self.stream_ids
            .iter()
            .zip(&self.owners)
            .filter(|(_, owner)| owner.is_none_or(|o| o == customer))
            .map(|(id, _)| *id)
            .collect()
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
    /// Bumped whenever some runner (on any instance) released a leadership.
    released: Arc<watch::Sender<u64>>,
    /// Bumped whenever a projection's status changed in a way waiters must
    /// see at once (stopped, dead-lettered an event).
    status: Arc<watch::Sender<u64>>,
    /// What this process's projection runners observe, and the stall bound.
    progress: Arc<Progress>,
}

impl Default for Notices {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Notices {
    pub fn new(capacity: usize) -> Self {
        let instance = format!("{}-{}", std::process::id(), &Uuid::new_v4().simple().to_string()[..8]);
        Self {
            instance_id: instance.into(),
            updates: broadcast::channel(capacity).0,
            checkpoints: Arc::default(),
            released: Arc::new(watch::channel(0).0),
            status: Arc::new(watch::channel(0).0),
            progress: Arc::default(),
        }
    }

    /// With `stall_after` as the stall bound (`--stall-after-ms`).
    pub fn with_stall_after(mut self, stall_after: std::time::Duration) -> Self {
        self.progress = Arc::new(Progress::new(stall_after));
        self
    }

    /// This process's runners and the stall rule.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Publishes a committed batch (call only after the commit) and moves
    /// the projection's known checkpoint. Always broadcast: a durable
    /// checkpoint read (`writeVisible`, the poll) may already have moved the
    /// watch, but subscribers still need this batch's stream ids. Delivery
    /// is at least once: a batch announced by the poll and then by NOTIFY
    /// reaches a subscriber twice, never zero times.
    pub fn publish(&self, mut update: ProjectionUpdated) {
        self.advance(&update.projection, update.token);
        // A segment's batch is announced as its view's, at where the view
        // now stands (its segments' lowest): listeners know views only.
        if let Some((view, _, _)) = crate::catalog::parse_segment(&update.projection) {
            let view = view.to_owned();
            update.token = self.known(&view);
            update.projection = view;
        }
        // No receiver is not an error: nobody is listening right now.
        let _ = self.updates.send(update);
    }

    /// Announces a rebuild's progress (the projection's checkpoint does not move).
    pub fn publish_progress(&self, projection: &str, percent: f64) {
        // As above: no receiver just means nobody is listening.
        let _ = self.updates.send(ProjectionUpdated {
            projection: projection.to_owned(),
            token: self.known(projection),
            stream_ids: Vec::new(),
            owners: Vec::new(),
            event_types: Vec::new(),
            complete: false,
            rebuild_percent: Some(percent),
        });
    }

    /// Records that `projection` is known to be at `token` (never moves
    /// back); returns whether that is news.
    ///
    /// A segment's advance (`view#k/N`) moves its view to the lowest of
    /// its segments known here (the start while one is not known): a view
    /// is at a token when all of its segments are (see [`segments`]).
    pub fn advance(&self, projection: &str, token: LogPosition) -> bool {
        let sender = self.checkpoint_sender(projection);
        let news = sender.send_if_modified(|current| {
            let newer = token > *current;
            if newer {
                *current = token;
            }
            newer
        });
        match crate::catalog::parse_segment(projection) {
            Some((view, _, count)) if news => {
                let lowest = {
                    let map = self.checkpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    segments::lowest(count, |k| {
                        map.get(&crate::catalog::segment_name(view, k, count)).map(|s| *s.borrow())
                    })
                };
                self.advance(view, lowest);
                news
            }
            _ => news,
        }
    }

    /// The latest checkpoint known for `projection`.
    pub fn known(&self, projection: &str) -> LogPosition {
        // Read in place: the response cache asks this for every view on
        // every request, so no key is allocated and no channel cloned.
        let map = self.checkpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(projection).map_or(LogPosition::START, |sender| *sender.borrow())
    }

    /// A runner somewhere released the leadership of `_projection`: standbys should try now.
    pub fn leadership_released(&self, _projection: &str) {
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A projection stopped or dead-lettered an event (here or, through
    /// NOTIFY, on another instance): waiters re-check the durable state.
    pub fn status_changed(&self) {
        self.status.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a projection's status changed.
    pub fn watch_status(&self) -> watch::Receiver<u64> {
        self.status.subscribe()
    }

    /// Changes whenever a leadership is released.
    pub fn watch_released(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_commit_wakes_the_runners_and_the_head_only_moves_up() {
        let (appended, _) = watch::channel(LogPosition::START);
        let mut runner = appended.subscribe();
        commit_heard(&appended, LogPosition::new(101, 7));
        assert!(runner.has_changed().expect("open"));
        assert_eq!(*runner.borrow_and_update(), LogPosition::new(101, 7));
        // A writer that began below it commits last: no newer head, still a wake.
        commit_heard(&appended, LogPosition::new(100, 8));
        assert!(runner.has_changed().expect("open"), "the commit below the head must wake the runners");
        assert_eq!(*runner.borrow_and_update(), LogPosition::new(101, 7), "the head never moves back");
    }

    fn update(token: LogPosition, stream: Uuid) -> ProjectionUpdated {
        ProjectionUpdated {
            projection: "order_summary".into(),
            token,
            stream_ids: vec![stream],
            owners: vec![None],
            event_types: vec!["OrderPlaced".into()],
            complete: true,
            rebuild_percent: None,
        }
    }

    #[test]
    fn a_batch_is_announced_even_when_a_durable_read_saw_its_checkpoint_first() {
        let notices = Notices::new(16);
        let mut rx = notices.subscribe();
        let token = LogPosition::new(7, 42);
        // writeVisible (or the poll) read the committed checkpoint before the projector published…
        notices.advance("order_summary", token);
        // …the projector's own notice still reaches subscribers, with its stream ids.
        let stream = Uuid::new_v4();
        notices.publish(update(token, stream));
        let got = rx.try_recv().expect("the batch is announced");
        assert!(got.complete && got.may_touch(&stream));
        assert_eq!(notices.known("order_summary"), token);
    }

    #[test]
    fn a_split_view_is_where_its_slowest_segment_is() {
        let notices = Notices::new(16);
        let mut rx = notices.subscribe();
        notices.advance("order_summary#0/2", LogPosition::new(1, 10));
        assert_eq!(notices.known("order_summary"), LogPosition::START, "segment 1 not heard of yet");
        notices.publish(ProjectionUpdated {
            projection: "order_summary#1/2".into(),
            ..update(LogPosition::new(1, 7), Uuid::nil())
        });
        assert_eq!(notices.known("order_summary"), LogPosition::new(1, 7));
        let got = rx.try_recv().expect("announced");
        assert_eq!((got.projection.as_str(), got.token), ("order_summary", LogPosition::new(1, 7)));
        notices.advance("order_summary#1/2", LogPosition::new(1, 12));
        assert_eq!(notices.known("order_summary"), LogPosition::new(1, 10));
    }

    #[test]
    fn checkpoints_never_move_back() {
        let notices = Notices::new(16);
        assert!(notices.advance("p", LogPosition::new(1, 10)));
        assert!(!notices.advance("p", LogPosition::new(1, 9)));
        assert_eq!(notices.known("p"), LogPosition::new(1, 10));
    }
}
