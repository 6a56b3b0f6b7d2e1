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
use std::time::{Duration, Instant};

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
        let started = Instant::now();
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
