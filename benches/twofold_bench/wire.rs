//! Figure 4: what a client sees on the wire.
//!
//! - the 50-order page's bytes with no compression, gzip and br, and the
//!   server CPU each costs per request (server CPU time over a closed loop,
//!   divided by the requests it served);
//! - conditional GETs: requests/s of `If-None-Match` GETs against a view that
//!   did not change (answered 304 without running the query), next to the
//!   same GET executed in full;
//! - `writeVisible` for a token that is already visible, timed from
//!   `subscribe` to `complete` (a client's `await` ends at `complete`, not at
//!   `next`: the stall Nagle's algorithm used to put between the two showed
//!   only there);
//! - across instances (PostgreSQL): `placeOrder` on instance A at a steady
//!   200/s, then `writeVisible` on instance B, timed from A's response to B's
//!   `complete`.
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::timeout_at;

use crate::cli::Scale;
use crate::gql::{Gql, ORDERS_PAGE};
use crate::load::closed_loop;
use crate::progress;
use crate::report::{lag_text, latency, per_s, Figure, Report};
use crate::server::Server;
use crate::stats::{LoopResult, Summary};
use crate::workload::Catalog;
use crate::ws::{Notice, WsMux};

const WRITE_VISIBLE: &str = "subscription($token: Token!) { writeVisible(token: $token, timeoutMs: 5000) { visible } }";
/// Keep-alive connections for the HTTP loops.
const HTTP_CONNECTIONS: usize = 16;
/// Connections instance B's subscriptions are spread over.
const B_CONNECTIONS: usize = 8;
const NOTICE_TIMEOUT: Duration = Duration::from_secs(5);
/// The issue's bound for both visibility figures.
const VISIBLE_P99_MS: f64 = 15.0;

/// A plain HTTP client: no automatic decompression (reqwest is built
/// without it here), so a body's length is what crossed the wire.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(HTTP_CONNECTIONS)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .context("build the HTTP client")
}

/// The page as a GET (what a browser or CDN may cache), with `encoding` in
/// `Accept-Encoding` and `tag` in `If-None-Match`.
async fn get_page(
    http: &reqwest::Client,
    url: &str,
    encoding: &str,
    tag: Option<&str>,
) -> anyhow::Result<(StatusCode, Option<String>, Option<String>, usize)> {
    let mut request = http
        .get(url)
        .query(&[("query", ORDERS_PAGE)])
        .header(ACCEPT, "application/graphql-response+json")
        .header(ACCEPT_ENCODING, encoding);
    if let Some(tag) = tag {
        request = request.header(IF_NONE_MATCH, tag);
    }
    let response = request.send().await.context("GET /graphql")?;
    let status = response.status();
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (tag, content_encoding) = (header(ETAG), header(CONTENT_ENCODING));
    let body = response.bytes().await.context("read the body")?;
    if status != StatusCode::OK && status != StatusCode::NOT_MODIFIED {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
    }
    Ok((status, tag, content_encoding, body.len()))
}

