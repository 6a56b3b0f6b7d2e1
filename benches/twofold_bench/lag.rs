//! Figure 3: propagation lag, from a mutation's HTTP response to the
//! notice reaching a WebSocket client.
//!
//! Open loop at a steady 200 and 1,000 commands/s: every command has a
//! scheduled send time, whatever happened to the previous ones (the pacing
//! and the placing live in [`crate::pace`], shared with the read beside
//! writes in [`crate::mixed`]). One run per rate and notice kind (the two
//! kinds are measured apart: a `writeVisible` check can advance the server's
//! known checkpoint before the projector publishes its batch, which then
//! swallows that `projectionUpdated`).
//! Per command:
//!
//! - `projectionUpdated`: 300 ms before the send time, subscribe filtered on
//!   the order id the client chose (so the subscription is in place);
//! - at the send time, `placeOrder` over HTTP;
//! - `writeVisible`: right after the response, subscribe with its token;
//! - lag = arrival of the first notice − arrival of the HTTP response.
//!
//! Then the fan-out: 1,000 connections each subscribed to
//! `projectionUpdated(streamId: X)`, one command on X.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{stream, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout_at;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::pace::{paced, place_at, Placed, Schedule, HTTP_SLOTS};
use crate::progress;
use crate::report::Report;
use crate::scrape::{ProjectorCounters, ProjectorWindow};
use crate::server::open_file_soft_limit;
use crate::stats::Summary;
use crate::workload::Catalog;
use crate::ws::{Notice, WsMux};

const WRITE_VISIBLE: &str = "subscription($token: Token!) { writeVisible(token: $token, timeoutMs: 5000) { visible } }";
const PROJECTION_UPDATED: &str =
    "subscription($streamId: ID!) { projectionUpdated(projections: [\"order_summary\"], streamId: $streamId) { projection token streamIds } }";

/// Subscriptions are spread over this many connections (the server allows
/// 100 subscriptions per connection by default).
const CONNECTIONS: usize = 64;
/// Commands allowed in flight at once; beyond that a scheduled command is
/// skipped (and counted), so an overloaded server cannot exhaust the bench.
/// (2 subscriptions each over 64 connections stays below the cap of 100.)
const MAX_IN_FLIGHT: usize = 2_000;
const PRESUBSCRIBE: Duration = Duration::from_millis(300);
/// How long a notice may take before it counts as missed.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which notice a run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    #[default]
    WriteVisible,
    ProjectionUpdated,
}

impl Probe {
    pub fn name(self) -> &'static str {
        match self {
            Self::WriteVisible => "writeVisible",
            Self::ProjectionUpdated => "projectionUpdated",
        }
    }
}

/// The outcome of one open-loop run.
#[derive(Debug, Default)]
pub struct LagRun {
    pub probe: Probe,
    pub target_rate: u64,
    pub scheduled: u64,
    pub skipped: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub ok: u64,
    /// From the first scheduled send to the last HTTP response (at least the
    /// scheduled duration): the window the achieved rate is measured over.
    pub sending: Duration,
    pub elapsed: Duration,
    pub write_visible: Vec<Duration>,
    pub write_visible_missed: u64,
    pub projection_updated: Vec<Duration>,
    pub projection_updated_missed: u64,
    /// Notices that beat the HTTP response (counted as 0 lag).
    pub early_notices: u64,
    pub send_lateness: Vec<Duration>,
    /// Errors the server sent on the subscriptions (these explain misses).
    pub subscription_errors: u64,
    pub first_subscription_error: Option<String>,
    /// Set on the run at 80% of the highest command rate measured (that rate).
    pub sustained_rate: Option<f64>,
    /// What the server's projector of `order_summary` did meanwhile (its
    /// `/metrics`, read before and after): where the lag went.
    pub projector: Option<ProjectorWindow>,
}

impl LagRun {
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    /// The lags of the probed notice, and how many never came.
    pub fn lags(&self) -> (&[Duration], u64) {
        match self.probe {
            Probe::WriteVisible => (&self.write_visible, self.write_visible_missed),
            Probe::ProjectionUpdated => (&self.projection_updated, self.projection_updated_missed),
        }
    }

