//! Collects every measurement and turns it into the three outputs: the
//! Markdown table (figure, value, baseline, ratio, target, met?), the JSON
//! file with every figure and its details, and the SVG lag chart.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{Options, Scale};
use crate::export::ExportFigures;
use crate::lag::{FanOut, LagRun};
use crate::mixed::ReadBesideWrites;
use crate::overload::ReadersOutcome;
use crate::reads::PgbenchRun;
use crate::rebuild::{BulkInsert, FromSnapshot, RebuildOutcome};
use crate::stats::{percentile, sorted_ms, LoopResult, Summary};

/// One row of the table (and of `figures` in the JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// `yes`, `no`, or `—` when the figure has no target or was not measured.
    pub met: String,
    /// The main number of `value`, `baseline` and `ratio`, for machines.
    pub value_num: Option<f64>,
    pub baseline_num: Option<f64>,
    pub ratio_num: Option<f64>,
}

impl Figure {
    pub fn new(figure: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            value: value.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "—".into(),
            met: "—".into(),
            value_num: None,
            baseline_num: None,
            ratio_num: None,
        }
    }
    pub fn num(mut self, v: f64) -> Self {
        self.value_num = Some(v);
        self
    }
    pub fn baseline(mut self, text: impl Into<String>, v: Option<f64>) -> Self {
        self.baseline = text.into();
        self.baseline_num = v;
        self
    }
    pub fn ratio(mut self, r: Option<f64>, format: impl Fn(f64) -> String) -> Self {
        self.ratio = r.map(&format).unwrap_or_else(|| "—".into());
        self.ratio_num = r;
        self
    }
    pub fn target(mut self, target: &str, met: Option<bool>) -> Self {
        self.target = target.into();
        self.met = match met {
            Some(true) => "yes".into(),
            Some(false) => "**no**".into(),
            None => "n/a".into(),
        };
        self
    }
}

struct ReadResult {
    result: LoopResult,
    page_orders: usize,
}

struct RebuildSection {
    events_in_log: u64,
    appended_by_sql: u64,
    single: RebuildOutcome,
    all: RebuildOutcome,
    bulk: Option<BulkInsert>,
    /// The restore from a snapshot, or why it could not run.
    from_snapshot: Result<FromSnapshot, String>,
}

struct Seeding {
    placed: LoopResult,
    changed: LoopResult,
}

/// Server CPU seconds spent over a stretch of commands (projections included).
#[derive(Debug, Clone, Copy, Serialize)]
struct CpuWindow {
    cpu_s: f64,
    commands: u64,
}

/// Everything measured so far.
pub struct Report {
    backend: &'static str,
    mode: &'static str,
    scale: String,
    started_at: String,
    command_http: BTreeMap<usize, LoopResult>,
    command_sql: BTreeMap<usize, LoopResult>,
    seeding: Option<Seeding>,
    cpu_windows: Vec<CpuWindow>,
    data_set: Option<(u64, u64)>,
    reads: BTreeMap<String, ReadResult>,
    /// Read (c) again, beside a steady `placeOrder` rate ([`crate::mixed`]).
    read_beside_writes: Option<ReadBesideWrites>,
    lag: Vec<LagRun>,
    fan_out: Option<FanOut>,
    peak_rss_kib: Option<u64>,
    rebuild: Option<RebuildSection>,
    overload: Option<(LoopResult, LoopResult, ReadersOutcome)>,
    export: Option<ExportFigures>,
    /// (a) and (b) at the database alone (pgbench), PostgreSQL only.
    pgbench_payoff: Option<(PgbenchRun, PgbenchRun)>,
    /// Rows the phases build themselves (the wire figures), in order.
    wire: Vec<Figure>,
}

pub fn per_s(v: f64) -> String {
    format!("{v:.0}/s")
}
pub fn times(v: f64) -> String {
    format!("{v:.2}×")
}
pub fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}
fn ratio_of(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}
pub fn latency(s: &Summary) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms", s.p50_ms, s.p99_ms)
}
pub fn lag_text(s: &Summary) -> String {
    format!("p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms", s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms)
}

