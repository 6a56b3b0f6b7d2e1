//! Projection segments (issue 38): the `writeVisible` lag at 80% of the
//! highest command rate the commands phase sustained, with the views that
//! may be split (`order_summary`, `customer_view`, `order_activity`) in
//! N = 1, 2 and 4 segments, each N on a server of its own (one instance,
//! PostgreSQL; the other phases' servers are stopped by then).
//!
//! Beside each lag: every segment's busy share of the run (from its
//! `/metrics`, labelled with the segment's name) and PostgreSQL's backends'
//! CPU over the run, so that when the lag stays above its target the
//! limit is named. Changing N is a rebuild (never an in-place reshuffle):
//! from one segment to several needs none, so the runs go 1, 2, then a
//! rebuild of the split views, 4, and a last rebuild leaves the database
//! with one segment per view for the phases after this one.
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cli::Scale;
use crate::gql::Gql;
use crate::progress;
use crate::rebuild::{run_rebuild, RebuildOutcome};
use crate::report::{lag_text, percent, Figure, Report};
use crate::scrape::ProjectorCounters;
use crate::server::Server;
use crate::stats::Summary;
use crate::workload::Catalog;

/// The views a segment count applies to.
const SPLIT: [&str; 3] = ["order_summary", "customer_view", "order_activity"];
const COUNTS: [u32; 3] = [1, 2, 4];
/// The rate when the commands phase did not run (`--only`).
const FALLBACK_RATE: u64 = 400;

pub async fn measure(
    database_url: &str,
    out: &std::path::Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sustained = report.highest_command_rate();
    let rate = sustained.map_or(FALLBACK_RATE, |r| (r * 0.8).round().max(1.0) as u64);
    let at = match sustained {
        Some(top) => format!("{rate}/s, 80% of the {top:.0}/s the commands phase sustained"),
        None => format!("{rate}/s (the commands phase did not run)"),
    };
    let catalog = Arc::new(catalog.clone());
    for n in COUNTS {
        if n == 4 {
            rebuild_split(database_url, scale).await?;
        }
        let spec: Vec<String> = SPLIT.iter().map(|v| format!("{v}={n}")).collect();
        let server = Server::start_with(
            database_url,
            &out.join(format!("postgres-segments-{n}-server.log")),
            &["--projection-segments", &spec.join(",")],
        )
        .await
        .with_context(|| format!("start a server with {n} segments per split view"))?;
        let gql = Gql::new(&server.base_url, 64)?;
        let names = segment_names(n);
        let before = read_all(&server.base_url, &names).await?;
        let backends = crate::peer::small_connection(database_url).await?;
        let db_before = crate::peer::backend_cpu(&backends).await;
        let started = Instant::now();
        let run = crate::lag::write_visible_run(&gql, &server.base_url, &catalog, rate, scale.lag_time_1000).await?;
        let wall = started.elapsed().as_secs_f64();
        let after = read_all(&server.base_url, &names).await?;
        let db_cpu = match (db_before, crate::peer::backend_cpu(&backends).await) {
            (Some(b), Some(a)) if wall > 0.0 => Some(crate::peer::backend_delta(&b, &a) / wall),
            _ => None,
        };
        backends.close().await.ok();
        server.stop().await;
        let busy: Vec<String> = names
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(name, (b, a))| format!("{name} {}", percent(b.window(a, wall).busy_share)))
            .collect();
        let batches: f64 = before.iter().zip(&after).map(|(b, a)| b.window(a, wall).batches).sum();
        progress!("segments {n}: {}; order_summary busy: {}", run.brief(), busy.join(", "));
        if run.ok > 0 && batches == 0.0 {
            bail!("/metrics reported no batch of order_summary's segments during a run of {} commands", run.ok);
        }
        let (lags, missed) = run.lags();
        let s = Summary::of(lags);
        let db = db_cpu.map_or("PostgreSQL CPU not read".to_owned(), |c| format!("PostgreSQL backends {}", percent(c)));
        report.add_wire(
            Figure::new(
                format!("`writeVisible` lag, {n} segment(s) per split view, at {at}"),
                format!("{}; achieved {:.0}/s, {missed} missed", lag_text(&s), run.achieved_rate()),
            )
            .num(s.p99_ms)
            .baseline(format!("order_summary busy: {}; {db} of a core", busy.join(", ")), None)
            .target("p99 ≤ 100 ms", (s.count > 0).then_some(s.p99_ms <= 100.0 && missed == 0)),
        );
    }
    rebuild_split(database_url, scale).await
}

/// `order_summary`'s runner names at `n` segments (one: the view's own).
fn segment_names(n: u32) -> Vec<String> {
    (0..n).map(|k| twofold::catalog::segment_name("order_summary", k, n)).collect()
}

async fn read_all(base_url: &str, names: &[String]) -> anyhow::Result<Vec<ProjectorCounters>> {
    let mut all = Vec::with_capacity(names.len());
    for name in names {
        all.push(ProjectorCounters::read(base_url, name).await?);
    }
    Ok(all)
}

/// Rebuilds the split views (blue/green, as an operator changes N).
async fn rebuild_split(database_url: &str, scale: &Scale) -> anyhow::Result<()> {
    match run_rebuild(database_url, &SPLIT, scale.rebuild_timeout).await {
        RebuildOutcome::Done { wall, .. } => {
            progress!("rebuilt {} to change the segment count in {:.1} s", SPLIT.join(", "), wall.as_secs_f64());
            Ok(())
        }
        RebuildOutcome::NotAvailable(why) => bail!("rebuild of the split views: {why}"),
    }
}