    pub fn brief(&self) -> String {
        let (lags, missed) = self.lags();
        format!(
            "target {}/s, achieved {:.0}/s ({} ok, {} failed, {} skipped); {} {} ({} missed, {} before the response); {} subscription errors{}",
            self.target_rate,
            self.achieved_rate(),
            self.ok,
            self.failed,
            self.skipped,
            self.probe.name(),
            Summary::of(lags).brief(),
            missed,
            self.early_notices,
            self.subscription_errors,
            self.first_subscription_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        ) + &self.projector.map(|p| format!("; {}", p.brief())).unwrap_or_default()
    }
}

/// The outcome of the fan-out.
#[derive(Debug, Default)]
pub struct FanOut {
    pub wanted: usize,
    pub connected: usize,
    pub connect_errors: usize,
    pub first_error: Option<String>,
    pub lags: Vec<Duration>,
    pub missed: usize,
}

pub async fn measure(
    gql: &Gql,
    base_url: &str,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let muxes = connect_many(base_url, CONNECTIONS).await.context("open the lag-measurement WebSockets")?;
    let muxes: Arc<Vec<WsMux>> = Arc::new(muxes);
    let catalog = Arc::new(catalog.clone());
    for (rate, duration) in [(200, scale.lag_time_200), (1_000, scale.lag_time_1000)] {
        for probe in [Probe::WriteVisible, Probe::ProjectionUpdated] {
            let run = observed(base_url, open_loop(gql, &muxes, &catalog, probe, rate, duration)).await?;
            progress!("lag at {rate}/s: {}", run.brief());
            report.set_lag(run);
        }
    }
    // At 80% of the highest rate the command phase sustained: how far behind
    // the views are when the machine is busy but not overloaded.
    if let Some(sustained) = report.highest_command_rate() {
        let rate = (sustained * 0.8).round().max(1.0) as u64;
        let mut run =
            observed(base_url, open_loop(gql, &muxes, &catalog, Probe::WriteVisible, rate, scale.lag_time_1000))
                .await?;
        run.sustained_rate = Some(sustained);
        progress!("lag at {rate}/s (80% of {sustained:.0}/s): {}", run.brief());
        report.set_lag(run);
    }
    drop(muxes);

    let subscribers = subscriber_count(scale.subscribers);
    let fan_out = fan_out(gql, base_url, &catalog, subscribers).await?;
    progress!(
        "fan-out: {}/{} subscribers got the notice; {}",
        fan_out.lags.len(),
        fan_out.wanted,
        Summary::of(&fan_out.lags).brief()
    );
    report.set_fan_out(fan_out);
    Ok(())
}