impl Report {
    pub fn new(options: &Options, scale: &Scale) -> Self {
        Self {
            backend: options.backend.name(),
            mode: options.mode_name(),
            scale: scale.describe(),
            started_at: chrono::Utc::now().to_rfc3339(),
            command_http: BTreeMap::new(),
            command_sql: BTreeMap::new(),
            seeding: None,
            cpu_windows: Vec::new(),
            data_set: None,
            reads: BTreeMap::new(),
            read_beside_writes: None,
            lag: Vec::new(),
            fan_out: None,
            peak_rss_kib: None,
            rebuild: None,
            overload: None,
            export: None,
            pgbench_payoff: None,
            wire: Vec::new(),
        }
    }

    pub fn set_command_http(&mut self, concurrency: usize, result: LoopResult) {
        self.command_http.insert(concurrency, result);
    }
    pub fn set_command_sql(&mut self, concurrency: usize, result: LoopResult) {
        self.command_sql.insert(concurrency, result);
    }
    pub fn set_seeding(&mut self, placed: &LoopResult, changed: &LoopResult) {
        self.seeding = Some(Seeding { placed: placed.clone(), changed: changed.clone() });
    }
    pub fn add_cpu_window(&mut self, cpu_s: f64, commands: u64) {
        self.cpu_windows.push(CpuWindow { cpu_s, commands });
    }
    /// Orders, and PLACED orders, in the database while reads are measured.
    pub fn set_data_set(&mut self, orders: u64, placed: u64) {
        self.data_set = Some((orders, placed));
    }
    pub fn set_read(&mut self, name: &str, result: LoopResult, page_orders: usize) {
        self.reads.insert(name.to_owned(), ReadResult { result, page_orders });
    }
    pub fn set_read_beside_writes(&mut self, measured: ReadBesideWrites) {
        self.read_beside_writes = Some(measured);
    }
    /// The highest `placeOrder` rate of the command phase, if it ran.
    pub fn highest_command_rate(&self) -> Option<f64> {
        self.command_http.values().map(LoopResult::per_second).filter(|r| *r > 0.0).reduce(f64::max)
    }
    pub fn set_lag(&mut self, run: LagRun) {
        self.lag.push(run);
    }
    pub fn set_fan_out(&mut self, fan_out: FanOut) {
        self.fan_out = Some(fan_out);
    }
    pub fn set_overload(&mut self, alone: LoopResult, loaded: LoopResult, readers: ReadersOutcome) {
        self.overload = Some((alone, loaded, readers));
    }

    pub fn set_pgbench_payoff(&mut self, view: PgbenchRun, join: PgbenchRun) {
        self.pgbench_payoff = Some((view, join));
    }

    /// A row a phase built itself ([`crate::wire`]).
    pub fn add_wire(&mut self, figure: Figure) {
        self.wire.push(figure);
    }

    pub fn set_export(&mut self, figures: ExportFigures) {
        self.export = Some(figures);
    }
    pub fn set_peak_rss(&mut self, peak_rss_kib: Option<u64>) {
        self.peak_rss_kib = peak_rss_kib;
    }
    pub fn set_rebuild(
        &mut self,
        events_in_log: u64,
        appended_by_sql: u64,
        single: RebuildOutcome,
        all: RebuildOutcome,
        bulk: Option<BulkInsert>,
        from_snapshot: Result<FromSnapshot, String>,
    ) {
        self.rebuild = Some(RebuildSection { events_in_log, appended_by_sql, single, all, bulk, from_snapshot });
    }

    /// Every row of the table, in order.
    pub fn figures(&self) -> Vec<Figure> {
        let mut rows = Vec::new();
        self.command_figures(&mut rows);
        self.read_figures(&mut rows);
        self.pgbench_figures(&mut rows);
        self.lag_figures(&mut rows);
        rows.extend(self.wire.iter().cloned());
        self.rebuild_figures(&mut rows);
        self.overload_figures(&mut rows);
        self.export_figures(&mut rows);
        self.resource_figures(&mut rows);
        rows
    }

