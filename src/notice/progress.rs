//! What the projection runners observe, and the stall rule.
//!
//! A status is a fact, not a label: whether a projection is *stalled* is
//! decided whenever somebody asks (`projections`, `/readyz`, `/metrics`,
//! `writeVisible`, `consistentWith`), on whichever instance is asked, from:
//!
//! - **this process's runners** ([`Progress`]): each records when it was
//!   last healthy (it applied a batch, or found itself at the head), what
//!   it waits on right now (the SQLite writer slot, the SQLite write lock)
//!   and what blocked its last step (a lock timeout with the blocking
//!   backends, an outage, the horizon);
//! - **the durable facts of the runner that leads it elsewhere**: the
//!   leader writes a heartbeat into the projection's checkpoint row
//!   (`heartbeat_at`, `progressed_at`, `waiting_on`, see
//!   `crate::projection::heartbeat`); a heartbeat older than the stall
//!   bound means there is no runner at all.
//!
//! A projection is stalled when it is behind (the log has events it has not
//! applied) and nothing has moved for `--stall-after-ms`: it has not been
//! healthy since, and the oldest event it has not applied is older than that.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::WaitKind;

/// The default of `--stall-after-ms`.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_millis(crate::defaults::STALL_AFTER_MS);

/// A database session that holds a lock a projection waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    /// `active`, `idle in transaction`, …
    pub state: String,
    /// How long its transaction (or, outside one, its session state) has lasted.
    pub held_seconds: f64,
    /// The lock it holds, e.g. `AccessExclusiveLock on order_summary`.
    pub lock: String,
}

/// What a projection waits on, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub kind: WaitKind,
    /// One line for an operator.
    pub detail: String,
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
}

impl Wait {
    pub fn new(kind: WaitKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), since: Utc::now(), blockers: Vec::new() }
    }

    /// The wait as one line (`lastError` of a stalled projection, the log).
    pub fn describe(&self) -> String {
        let mut line = format!("stalled: waiting on {} ({})", self.kind.as_str(), self.detail);
        for b in &self.blockers {
            line.push_str(&format!(
                "; held by pid {} ({}, {}, for {:.1} s: {})",
                b.pid,
                if b.application_name.is_empty() { "no application_name" } else { &b.application_name },
                b.state,
                b.held_seconds,
                b.lock
            ));
        }
        line
    }
}

/// What one local runner last observed.
#[derive(Debug, Clone)]
struct Observed {
    /// It leads the projection (always, without leadership: SQLite).
    leading: bool,
    /// Last time it applied a batch or found itself at the head.
    healthy_at: DateTime<Utc>,
    /// What made its last step fail or find nothing while behind.
    blocked: Option<Wait>,
    /// A wait in progress right now (set on entry, cleared on exit).
    waiting_now: Option<Wait>,
    /// Steps that failed in a row (0 once a step did not fail): while above
    /// zero the projection is `retrying`, and `blocked` says why.
    attempts: i64,
}

/// A local runner's view, for the stall rule.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    pub healthy_at: DateTime<Utc>,
    pub wait: Option<Wait>,
    /// Steps that failed in a row (0: its last step did not fail).
    pub attempts: i64,
}

/// A runner whose last steps failed: how many in a row, and why the last did.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing {
    pub attempts: i64,
    pub wait: Wait,
}

impl Failing {
    /// `lastError` of a retrying projection.
    pub fn describe(&self) -> String {
        format!("retrying (attempt {}): {}", self.attempts, self.wait.detail)
    }
}

/// The durable facts of one projection's checkpoint row.
#[derive(Debug, Clone, Default)]
pub struct DurableFacts {
    pub progressed_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The leader's [`Wait`], as JSON.
    pub waiting_on: Option<String>,
    pub owner: Option<String>,
    /// The leader's failed steps in a row, as of its heartbeat.
    pub attempts: i64,
}

/// This process's runners, and the stall bound every reader applies.
#[derive(Debug)]
pub struct Progress {
    stall_after: Duration,
    runners: Mutex<HashMap<String, Observed>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(DEFAULT_STALL_AFTER)
    }
}

