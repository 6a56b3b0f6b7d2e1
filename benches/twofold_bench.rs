//! Twofold benchmark harness (issue 6).
//!
//! Starts the real `twofold` server as a child process against a fresh
//! PostgreSQL database (or a temporary SQLite file with `--backend sqlite`),
//! seeds it through the real command path (GraphQL mutations over HTTP) and
//! measures, each time next to a baseline that shows the database's own limit:
//!
//! 1. command throughput and latency (`placeOrder` vs plain-SQL inserts),
//! 2. the read payoff (the projected `order_summary` vs joins over the write model),
//!    and the GraphQL page again beside 200 `placeOrder`/s (vs the page alone),
//! 3. propagation lag (`writeVisible`, `projectionUpdated`, 1,000-subscriber fan-out),
//! 4. rebuild speed (`twofold rebuild` vs bulk INSERT into an identical table),
//! 5. server resources (peak RSS, CPU seconds per 1,000 commands),
//! 6. on the wire: the page's bytes and CPU with gzip and br, conditional
//!    GETs (304), `writeVisible` subscribe → complete, and a mutation on one
//!    instance seen through `writeVisible` on another (PostgreSQL),
//! 7. the exporter to NATS JetStream: throughput on the rebuild-size backlog
//!    and lag at 200 commands/s (skipped with `--nats-url none`).
//! 8. the peer (PostgreSQL, when Node is available): the same page served by
//!    PostGraphile 4.14 over the write tables, loaded alternately with Twofold
//!    (`benches/peer/`).
//! 9. liveness (PostgreSQL): from a cut link's return to the first projected
//!    batch, over 20 (quick) or 40 cuts through a TCP proxy.
//! 10. what tracing costs: the page and `placeOrder` with every span
//!     exported over OTLP, against tracing off (`traces.rs`).
//! 11. read replicas (PostgreSQL, with `--replica-url` or `TWOFOLD_TEST_REPLICA_URL`):
//!     the page from the primary and from a hot standby, and `writeVisible`
//!     through the standby beside its apply delay.
//! 12. search and filters (`search.rs`): `orders(search:)`, every offered
//!     filter + sort page, `totalCount`, beside an `ILIKE` join (PostgreSQL).
//! 13. lazy views and reads at the token (`lazy.rs`).
//!
//! It prints a Markdown table at the end and writes every figure to
//! `<out>/<backend>-<mode>.json` plus the lag chart `<out>/<backend>-<mode>-lag.svg`.
//!
//! ```text
//! cargo bench --bench twofold_bench -- --quick                    # CI smoke test, < 2 min
//! cargo bench --bench twofold_bench -- --quick --backend sqlite
//! cargo bench --bench twofold_bench                               # full mode, PostgreSQL
//! cargo bench --bench twofold_bench -- --pg-url postgres://postgres@127.0.0.1:5432 --out bench-results
//! ```
//!
//! The modules live in `benches/twofold_bench/` and are included with
//! `#[path]`, so Cargo does not mistake them for bench targets of their own.
//! This target has `harness = false`, so `cargo test` runs no unit test of
//! it: the pure modules (`cli.rs`, `stats.rs`, `rebuilt.rs`) are included by the
//! integration tests too (`tests/it/main.rs`), where theirs run.

#[path = "twofold_bench/cli.rs"]
mod cli;
#[path = "twofold_bench/commands.rs"]
mod commands;
#[path = "twofold_bench/export.rs"]
mod export;
#[path = "twofold_bench/gql.rs"]
mod gql;
#[path = "twofold_bench/lag.rs"]
mod lag;
#[path = "twofold_bench/lazy.rs"]
mod lazy;
#[path = "twofold_bench/load.rs"]
mod load;
#[path = "twofold_bench/mixed.rs"]
mod mixed;
#[path = "twofold_bench/overload.rs"]
mod overload;
#[path = "twofold_bench/pace.rs"]
mod pace;
#[path = "twofold_bench/peer.rs"]
mod peer;
#[path = "twofold_bench/reads.rs"]
mod reads;
#[path = "twofold_bench/rebuild.rs"]
mod rebuild;
#[path = "twofold_bench/rebuilt.rs"]
mod rebuilt;
#[path = "twofold_bench/replica.rs"]
mod replica;
#[path = "twofold_bench/report.rs"]
mod report;
#[path = "twofold_bench/resume.rs"]
mod resume;
#[path = "twofold_bench/scrape.rs"]
mod scrape;
#[path = "twofold_bench/search.rs"]
mod search;
#[path = "twofold_bench/segments.rs"]
mod segments;
#[path = "twofold_bench/server.rs"]
mod server;
#[path = "twofold_bench/sql.rs"]
mod sql;
#[path = "twofold_bench/stats.rs"]
mod stats;
#[path = "twofold_bench/traces.rs"]
mod traces;
#[path = "twofold_bench/wire.rs"]
mod wire;
#[path = "twofold_bench/workload.rs"]
mod workload;
#[path = "twofold_bench/ws.rs"]
mod ws;

use std::time::Instant;

use anyhow::Context;

use cli::Options;
use report::Report;