    fn export_figures(&self, rows: &mut Vec<Figure>) {
        let Some(e) = &self.export else { return };
        let rate = e.events_per_second();
        rows.push(
            Figure::new(
                "export to NATS JetStream, backlog",
                format!(
                    "{} events/s ({} events in {:.1} s)",
                    per_s(rate).trim_end_matches("/s"),
                    e.backlog_events,
                    e.backlog_seconds
                ),
            )
            .num(rate)
            .target("≥ 50,000 events/s", Some(rate >= 50_000.0)),
        );
        rows.push(
            Figure::new("export lag at 200/s (append → delivered from the stream)", lag_text(&e.lag))
                .num(e.lag.p99_ms)
                .baseline(
                    format!(
                        "{:.0}/s achieved; {} of {} not seen",
                        e.lag_rate,
                        e.lag_missed,
                        e.lag.count as u64 + e.lag_missed
                    ),
                    None,
                )
                .target("p99 ≤ 20 ms (commit → publish ack)", Some(e.lag.p99_ms <= 20.0 && e.lag.count > 0)),
        );
    }

    fn command_figures(&self, rows: &mut Vec<Figure>) {
        for (concurrency, http) in &self.command_http {
            let sql = self.command_sql.get(concurrency);
            let sql_rate = sql.map(LoopResult::per_second);
            let ratio = sql_rate.and_then(|s| ratio_of(http.per_second(), s));
            let mut row =
                Figure::new(format!("placeOrder throughput, concurrency {concurrency}"), per_s(http.per_second()))
                    .num(http.per_second())
                    .baseline(sql_rate.map_or("—".into(), |s| format!("{} (plain SQL)", per_s(s))), sql_rate)
                    .ratio(ratio, percent);
            if *concurrency == 32 {
                row = row.target("≥ 50% of plain SQL", ratio.map(|r| r >= 0.5));
            }
            rows.push(row);
            let http_latency = http.summary();
            rows.push(
                Figure::new(format!("placeOrder latency, concurrency {concurrency}"), latency(&http_latency))
                    .num(http_latency.p99_ms)
                    .baseline(sql.map_or("—".into(), |s| latency(&s.summary())), sql.map(|s| s.summary().p99_ms)),
            );
        }
    }

    fn read_figures(&self, rows: &mut Vec<Figure>) {
        if let Some((orders, placed)) = self.data_set {
            let note = if self.mode == "quick" { " (quick mode: fewer than the 100,000 of full mode)" } else { "" };
            rows.push(
                Figure::new("read data set", format!("{orders} orders, {placed} PLACED, 1–5 lines each{note}"))
                    .num(orders as f64),
            );
        }
        let labels = [
            ("a_order_summary_seaorm", "read (a) order_summary via SeaORM"),
            ("b_best_join", "read (b) best join over write tables"),
            ("b_naive_join", "read (b′) naive join over write tables"),
            ("c_graphql_orders", "read (c) GraphQL orders, 16 connections, kept answers on (the default)"),
            (
                "c_graphql_orders_computed",
                "read (c′) GraphQL orders, 16 connections, kept answers off (every page computed)",
            ),
        ];
        for (key, label) in labels {
            let Some(read) = self.reads.get(key) else {
                continue;
            };
            let summary = read.result.summary();
            let mut row = Figure::new(label, format!("{}, {}", per_s(read.result.per_second()), latency(&summary)))
                .num(read.result.per_second());
            if key == "c_graphql_orders" {
                let met = read.result.per_second() >= 3_000.0 && summary.p99_ms < 10.0 && read.result.errors == 0;
                row = row.target("≥ 3,000 req/s, p99 < 10 ms", Some(met));
            }
            if key == "c_graphql_orders_computed" {
                row = self.computed_page_targets(row, read.result.per_second(), summary.p99_ms, read.result.errors);
            }
            rows.push(row);
            if key == "c_graphql_orders" {
                rows.extend(self.read_beside_writes_figure());
            }
        }
        let view = self.reads.get("a_order_summary_seaorm").map(|r| r.result.per_second());
        for (key, label, target) in
            [("b_best_join", "read payoff (b)/(a)", Some(5.0)), ("b_naive_join", "read payoff (b′)/(a)", None)]
        {
            let (Some(view), Some(join)) = (view, self.reads.get(key).map(|r| r.result.per_second())) else {
                continue;
            };
            let ratio = ratio_of(view, join);
            let mut row = Figure::new(label, format!("(a) {}", per_s(view)))
                .num(view)
                .baseline(format!("{} {}", if key == "b_best_join" { "(b)" } else { "(b′)" }, per_s(join)), Some(join))
                .ratio(ratio, times);
            if let Some(target) = target {
                row = row.target("≥ 5×", ratio.map(|r| r >= target));
            }
            rows.push(row);
        }
    }

