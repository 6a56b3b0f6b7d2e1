//! The loop that drives projection runners ([`super::runner`]), one or
//! several at a time, and the grouped step. The supervisors
//! ([`super::supervisor`]) run it: grouped for every async projection a
//! node runs, alone for each inline projection and the exporter.
//!
//! **Grouped steps.** Every projection a node leads in async mode is
//! applied together: the log is read once (from the lowest checkpoint),
//! and one read-database transaction applies each projection's part of the
//! batch, moves every checkpoint with one statement (which also queues the
//! NOTIFYs), and commits once: one read, one transaction and one commit
//! per batch, however many projections.
//!
//! What each projection keeps of its own:
//! - **leadership**: each runner still holds its own advisory lock; the
//!   group steps only those it leads (others stand by, per projection);
//! - **fencing**: every checkpoint row is locked and checked (position,
//!   status, fence token) before anything is applied;
//! - **isolation from locks** (PostgreSQL): projector sessions wait at most
//!   `lock_timeout` for a lock (`crate::db::Db::PROJECTOR_LOCK_TIMEOUT`). A
//!   projection whose statement runs past it is rolled back to its
//!   savepoint and set aside: the others commit and move on, and it steps
//!   alone, in its own transaction, with back-off, until a step succeeds.
//!   Its status names the sessions holding the lock (`super::stall`);
//! - **poison policies**: each projection applies inside a savepoint; one
//!   that fails is rolled back to it alone and then stepped by itself,
//!   after the commit, on the single-projection path that finds the poison
//!   event and applies its policy (stop or skip). The others are not held
//!   back;
//! - **exactly once**: a checkpoint moves in the same transaction as its
//!   projection's rows.
//!
//! **Wake-ups that find nothing cost no query**: a runner woken by an
//! append this process heard of (a command, or another instance's NOTIFY)
//! steps only if that append lies beyond its checkpoint. The poll interval
//! remains the safety net for appends nobody announced.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use sea_orm::TransactionTrait;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apply::{ApplyContext, ApplyError};
use super::projector::commit::{claim_all, Claim, Standing};
use super::projector::poison::panic_reason;
use super::projector::Projector;
use super::runner::{Prepared, Runner};
use super::runtime::{StepError, StepOutcome};
use crate::domain::event::RecordedEvent;
use crate::token::LogPosition;

/// Why a runner waits, which decides what wakes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Step now.
    Now,
    /// After its last step: at `at`, or sooner when an append lands beyond its checkpoint.
    Stepped { at: Instant },
    /// Standing by, stood down or backing off a failed take-over: at `at`,
    /// or (a standby) sooner on a release notice.
    Waiting { at: Instant, on_release: bool },
}

impl Projector {
    /// Runs until `shutdown`: step while there is work, then sleep until a
    /// wake-up or the poll interval. Database errors back off and retry
    /// (and show as `retrying`). With `locks` (PostgreSQL) only the holder
    /// of the projection's advisory lock steps; the others stand by and take
    /// over when it goes away or hands over. On shutdown the runner finishes
    /// its batch and releases its lock at once.
    pub async fn run(
        self,
        appended: watch::Receiver<LogPosition>,
        poll_interval: Duration,
        shutdown: CancellationToken,
        locks: Option<Arc<super::leader::Locks>>,
    ) {
        run(vec![self], appended, poll_interval, shutdown, locks, false).await;
    }
}