/// One `writeVisible` run at `rate` for `duration` against the server at
/// `base_url`, on WebSockets of its own (the segments phase runs one per
/// server it starts).
pub async fn write_visible_run(
    gql: &Gql,
    base_url: &str,
    catalog: &Arc<Catalog>,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<LagRun> {
    let muxes = Arc::new(connect_many(base_url, CONNECTIONS).await.context("open the lag-measurement WebSockets")?);
    Ok(open_loop(gql, &muxes, catalog, Probe::WriteVisible, rate, duration).await)
}

/// Runs `run` between two readings of the projector's counters; fails if
/// commands went through and the server reports no batch of `order_summary`
/// meanwhile (the metrics this figure rests on are gone or renamed).
async fn observed(base_url: &str, run: impl std::future::Future<Output = LagRun>) -> anyhow::Result<LagRun> {
    let before = ProjectorCounters::read(base_url, "order_summary").await?;
    let started = Instant::now();
    let mut run = run.await;
    // Every command's notice has come (or timed out) when the run returns,
    // so the batches that projected them are counted.
    let after = ProjectorCounters::read(base_url, "order_summary").await?;
    let window = before.window(&after, started.elapsed().as_secs_f64());
    anyhow::ensure!(
        run.ok == 0 || window.batches > 0.0,
        "/metrics reported no order_summary batch during a lag run of {} commands",
        run.ok
    );
    run.projector = Some(window);
    Ok(run)
}

async fn connect_many(base_url: &str, n: usize) -> anyhow::Result<Vec<WsMux>> {
    let mut muxes = Vec::with_capacity(n);
    for _ in 0..n {
        muxes.push(WsMux::connect(base_url).await?);
    }
    Ok(muxes)
}

/// Sends `rate` commands per second for `duration` on a fixed schedule
/// ([`crate::pace`]).
async fn open_loop(
    gql: &Gql,
    muxes: &Arc<Vec<WsMux>>,
    catalog: &Arc<Catalog>,
    probe: Probe,
    rate: u64,
    duration: Duration,
) -> LagRun {
    let schedule = Schedule::new(rate, duration, Instant::now() + PRESUBSCRIBE + Duration::from_millis(50));
    let http_slots = Arc::new(Semaphore::new(HTTP_SLOTS));
    let mut run = LagRun { probe, target_rate: rate, scheduled: schedule.count, ..Default::default() };
    let errors_so_far = subscription_errors(muxes);
    let paced = paced(&schedule, PRESUBSCRIBE, MAX_IN_FLIGHT, |i, send_at| {
        let (gql, muxes, catalog, http_slots) = (gql.clone(), muxes.clone(), catalog.clone(), http_slots.clone());
        async move {
            let n = muxes.len();
            let order = catalog.random_order(0x1A6_0000_0000 + rate * 1_000_000_000 + i);
            one_command(&gql, &http_slots, &muxes[i as usize % n], probe, &catalog, order, send_at).await
        }
    })
    .await;
    run.skipped = paced.skipped;
    let mut last_response = schedule.start;
    for outcome in paced.outcomes {
        match outcome {
            Ok(outcome) => {
                last_response = last_response.max(outcome.responded);
                run.add(outcome);
            }
            Err(e) => {
                run.failed += 1;
                run.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    run.elapsed = schedule.start.elapsed();
    let (errors_before, _) = errors_so_far;
    let (errors_after, first) = subscription_errors(muxes);
    run.subscription_errors = errors_after - errors_before;
    run.first_subscription_error = first;
    run.sending = last_response.saturating_duration_since(schedule.start).max(duration);
    run
}

/// Errors received on all connections: `(count, first message)`.
fn subscription_errors(muxes: &[WsMux]) -> (u64, Option<String>) {
    muxes.iter().map(WsMux::errors).fold((0, None), |(count, first), (n, e)| (count + n, first.or(e)))
}

/// What one command of the open loop saw (the lag of its probe, `None`
/// if the notice never came).
struct CommandLag {
    probe: Probe,
    responded: Instant,
    send_lateness: Duration,
    lag: Option<Duration>,
    early: bool,
}

impl LagRun {
    fn add(&mut self, c: CommandLag) {
        self.ok += 1;
        self.send_lateness.push(c.send_lateness);
        let (lags, missed) = match c.probe {
            Probe::WriteVisible => (&mut self.write_visible, &mut self.write_visible_missed),
            Probe::ProjectionUpdated => (&mut self.projection_updated, &mut self.projection_updated_missed),
        };
        match c.lag {
            Some(lag) => lags.push(lag),
            None => *missed += 1,
        }
        self.early_notices += u64::from(c.early);
    }
}

async fn one_command(
    gql: &Gql,
    http_slots: &Semaphore,
    ws: &WsMux,
    probe: Probe,
    catalog: &Catalog,
    order: crate::workload::OrderSpec,
    send_at: Instant,
) -> anyhow::Result<CommandLag> {
    let update = (probe == Probe::ProjectionUpdated)
        .then(|| ws.subscribe(PROJECTION_UPDATED, json!({ "streamId": order.order_id })));
    let unsubscribe = |sub: &Option<(u64, _)>| {
        if let Some((id, _)) = sub {
            ws.unsubscribe(*id);
        }
    };
    let placed = place_at(gql, http_slots, catalog, &order, send_at).await;
    let Placed { token, responded, send_lateness, .. } = match placed {
        Ok(placed) => placed,
        Err(e) => {
            unsubscribe(&update);
            return Err(e);
        }
    };
    let deadline = (responded + NOTICE_TIMEOUT).into();
    let notice = match update {
        Some((id, mut notices)) => {
            let notice = first_about(&mut notices, &order.order_id.to_string(), responded, deadline).await;
            ws.unsubscribe(id);
            notice
        }
        None => {
            let (id, mut notices) = ws.subscribe(WRITE_VISIBLE, json!({ "token": token }));
            let notice = timeout_at(deadline, notices.recv()).await.ok().flatten().filter(is_visible);
            if notice.is_none() {
                ws.unsubscribe(id);
            }
            notice
        }
    };
    Ok(CommandLag {
        probe,
        responded,
        send_lateness,
        early: notice.as_ref().is_some_and(|n| n.at < responded),
        lag: notice.map(|n| n.at.saturating_duration_since(responded)),
    })
}

/// The first `projectionUpdated` notice that reports the order: one naming
/// it in `streamIds`, or one naming no stream (the server sends those when it
/// cannot tell, and documents that they may concern any stream) that arrives
/// after the HTTP response. `None` if none came before `deadline`.
async fn first_about(
    notices: &mut mpsc::UnboundedReceiver<Notice>,
    order_id: &str,
    responded: Instant,
    deadline: tokio::time::Instant,
) -> Option<Notice> {
    loop {
        let notice = timeout_at(deadline, notices.recv()).await.ok()??;
        let ids = notice.payload["data"]["projectionUpdated"]["streamIds"].as_array();
        let names_it = ids.is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(order_id)));
        let names_none = ids.is_none_or(|ids| ids.is_empty());
        if names_it || (names_none && notice.at >= responded) {
            return Some(notice);
        }
    }
}

fn is_visible(notice: &Notice) -> bool {
    notice.payload["data"]["writeVisible"]["visible"].as_bool() == Some(true)
}

/// The fan-out size, reduced (with a warning) if the open-file limit is too
/// low for that many sockets.
fn subscriber_count(wanted: usize) -> usize {
    match open_file_soft_limit() {
        Some(limit) if limit < 4_096 => {
            let fits = (limit.saturating_sub(300) as usize).clamp(10, wanted);
            progress!("warning: the open-file soft limit is {limit} (< 4096): fan-out reduced to {fits} subscribers; raise it with `ulimit -n 4096`");
            fits
        }
        _ => wanted,
    }
}

/// Opens `wanted` connections, each with one `projectionUpdated(streamId: X)`
/// subscription, then places order X once and times every arrival.
async fn fan_out(gql: &Gql, base_url: &str, catalog: &Catalog, wanted: usize) -> anyhow::Result<FanOut> {
    let order = catalog.random_order(0xFA0_0000_0000);
    let variables = json!({ "streamId": order.order_id });
    let connected: Vec<anyhow::Result<(WsMux, mpsc::UnboundedReceiver<Notice>)>> = stream::iter(0..wanted)
        .map(|_| {
            let variables = variables.clone();
            async move {
                let mux = WsMux::connect(base_url).await?;
                let (_, notices) = mux.subscribe(PROJECTION_UPDATED, variables);
                anyhow::Ok((mux, notices))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut result = FanOut { wanted, ..Default::default() };
    let mut subscribers = Vec::with_capacity(wanted);
    for outcome in connected {
        match outcome {
            Ok(subscriber) => subscribers.push(subscriber),
            Err(e) => {
                result.connect_errors += 1;
                result.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    result.connected = subscribers.len();
    progress!("fan-out: {} connections subscribed ({} failed)", result.connected, result.connect_errors);
    // Give the server time to register every subscription.
    tokio::time::sleep(Duration::from_secs(1)).await;

    gql.place_order(catalog, &order).await.context("fan-out placeOrder")?;
    let responded = Instant::now();
    let deadline = (responded + NOTICE_TIMEOUT).into();
    let order_id = order.order_id.to_string();
    let (muxes, mut notices): (Vec<WsMux>, Vec<_>) = subscribers.into_iter().unzip();
    let arrivals =
        futures_util::future::join_all(notices.iter_mut().map(|n| first_about(n, &order_id, responded, deadline)))
            .await;
    for arrival in arrivals {
        match arrival {
            Some(notice) => result.lags.push(notice.at.saturating_duration_since(responded)),
            None => result.missed += 1,
        }
    }
    result.missed += result.connect_errors;
    drop(muxes);
    Ok(result)
}