    /// The computed page's targets: on PostgreSQL p99 < 10 ms and at least
    /// 15% of the raw SQL row (pgbench running the view's page query); on
    /// SQLite at least 4,000/s with p99 < 5 ms.
    fn computed_page_targets(&self, row: Figure, rate: f64, p99_ms: f64, errors: u64) -> Figure {
        if self.backend == "postgres" {
            let raw = self.pgbench_payoff.as_ref().map(|(view, _)| view.tps);
            let share = raw.and_then(|raw| ratio_of(rate, raw));
            row.baseline(
                raw.map_or("no raw SQL row (pgbench) in this run".into(), |r| {
                    format!("raw SQL (pgbench, view) {}", per_s(r))
                }),
                raw,
            )
            .ratio(share, |r| format!("{} of the raw SQL row", percent(r)))
            .target("p99 < 10 ms, ≥ 15% of the raw SQL row", share.map(|s| s >= 0.15 && p99_ms < 10.0 && errors == 0))
        } else {
            row.target("≥ 4,000 req/s, p99 < 5 ms", Some(rate >= 4_000.0 && p99_ms < 5.0 && errors == 0))
        }
    }

    /// Read (c) beside writes, against (c) read-only just before it.
    fn read_beside_writes_figure(&self) -> Option<Figure> {
        let mixed = self.read_beside_writes.as_ref()?;
        let (reads, writes) = (&mixed.reads, &mixed.writes);
        let summary = reads.summary();
        let alone = self.reads.get("c_graphql_orders").map(|r| r.result.per_second());
        let ratio = alone.and_then(|alone| ratio_of(reads.per_second(), alone));
        let failed_pages = match reads.errors {
            0 => String::new(),
            n => format!("; {n} pages failed"),
        };
        let met = ratio.map(|r| r >= 0.8 && summary.p99_ms < 15.0 && reads.errors == 0 && mixed.writes_ran());
        Some(
            Figure::new(
                format!(
                    "read (c) GraphQL orders beside {} placeOrder/s, {} connections",
                    writes.target_rate,
                    crate::reads::HTTP_READERS
                ),
                format!("{}, {}{failed_pages}", per_s(reads.per_second()), latency(&summary)),
            )
            .num(reads.per_second())
            .baseline(
                format!(
                    "writes beside it: {:.0}/s achieved ({} of {} placed); {} failed, {} skipped",
                    writes.achieved_rate(),
                    writes.ok,
                    writes.scheduled,
                    writes.failed,
                    writes.skipped
                ),
                Some(writes.achieved_rate()),
            )
            .ratio(ratio, |r| format!("{} of (c) {}", percent(r), per_s(alone.unwrap_or_default())))
            .target("≥ 80% of its read-only rate, p99 < 15 ms", met),
        )
    }