/// Drives `projectors` until `shutdown`. With `grouped`, those that are
/// ready step together (see the module docs); otherwise each alone.
pub(super) async fn run(
    projectors: Vec<Projector>,
    mut appended: watch::Receiver<LogPosition>,
    poll_interval: Duration,
    shutdown: CancellationToken,
    locks: Option<Arc<super::leader::Locks>>,
    grouped: bool,
) {
    let Some(mut released) = projectors.first().map(Projector::watch_released) else { return };
    let mut runners: Vec<Runner> = projectors.into_iter().map(|p| Runner::new(p, poll_interval)).collect();
    let mut due = vec![Due::Now; runners.len()];
    // The release count this loop last acted on. A release notice is acted
    // on here, at the top of the loop, whatever woke the loop: one that
    // landed while the loop was stepping (not waiting in its `select!`) and
    // the loop then went round at once would otherwise be marked seen
    // without its standbys trying, and they would wait for their periodic
    // try (`--standby-retry-ms`, ten minutes in the hand-over test).
    let mut releases_acted_on = *released.borrow_and_update();
    // Gathering (`--projection-gather-ms`): under load, a wake that comes
    // sooner than `gather` after the last batch began waits for the rest of
    // it, so the commits landing meanwhile share the next batch (one
    // transaction, one notice, one kept answer dropped instead of several).
    // An idle loop never waits: its last batch is long past.
    let gather = runners.iter().map(|r| r.projector.gather).max().unwrap_or_default();
    let mut last_batch: Option<Instant> = None;
    let mut backlog = false;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Marked seen *before* the runners prepare: a release that lands
        // after a failed try then still changes the count for the next round.
        let releases = *released.borrow_and_update();
        if releases != releases_acted_on {
            releases_acted_on = releases;
            for d in &mut due {
                if matches!(d, Due::Waiting { on_release: true, .. }) {
                    *d = Due::Now;
                }
            }
        }
        let now = Instant::now();
        let head = *appended.borrow();
        let mut ready = Vec::new();
        for (i, runner) in runners.iter_mut().enumerate() {
            let go = match due[i] {
                Due::Now => true,
                Due::Stepped { at } => at <= now || runner.projector.known_checkpoint().is_none_or(|c| head > c),
                Due::Waiting { at, .. } => at <= now,
            };
            if !go {
                continue;
            }
            match runner.prepare(locks.as_ref(), poll_interval).await {
                Prepared::Ready => ready.push(i),
                Prepared::Wait { retry_in, on_release } => due[i] = Due::Waiting { at: now + retry_in, on_release },
            }
        }
        if !ready.is_empty() {
            last_batch = Some(Instant::now());
            // Runners set aside by a lock step alone until they succeed.
            let (together, alone): (Vec<usize>, Vec<usize>) = ready.iter().partition(|&&i| grouped && !runners[i].solo);
            let mut outcomes = if together.len() > 1 {
                step_group(&runners, &together).await
            } else {
                let mut outcomes = Vec::with_capacity(together.len());
                for &i in &together {
                    outcomes.push((i, runners[i].projector.step().await));
                }
                outcomes
            };
            for &i in &alone {
                outcomes.push((i, runners[i].projector.step().await));
            }
            let head = *appended.borrow();
            let now = Instant::now();
            // A full batch means the log may hold more than anyone announced
            // (a backlog from before this process started, or written while
            // it was away): read on at once. (All members a grouped step
            // applied stand at the same position, so one full part speaks
            // for all of them.)
            // (A segment's count is of its own events only: after a batch
            // it reads again at once, which costs one read when it caught up.)
            let full_batch = outcomes.iter().any(|(i, outcome)| {
                let p = &runners[*i].projector;
                matches!(outcome, Ok(StepOutcome::Applied { events, .. })
                    if p.fills_a_batch(*events) || p.segment.is_split())
            });
            backlog = full_batch;
            for (i, outcome) in outcomes {
                let applied = matches!(outcome, Ok(StepOutcome::Applied { .. }));
                due[i] = match runners[i].settle(outcome, head, poll_interval, locks.as_ref()).await {
                    // A partial batch caught up with the log, and with every
                    // append this process heard of: the next one wakes it,
                    // no need to read again now.
                    None if applied
                        && !full_batch
                        && runners[i].projector.known_checkpoint().is_some_and(|c| c >= head) =>
                    {
                        Due::Stepped { at: now + poll_interval }
                    }
                    None => Due::Now,
                    Some(pause) => Due::Stepped { at: now + pause },
                };
            }
        }
        if due.contains(&Due::Now) {
            // Commits that landed during the batch gather too; a backlog
            // (a full batch) is read on at once.
            if backlog {
                tokio::task::yield_now().await;
            } else if !gathered(last_batch, gather, &shutdown).await {
                break;
            }
            continue;
        }
        let wake_at = due
            .iter()
            .map(|d| match d {
                Due::Now => Instant::now(),
                Due::Stepped { at } | Due::Waiting { at, .. } => *at,
            })
            .min()
            .unwrap_or_else(|| Instant::now() + poll_interval);
        let standby = due.iter().any(|d| matches!(d, Due::Waiting { on_release: true, .. }));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = appended.changed() => if !gathered(last_batch, gather, &shutdown).await { break },
            // Only wakes the loop; its top acts on the release.
            _ = released.changed(), if standby => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
    for runner in &mut runners {
        runner.release(locks.as_ref()).await;
    }
}

