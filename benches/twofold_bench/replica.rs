//! Read replicas (PostgreSQL, with `--replica-url`): the 50-order page
//! served from the primary (instance A) and from a hot standby (instance B,
//! `--role api --replica-url`), alternately in the same run, and
//! `placeOrder` on A → `writeVisible` complete on B, beside the standby's
//! apply delay (`recovery_min_apply_delay`).
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::json;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::progress;
use crate::report::{lag_text, latency, Figure, Report};
use crate::server::Server;
use crate::stats::Summary;
use crate::workload::Catalog;
use crate::ws::WsMux;

/// Page requests in flight at once, on each instance.
const CONCURRENCY: usize = 8;

pub async fn measure(
    gql: &Gql,
    database_url: &str,
    replica_base: &str,
    log_dir: &std::path::Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let name = database_url.rsplit('/').next().context("a database name")?;
    let replica_url = format!("{}/{name}", replica_base.trim_end_matches('/'));
    let standby = Database::connect(format!("{}/postgres", replica_base.trim_end_matches('/')))
        .await
        .context("connect to the standby")?;
    let delay = standby
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW recovery_min_apply_delay".to_owned()))
        .await?
        .context("SHOW recovery_min_apply_delay")?
        .try_get_by_index::<String>(0)?;
    standby.close().await.ok();
    let b = Server::start_with(
        database_url,
        &log_dir.join("bench-replica-b.log"),
        &["--role", "api", "--replica-url", &replica_url],
    )
    .await
    .context("start instance B on the standby")?;
    wait_in_rotation(&b.base_url).await?;
    let on_b = Gql::new(&b.base_url, 64)?;

    // The page, alternately from the primary and the standby.
    let rounds = if scale.orders < 10_000 { 4 } else { 10 };
    let per_round = if scale.orders < 10_000 { 100 } else { 1_000 };
    let (mut primary, mut replica) = (Vec::new(), Vec::new());
    let (mut primary_time, mut replica_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let started = Instant::now();
        primary.extend(pages(gql, per_round).await?);
        primary_time += started.elapsed();
        let started = Instant::now();
        replica.extend(pages(&on_b, per_round).await?);
        replica_time += started.elapsed();
    }
    let (p, r) = (Summary::of(&primary), Summary::of(&replica));
    let (p_rate, r_rate) =
        (p.count as f64 / primary_time.as_secs_f64().max(1e-9), r.count as f64 / replica_time.as_secs_f64().max(1e-9));
    progress!(
        "50-order page from the primary: {} ({p_rate:.0}/s); from the standby: {} ({r_rate:.0}/s)",
        p.brief(),
        r.brief()
    );
    report.add_wire(
        Figure::new(format!("50-order page served by a standby ({CONCURRENCY} in flight)"), latency(&r))
            .num(r.p99_ms)
            .baseline(format!("the primary: {} ; {p_rate:.0}/s vs {r_rate:.0}/s", latency(&p)), Some(p.p99_ms)),
    );

    // placeOrder on A → writeVisible complete on B (waits for the standby).
    let runs = if scale.orders < 10_000 { 30 } else { 200 };
    let mux = WsMux::connect(&b.base_url).await?;
    // First, the projections caught up with what the phases before left behind.
    let token = gql.place_order(catalog, &catalog.random_order(0x3C2_0000_0000)).await?;
    if !write_visible(&mux, &token, WARM_UP).await?.0 {
        bail!("the standby's instance did not see a write within {WARM_UP:?}");
    }
    let mut lags = Vec::with_capacity(runs);
    let mut not_visible = 0;
    for i in 1..=runs {
        let token = gql.place_order(catalog, &catalog.random_order(0x3C2_0000_0000 + i as u64)).await?;
        let responded = Instant::now();
        let (visible, complete_at) = write_visible(&mux, &token, TIMEOUT).await?;
        if visible {
            lags.push(complete_at.saturating_duration_since(responded));
        } else {
            not_visible += 1;
        }
    }
    let summary = Summary::of(&lags);
    progress!(
        "placeOrder on A → writeVisible on B (standby, apply delay {delay}): {} ({not_visible} not visible within {TIMEOUT:?})",
        summary.brief()
    );
    report.add_wire(
        Figure::new("placeOrder on A → writeVisible complete on B served by a standby", lag_text(&summary))
            .num(summary.p99_ms)
            .baseline(
                format!("the standby's apply delay: {delay}; {not_visible} of {runs} not visible within {TIMEOUT:?}"),
                None,
            ),
    );
    drop(mux);
    b.stop().await;
    Ok(())
}

/// How long a probe's `writeVisible` waits (the server's default maximum).
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first one may wait for the projections to catch up.
const WARM_UP: Duration = Duration::from_secs(60);

/// `writeVisible(token)` on `mux`, asked again (at most [`TIMEOUT`] each
/// time) until it says visible or `wait` has passed: whether it did, and
/// when its last `complete` arrived.
async fn write_visible(mux: &WsMux, token: &str, wait: Duration) -> anyhow::Result<(bool, Instant)> {
    let query = "subscription($token: Token!, $ms: Int) { writeVisible(token: $token, timeoutMs: $ms) { visible } }";
    let give_up = Instant::now() + wait;
    loop {
        let ms = give_up.saturating_duration_since(Instant::now()).min(TIMEOUT);
        let (_, mut notices) = mux.subscribe(query, json!({ "token": token, "ms": ms.as_millis() as u64 }));
        let deadline = Instant::now() + ms + Duration::from_secs(5);
        let mut visible = false;
        let complete_at = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(notice) = tokio::time::timeout(left, notices.recv()).await.ok().flatten() else {
                let (_, error) = mux.errors();
                bail!("writeVisible ended without complete (first server error: {error:?})");
            };
            if notice.complete {
                break notice.at;
            }
            visible = notice.payload["data"]["writeVisible"]["visible"].as_bool() == Some(true);
        };
        if visible || Instant::now() >= give_up {
            return Ok((visible, complete_at));
        }
    }
}

/// `count` page requests, `CONCURRENCY` at a time; each one's latency.
async fn pages(gql: &Gql, count: usize) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let gql = gql.clone();
        let share = count / CONCURRENCY + usize::from(worker < count % CONCURRENCY);
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(share);
            for _ in 0..share {
                let started = Instant::now();
                let orders = gql.orders_page().await?;
                if orders == 0 {
                    bail!("the page was empty");
                }
                samples.push(started.elapsed());
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a page worker")??);
    }
    Ok(all)
}

/// Waits until B's `/readyz` shows its replica in rotation.
async fn wait_in_rotation(base_url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base_url}/readyz")).send().await {
            if let Ok(ready) = r.json::<serde_json::Value>().await {
                if ready["replicas"][0]["state"] == "in_rotation" {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the standby never entered instance B's rotation");
        }
        // Another process: /readyz is all it shows of its rotation; ask again shortly.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