    fn pgbench_figures(&self, rows: &mut Vec<Figure>) {
        let Some((view, join)) = &self.pgbench_payoff else { return };
        let cpu = |run: &PgbenchRun| {
            run.client_cpu_per_1000.map_or(String::new(), |c| format!(" (pgbench's CPU {c:.2} s per 1,000)"))
        };
        let ratio = ratio_of(view.tps, join.tps);
        rows.push(
            Figure::new(
                "read payoff at the database: pgbench -M prepared -c 8, (a) view / (b) best join",
                format!("(a) {}{}", per_s(view.tps), cpu(view)),
            )
            .num(view.tps)
            .baseline(format!("(b) {}{}", per_s(join.tps), cpu(join)), Some(join.tps))
            .ratio(ratio, times)
            .target("≥ 5×", ratio.map(|r| r >= 5.0)),
        );
    }

    fn lag_figures(&self, rows: &mut Vec<Figure>) {
        for run in &self.lag {
            let bound = match run.sustained_rate {
                Some(_) => 100.0,
                None if run.target_rate <= 200 => 10.0,
                None => 50.0,
            };
            let (samples, missed) = run.lags();
            let s = Summary::of(samples);
            let met = (s.count > 0).then_some(s.p99_ms <= bound && missed == 0);
            let title = match run.sustained_rate {
                Some(highest) => format!(
                    "lag to {} at {}/s, 80% of the highest command rate measured ({highest:.0}/s)",
                    run.probe.name(),
                    run.target_rate
                ),
                None => format!("lag to {} at {}/s", run.probe.name(), run.target_rate),
            };
            rows.push(
                Figure::new(title, lag_text(&s))
                    .num(s.p99_ms)
                    .baseline(
                        format!(
                            "{:.0}/s achieved; {missed} of {} notices missed; {} sends failed, {} skipped",
                            run.achieved_rate(),
                            s.count as u64 + missed,
                            run.failed,
                            run.skipped
                        ),
                        Some(run.achieved_rate()),
                    )
                    .target(&format!("p99 ≤ {bound:.0} ms"), met),
            );
        }
        if let Some(fan) = &self.fan_out {
            let s = Summary::of(&fan.lags);
            let all = fan.lags.len() == fan.wanted && fan.wanted > 0;
            rows.push(
                Figure::new(format!("fan-out to {} subscribers", fan.wanted), lag_text(&s))
                    .num(s.p99_ms)
                    .baseline(format!("{}/{} received", fan.lags.len(), fan.wanted), Some(fan.lags.len() as f64))
                    .target("all receive, p99 ≤ 50 ms", Some(all && s.p99_ms <= 50.0)),
            );
        }
    }

