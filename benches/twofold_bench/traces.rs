//! What tracing costs (issue 37): the GraphQL `orders` page and
//! `placeOrder`, each on a server with tracing off and on a server
//! exporting every span (sampling 100%, the SDK's default sampler) over
//! OTLP/HTTP to a receiver in this process, which decodes each export and
//! counts its spans (so the row shows the spans really went out).
//!
//! The page runs with kept answers off (`--response-cache-entries 0`):
//! every request is computed, so the row shows tracing's cost on the work
//! itself, not on a copy sent from memory. Off and on alternate over two
//! rounds (off, on, off, on), each on a fresh server over the same
//! database, so drift of the machine falls on both; each mode's figure
//! pools its two rounds. Targets: on ≤ 10% slower than off; off is the
//! untraced path itself (its spans are of a target no layer takes, so no
//! span is built), which the other phases measure.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use prost::Message;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::{closed_loop, wait_caught_up};
use crate::progress;
use crate::reads::{graphql_orders, HTTP_READERS};
use crate::report::{per_s, percent, Figure, Report};
use crate::server::Server;
use crate::stats::LoopResult;
use crate::workload::Catalog;

/// `placeOrder` workers.
const COMMANDERS: usize = 8;
/// Seeds of the orders placed here (apart from every other phase's).
const SALT: u64 = 0x7_7ACE_0000_0000;
/// The most a traced run may be slower than the untraced one.
const TARGET_SLOWER: f64 = 0.10;

/// An OTLP/HTTP trace receiver counting the spans it is sent.
struct Receiver {
    endpoint: String,
    spans: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind the OTLP receiver")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(AtomicU64::new(0));
        let counted = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counted = counted.clone();
                async move {
                    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                        let n: usize =
                            request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { endpoint, spans, task })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One mode's pooled rounds.
#[derive(Default)]
struct Mode {
    page: LoopResult,
    place: LoopResult,
}

fn pool(into: &mut LoopResult, run: LoopResult) {
    into.latencies.extend(run.latencies);
    into.errors += run.errors;
    into.elapsed += run.elapsed;
    if into.first_error.is_none() {
        into.first_error = run.first_error;
    }
}

pub async fn measure(
    database_url: &str,
    out: &std::path::Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let catalog = Arc::new(catalog.clone());
    let (mut off, mut on) = (Mode::default(), Mode::default());
    for (round, traced) in [false, true, false, true].into_iter().enumerate() {
        let log = out.join(format!("tracing-{round}-server.log"));
        let mut flags = vec!["--response-cache-entries", "0"];
        if traced {
            flags.extend(["--otlp-endpoint", receiver.endpoint.as_str()]);
        }
        // Exports every 200 ms with room for every span of the window (the
        // SDK drops spans beyond its queue, which would understate the cost).
        let env = [
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
        ];
        let server = Server::start_env(database_url, &log, &flags, &env).await.context("start a server")?;
        let readers = Gql::new(&server.base_url, HTTP_READERS)?;
        readers.orders_page().await.context("the page before the round")?;
        let page = graphql_orders("page", &readers, scale.throughput_time).await;
        let commands = Gql::new(&server.base_url, COMMANDERS)?;
        let salt = SALT + round as u64 * 1_000_000_000;
        let place = {
            let catalog = catalog.clone();
            closed_loop("placeOrder", COMMANDERS, scale.throughput_time, scale.throughput_max_ops, move |seq| {
                let (commands, catalog) = (commands.clone(), catalog.clone());
                async move {
                    let order = catalog.random_order(salt + seq);
                    commands.place_order(&catalog, &order).await.map(drop)
                }
            })
            .await
        };
        wait_caught_up(&readers, scale.catch_up_timeout).await?;
        let label = if traced { "on" } else { "off" };
        progress!("tracing {label}, round {}: page {}; placeOrder {}", round / 2 + 1, page.brief(), place.brief());
        let mode = if traced { &mut on } else { &mut off };
        pool(&mut mode.page, page);
        pool(&mut mode.place, place);
        server.stop().await;
    }
    let spans = receiver.spans.load(Ordering::Relaxed);
    progress!("the OTLP receiver decoded {spans} spans");
    for (what, off, on) in [
        ("the orders page (kept answers off)", &off.page, &on.page),
        (&*format!("placeOrder ({COMMANDERS} workers)"), &off.place, &on.place),
    ] {
        let (off_rate, on_rate) = (off.per_second(), on.per_second());
        let slower = (off_rate > 0.0).then(|| 1.0 - on_rate / off_rate);
        let p99 = |r: &LoopResult| r.summary().p99_ms;
        let measured = on.errors == 0 && off.errors == 0 && on.ok() > 0 && off.ok() > 0 && spans > 0;
        report.add_wire(
            Figure::new(
                format!(
                    "{what}, {} with tracing on (100% sampled, {spans} spans exported)",
                    report_store(database_url)
                ),
                format!("{} (p99 {:.1} ms)", per_s(on_rate), p99(on)),
            )
            .num(on_rate)
            .baseline(format!("off: {} (p99 {:.1} ms)", per_s(off_rate), p99(off)), Some(off_rate))
            .ratio(slower, |s| format!("{} slower", percent(s)))
            .target("≤ 10% slower", measured.then(|| slower.is_some_and(|s| s <= TARGET_SLOWER))),
        );
    }
    Ok(())
}

fn report_store(database_url: &str) -> &'static str {
    if database_url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    }
}
