//! What the projections durably hold, as read-your-writes waits judge it:
//! the checkpoints, the progress facts, the dead-lettered events, and the
//! verdict on one write (visible, pending, stalled, or never without an
//! operator). A leaf of the query layer, so the read model can hold the one
//! shared read in flight and the waits (`consistency`) can judge by it.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::{BoxFuture, Shared};

use crate::notice::progress::{DurableFacts, Wait};
use crate::token::LogPosition;

/// Why a write will not become visible without an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotProjected {
    /// The projection is stopped (a poison event) before the token.
    ProjectionStopped(String),
    /// The token's event was dead-lettered by the projection.
    DeadLettered(String),
}

impl NotProjected {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProjectionStopped(_) => "PROJECTION_STOPPED",
            Self::DeadLettered(_) => "DEAD_LETTERED",
        }
    }

    pub fn projection(&self) -> &str {
        match self {
            Self::ProjectionStopped(p) | Self::DeadLettered(p) => p,
        }
    }
}

/// Where a write stands in the projections a reader waits on.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    Visible,
    /// Not yet: the wait timed out.
    Pending,
    /// Not yet, and the wait timed out behind a stalled projection.
    Stalled {
        projection: String,
        wait: Wait,
    },
    /// Never, without an operator.
    NotProjected(NotProjected),
}

/// The durable state of the projections: checkpoints, and the events that
/// were dead-lettered and are not being retried.
#[derive(Debug, Default)]
pub struct Durable {
    pub(super) checkpoints: HashMap<String, (LogPosition, bool, bool)>,
    /// What each projection's runner last wrote of its progress (heartbeat).
    pub(super) facts: HashMap<String, DurableFacts>,
    pub(super) dead: HashSet<(String, LogPosition)>,
}

impl Durable {
    pub(super) fn verdict(&self, projections: &[&str], token: LogPosition) -> Visibility {
        for p in projections {
            if self.dead.contains(&((*p).to_owned(), token)) {
                return Visibility::NotProjected(NotProjected::DeadLettered((*p).to_owned()));
            }
        }
        let reached = |p: &&str| self.checkpoints.get(*p).is_some_and(|(at, inline, _)| *inline || *at >= token);
        if projections.iter().all(reached) {
            return Visibility::Visible;
        }
        for p in projections {
            if self.checkpoints.get(*p).is_some_and(|(at, _, stopped)| *stopped && *at < token) {
                return Visibility::NotProjected(NotProjected::ProjectionStopped((*p).to_owned()));
            }
        }
        Visibility::Pending
    }
}

pub(super) type DurableRead = Shared<BoxFuture<'static, Result<Arc<Durable>, DurableReadFailed>>>;

/// Why the shared checkpoint read gave no answer (cloned to every waiter).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DurableReadFailed {
    #[error(transparent)]
    Database(Arc<sea_orm::DbErr>),
    /// Its task ended before it answered (only a panic does: it is never aborted).
    #[error("the checkpoint read's task ended before it answered: {0}")]
    Lost(String),
}

/// At most one durable read in flight; concurrent callers share it.
#[derive(Clone, Default)]
pub struct SharedDurableRead {
    pub(super) inflight: Arc<std::sync::Mutex<Option<DurableRead>>>,
}