/// Compression and conditional GETs, against the read data set (nothing is
/// written meanwhile, so the page's tag holds still).
pub async fn measure_http(server: &Server, scale: &Scale, report: &mut Report) -> anyhow::Result<()> {
    let http = http_client()?;
    let url = format!("{}/graphql", server.base_url);
    let loop_time = (scale.read_time / 2).max(Duration::from_secs(1));

    let mut identity_bytes = 0;
    let mut identity_cpu = None;
    for encoding in ["identity", "gzip", "br"] {
        let (_, _, content_encoding, bytes) = get_page(&http, &url, encoding, None).await?;
        let expected = (encoding != "identity").then_some(encoding);
        if content_encoding.as_deref() != expected {
            bail!("asked for {encoding}, the server answered with Content-Encoding {content_encoding:?}");
        }
        let (http, url) = (http.clone(), url.clone());
        let cpu_before = server.cpu_seconds();
        let result = closed_loop(&format!("page {encoding}"), HTTP_CONNECTIONS, loop_time, u64::MAX, move |_| {
            let (http, url) = (http.clone(), url.clone());
            async move { get_page(&http, &url, encoding, None).await.map(drop) }
        })
        .await;
        let cpu_us = cpu_before
            .zip(server.cpu_seconds())
            .map(|(before, after)| (after - before) / result.ok().max(1) as f64 * 1e6);
        progress!("page {encoding}: {bytes} bytes, {}, {cpu_us:?} µs CPU per request", result.brief());
        let mut row = Figure::new(
            format!("50-order page on the wire, {encoding}"),
            format!(
                "{bytes} bytes; {}; {} server CPU per request",
                per_s(result.per_second()),
                cpu_us.map_or("—".into(), |us| format!("{us:.0} µs"))
            ),
        )
        .num(bytes as f64);
        if encoding == "identity" {
            identity_bytes = bytes;
            identity_cpu = cpu_us;
        } else {
            let extra = identity_cpu.zip(cpu_us).map(|(plain, this)| this - plain);
            row = row
                .baseline(
                    format!(
                        "identity {identity_bytes} bytes; compression costs {} CPU per request",
                        extra.map_or("—".into(), |us| format!("{us:+.0} µs"))
                    ),
                    Some(identity_bytes as f64),
                )
                .ratio(Some(bytes as f64 / identity_bytes.max(1) as f64), |r| {
                    format!("{:.0}% of the bytes", r * 100.0)
                });
        }
        report.add_wire(row);
    }

    let (status, tag, _, _) = get_page(&http, &url, "identity", None).await?;
    let Some(tag) = tag.filter(|_| status == StatusCode::OK) else {
        bail!("the orders page came without an ETag (HTTP {status})");
    };
    let not_modified = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (h, u, t, counter) = (http.clone(), url.clone(), tag.clone(), not_modified.clone());
    let conditional = closed_loop("conditional GET", HTTP_CONNECTIONS, loop_time, u64::MAX, move |_| {
        let (http, url, tag, counter) = (h.clone(), u.clone(), t.clone(), counter.clone());
        async move {
            let (status, _, _, _) = get_page(&http, &url, "identity", Some(&tag)).await?;
            if status == StatusCode::NOT_MODIFIED {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await;
    let (h, u) = (http.clone(), url.clone());
    let full = closed_loop("full GET", HTTP_CONNECTIONS, loop_time, u64::MAX, move |_| {
        let (http, url) = (h.clone(), u.clone());
        async move { get_page(&http, &url, "identity", None).await.map(drop) }
    })
    .await;
    let answered_304 = not_modified.load(std::sync::atomic::Ordering::Relaxed);
    progress!("conditional GET: {} ({answered_304} answered 304); full GET: {}", conditional.brief(), full.brief());
    report.add_wire(
        Figure::new(
            "conditional GET of the unchanged page (304)",
            format!(
                "{}, {}; {:.0}% answered 304",
                per_s(conditional.per_second()),
                latency(&conditional.summary()),
                answered_304 as f64 * 100.0 / conditional.ok().max(1) as f64
            ),
        )
        .num(conditional.per_second())
        .baseline(
            format!("full GET {}, {}", per_s(full.per_second()), latency(&full.summary())),
            Some(full.per_second()),
        )
        .ratio(ratio(conditional.per_second(), full.per_second()), |r| format!("{r:.2}×")),
    );
    Ok(())
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// `writeVisible` for an already visible token, `subscribe` → `complete`,
/// one at a time on one connection.
pub async fn measure_write_visible(
    gql: &Gql,
    base_url: &str,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let token = gql.place_order(catalog, &catalog.random_order(0x3C0_0000_0000)).await?;
    let mux = WsMux::connect(base_url).await?;
    // The first one waits for the projection; the ones after are the probe.
    let (visible, _) = subscribe_until_complete(&mux, &token).await?;
    if !visible {
        bail!("the order placed for the writeVisible probe never became visible");
    }
    let runs = if scale.orders < 10_000 { 50 } else { 200 };
    let mut to_complete = Vec::with_capacity(runs);
    let mut to_next = Vec::with_capacity(runs);
    for _ in 0..runs {
        let sent = Instant::now();
        let (visible, (next_at, complete_at)) = subscribe_until_complete(&mux, &token).await?;
        if !visible {
            bail!("an already visible token was answered visible: false");
        }
        to_next.push(next_at - sent);
        to_complete.push(complete_at - sent);
    }
    let (complete, next) = (Summary::of(&to_complete), Summary::of(&to_next));
    progress!("writeVisible (already visible): complete {}; next {}", complete.brief(), next.brief());
    report.add_wire(
        Figure::new("writeVisible subscribe → complete (already visible)", lag_text(&complete))
            .num(complete.p99_ms)
            .baseline(format!("to next: {}", lag_text(&next)), Some(next.p99_ms))
            .target("p99 ≤ 15 ms", Some(complete.count > 0 && complete.p99_ms <= VISIBLE_P99_MS)),
    );
    Ok(())
}

/// Subscribes and waits for `complete`: whether `next` said visible, and
/// when `next` and `complete` arrived.
async fn subscribe_until_complete(mux: &WsMux, token: &str) -> anyhow::Result<(bool, (Instant, Instant))> {
    let (_, mut notices) = mux.subscribe(WRITE_VISIBLE, json!({ "token": token }));
    let deadline = tokio::time::Instant::now() + NOTICE_TIMEOUT;
    let mut next = None;
    loop {
        let Some(notice) = timeout_at(deadline, notices.recv()).await.ok().flatten() else {
            let (_, error) = mux.errors();
            bail!("writeVisible ended without complete (first server error: {error:?})");
        };
        if notice.complete {
            let (visible, next_at) = next.context("writeVisible completed without next")?;
            return Ok((visible, (next_at, notice.at)));
        }
        next = Some((is_visible(&notice), notice.at));
    }
}

fn is_visible(notice: &Notice) -> bool {
    notice.payload["data"]["writeVisible"]["visible"].as_bool() == Some(true)
}

/// A mutation on instance A, seen on instance B: a second server on the same
/// PostgreSQL database, open loop at 200 `placeOrder`/s on A.
pub async fn measure_cross_instance(
    gql: &Gql,
    database_url: &str,
    log_dir: &Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let b = Server::start(database_url, &log_dir.join("bench-instance-b.log")).await.context("start instance B")?;
    let mut muxes = Vec::with_capacity(B_CONNECTIONS);
    for _ in 0..B_CONNECTIONS {
        muxes.push(WsMux::connect(&b.base_url).await.context("connect to instance B")?);
    }
    let muxes = Arc::new(muxes);
    let catalog = Arc::new(catalog.clone());
    let rate = 200u64;
    let total = rate * scale.lag_time_200.as_secs().max(1);
    let (sender, mut results) = mpsc::unbounded_channel::<anyhow::Result<Duration>>();
    let started = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_micros(i * 1_000_000 / rate)).await;
        let (gql, muxes, catalog, sender) = (gql.clone(), muxes.clone(), catalog.clone(), sender.clone());
        tokio::spawn(async move {
            let probe = async {
                let token = gql.place_order(&catalog, &catalog.random_order(0x3C1_0000_0000 + i)).await?;
                let responded = Instant::now();
                let (visible, (_, complete_at)) =
                    subscribe_until_complete(&muxes[i as usize % muxes.len()], &token).await?;
                if !visible {
                    bail!("instance B answered visible: false within {NOTICE_TIMEOUT:?}");
                }
                Ok(complete_at.saturating_duration_since(responded))
            };
            let _ = sender.send(probe.await);
        });
    }
    drop(sender);
    let mut lags = Vec::with_capacity(total as usize);
    let mut failed = LoopResult::default();
    while let Some(result) = results.recv().await {
        match result {
            Ok(lag) => lags.push(lag),
            Err(e) => {
                failed.errors += 1;
                failed.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let achieved = lags.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let summary = Summary::of(&lags);
    progress!(
        "cross-instance writeVisible at {rate}/s: {} ({} failed{})",
        summary.brief(),
        failed.errors,
        failed.first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
    );
    report.add_wire(
        Figure::new(format!("placeOrder on A → writeVisible complete on B at {rate}/s"), lag_text(&summary))
            .num(summary.p99_ms)
            .baseline(format!("{achieved:.0}/s seen; {} of {total} failed", failed.errors), Some(achieved))
            .target("p99 ≤ 15 ms", Some(summary.count > 0 && failed.errors == 0 && summary.p99_ms <= VISIBLE_P99_MS)),
    );
    drop(muxes);
    b.stop().await;
    Ok(())
}