    fn rebuild_figures(&self, rows: &mut Vec<Figure>) {
        let Some(rebuild) = &self.rebuild else { return };
        rows.push(Figure::new(
            "event log size for the rebuild",
            format!("{} events ({} appended by plain SQL)", rebuild.events_in_log, rebuild.appended_by_sql),
        ));
        let bulk_rate = rebuild.bulk.as_ref().map(|b| b.rows_per_second);
        let bulk_text = rebuild
            .bulk
            .as_ref()
            .map_or("—".into(), |b| format!("{} rows/s {} ({} rows)", b.rows_per_second.round(), b.method, b.rows));
        let bulk_name = rebuild.bulk.as_ref().map_or("the bulk load", |b| b.method);
        let single_target = format!("≥ 100,000 events/s and ≥ 50% of {bulk_name}");
        match &rebuild.single {
            RebuildOutcome::Done { lines, .. } => {
                let rate = lines.first().map_or(0.0, |l| l.events_per_second);
                let ratio = bulk_rate.and_then(|b| ratio_of(rate, b));
                let met = ratio.map(|r| r >= 0.5 && rate >= 100_000.0);
                rows.push(
                    Figure::new("rebuild order_summary", format!("{rate:.0} events/s"))
                        .num(rate)
                        .baseline(bulk_text.clone(), bulk_rate)
                        .ratio(ratio, percent)
                        .target(&single_target, met),
                );
            }
            RebuildOutcome::NotAvailable(reason) => rows.push(
                Figure::new("rebuild order_summary", format!("not available ({})", first_words(reason)))
                    .baseline(bulk_text.clone(), bulk_rate)
                    .target(&single_target, None),
            ),
        }
        match &rebuild.all {
            RebuildOutcome::Done { lines, wall } => {
                // One pass over the log feeds every projection: report the slowest line.
                let slowest = lines.iter().min_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
                if let Some(l) = slowest {
                    rows.push(
                        Figure::new(
                            "rebuild --all",
                            format!(
                                "{:.0} events/s ({} projections, {} events, {:.1} s wall)",
                                l.events_per_second,
                                lines.len(),
                                l.events,
                                wall.as_secs_f64()
                            ),
                        )
                        .num(l.events_per_second)
                        .target("≥ 50,000 events/s", Some(l.events_per_second >= 50_000.0)),
                    );
                }
            }
            RebuildOutcome::NotAvailable(reason) => rows.push(
                Figure::new("rebuild --all", format!("not available ({})", first_words(reason)))
                    .target("≥ 50,000 events/s", None),
            ),
        }
        let from_zero = match &rebuild.all {
            RebuildOutcome::Done { lines, wall } => lines.first().map(|l| (l.events, wall.as_secs_f64())),
            RebuildOutcome::NotAvailable(_) => None,
        };
        let from_zero_text = from_zero
            .map_or("—".to_owned(), |(events, wall)| format!("rebuild from zero: {events} events, {wall:.1} s wall"));
        match &rebuild.from_snapshot {
            Ok(FromSnapshot {
                store,
                snapshot_at,
                snapshot_seconds,
                tail,
                restore: RebuildOutcome::Done { lines, wall },
            }) => {
                let slowest = lines.iter().min_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
                if let Some(l) = slowest {
                    let speedup = from_zero.and_then(|(_, zero)| ratio_of(zero, wall.as_secs_f64()));
                    rows.push(
                        Figure::new(
                            "rebuild --all from a snapshot",
                            format!(
                                "{} events replayed in {:.1} s wall ({:.0} events/s, rows loaded included; \
                                 snapshot at {snapshot_at} events written in {snapshot_seconds:.1} s, {tail} appended after; {store})",
                                l.events,
                                wall.as_secs_f64(),
                                l.events_per_second
                            ),
                        )
                        .num(wall.as_secs_f64())
                        .baseline(from_zero_text, from_zero.map(|(_, wall)| wall))
                        .ratio(speedup, |r| format!("{r:.1}× faster")),
                    );
                }
            }
            Ok(FromSnapshot { restore: RebuildOutcome::NotAvailable(reason), .. }) => rows.push(
                Figure::new("rebuild --all from a snapshot", format!("not available ({})", first_words(reason)))
                    .baseline(from_zero_text, from_zero.map(|(_, wall)| wall)),
            ),
            Err(reason) => rows.push(
                Figure::new("rebuild --all from a snapshot", format!("not available ({})", first_words(reason)))
                    .baseline(from_zero_text, from_zero.map(|(_, wall)| wall)),
            ),
        }
    }

    fn overload_figures(&self, rows: &mut Vec<Figure>) {
        let Some((alone, loaded, readers)) = &self.overload else { return };
        let (a, l) = (alone.summary(), loaded.summary());
        rows.push(
            Figure::new(
                format!(
                    "placeOrder beside {} heavy readers (concurrency {})",
                    crate::overload::READERS,
                    crate::overload::WRITERS
                ),
                format!("{}, {}", per_s(loaded.per_second()), latency(&l)),
            )
            .num(l.p99_ms)
            .baseline(format!("alone: {}, {}", per_s(alone.per_second()), latency(&a)), Some(a.p99_ms))
            .ratio(ratio_of(l.p99_ms, a.p99_ms), times),
        );
        let secs = readers.elapsed.as_secs_f64().max(1e-9);
        rows.push(Figure::new(
            format!("the {} heavy readers meanwhile", crate::overload::READERS),
            format!(
                "{:.0}/s served, {:.0}/s shed with 503 (UNAVAILABLE), {} failed otherwise",
                readers.ok as f64 / secs,
                readers.shed as f64 / secs,
                readers.failed
            ),
        ));
    }