/// Prints a progress line to stderr, prefixed with the seconds since start.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[bench {:>6.1}s] {}", $crate::elapsed_secs(), format!($($arg)*))
    };
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Seconds since the harness started (for progress lines).
pub fn elapsed_secs() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn main() -> std::process::ExitCode {
    elapsed_secs();
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("twofold_bench: {e:#}\n\n{}", cli::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    if options.help {
        println!("{}", cli::USAGE);
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("build the tokio runtime");
    // On Ctrl-C the `run` future is dropped, and with it the guards that
    // kill the server and drop the database.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(options) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twofold_bench: failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs every phase in order. The database and the server are guards: they
/// are dropped (database dropped, process killed) however this returns.
async fn run(options: Options) -> anyhow::Result<()> {
    let scale = options.scale();
    progress!("mode {} on {}: {}", options.mode_name(), options.backend.name(), scale.describe());
    let mut report = Report::new(&options, &scale);

    let database = server::BenchDatabase::create(&options).await.context("create the bench database")?;
    let outcome = run_phases(&options, &scale, &database, &mut report).await;
    if options.keep_database {
        database.keep();
    } else {
        database.drop_now().await;
    }
    outcome?;

    std::fs::create_dir_all(&options.out).with_context(|| format!("create {}", options.out.display()))?;
    let json_path = options.out.join(format!("{}.json", options.file_stem()));
    let svg_path = options.out.join(format!("{}-lag.svg", options.file_stem()));
    report.write_json(&json_path)?;
    if let Err(e) = report.write_lag_chart(&svg_path) {
        progress!("could not draw the lag chart: {e:#}");
    }
    println!("{}", report.markdown_table());
    progress!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

async fn run_phases(
    options: &Options,
    scale: &cli::Scale,
    database: &server::BenchDatabase,
    report: &mut Report,
) -> anyhow::Result<()> {
    let server_log = options.out.join(format!("{}-server.log", options.file_stem()));
    let server = server::Server::start(&database.url, &server_log).await.context("start the twofold server")?;
    let gql = gql::Gql::new(&server.base_url, 64)?;
    // The bench's own pool: plain-SQL baselines and direct reads.
    let db = twofold::db::Db::connect(&database.url, 34).await.context("connect the bench to the database")?;

    let catalog = load::seed_catalog(&gql, scale).await?;
    let pg = options.backend == cli::Backend::Postgres;
    if options.runs("commands") {
        commands::measure(&gql, &db, &server, &catalog, scale, report).await?;
    }
    load::seed_orders(&gql, &db, &server, &catalog, scale, report).await?;
    if options.runs("reads") {
        reads::measure(&db, &database.url, &server.base_url, scale, &options.out, report).await?;
    }
    if options.runs("mixed") {
        mixed::measure(&gql, &server.base_url, &catalog, scale, report)
            .await
            .context("the read beside writes phase")?;
    }
    if options.runs("wire") {
        wire::measure_http(&server, scale, report).await.context("the compression and conditional GET phase")?;
    }
    if pg && options.runs("peer") {
        peer::measure(&database.url, &db, &catalog, &server, scale, &options.out, report)
            .await
            .context("the PostGraphile peer phase")?;
    }
    if options.runs("lag") {
        lag::measure(&gql, &server.base_url, &catalog, scale, report).await?;
    }
    if options.runs("write-visible") {
        wire::measure_write_visible(&gql, &server.base_url, &catalog, scale, report)
            .await
            .context("the writeVisible phase")?;
    }
    if pg && options.runs("cross-instance") {
        wire::measure_cross_instance(&gql, &database.url, &options.out, &catalog, scale, report)
            .await
            .context("the cross-instance phase")?;
    }
    if let (true, true, Some(replica_url)) = (pg, options.runs("replica"), &options.replica_url) {
        replica::measure(&gql, &database.url, replica_url, &options.out, &catalog, scale, report)
            .await
            .context("the read replica phase")?;
    }
    if options.runs("overload") {
        overload::measure(&gql, &server.base_url, &catalog, scale, report).await?;
    }
    report.set_peak_rss(server.peak_rss_kib());
    server.stop().await;
    if options.runs("tracing") {
        traces::measure(&database.url, &options.out, &catalog, scale, report).await.context("the tracing phase")?;
    }
    if options.runs("search") {
        search::measure(&database.url, &db, &options.out, &catalog, scale, report).await.context("the search phase")?;
    }
    if options.runs("lazy") {
        lazy::measure(&database.url, &db, &options.out, &catalog, scale, report).await.context("the lazy phase")?;
    }
    if pg && options.runs("resume") {
        resume::measure(&database.url, &options.out, &catalog, scale, report).await.context("the link-return phase")?;
    }
    if pg && options.runs("segments") {
        segments::measure(&database.url, &options.out, &catalog, scale, report).await.context("the segments phase")?;
    }

    if options.runs("rebuild") {
        rebuild::measure(&database.url, &db, &catalog, scale, report).await?;
    }
    if let (true, Some(nats_url)) = (options.runs("export"), &options.nats_url) {
        if !options.runs("rebuild") {
            // The backlog the rebuild phase would have grown, and the views
            // brought up to it as its rebuild leaves them (the export's lag
            // figure needs a serving instance that is ready).
            rebuild::grow_log(&db, &catalog, scale).await?;
            if let rebuild::RebuildOutcome::NotAvailable(why) =
                rebuild::run_rebuild(&database.url, &["--all"], scale.rebuild_timeout).await
            {
                anyhow::bail!("rebuild --all before the export: {why}");
            }
        }
        let figures = export::measure(nats_url, &database.url, &db, &catalog, scale, &options.out)
            .await
            .context("the export phase")?;
        report.set_export(figures);
    }
    db.conn.close().await.ok();
    Ok(())
}
