//! Supervision: the projector loops outlive their panics.
//!
//! One generic [`supervise`] runs a task until shutdown and starts it again
//! after a panic, with the crate's back-off ([`crate::backoff`]), which
//! starts over once a run has been healthy for [`HEALTHY_RUN`]. Two entry
//! points use it:
//!
//! - [`supervise_group`]: the grouped loop of every async projection a node
//!   runs (a projection's own panic is isolated inside the loop; this
//!   catches a panic of the loop itself);
//! - [`supervise_one`]: one projector in a loop of its own (each inline
//!   projection, the exporter). Its panic is logged, counted
//!   (`twofold_projector_panics_total`), and the event the projector was at
//!   is dead-lettered with the panic as its reason, so the projection's
//!   policy applies and `dead-letters retry|skip` can act on it.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::leader::Locks;
use super::projector::poison::panic_reason;
use super::projector::Projector;
use crate::backoff::Backoff;
use crate::token::LogPosition;

/// A run that lasted this long was healthy: the next panic's pause starts over.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs what `start` spawns until it ends or `shutdown`; after a panic,
/// calls `on_panic` with its message and starts it again after a back-off
/// (1 s doubling up to a minute, reset by a healthy run).
async fn supervise<F, P>(start: impl Fn() -> F, on_panic: impl Fn(String) -> P, shutdown: CancellationToken)
where
    F: Future<Output = ()> + Send + 'static,
    P: Future<Output = ()>,
{
    let mut backoff = Backoff::new(Duration::from_secs(1), HEALTHY_RUN);
    loop {
        // The runtime's clock, like the pause below (one clock for both).
        let started = tokio::time::Instant::now();
        let panic = match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return,
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        on_panic(panic_reason(panic.as_ref())).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_pause()) => {}
        }
    }
}

/// Runs the grouped loop (see `group.rs`) for the projectors `make` builds,
/// and starts it again should the loop itself panic.
pub async fn supervise_group(
    make: impl Fn() -> Vec<Projector>,
    appended: watch::Receiver<LogPosition>,
    poll_interval: Duration,
    shutdown: CancellationToken,
    locks: Option<Arc<Locks>>,
) {
    let start = || super::group::run(make(), appended.clone(), poll_interval, shutdown.clone(), locks.clone(), true);
    let on_panic = |reason: String| async move {
        tracing::error!(reason = %reason, "the projection group panicked; restarting it");
    };
    supervise(start, on_panic, shutdown.clone()).await;
}

/// Runs the projector `make` builds in a loop of its own until `shutdown`;
/// after a panic, dead-letters the event it was at (see the module docs)
/// and starts a new one.
pub async fn supervise_one(
    make: impl Fn() -> Projector,
    appended: watch::Receiver<LogPosition>,
    poll_interval: Duration,
    shutdown: CancellationToken,
    locks: Option<Arc<Locks>>,
) {
    let start =
        || super::group::run(vec![make()], appended.clone(), poll_interval, shutdown.clone(), locks.clone(), false);
    let on_panic = |reason: String| {
        let projector = make();
        async move {
            let name = projector.name();
            tracing::error!(projection = name, reason = %reason, "the projector panicked; dead-lettering the event it was at and restarting it");
            metrics::counter!(crate::metrics::PROJECTOR_PANICS, "projection" => name).increment(1);
            if let Err(e) = projector.dead_letter_panic(&reason).await {
                tracing::warn!(projection = name, error = %e, "could not record the panic");
            }
        }
    };
    supervise(start, on_panic, shutdown.clone()).await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    /// Runs [`supervise`] on a task that panics after each run's length in
    /// `runs` (virtual time), then ends; returns when each run started and
    /// how many panics `on_panic` was told of.
    async fn starts(runs: Vec<Duration>, shutdown: CancellationToken) -> (Vec<Instant>, usize) {
        let started: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let runs = Arc::new(Mutex::new(runs.into_iter()));
        let start = || {
            let (started, runs) = (started.clone(), runs.clone());
            async move {
                started.lock().expect("starts").push(Instant::now());
                let run = runs.lock().expect("runs").next();
                if let Some(run) = run {
                    // The run's length, on the paused clock, is what the test is about.
                    tokio::time::sleep(run).await;
                    panic!("boom after {run:?}");
                }
            }
        };
        let panics = Arc::new(Mutex::new(Vec::new()));
        let on_panic = |reason: String| {
            panics.lock().expect("panics").push(reason);
            async {}
        };
        supervise(start, on_panic, shutdown).await;
        let started = started.lock().expect("starts").clone();
        let panics = panics.lock().expect("panics").len();
        (started, panics)
    }

    /// The pause before restart `i`: from the end of run `i - 1` to the start of run `i`.
    fn pauses(started: &[Instant], runs: &[Duration]) -> Vec<Duration> {
        started.windows(2).zip(runs).map(|(w, run)| w[1] - w[0] - *run).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_after_a_doubling_pause_that_a_healthy_run_resets() {
        // Eight quick panics, one after a healthy run (a minute), then two more.
        let mut runs = vec![Duration::ZERO; 8];
        runs.push(HEALTHY_RUN);
        runs.extend([Duration::ZERO; 2]);
        let (started, panics) = starts(runs.clone(), CancellationToken::new()).await;
        assert_eq!(panics, runs.len(), "every panic reported");
        assert_eq!(started.len(), runs.len() + 1, "restarted after every panic, ended with the task");
        let pauses = pauses(&started, &runs);
        // Full jitter: between half the nominal pause and all of it, the
        // nominal doubling from 1 s up to a minute (reached by the seventh).
        let nominal = |n: usize| Duration::from_secs(1).saturating_mul(1 << n).min(HEALTHY_RUN);
        let within = |pause: Duration, n: Duration| pause >= n / 2 && pause <= n;
        for (i, pause) in pauses.iter().enumerate().take(8) {
            assert!(within(*pause, nominal(i)), "pause {i}: {pause:?}, nominal {:?}", nominal(i));
        }
        // Run 8 lasted a minute, a healthy run: the pauses start over.
        for (i, pause) in pauses.iter().enumerate().skip(8) {
            assert!(within(*pause, nominal(i - 8)), "pause {i}: {pause:?}, nominal {:?}", nominal(i - 8));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_pause_at_once() {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let begun = Instant::now();
        tokio::spawn(async move {
            // Inside the second pause (nominally 2 s, at least 1 s).
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            stop.cancel();
        });
        let (started, panics) = starts(vec![Duration::ZERO; 10], shutdown).await;
        assert_eq!((started.len(), panics), (2, 2), "no restart after the shutdown");
        assert_eq!(begun.elapsed(), Duration::from_millis(1_200), "ended when told, not after the pause");
    }
}
