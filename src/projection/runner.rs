//! A [`Runner`]: one projection's state between steps, for the loop that
//! drives one runner or many (`group.rs`).
//!
//! Before a step, [`Runner::prepare`] settles leadership (PostgreSQL: the
//! advisory lock of [`super::leader`], the take-over that bumps the fence)
//! and waits out a stand-down for a newer release. After it,
//! [`Runner::settle`] accounts for the outcome: the progress the node
//! reports (healthy, failing and how often, or what blocks the projection;
//! the status is derived from it), and how long to wait before the next
//! step (the back-offs of [`crate::backoff`], by what failed).
use std::sync::Arc;
use std::time::Duration;

use super::projector::Projector;
use super::runtime::{Pause, StepError, StepOutcome};
use crate::backoff::Backoff;
use crate::token::LogPosition;

/// The longest pause between two tries of a projection set aside by a lock.
const LOCK_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a runner asks of the loop before a step.
pub(super) enum Prepared {
    /// It leads (or needs no leadership) and may step.
    Ready,
    /// It waits: a standby (for a release notice, or `standby_retry`), a
    /// runner that stood down for a newer release, a failed take-over.
    Wait { retry_in: Duration, on_release: bool },
}

/// One projection's runner state between steps: leadership, back-off,
/// retry accounting. The loop (`group.rs`) drives one or many.
pub(super) struct Runner {
    pub(super) projector: Projector,
    lease: super::leader::Lease,
    /// Pauses after a failed step or take-over, by what failed: an outage
    /// (first retry at once, at most 500 ms apart, so a link that comes
    /// back is used within that), a lock (at most 1 s), anything else (5 s).
    outage: Backoff,
    locked: Backoff,
    failing: Backoff,
    /// Pauses while an open transaction holds the horizon back although
    /// this process appended past the checkpoint: short, doubling up to
    /// the poll interval.
    behind: Backoff,
    attempts: i64,
    /// Where this runner stood down for a newer release: it stays a
    /// standby until someone has applied past that event.
    outdated_at: Option<LogPosition>,
    /// Since when an open event writer below the horizon holds this projection back.
    held_since: Option<std::time::Instant>,
    /// A batch was fenced out while this runner kept its lock (a rebuild's
    /// switch bumps the fence): take the projection over again.
    retake: bool,
    fenced_in_a_row: u32,
    /// A lock wait set it aside from the group (PostgreSQL): it steps alone,
    /// in its own transaction, until a step succeeds.
    pub(super) solo: bool,
    /// When the horizon was last looked at for a cause (at most once a second).
    horizon_looked_at: Option<std::time::Instant>,
    /// When the believed checkpoint was last held against the durable one.
    verified_at: Option<std::time::Instant>,
}

