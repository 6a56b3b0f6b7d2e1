//! A consumer of Twofold's event stream, as an outside team would write one:
//! a durable JetStream pull consumer with explicit acknowledgements that
//! keeps a per-product units-sold total from `OrderPlaced` and
//! `OrderCancelled`, and prints an alert when a product passes a threshold
//! (time to restock).
//!
//! It relies only on what docs/operators.md promises: CloudEvents headers, events
//! of one subject in log order, at-least-once delivery, and `ce-id` unique
//! per event. It is idempotent on `ce-id`: each batch is applied, the
//! totals *and the ids applied* are saved (one atomic file write), and only
//! then acknowledged. A crash before the save loses nothing (the batch is
//! delivered again); a crash after it double-counts nothing (the ids are
//! known). A real service would keep both in its database, in one
//! transaction, with a unique key on `ce-id`.
//!
//! ```text
//! cargo run --example low_stock -- --nats-url nats://127.0.0.1:4222 --threshold 100
//! cargo run --example low_stock -- --help
//! ```
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use clap::Parser;
use futures_util::StreamExt;

#[derive(Debug, Parser)]
#[command(about = "Alerts when a product's units sold pass a threshold, from Twofold's event stream")]
struct Args {
    #[arg(long, env = "TWOFOLD_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The stream Twofold exports into (`--export-stream`).
    #[arg(long, default_value = "TWOFOLD_EVENTS")]
    stream: String,
    /// Twofold's subject prefix (`--export-subject-prefix`).
    #[arg(long, default_value = "twofold.events")]
    subject_prefix: String,
    /// The durable consumer's name: the broker remembers what it acknowledged.
    #[arg(long, default_value = "low-stock")]
    durable: String,
    /// Where the totals and the ids already applied are kept.
    #[arg(long, default_value = "low_stock.json")]
    state: PathBuf,
    /// Alert when a product's units sold reach this many.
    #[arg(long, default_value_t = 100)]
    threshold: i64,
    /// Messages per fetch (and per state save).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Exit once nothing is pending for the consumer (instead of waiting for more).
    #[arg(long)]
    exit_when_caught_up: bool,
    /// Exit after applying about this many messages (to try a restart).
    #[arg(long)]
    stop_after: Option<u64>,
}

/// What survives a restart.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// Units sold per product id.
    totals: BTreeMap<String, i64>,
    /// Products already alerted on.
    alerted: BTreeSet<String>,
    /// Every `ce-id` applied (the idempotency record).
    applied: BTreeSet<i64>,
}

impl State {
    fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes a temporary file and renames it over the old one: a crash
    /// leaves either the old state or the new, never half of one.
    fn save(&self, path: &Path) -> Result<(), String> {
        let temporary = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        std::fs::write(&temporary, bytes).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies one message; false when its `ce-id` was applied before.
    fn apply(&mut self, ce_id: i64, ce_type: &str, body: &serde_json::Value, threshold: i64) -> bool {
        if !self.applied.insert(ce_id) {
            return false;
        }
        let sign = match ce_type.split('.').nth(1) {
            Some("OrderPlaced") => 1,
            Some("OrderCancelled") => -1,
            _ => return true,
        };
        for line in body["lines"].as_array().into_iter().flatten() {
            let (Some(product), Some(quantity)) = (line["productId"].as_str(), line["quantity"].as_i64()) else {
                eprintln!("low_stock: event {ce_id}: a line without productId or quantity, ignored");
                continue;
            };
            let total = self.totals.entry(product.to_owned()).or_default();
            *total = total.saturating_add(sign * quantity);
            if *total >= threshold && self.alerted.insert(product.to_owned()) {
                println!("ALERT: product {product} has sold {total} units (threshold {threshold}): restock it");
            }
        }
        true
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("low_stock: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut state = State::load(&args.state)?;
    let client = async_nats::connect(&args.nats_url).await.map_err(|e| format!("connect to {}: {e}", args.nats_url))?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&args.stream).await.map_err(|e| format!("stream {}: {e}", args.stream))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &args.durable,
            pull::Config {
                durable_name: Some(args.durable.clone()),
                // Only orders: the broker filters, in log order.
                filter_subject: format!("{}.order.>", args.subject_prefix),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", args.durable))?;
    let mut handled: u64 = 0;
    loop {
        let mut messages = consumer
            .fetch()
            .max_messages(args.batch as usize)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| format!("fetch: {e}"))?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            batch.push(message.map_err(|e| format!("fetch: {e}"))?);
        }
        let mut fresh = 0;
        for message in &batch {
            let headers = message.headers.as_ref();
            let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            let (Some(id), Some(ce_type)) = (header("ce-id").and_then(|i| i.parse::<i64>().ok()), header("ce-type"))
            else {
                eprintln!("low_stock: a message without ce-id or ce-type on {}, ignored", message.subject);
                continue;
            };
            let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
            if state.apply(id, &ce_type, &body, args.threshold) {
                fresh += 1;
            }
        }
        // Save, then acknowledge: never the other way round.
        if !batch.is_empty() {
            state.save(&args.state)?;
            for message in &batch {
                message.ack().await.map_err(|e| format!("ack: {e}"))?;
            }
            handled += batch.len() as u64;
            eprintln!("low_stock: {} messages ({fresh} new), {} products", batch.len(), state.totals.len());
        }
        if args.stop_after.is_some_and(|n| handled >= n) {
            return Ok(());
        }
        if args.exit_when_caught_up && batch.is_empty() {
            let mut consumer = consumer.clone();
            let info = consumer.info().await.map_err(|e| format!("consumer info: {e}"))?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                println!("{}", serde_json::json!({ "caughtUp": true, "products": state.totals.len() }));
                return Ok(());
            }
        }
    }
}
