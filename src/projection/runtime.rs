//! The projection runtime's shared vocabulary: the settings every
//! projector is built with, and what one step did ([`StepOutcome`]).
//!
//! A leaf, so that the files that step, handle poison, run and group
//! projectors can all speak of outcomes and settings without importing one
//! another. How the runtime is put together is told in [`super`]'s docs.
use std::collections::HashMap;
use std::time::Duration;

use crate::token::LogPosition;

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