/// Waits out the rest of `gather` after the batch that began at
/// `last_batch` (when it is past, only yields); false when `shutdown` came first.
async fn gathered(last_batch: Option<Instant>, gather: Duration, shutdown: &CancellationToken) -> bool {
    match last_batch.map(|at| at + gather).filter(|at| *at > Instant::now()) {
        Some(at) => tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(at) => true,
        },
        None => {
            tokio::task::yield_now().await;
            true
        }
    }
}

/// One grouped step of the runners at `ready` (see the module docs).
async fn step_group(runners: &[Runner], ready: &[usize]) -> Vec<(usize, Result<StepOutcome, StepError>)> {
    let members: Vec<(usize, &Projector)> = ready.iter().map(|&i| (i, &runners[i].projector)).collect();
    match try_group(&members).await {
        Ok(mut outcomes) => {
            // Those the group could not apply go alone, after its commit.
            for (i, outcome) in &mut outcomes {
                if matches!(outcome, Ok(StepOutcome::Solo)) {
                    *outcome = solo(&runners[*i].projector).await;
                }
            }
            outcomes
        }
        // A database failure of the group as a whole: each reports it (its class kept).
        Err(e) => members.iter().map(|(i, _)| (*i, Err(e.clone()))).collect(),
    }
}

/// Reads once, applies each member in a savepoint, moves every checkpoint
/// in one statement, commits once. A member whose part fails (or meets an
/// event that does not decode) comes back `Solo`.
async fn try_group(members: &[(usize, &Projector)]) -> Result<Vec<(usize, Result<StepOutcome, StepError>)>, StepError> {
    let first = members[0].1;
    // Where each member stands (one query when any is not known).
    let projectors: Vec<&Projector> = members.iter().map(|(_, p)| *p).collect();
    let mut from: BTreeMap<usize, LogPosition> = BTreeMap::new();
    let mut outcomes: Vec<(usize, Result<StepOutcome, StepError>)> = Vec::new();
    for ((i, _), standing) in members.iter().zip(Projector::standings(&projectors).await?) {
        match standing {
            Standing::At(at) => {
                from.insert(*i, at);
            }
            Standing::Stopped => outcomes.push((*i, Ok(StepOutcome::Stopped))),
            Standing::Unregistered => outcomes.push((*i, Ok(StepOutcome::Solo))),
        }
    }
    let Some(lowest) = from.values().min().copied() else { return Ok(outcomes) };
    let batch = first.read_after(lowest).await?;
    if batch.is_empty() {
        outcomes.extend(from.keys().map(|i| (*i, Ok(StepOutcome::Idle))));
        return Ok(outcomes);
    }
    // An event that does not decode: each member meets it on its own path
    // (dead letter, or standing down for a newer release).
    let events: Vec<RecordedEvent> = batch.iter().map_while(|e| e.as_ref().ok().cloned()).collect();
    if events.len() < batch.len() {
        outcomes.extend(from.keys().map(|i| (*i, Ok(StepOutcome::Solo))));
        return Ok(outcomes);
    }
    let names: Vec<&str> = members.iter().map(|(_, p)| p.name()).collect();
    let span = super::projector::batch_span(&names, &events);
    tracing::Instrument::instrument(apply_group(members, first, &from, outcomes, events, lowest), span).await
}

