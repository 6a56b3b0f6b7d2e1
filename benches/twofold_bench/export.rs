//! Figure 6: the exporter (issue 14), against the NATS JetStream server at
//! `--nats-url` (default `nats://127.0.0.1:4222`), into a stream of its own
//! (deleted afterwards).
//!
//! 1. Throughput on a backlog: after the rebuild phase the whole log (about
//!    a million events in full mode; what the quick run wrote otherwise) is
//!    exported by a fresh `twofold serve --role exporter`; events / time
//!    from its start to its checkpoint at the head of the log.
//! 2. Lag at 200 commands/s: with that exporter caught up and a serving
//!    instance (API and projections, as in production) beside it, `placeOrder` at a steady 200/s (open loop); a core
//!    NATS subscription on the stream's subjects sees each message as the
//!    broker stores it. Lag = arrival − `ce-time` (the event's append,
//!    a little before its commit): an upper bound of commit → publish ack.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::progress;
use crate::server::TWOFOLD_BIN;
use crate::stats::Summary;
use crate::workload::Catalog;

/// What the export phase measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportFigures {
    pub backlog_events: u64,
    pub backlog_seconds: f64,
    pub lag: Summary,
    pub lag_rate: f64,
    pub lag_missed: u64,
}

impl ExportFigures {
    pub fn events_per_second(&self) -> f64 {
        self.backlog_events as f64 / self.backlog_seconds.max(1e-9)
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            // std's Child signals nothing on exit: look again shortly (at most 5 s).
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], log_path: &Path) -> anyhow::Result<Process> {
    let log = std::fs::File::create(log_path).with_context(|| format!("create {}", log_path.display()))?;
    let child = Command::new(TWOFOLD_BIN)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn,twofold::export=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("clone the log file handle")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {TWOFOLD_BIN}"))?;
    Ok(Process(child))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?.local_addr()?.port())
}

/// Whether the exporter's checkpoint has reached the newest event (`None`
/// before it registered). Two index lookups: counting the events still
/// ahead of it, as this did first, scanned up to a million rows every 50 ms
/// and took a core from the exporter it was measuring.
async fn exported_to_head(db: &twofold::db::Db) -> anyhow::Result<Option<bool>> {
    let sql = "SELECT CAST(CASE WHEN c.name IS NULL THEN 2 \
                   WHEN (h.tx_id, h.position) <= (c.last_tx_id, c.last_position) THEN 0 ELSE 1 END AS BIGINT) \
               FROM (SELECT tx_id, position FROM event ORDER BY tx_id DESC, position DESC LIMIT 1) h \
               LEFT JOIN projection_checkpoint c ON c.name = 'event_export'";
    Ok(match crate::load::count(db, sql).await? {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    })
}

pub async fn measure(
    nats_url: &str,
    database_url: &str,
    db: &twofold::db::Db,
    catalog: &Catalog,
    scale: &Scale,
    out_dir: &Path,
) -> anyhow::Result<ExportFigures> {
    let client = async_nats::connect(nats_url).await.with_context(|| format!("connect to NATS at {nats_url}"))?;
    let js = async_nats::jetstream::new(client.clone());
    let id = format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp());
    let (stream, prefix) = (format!("TWOFOLD_BENCH_{id}"), format!("twofold.bench.{id}"));
    let outcome = run(nats_url, database_url, db, catalog, scale, out_dir, &client, &stream, &prefix).await;
    if let Err(e) = js.delete_stream(&stream).await {
        progress!("could not delete stream {stream}: {e}");
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    nats_url: &str,
    database_url: &str,
    db: &twofold::db::Db,
    catalog: &Catalog,
    scale: &Scale,
    out_dir: &Path,
    client: &async_nats::Client,
    stream: &str,
    prefix: &str,
) -> anyhow::Result<ExportFigures> {
    let backlog = crate::load::count(db, "SELECT count(*) FROM event").await?;
    progress!("export: {backlog} events in the log, into stream {stream}");
    let exporter_args: Vec<String> = [
        "--bind",
        &format!("127.0.0.1:{}", free_port()?),
        "--database-url",
        database_url,
        "--role",
        "exporter",
        "--nats-url",
        nats_url,
        "--export-stream",
        stream,
        "--export-subject-prefix",
        prefix,
        "--poll-interval-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let _exporter = spawn(&exporter_args, &out_dir.join("export-exporter.log"))?;
    let deadline = started + scale.rebuild_timeout;
    loop {
        if exported_to_head(db).await? == Some(true) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the exporter did not export {backlog} events within {:?}", scale.rebuild_timeout);
        }
        // The checkpoint is in the database, which announces nothing to this process: look again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backlog_seconds = started.elapsed().as_secs_f64();
    progress!(
        "export: {backlog} events in {backlog_seconds:.2} s ({:.0} events/s)",
        backlog as f64 / backlog_seconds.max(1e-9)
    );

    // Lag at 200 commands/s, with a serving instance (API and projections) beside the exporter.
    let port = free_port()?;
    let api_args: Vec<String> =
        ["--bind", &format!("127.0.0.1:{port}"), "--database-url", database_url, "--role", "all"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let _api = spawn(&api_args, &out_dir.join("export-api.log"))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status().is_success()) {
        if Instant::now() > ready_by {
            bail!("the API process did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gql = Gql::new(&base, 64)?;
    let mut subscription =
        client.subscribe(format!("{prefix}.order.OrderPlaced")).await.context("subscribe to the stream's subjects")?;
    let lags = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let arrivals = {
        let lags = lags.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let arrived = chrono::Utc::now();
                let time = message.headers.as_ref().and_then(|h| h.get("ce-time")).map(|v| v.as_str().to_owned());
                if let Some(Ok(time)) = time.map(|t| chrono::DateTime::parse_from_rfc3339(&t)) {
                    let lag = (arrived - time.with_timezone(&chrono::Utc)).to_std().unwrap_or_default();
                    lags.lock().unwrap_or_else(|p| p.into_inner()).push(lag);
                }
            }
        })
    };
    let rate = 200.0;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (scale.lag_time_200.as_secs_f64() * rate) as u64;
    let catalog = std::sync::Arc::new(catalog.clone());
    let begun = tokio::time::Instant::now();
    let mut sends = Vec::with_capacity(count as usize);
    for i in 0..count {
        tokio::time::sleep_until(begun + interval * i as u32).await;
        let (gql, catalog) = (gql.clone(), catalog.clone());
        let order = catalog.random_order(0xe4_0000 + i);
        sends.push(tokio::spawn(async move { gql.place_order(&catalog, &order).await.is_ok() }));
    }
    let mut sent = 0u64;
    for send in sends {
        if send.await.unwrap_or(false) {
            sent += 1;
        }
    }
    let achieved = sent as f64 / begun.elapsed().as_secs_f64().max(1e-9);
    // Every order placed is exported: wait for the checkpoint, then for the last message.
    let settle_by = Instant::now() + scale.catch_up_timeout;
    while exported_to_head(db).await? != Some(true) && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received_by = Instant::now() + Duration::from_secs(2);
    while (lags.lock().unwrap_or_else(|p| p.into_inner()).len() as u64) < sent && Instant::now() < received_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    arrivals.abort();
    let lags = lags.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let missed = sent.saturating_sub(lags.len() as u64);
    let summary = Summary::of(&lags);
    progress!("export lag at {achieved:.0}/s: {} ({missed} of {sent} not seen)", summary.brief());
    Ok(ExportFigures { backlog_events: backlog, backlog_seconds, lag: summary, lag_rate: achieved, lag_missed: missed })
}
