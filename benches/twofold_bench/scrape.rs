//! What the server says of its projector, from `/metrics`: read before and
//! after a lag run, the difference tells where a notice's time went (how
//! many batches, how large, how long each transaction took, and how old the
//! newest event of a batch was when its notice went out).
use std::collections::HashMap;

use anyhow::Context;

/// The projector's counters for one projection, summed since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProjectorCounters {
    pub batches: f64,
    pub events: f64,
    /// Seconds spent in batch transactions (read, apply, checkpoint, commit).
    pub busy_seconds: f64,
    /// Sum over batches of (notice sent − newest event's append).
    pub notice_latency_seconds: f64,
}

/// What one run's batches looked like (the difference of two readings).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProjectorWindow {
    pub batches: f64,
    pub events_per_batch: f64,
    pub batch_ms: f64,
    /// The share of the run's wall time the projector spent in batches.
    pub busy_share: f64,
    /// From the newest event's append to its batch's notice, per batch.
    pub notice_latency_ms: f64,
}

/// The server's `/metrics` text.
async fn metrics_text(base_url: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .text()
        .await?)
}

/// One counter without labels (0 when the server has not counted yet).
pub async fn counter(base_url: &str, name: &str) -> anyhow::Result<f64> {
    let text = metrics_text(base_url).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(metric, _)| *metric == name)
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0.0))
}

/// The kept-answer counters (`twofold_response_cache_total`): answers sent
/// from memory (`hit`), shared with a twin computing the same answer
/// (`shared`), the previous answer to a reader without a token while a twin
/// computes the new one (`stale`), and computed (`miss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CacheCounters {
    pub hit: f64,
    pub shared: f64,
    pub stale: f64,
    pub miss: f64,
}

impl CacheCounters {
    pub async fn read(base_url: &str) -> anyhow::Result<Self> {
        let text = metrics_text(base_url).await?;
        let mut counters = Self::default();
        for line in text.lines().filter(|l| l.starts_with("twofold_response_cache_total{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let value: f64 = value.parse().unwrap_or(0.0);
            if labels.contains("outcome=\"hit\"") {
                counters.hit = value;
            } else if labels.contains("outcome=\"shared\"") {
                counters.shared = value;
            } else if labels.contains("outcome=\"stale\"") {
                counters.stale = value;
            } else if labels.contains("outcome=\"miss\"") {
                counters.miss = value;
            }
        }
        Ok(counters)
    }

    /// What happened between `self` (before) and `after`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            hit: self.hit - before.hit,
            shared: self.shared - before.shared,
            stale: self.stale - before.stale,
            miss: self.miss - before.miss,
        }
    }

    /// The share of answers computed, not sent from memory.
    pub fn computed_share(&self) -> f64 {
        let all = self.hit + self.shared + self.stale + self.miss;
        if all > 0.0 {
            self.miss / all
        } else {
            0.0
        }
    }
}

impl ProjectorCounters {
    /// Reads them for `projection` from the server's `/metrics`.
    pub async fn read(base_url: &str, projection: &str) -> anyhow::Result<Self> {
        let text = metrics_text(base_url).await?;
        let values = parse(&text, projection);
        let get = |name: &str| values.get(name).copied().unwrap_or(0.0);
        Ok(Self {
            batches: get("twofold_projection_batch_size_count"),
            events: get("twofold_projection_batch_size_sum"),
            busy_seconds: get("twofold_projection_batch_duration_seconds_sum"),
            notice_latency_seconds: get("twofold_notice_latency_seconds_sum"),
        })
    }

    /// What happened between `self` (before) and `after`, over `wall` seconds.
    pub fn window(&self, after: &Self, wall: f64) -> ProjectorWindow {
        let batches = after.batches - self.batches;
        let per_batch = |v: f64| if batches > 0.0 { v / batches } else { 0.0 };
        let busy = after.busy_seconds - self.busy_seconds;
        ProjectorWindow {
            batches,
            events_per_batch: per_batch(after.events - self.events),
            batch_ms: per_batch(busy) * 1e3,
            busy_share: if wall > 0.0 { busy / wall } else { 0.0 },
            notice_latency_ms: per_batch(after.notice_latency_seconds - self.notice_latency_seconds) * 1e3,
        }
    }
}

impl ProjectorWindow {
    pub fn brief(&self) -> String {
        format!(
            "projector: {:.0} batches of {:.1} events, {:.1} ms each ({:.0}% busy), append → notice {:.1} ms",
            self.batches,
            self.events_per_batch,
            self.batch_ms,
            self.busy_share * 100.0,
            self.notice_latency_ms
        )
    }
}

/// `name → value` of the Prometheus text's samples labelled
/// `projection="<projection>"` (a sample of a histogram's `_sum`/`_count`).
fn parse(text: &str, projection: &str) -> HashMap<String, f64> {
    let label = format!("projection=\"{projection}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (name_labels, value) = line.rsplit_once(' ')?;
            let (name, labels) = name_labels.split_once('{').unwrap_or((name_labels, ""));
            labels.contains(&label).then(|| Some((name.to_owned(), value.parse().ok()?)))?
        })
        .collect()
}