/// The grouped step's transaction (see [`try_group`]), in its batch's span.
async fn apply_group<'a>(
    members: &'a [(usize, &'a Projector)],
    first: &'a Projector,
    from: &BTreeMap<usize, LogPosition>,
    mut outcomes: Vec<(usize, Result<StepOutcome, StepError>)>,
    events: Vec<RecordedEvent>,
    lowest: LogPosition,
) -> Result<Vec<(usize, Result<StepOutcome, StepError>)>, StepError> {
    let to = events.last().map(|e| LogPosition::new(e.tx_id, e.position)).unwrap_or(lowest);
    let started = std::time::Instant::now();
    let names: Vec<&str> = members.iter().map(|(_, p)| p.name()).collect();
    let txn = first.begin(&names).await?;
    // Lock every checkpoint row and check it (fencing) before applying anything.
    let standing: Vec<(usize, &Projector, LogPosition)> =
        members.iter().filter_map(|(i, p)| from.get(i).map(|at| (*i, *p, *at))).collect();
    let checked: Vec<(&Projector, LogPosition)> = standing.iter().map(|(_, p, at)| (*p, *at)).collect();
    let unmoved = Projector::unmoved(&txn, &checked).await?;
    let mut claims: Vec<(usize, Claim<'_>)> = Vec::new();
    for ((i, p, at), unmoved) in standing.into_iter().zip(unmoved) {
        if !unmoved {
            outcomes.push((i, Ok(StepOutcome::Fenced)));
            continue;
        }
        let part: Vec<RecordedEvent> =
            events.iter().filter(|e| LogPosition::new(e.tx_id, e.position) > at).cloned().collect();
        if part.is_empty() {
            outcomes.push((i, Ok(StepOutcome::Idle)));
            continue;
        }
        // A segment applies its own events and moves past the others (none
        // of its own: it only moves).
        let part = if p.segment.is_split() { p.own(&part) } else { part };
        if part.is_empty() {
            claims.push((i, Claim::new(p, at, to, &part)));
            continue;
        }
        let savepoint = txn.begin().await?;
        let applying = p.projection.apply(&savepoint, &part, ApplyContext { position_guard: true });
        // A panic in one projection's apply is that projection's problem:
        // rolled back to its savepoint, it goes alone (and is dead-lettered there).
        let result = match AssertUnwindSafe(applying).catch_unwind().await {
            Ok(result) => result,
            Err(_) => Err(ApplyError::Poison { position: to.position, reason: "panicked".into() }),
        };
        match result {
            Ok(()) => {
                savepoint.commit().await?;
                claims.push((i, Claim::new(p, at, to, &part)));
            }
            Err(ApplyError::Database(e)) if crate::db::classify(&e) == crate::db::DbFailure::LockTimeout => {
                // Another session holds a lock this projection needs: set
                // it aside (rolled back to its savepoint); the others go on.
                savepoint.rollback().await?;
                outcomes.push((i, Err(e.into())));
            }
            Err(ApplyError::Database(e)) if crate::db::classify(&e).recovery() == crate::db::Recovery::Retry => {
                // The connection, the server or the deployment: the whole
                // group retries.
                return Err(e.into());
            }
            Err(_) => {
                savepoint.rollback().await?;
                outcomes.push((i, Ok(StepOutcome::Solo)));
            }
        }
    }
    let (order, claims): (Vec<usize>, Vec<Claim<'_>>) = claims.into_iter().unzip();
    if !claims.is_empty() {
        claim_all(&txn, &claims).await?;
    }
    txn.commit().await?;
    let elapsed = started.elapsed().as_secs_f64();
    for (i, claim) in order.into_iter().zip(claims) {
        outcomes.push((i, Ok(claim.committed(elapsed, &events))));
    }
    Ok(outcomes)
}

/// A step alone, for a member the group could not apply. A panic here is
/// isolated like the supervisor does it ([`super::supervisor::supervise_one`]):
/// logged, counted, and the event the projection was at dead-lettered with
/// the panic as its reason, so its policy applies and the group lives on.
async fn solo(projector: &Projector) -> Result<StepOutcome, StepError> {
    match AssertUnwindSafe(projector.step()).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let reason = panic_reason(panic.as_ref());
            let name = projector.name();
            tracing::error!(projection = name, reason = %reason, "the projector panicked; dead-lettering the event it was at");
            metrics::counter!(crate::metrics::PROJECTOR_PANICS, "projection" => name).increment(1);
            projector.dead_letter_panic(&reason).await?;
            projector.forget_checkpoint();
            Ok(StepOutcome::DeadLettered { position: 0 })
        }
    }
}