    fn resource_figures(&self, rows: &mut Vec<Figure>) {
        if let Some(kib) = self.peak_rss_kib {
            rows.push(
                Figure::new("server peak RSS", format!("{:.1} MiB", kib as f64 / 1024.0)).num(kib as f64 / 1024.0),
            );
        }
        let cpu: f64 = self.cpu_windows.iter().map(|w| w.cpu_s).sum();
        let commands: u64 = self.cpu_windows.iter().map(|w| w.commands).sum();
        if commands > 0 {
            let per_1000 = cpu / commands as f64 * 1000.0;
            rows.push(
                Figure::new("server CPU per 1,000 commands", format!("{per_1000:.2} CPU s"))
                    .num(per_1000)
                    .baseline(format!("{cpu:.1} CPU s over {commands} commands, projecting them included"), Some(cpu)),
            );
        }
    }

    /// The Markdown table printed at the end.
    pub fn markdown_table(&self) -> String {
        let mut out = format!("\n## Twofold benchmark — {} / {} mode\n\n{}\n\n", self.backend, self.mode, self.scale);
        out.push_str("| figure | value | baseline | ratio | target | met? |\n|---|---|---|---|---|---|\n");
        for f in self.figures() {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.figure, f.value, f.baseline, f.ratio, f.target, f.met
            ));
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()).context("serialize the results")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
    }

    fn to_json(&self) -> Value {
        let commands: Vec<Value> = self
            .command_http
            .iter()
            .map(|(c, http)| json!({ "concurrency": c, "graphql_http": http.to_json(), "plain_sql": self.command_sql.get(c).map(LoopResult::to_json) }))
            .collect();
        let reads: BTreeMap<&String, Value> = self
            .reads
            .iter()
            .map(|(k, r)| (k, json!({ "page_orders": r.page_orders, "run": r.result.to_json() })))
            .collect();
        let lag: Vec<Value> = self.lag.iter().map(lag_json).collect();
        json!({
            "backend": self.backend,
            "mode": self.mode,
            "scale": self.scale,
            "started_at": self.started_at,
            "finished_at": chrono::Utc::now().to_rfc3339(),
            "figures": self.figures(),
            "details": {
                "commands": commands,
                "seeding": self.seeding.as_ref().map(|s| json!({
                    "placed": s.placed.to_json(),
                    "cancelled_or_shipped": s.changed.to_json(),
                })),
                "server_cpu_windows": self.cpu_windows,
                "read_data_set": self.data_set.map(|(orders, placed)| json!({ "orders": orders, "placed": placed })),
                "reads": reads,
                "read_beside_writes": self.read_beside_writes.as_ref().map(|m| json!({
                    "page_orders": m.page_orders,
                    "run": m.reads.to_json(),
                    "read_only_per_second": self.reads.get("c_graphql_orders").map(|r| r.result.per_second()),
                    "writes_warm_up_s": crate::mixed::WARM_UP.as_secs_f64(),
                    "writes_ran_as_scheduled": m.writes_ran(),
                    "writes": m.writes.to_json(),
                    "kept_answers": m.cache,
                    "computed_share": m.cache.computed_share(),
                })),
                "pgbench_payoff": self.pgbench_payoff.as_ref().map(|(view, join)| json!({ "view": view, "best_join": join })),
                "lag": lag,
                "fan_out": self.fan_out.as_ref().map(|f| json!({
                    "wanted": f.wanted,
                    "connected": f.connected,
                    "connect_errors": f.connect_errors,
                    "first_error": f.first_error,
                    "received": f.lags.len(),
                    "missed": f.missed,
                    "lag": Summary::of(&f.lags),
                })),
                "resources": { "server_peak_rss_kib": self.peak_rss_kib },
                "overload": self.overload.as_ref().map(|(alone, loaded, readers)| json!({
                    "place_order_alone": alone.to_json(),
                    "place_order_beside_readers": loaded.to_json(),
                    "readers": { "count": crate::overload::READERS, "ok": readers.ok, "shed": readers.shed, "failed": readers.failed, "elapsed_s": readers.elapsed.as_secs_f64() },
                })),
                "export": self.export,
                "rebuild": self.rebuild.as_ref().map(|r| json!({
                    "events_in_log": r.events_in_log,
                    "appended_by_sql": r.appended_by_sql,
                    "order_summary": outcome_json(&r.single),
                    "all": outcome_json(&r.all),
                    "bulk_insert_baseline": r.bulk,
                    "from_snapshot": match &r.from_snapshot {
                        Ok(f) => json!({
                            "store": f.store,
                            "snapshot_at_events": f.snapshot_at,
                            "snapshot_seconds": f.snapshot_seconds,
                            "tail_events": f.tail,
                            "restore": outcome_json(&f.restore),
                        }),
                        Err(reason) => json!({ "available": false, "reason": reason }),
                    },
                })),
            },
        })
    }

    /// Percentile curves (log-scale lag) of every lag series.
    pub fn write_lag_chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;

        let mut series: Vec<(String, Vec<f64>)> = Vec::new();
        for run in &self.lag {
            series.push((format!("{} @ {}/s", run.probe.name(), run.target_rate), sorted_ms(run.lags().0)));
        }
        if let Some(fan) = &self.fan_out {
            series.push((format!("fan-out, {} subscribers", fan.wanted), sorted_ms(&fan.lags)));
        }
        series.retain(|(_, s)| !s.is_empty());
        const FLOOR_MS: f64 = 0.05;
        let top = series.iter().filter_map(|(_, s)| s.last().copied()).fold(1.0_f64, f64::max) * 1.5;

        let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Twofold propagation lag — {} / {}", self.backend, self.mode), ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..100f64, (FLOOR_MS..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile of commands (or subscribers)")
            .y_desc("lag after the HTTP response, ms (log)")
            .draw()?;
        for (i, (name, sorted)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = (0..=1000).map(|k| {
                let p = k as f64 / 10.0;
                (p, percentile(sorted, p.max(0.1)).max(FLOOR_MS))
            });
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{name} (n={})", sorted.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

fn lag_json(run: &LagRun) -> Value {
    json!({
        "probe": run.probe.name(),
        "at_80_percent_of": run.sustained_rate,
        "target_rate": run.target_rate,
        "achieved_rate": run.achieved_rate(),
        "scheduled": run.scheduled,
        "ok": run.ok,
        "failed": run.failed,
        "skipped": run.skipped,
        "first_error": run.first_error,
        "elapsed_s": run.elapsed.as_secs_f64(),
        "sending_s": run.sending.as_secs_f64(),
        "send_lateness": Summary::of(&run.send_lateness),
        "lag": Summary::of(run.lags().0),
        "missed": run.lags().1,
        "notices_before_response": run.early_notices,
        "subscription_errors": run.subscription_errors,
        "first_subscription_error": run.first_subscription_error,
        "projector": run.projector,
    })
}

fn outcome_json(outcome: &RebuildOutcome) -> Value {
    match outcome {
        RebuildOutcome::Done { lines, wall } => {
            json!({ "available": true, "wall_s": wall.as_secs_f64(), "projections": lines })
        }
        RebuildOutcome::NotAvailable(reason) => json!({ "available": false, "reason": reason }),
    }
}

/// A reason short enough for a table cell.
fn first_words(reason: &str) -> String {
    let cleaned = reason.replace('|', "/");
    if cleaned.chars().count() > 80 {
        format!("{}…", cleaned.chars().take(80).collect::<String>())
    } else {
        cleaned
    }
}
