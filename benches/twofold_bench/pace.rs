//! Open-loop pacing, shared by the lag phase ([`crate::lag`]) and the read
//! beside writes ([`crate::mixed`]): commands go out on a fixed schedule,
//! `rate` per second, whatever happened to the previous ones. A closed loop
//! would slow its own sends down as the server slows, and so hide the load
//! the figure is about.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::Semaphore;
use tokio::time::sleep_until;

use crate::gql::Gql;
use crate::stats::Summary;
use crate::workload::{Catalog, OrderSpec};

/// HTTP requests in flight at once (more wait, which shows as send lateness):
/// keeps an overloaded run from opening thousands of sockets.
pub const HTTP_SLOTS: usize = 256;
/// How long one `placeOrder` may take before it counts as failed.
pub const PLACE_TIMEOUT: Duration = Duration::from_secs(5);

/// `count` send times `1 / rate` apart, the first at `start`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rate: u64,
    pub count: u64,
    pub start: Instant,
    pub duration: Duration,
    interval: Duration,
}

impl Schedule {
    pub fn new(rate: u64, duration: Duration, start: Instant) -> Self {
        Self {
            rate,
            count: (rate as f64 * duration.as_secs_f64()).round() as u64,
            start,
            duration,
            interval: Duration::from_secs_f64(1.0 / rate as f64),
        }
    }

    /// When send `i` is due.
    pub fn send_at(&self, i: u64) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }
}

/// What [`paced`] produced: the outcome of every operation it started, in
/// schedule order, and how many sends it skipped.
pub struct Paced<T> {
    pub outcomes: Vec<anyhow::Result<T>>,
    pub skipped: u64,
}

/// Starts `op(i, send_at)` `lead` before each send time of `schedule` (the
/// operation waits for `send_at` itself, so it can prepare in the meantime,
/// e.g. subscribe), unless `max_in_flight` operations are still running: then
/// that send is skipped and counted, so an overloaded server cannot exhaust
/// the bench. Returns once every started operation has finished.
pub async fn paced<T, F, Fut>(schedule: &Schedule, lead: Duration, max_in_flight: usize, op: F) -> Paced<T>
where
    T: Send + 'static,
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let mut skipped = 0;
    let mut tasks = Vec::with_capacity(schedule.count as usize);
    for i in 0..schedule.count {
        let send_at = schedule.send_at(i);
        sleep_until(send_at.checked_sub(lead).unwrap_or(send_at).into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let operation = op(i, send_at);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            operation.await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Err(anyhow!("task panicked: {e}"))));
    }
    Paced { outcomes, skipped }
}

/// One `placeOrder` sent on schedule.
#[derive(Debug, Clone)]
pub struct Placed {
    pub token: String,
    /// When its HTTP response arrived.
    pub responded: Instant,
    /// From the send time to the request going out (waiting for a slot included).
    pub send_lateness: Duration,
    /// From the request going out to its response.
    pub latency: Duration,
}

/// Waits for `send_at`, then for one of `http_slots`, and places `order`;
/// fails if that takes longer than [`PLACE_TIMEOUT`].
pub async fn place_at(
    gql: &Gql,
    http_slots: &Semaphore,
    catalog: &Catalog,
    order: &OrderSpec,
    send_at: Instant,
) -> anyhow::Result<Placed> {
    sleep_until(send_at.into()).await;
    let slot = http_slots.acquire().await?;
    let sent = Instant::now();
    let send_lateness = sent.saturating_duration_since(send_at);
    let placed = tokio::time::timeout(PLACE_TIMEOUT, gql.place_order(catalog, order)).await;
    drop(slot);
    let responded = Instant::now();
    match placed {
        Ok(Ok(token)) => Ok(Placed { token, responded, send_lateness, latency: responded - sent }),
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!("placeOrder took longer than {PLACE_TIMEOUT:?}"),
    }
}

/// An open-loop writer's outcome: `placeOrder` at a fixed rate, nothing else.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    pub target_rate: u64,
    pub scheduled: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    pub first_error: Option<String>,
    /// From the first scheduled send to the last HTTP response (at least the
    /// scheduled duration): the window the achieved rate is measured over.
    pub sending: Duration,
    pub latencies: Vec<Duration>,
    pub send_lateness: Vec<Duration>,
}

impl Writes {
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    pub fn brief(&self) -> String {
        format!(
            "target {}/s, achieved {:.0}/s ({} ok, {} failed, {} skipped); placeOrder {}{}",
            self.target_rate,
            self.achieved_rate(),
            self.ok,
            self.failed,
            self.skipped,
            Summary::of(&self.latencies).brief(),
            self.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target_rate": self.target_rate,
            "achieved_rate": self.achieved_rate(),
            "scheduled": self.scheduled,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "first_error": self.first_error,
            "sending_s": self.sending.as_secs_f64(),
            "latency": Summary::of(&self.latencies),
            "send_lateness": Summary::of(&self.send_lateness),
        })
    }
}

/// Places `schedule.count` random orders on `schedule` through the GraphQL
/// mutation (order `i` from seed `salt + i`), with at most `max_in_flight`
/// commands outstanding.
pub async fn place_orders(
    gql: &Gql,
    catalog: &Arc<Catalog>,
    schedule: &Schedule,
    max_in_flight: usize,
    salt: u64,
) -> Writes {
    let http_slots = Arc::new(Semaphore::new(HTTP_SLOTS));
    let paced = paced(schedule, Duration::ZERO, max_in_flight, |i, send_at| {
        let (gql, catalog, http_slots) = (gql.clone(), catalog.clone(), http_slots.clone());
        async move {
            let order = catalog.random_order(salt + i);
            place_at(&gql, &http_slots, &catalog, &order, send_at).await
        }
    })
    .await;
    let mut writes =
        Writes { target_rate: schedule.rate, scheduled: schedule.count, skipped: paced.skipped, ..Default::default() };
    let mut last_response = schedule.start;
    for outcome in paced.outcomes {
        match outcome {
            Ok(placed) => {
                writes.ok += 1;
                last_response = last_response.max(placed.responded);
                writes.latencies.push(placed.latency);
                writes.send_lateness.push(placed.send_lateness);
            }
            Err(e) => {
                writes.failed += 1;
                writes.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    writes.sending = last_response.saturating_duration_since(schedule.start).max(schedule.duration);
    writes
}