impl Runner {
    pub(super) fn new(projector: Projector, poll_interval: Duration) -> Self {
        Self {
            projector,
            lease: super::leader::Lease::default(),
            outage: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)).immediate_first(),
            locked: Backoff::new(Duration::from_millis(100), LOCK_BACKOFF_MAX),
            failing: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            behind: Backoff::new(Duration::from_millis(2), poll_interval),
            attempts: 0,
            outdated_at: None,
            held_since: None,
            retake: false,
            fenced_in_a_row: 0,
            solo: false,
            horizon_looked_at: None,
            verified_at: None,
        }
    }

    /// Leadership and stand-down before a step. The caller marks every
    /// release notice so far as seen *before* it prepares its runners: a
    /// release that lands after a failed try then still wakes its wait
    /// (marking after the try could swallow it, e.g. when another
    /// projection's release woke the runner and its own came a moment later).
    pub(super) async fn prepare(
        &mut self,
        locks: Option<&Arc<super::leader::Locks>>,
        poll_interval: Duration,
    ) -> Prepared {
        let p = &self.projector;
        let progress = p.progress();
        if let Some(at) = self.outdated_at {
            match p.durable_checkpoint().await {
                Ok(checkpoint) if checkpoint >= at => self.outdated_at = None,
                _ => {
                    progress.set_leading(p.name(), false);
                    return Prepared::Wait { retry_in: poll_interval, on_release: false };
                }
            }
        }
        let Some(locks) = locks else {
            progress.set_leading(p.name(), true);
            return Prepared::Ready;
        };
        let take_over = match locks.hold(p.name(), &mut self.lease).await {
            super::leader::Held::Acquired => true,
            super::leader::Held::Kept => self.retake,
            super::leader::Held::No => {
                self.outage.reset();
                progress.set_leading(p.name(), false);
                return Prepared::Wait { retry_in: p.standby_retry(), on_release: true };
            }
            super::leader::Held::Unreachable => {
                progress.blocked(
                    p.name(),
                    crate::notice::progress::Wait::new(
                        crate::catalog::WaitKind::DatabaseOutage,
                        "the database cannot be reached for the leadership lock",
                    ),
                );
                return Prepared::Wait { retry_in: self.outage.next_pause(), on_release: true };
            }
        };
        if take_over {
            // Run only once the take-over is recorded: a runner that could
            // not bump the fence releases and retries.
            if let Err(e) = p.take_over().await {
                tracing::warn!(projection = p.name(), error = %e, "could not record the take-over; releasing and retrying");
                locks.release(p.name(), &mut self.lease).await;
                let retry_in = self.pause_after(&StepError::from(e));
                return Prepared::Wait { retry_in, on_release: false };
            }
            self.retake = false;
            p.forget_checkpoint();
        }
        progress.set_leading(p.name(), true);
        Prepared::Ready
    }

    /// Accounts for a step's outcome; returns how long to wait before the
    /// next one (`None`: step again at once).
    pub(super) async fn settle(
        &mut self,
        outcome: Result<StepOutcome, StepError>,
        head: LogPosition,
        poll_interval: Duration,
        locks: Option<&Arc<super::leader::Locks>>,
    ) -> Option<Duration> {
        let p = &self.projector;
        let progress = p.progress();
        if outcome.is_ok() {
            // A step that did not fail ends the retrying, whatever it found:
            // nothing is stored to clear (the status is derived, see
            // `crate::notice::progress`), so nothing can be left behind.
            if self.attempts > 0 {
                tracing::info!(projection = p.name(), attempts = self.attempts, "projection step succeeded again");
                metrics::gauge!(crate::metrics::PROJECTION_ATTEMPTS, "projection" => p.name()).set(0.0);
            }
            self.attempts = 0;
            progress.succeeded(p.name());
        }
        let held_back = matches!(outcome, Ok(StepOutcome::Idle)) && p.known_checkpoint().is_some_and(|c| head > c);
        match (held_back, self.held_since) {
            (true, None) => self.held_since = Some(std::time::Instant::now()),
            (false, Some(since)) => {
                metrics::histogram!(crate::metrics::HORIZON_WAIT, "projection" => p.name())
                    .record(since.elapsed().as_secs_f64());
                self.held_since = None;
            }
            _ => {}
        }
        // What the step says of the projection's progress.
        match &outcome {
            Ok(StepOutcome::Applied { .. } | StepOutcome::DeadLettered { .. } | StepOutcome::Solo) => {
                progress.healthy(p.name());
                self.solo = false;
            }
            Ok(StepOutcome::Idle) if !held_back => {
                // Now and then, hold what this runner believes against the
                // durable checkpoint: a commit that did not persist (a
                // transaction left open on a pooled connection made every
                // later one a savepoint) would otherwise look healthy forever.
                let verify = self.verified_at.is_none_or(|at| at.elapsed() >= progress.stall_after());
                let mut diverged = None;
                if verify {
                    self.verified_at = Some(std::time::Instant::now());
                    if let (Some(believed), Ok(durable)) = (p.known_checkpoint(), p.durable_checkpoint().await) {
                        if durable < believed {
                            diverged = Some((believed, durable));
                        }
                    }
                }
                match diverged {
                    None => progress.healthy(p.name()),
                    Some((believed, durable)) => {
                        tracing::error!(projection = p.name(), %believed, %durable, "this runner's checkpoint is ahead of the durable one: its commits did not persist; reading it again");
                        p.forget_checkpoint();
                        progress.blocked(
                            p.name(),
                            crate::notice::progress::Wait::new(
                                crate::catalog::WaitKind::Unknown,
                                format!("its runner believed it was at {believed}, but the durable checkpoint is {durable}: its commits did not persist"),
                            ),
                        );
                    }
                }
            }
            Ok(StepOutcome::Idle) => {
                metrics::counter!(crate::metrics::PROJECTOR_HELD_BACK, "projection" => p.name()).increment(1);
                tracing::debug!(projection = p.name(), %head, "nothing readable yet below the horizon");
                let look = self.horizon_looked_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
                if look {
                    self.horizon_looked_at = Some(std::time::Instant::now());
                    progress.blocked(p.name(), p.horizon_wait().await);
                    metrics::counter!(crate::metrics::PROJECTOR_WAITS, "projection" => p.name(), "on" => crate::catalog::WaitKind::Horizon.as_str()).increment(1);
                }
            }
            Ok(StepOutcome::Fenced) => {
                metrics::counter!(crate::metrics::PROJECTOR_FENCED, "projection" => p.name()).increment(1);
                tracing::debug!(projection = p.name(), "fenced out: another runner moved the checkpoint or the fence");
            }
            Ok(StepOutcome::Stopped | StepOutcome::Outdated { .. }) => {}
            Err(e) => {
                let cause = p.cause_of(e).await;
                metrics::counter!(crate::metrics::PROJECTOR_WAITS, "projection" => p.name(), "on" => cause.kind.as_str()).increment(1);
                if cause.kind == crate::catalog::WaitKind::Lock {
                    metrics::counter!(crate::metrics::PROJECTOR_SET_ASIDE, "projection" => p.name()).increment(1);
                    tracing::warn!(projection = p.name(), cause = %cause.describe(), "set aside: a lock wait ran past lock_timeout; the other projections go on");
                    self.solo = true;
                }
                self.attempts += 1;
                metrics::gauge!(crate::metrics::PROJECTION_ATTEMPTS, "projection" => p.name())
                    .set(self.attempts as f64);
                progress.failed(p.name(), cause, self.attempts);
            }
        }
        self.fenced_in_a_row = if matches!(outcome, Ok(StepOutcome::Fenced)) { self.fenced_in_a_row + 1 } else { 0 };
        match outcome {
            // Someone else moved the checkpoint or the fence: read it again
            // (and, holding the lock, take over again). Never a hot loop:
            // after a few in a row, back off.
            Ok(StepOutcome::Fenced) => {
                p.forget_checkpoint();
                self.retake = true;
                if self.fenced_in_a_row <= 3 {
                    return None;
                }
                Some(self.failing.next_pause())
            }
            Ok(StepOutcome::Applied { .. } | StepOutcome::DeadLettered { .. } | StepOutcome::Solo) => {
                self.outage.reset();
                self.locked.reset();
                self.failing.reset();
                self.behind.reset();
                None
            }
            // Nothing readable, yet this process appended past the
            // checkpoint: an open transaction holds the horizon back. Look
            // again soon (backing off) rather than at the next poll.
            Ok(StepOutcome::Idle) if held_back => Some(self.behind.next_pause()),
            Ok(StepOutcome::Idle) => Some(poll_interval),
            Ok(StepOutcome::Stopped) => Some(poll_interval * 4),
            Ok(StepOutcome::Outdated { at }) => {
                progress.set_leading(p.name(), false);
                self.outdated_at = Some(at);
                p.forget_checkpoint();
                if let Some(locks) = locks {
                    locks.release(p.name(), &mut self.lease).await;
                }
                None
            }
            Err(e) => {
                let pause = self.pause_after(&e);
                tracing::warn!(projection = self.projector.name(), error = %e, attempts = self.attempts, retry_in_ms = pause.as_millis() as u64, "projection step failed");
                Some(pause)
            }
        }
    }

    /// The next pause of the back-off that fits `error`.
    fn pause_after(&mut self, error: &StepError) -> Duration {
        match error.pause() {
            Pause::Outage => self.outage.next_pause(),
            Pause::Locked => self.locked.next_pause(),
            Pause::Failing => self.failing.next_pause(),
        }
    }

    /// Hands the projection back at shutdown.
    pub(super) async fn release(&mut self, locks: Option<&Arc<super::leader::Locks>>) {
        self.projector.progress().forget(self.projector.name());
        if let Some(locks) = locks {
            locks.release(self.projector.name(), &mut self.lease).await;
        }
    }
}