impl Progress {
    pub fn new(stall_after: Duration) -> Self {
        Self { stall_after: stall_after.max(Duration::from_millis(10)), runners: Mutex::default() }
    }

    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// How often a leader writes its heartbeat: four beats per stall bound
    /// (so one lost beat never reads as a missing runner), at most once a
    /// second, at least every 50 ms.
    pub fn heartbeat_every(&self) -> Duration {
        (self.stall_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Observed) -> R) -> R {
        let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        let entry = runners.entry(name.to_owned()).or_insert_with(|| Observed {
            leading: false,
            healthy_at: Utc::now(),
            blocked: None,
            waiting_now: None,
            attempts: 0,
        });
        f(entry)
    }

    /// The runner of `name` here leads it (or stopped leading it).
    pub fn set_leading(&self, name: &str, leading: bool) {
        self.with(name, |o| {
            if leading && !o.leading {
                // A new term starts healthy: the stall bound counts from here.
                o.healthy_at = Utc::now();
            }
            o.leading = leading;
        });
    }

    /// The runner applied a batch or found itself at the head.
    pub fn healthy(&self, name: &str) {
        self.with(name, |o| {
            o.healthy_at = Utc::now();
            o.blocked = None;
            o.attempts = 0;
        });
    }

    /// The runner's step did not fail (whatever it found): it is not
    /// retrying any more. What blocks it, if anything, stays (the horizon).
    pub fn succeeded(&self, name: &str) {
        self.with(name, |o| {
            if o.attempts > 0 {
                o.attempts = 0;
                o.blocked = None;
            }
        });
    }

    /// The runner's step failed, `attempts` times in a row now, on `wait`
    /// (kept with its first `since` while the same kind of thing goes on
    /// failing it).
    pub fn failed(&self, name: &str, wait: Wait, attempts: i64) {
        self.blocked(name, wait);
        self.with(name, |o| o.attempts = attempts);
    }

    /// The runner's last step was blocked by `wait` (kept with its first
    /// `since` while the same kind of thing goes on blocking it).
    pub fn blocked(&self, name: &str, mut wait: Wait) {
        self.with(name, |o| {
            if let Some(previous) = &o.blocked {
                if previous.kind == wait.kind {
                    wait.since = previous.since;
                }
            }
            o.blocked = Some(wait);
        });
    }

    /// A wait begins (`Some`) or ends (`None`).
    pub fn waiting(&self, name: &str, wait: Option<Wait>) {
        self.with(name, |o| o.waiting_now = wait);
    }

    /// The runner of `name` here is gone (shutdown, stood down).
    pub fn forget(&self, name: &str) {
        self.runners.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// The local runner of `name`, when this process leads it.
    pub fn local(&self, name: &str) -> Option<LocalRunner> {
        let runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        let o = runners.get(name).filter(|o| o.leading)?;
        Some(LocalRunner {
            healthy_at: o.healthy_at,
            wait: o.waiting_now.clone().or_else(|| o.blocked.clone()),
            attempts: o.attempts,
        })
    }

    /// Every projection this process leads, for its heartbeat.
    pub fn led(&self) -> Vec<(String, LocalRunner)> {
        let runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        runners
            .iter()
            .filter(|(_, o)| o.leading)
            .map(|(name, o)| {
                let wait = o.waiting_now.clone().or_else(|| o.blocked.clone());
                (name.clone(), LocalRunner { healthy_at: o.healthy_at, wait, attempts: o.attempts })
            })
            .collect()
    }

    /// Given that `name` is behind: how long it has been behind without
    /// progress, and, once that reaches the stall bound, what it waits on.
    ///
    /// `behind_since`: when the oldest event it has not applied was
    /// recorded, where known (a projection idle for an hour that just got
    /// an event is not stalled until that event has waited the bound).
    pub fn judge(
        &self,
        name: &str,
        durable: &DurableFacts,
        behind_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Judged {
        let bound = chrono::Duration::from_std(self.stall_after).unwrap_or(chrono::Duration::MAX);
        // Behind without progress since the later of the two (never: since forever).
        let judged = |since: Option<DateTime<Utc>>, cause: &dyn Fn(DateTime<Utc>) -> Wait| {
            let since = since.max(behind_since);
            let behind_for = since.map_or(chrono::Duration::MAX, |s| (now - s).max(chrono::Duration::zero()));
            let wait = (behind_for >= bound).then(|| cause(since.unwrap_or(now)));
            Judged { behind_for: behind_for.to_std().unwrap_or(Duration::MAX), wait }
        };
        if let Some(local) = self.local(name) {
            let wait = local.wait.clone();
            return judged(Some(local.healthy_at), &|since| wait.clone().unwrap_or_else(|| unknown(since, now)));
        }
        let fresh = durable.heartbeat_at.is_some_and(|h| now - h < bound);
        if !fresh {
            return judged(durable.heartbeat_at, &|_| {
                let detail = match (durable.heartbeat_at, &durable.owner) {
                    (Some(at), Some(owner)) => format!(
                        "no runner: the last heartbeat, from {owner}, is {:.1} s old (it died or cannot reach the database, and no other instance took over)",
                        seconds(now - at)
                    ),
                    (Some(at), None) => format!("no runner: the last heartbeat is {:.1} s old", seconds(now - at)),
                    (None, _) => {
                        "no runner: no instance has run it yet (do all instances run --role api?)".to_owned()
                    }
                };
                Wait {
                    kind: WaitKind::NoRunner,
                    detail,
                    since: durable.heartbeat_at.unwrap_or(now),
                    blockers: Vec::new(),
                }
            });
        }
        let reported = durable.waiting_on.as_deref().and_then(|json| serde_json::from_str::<Wait>(json).ok());
        judged(durable.progressed_at, &|since| reported.clone().unwrap_or_else(|| unknown(since, now)))
    }
}

impl Progress {
    /// Whether the runner of `name` is retrying now: its last steps failed
    /// (this process's runner, or the leader elsewhere as of a heartbeat
    /// younger than the stall bound). Derived whenever asked, like the
    /// stall: a runner whose step succeeds is not retrying from that moment
    /// here, and from its next heartbeat everywhere, with nothing to clear.
    pub fn failing(&self, name: &str, durable: &DurableFacts, now: DateTime<Utc>) -> Option<Failing> {
        if let Some(local) = self.local(name) {
            return (local.attempts > 0).then(|| Failing {
                attempts: local.attempts,
                wait: local.wait.unwrap_or_else(|| unknown(local.healthy_at, now)),
            });
        }
        let bound = chrono::Duration::from_std(self.stall_after).unwrap_or(chrono::Duration::MAX);
        let fresh = durable.heartbeat_at.is_some_and(|h| now - h < bound);
        if !fresh || durable.attempts <= 0 {
            return None;
        }
        let wait = durable.waiting_on.as_deref().and_then(|json| serde_json::from_str::<Wait>(json).ok());
        Some(Failing {
            attempts: durable.attempts,
            wait: wait.unwrap_or_else(|| unknown(durable.progressed_at.unwrap_or(now), now)),
        })
    }
}

/// What [`Progress::judge`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// How long the projection has been behind without progress.
    pub behind_for: Duration,
    /// Once that reaches the stall bound: what it waits on.
    pub wait: Option<Wait>,
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn unknown(since: DateTime<Utc>, now: DateTime<Utc>) -> Wait {
    Wait {
        kind: WaitKind::Unknown,
        detail: format!(
            "behind the log with no progress for {:.1} s; its runner is alive and names no cause",
            seconds(now - since)
        ),
        since,
        blockers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(ms: i64) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn a_leader_blocked_past_the_bound_names_its_wait_and_not_before() {
        let progress = Progress::new(Duration::from_millis(1_000));
        progress.set_leading("v", true);
        progress.blocked("v", Wait::new(WaitKind::Lock, "order_summary"));
        let facts = DurableFacts::default();
        assert_eq!(progress.judge("v", &facts, Some(ago(5_000)), Utc::now()).wait, None, "healthy a moment ago");
        let later = Utc::now() + chrono::Duration::milliseconds(1_500);
        let wait = progress.judge("v", &facts, Some(ago(5_000)), later).wait.expect("stalled");
        assert_eq!(wait.kind, WaitKind::Lock);
        // An event that arrived just now does not make an idle projection stalled.
        assert_eq!(progress.judge("v", &facts, Some(later), later).wait, None);
        progress.healthy("v");
        assert_eq!(progress.local("v").and_then(|l| l.wait), None, "progress clears the cause");
    }

    #[test]
    fn a_missing_heartbeat_means_no_runner() {
        let progress = Progress::new(Duration::from_millis(1_000));
        let now = Utc::now();
        let never = DurableFacts::default();
        assert_eq!(progress.judge("v", &never, Some(ago(3_000)), now).wait.map(|w| w.kind), Some(WaitKind::NoRunner));
        let stale = DurableFacts { heartbeat_at: Some(ago(5_000)), owner: Some("a".into()), ..Default::default() };
        assert_eq!(progress.judge("v", &stale, Some(ago(2_000)), now).wait.map(|w| w.kind), Some(WaitKind::NoRunner));
        let fresh = DurableFacts {
            heartbeat_at: Some(ago(100)),
            progressed_at: Some(ago(100)),
            waiting_on: None,
            owner: Some("a".into()),
            attempts: 0,
        };
        assert_eq!(progress.judge("v", &fresh, Some(ago(3_000)), now).wait, None, "a live, healthy runner");
        let blocked = DurableFacts {
            heartbeat_at: Some(ago(100)),
            progressed_at: Some(ago(4_000)),
            waiting_on: serde_json::to_string(&Wait::new(WaitKind::Horizon, "an open writer")).ok(),
            owner: Some("a".into()),
            attempts: 0,
        };
        assert_eq!(progress.judge("v", &blocked, Some(ago(3_000)), now).wait.map(|w| w.kind), Some(WaitKind::Horizon));
    }

    #[test]
    fn retrying_is_derived_from_the_last_steps_and_clears_with_the_first_success() {
        let progress = Progress::new(Duration::from_millis(1_000));
        let none = DurableFacts::default();
        progress.set_leading("v", true);
        assert_eq!(progress.failing("v", &none, Utc::now()), None);
        progress.failed("v", Wait::new(WaitKind::SqliteWriteLock, "database is locked"), 1);
        progress.failed("v", Wait::new(WaitKind::SqliteWriteLock, "database is locked"), 2);
        let failing = progress.failing("v", &none, Utc::now()).expect("retrying");
        assert_eq!(failing.attempts, 2);
        assert_eq!(failing.describe(), "retrying (attempt 2): database is locked");
        // The first step that does not fail ends it, whatever it found.
        progress.succeeded("v");
        assert_eq!(progress.failing("v", &none, Utc::now()), None);
        assert_eq!(progress.local("v").and_then(|l| l.wait), None, "the failure's cause goes with it");
        // A horizon wait after a success is not a failure, and stays.
        progress.blocked("v", Wait::new(WaitKind::Horizon, "an open writer"));
        progress.succeeded("v");
        assert_eq!(progress.local("v").and_then(|l| l.wait).map(|w| w.kind), Some(WaitKind::Horizon));
    }

    #[test]
    fn another_instances_retrying_runner_is_read_from_a_fresh_heartbeat_only() {
        let progress = Progress::new(Duration::from_millis(1_000));
        let wait = serde_json::to_string(&Wait::new(WaitKind::DatabaseOutage, "refused")).ok();
        let fresh =
            DurableFacts { heartbeat_at: Some(ago(100)), waiting_on: wait.clone(), attempts: 3, ..Default::default() };
        let failing = progress.failing("v", &fresh, Utc::now()).expect("retrying elsewhere");
        assert_eq!((failing.attempts, failing.wait.kind), (3, WaitKind::DatabaseOutage));
        let recovered = DurableFacts { heartbeat_at: Some(ago(100)), attempts: 0, ..Default::default() };
        assert_eq!(progress.failing("v", &recovered, Utc::now()), None);
        let stale =
            DurableFacts { heartbeat_at: Some(ago(5_000)), waiting_on: wait, attempts: 3, ..Default::default() };
        assert_eq!(progress.failing("v", &stale, Utc::now()), None, "no runner is not a retrying one");
    }

    #[test]
    fn a_wait_in_progress_wins_over_the_last_outcome() {
        let progress = Progress::new(Duration::from_millis(10));
        progress.set_leading("v", true);
        progress.blocked("v", Wait::new(WaitKind::Failing, "x"));
        progress.waiting("v", Some(Wait::new(WaitKind::SqliteWriteLock, "BEGIN IMMEDIATE")));
        assert_eq!(progress.local("v").and_then(|l| l.wait).map(|w| w.kind), Some(WaitKind::SqliteWriteLock));
        progress.waiting("v", None);
        assert_eq!(progress.local("v").and_then(|l| l.wait).map(|w| w.kind), Some(WaitKind::Failing));
    }
}
