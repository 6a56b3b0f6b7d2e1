//! Figure 4: rebuild speed. `twofold rebuild order_summary` and
//! `twofold rebuild --all` replay the event log (the server is stopped
//! first); the baseline loads the same number of finished `order_summary`
//! rows into an identical table: one `COPY … FROM STDIN` on PostgreSQL (the
//! database's fastest way in), multi-row INSERTs of 1,000 on SQLite.
//!
//! Then the restore: `twofold snapshot create` of the views just rebuilt,
//! a tenth of the log more appended by plain SQL, and `twofold rebuild --all
//! --from-snapshot` (loads the rows, replays only that tail) beside the
//! rebuild from zero. The log stays grown by that tail for later phases.
//!
//! In full mode the log is first grown to `scale.rebuild_events` by plain-SQL
//! appends of complete order histories (see `sql::append_orders`): pushing a
//! million events through HTTP would dominate the run.
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Iterable, ModelTrait, QuerySelect, Statement};
use uuid::Uuid;

use entity::read::order_summary;
use twofold::db::Db;

use crate::cli::Scale;
use crate::load::count;
use crate::progress;
use crate::rebuilt::{parse_rebuilt, Rebuilt};
use crate::report::Report;
use crate::server::TWOFOLD_BIN;
use crate::sql::{self, Fate};
use crate::workload::Catalog;

const BULK_TABLE: &str = "bench_bulk_order_summary";
const BULK_BATCH: usize = 1_000;
const TOP_UP_BATCH: u64 = 500;

/// What one `twofold rebuild` invocation gave.
#[derive(Debug, Clone)]
pub enum RebuildOutcome {
    Done {
        lines: Vec<Rebuilt>,
        wall: Duration,
    },
    /// The CLI is missing or failed; the reason is shown in the report.
    NotAvailable(String),
}

/// The bulk-load baseline: `COPY` on PostgreSQL, multi-row INSERTs on SQLite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkInsert {
    pub method: &'static str,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// A rebuild from a snapshot, beside the rebuild from zero.
#[derive(Debug, Clone)]
pub struct FromSnapshot {
    pub store: &'static str,
    /// Events in the log when the snapshot was taken (the views stood at its head).
    pub snapshot_at: u64,
    pub snapshot_seconds: f64,
    /// Events appended after the snapshot: what the restore replays.
    pub tail: u64,
    pub restore: RebuildOutcome,
}

/// Grows the log to `scale.rebuild_events` by plain SQL (the rebuild's and
/// the export's backlog); returns its size and how many events were appended.
pub async fn grow_log(db: &Db, catalog: &Catalog, scale: &Scale) -> anyhow::Result<(u64, u64)> {
    let before = count(db, "SELECT COUNT(*) FROM event").await?;
    let appended = if before < scale.rebuild_events {
        top_up(db, catalog, Goal::Events(scale.rebuild_events - before), scale.rebuild_timeout, 0x70B_0000_0000).await?
    } else {
        0
    };
    let events = count(db, "SELECT COUNT(*) FROM event").await?;
    progress!("event log: {events} events ({appended} appended by plain SQL)");
    Ok((events, appended))
}

pub async fn measure(url: &str, db: &Db, catalog: &Catalog, scale: &Scale, report: &mut Report) -> anyhow::Result<()> {
    let (events, appended) = grow_log(db, catalog, scale).await?;

    let single = run_rebuild(url, &["order_summary"], scale.rebuild_timeout).await;
    log_outcome("rebuild order_summary", &single);
    let all = run_rebuild(url, &["--all"], scale.rebuild_timeout).await;
    log_outcome("rebuild --all", &all);

    let rows = match &single {
        RebuildOutcome::Done { lines, .. } => lines.first().map_or(events, |l| l.events),
        RebuildOutcome::NotAvailable(_) => events,
    };
    let bulk = match db.backend() {
        DbBackend::Postgres => bulk_copy(db, rows, scale.rebuild_timeout).await,
        _ => bulk_insert(db, rows, scale.rebuild_timeout).await,
    };
    let bulk = match bulk {
        Ok(bulk) => {
            progress!(
                "bulk-load baseline ({}): {} rows in {:.2} s ({:.0} rows/s)",
                bulk.method,
                bulk.rows,
                bulk.seconds,
                bulk.rows_per_second
            );
            Some(bulk)
        }
        Err(e) => {
            progress!("bulk-load baseline failed: {e:#}");
            None
        }
    };
    let restore = match from_snapshot(url, db, catalog, scale, events).await {
        Ok(restore) => {
            log_outcome("rebuild --all --from-snapshot", &restore.restore);
            Ok(restore)
        }
        Err(e) => {
            progress!("rebuild from a snapshot failed: {e:#}");
            Err(format!("{e:#}"))
        }
    };
    report.set_rebuild(events, appended, single, all, bulk, restore);
    Ok(())
}

/// Snapshots the views (rebuilt at the head of a log of `events`), appends
/// a tenth as many events, and restores from the snapshot.
async fn from_snapshot(
    url: &str,
    db: &Db,
    catalog: &Catalog,
    scale: &Scale,
    events: u64,
) -> anyhow::Result<FromSnapshot> {
    let (store, _, _) = crate::load::store_and_size(db).await?;
    let dir = tempfile::Builder::new().prefix("twofold-bench-snapshot-").tempdir().context("create a temp dir")?;
    let file = dir.path().join("views.snapshot");
    let started = Instant::now();
    let created = tokio::process::Command::new(TWOFOLD_BIN)
        .args(["snapshot", "create"])
        .arg(&file)
        .args(["--database-url", url])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(scale.rebuild_timeout, created)
        .await
        .context("snapshot create timed out")?
        .with_context(|| format!("cannot run {TWOFOLD_BIN}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("snapshot create: {}: {}", output.status, stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    }
    let snapshot_seconds = started.elapsed().as_secs_f64();
    progress!("snapshot of the views at {events} events: {snapshot_seconds:.2} s");
    let tail =
        top_up(db, catalog, Goal::Events((events / 10).max(100)), scale.rebuild_timeout, 0x70C_0000_0000).await?;
    let path = file.to_str().context("a temp path that is not UTF-8")?;
    let restore = run_rebuild(url, &["--all", "--from-snapshot", path], scale.rebuild_timeout).await;
    Ok(FromSnapshot { store, snapshot_at: events, snapshot_seconds, tail, restore })
}

fn log_outcome(what: &str, outcome: &RebuildOutcome) {
    match outcome {
        RebuildOutcome::Done { lines, wall } => {
            for l in lines {
                progress!(
                    "{what}: {}: {} events in {:.2} s ({:.0} events/s)",
                    l.projection,
                    l.events,
                    l.seconds,
                    l.events_per_second
                );
            }
            progress!("{what}: {:.2} s wall", wall.as_secs_f64());
        }
        RebuildOutcome::NotAvailable(reason) => progress!("{what}: not available ({reason})"),
    }
}

/// Appends complete order histories until `wanted` more events are in the
/// log (or time runs out). Returns the number appended.
/// Grows the orders to `wanted` by plain SQL, then brings every view up to
/// them with `twofold rebuild --all` (the server must be stopped): the
/// search phase's large data sets, which HTTP seeding would take an hour to
/// place.
pub async fn grow_orders(url: &str, db: &Db, catalog: &Catalog, wanted: u64, timeout: Duration) -> anyhow::Result<()> {
    let before = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    if before >= wanted {
        return Ok(());
    }
    top_up(db, catalog, Goal::Orders(wanted - before), timeout, 0x70D_0000_0000).await?;
    match run_rebuild(url, &["--all"], timeout).await {
        RebuildOutcome::Done { wall, .. } => {
            progress!("views rebuilt over {wanted} orders in {:.1} s", wall.as_secs_f64());
            Ok(())
        }
        RebuildOutcome::NotAvailable(why) => bail!("rebuild --all over the grown orders: {why}"),
    }
}

/// How far a top-up goes.
#[derive(Debug, Clone, Copy)]
enum Goal {
    Events(u64),
    Orders(u64),
}

async fn top_up(db: &Db, catalog: &Catalog, goal: Goal, timeout: Duration, seed: u64) -> anyhow::Result<u64> {
    progress!("growing the event log by {goal:?} (plain-SQL batches of {TOP_UP_BATCH} orders)");
    let started = Instant::now();
    let mut appended = 0;
    let mut next_report = 100_000;
    let mut seq = 0u64;
    let short = |appended: u64, orders: u64| match goal {
        Goal::Events(wanted) => appended < wanted,
        Goal::Orders(wanted) => orders < wanted,
    };
    while short(appended, seq) && started.elapsed() < timeout {
        let batch: Vec<_> = (0..TOP_UP_BATCH)
            .map(|_| {
                seq += 1;
                let fate = match seq % 4 {
                    0 | 1 => Fate::Shipped,
                    2 => Fate::Cancelled,
                    _ => Fate::Placed,
                };
                (catalog.random_order(seed + seq), fate)
            })
            .collect();
        appended += sql::append_orders(db, catalog, &batch).await.context("append a batch of orders")?;
        if appended >= next_report {
            progress!("  appended {appended} events ({seq} orders)");
            next_report += 100_000;
        }
    }
    progress!("appended {appended} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(appended)
}

/// Runs `twofold rebuild <args> --database-url URL`, bounded by `timeout`.
pub async fn run_rebuild(url: &str, args: &[&str], timeout: Duration) -> RebuildOutcome {
    let started = Instant::now();
    let child = tokio::process::Command::new(TWOFOLD_BIN)
        .arg("rebuild")
        .args(args)
        .args(["--database-url", url])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, child).await {
        Err(_) => return RebuildOutcome::NotAvailable(format!("timed out after {timeout:?}")),
        Ok(Err(e)) => return RebuildOutcome::NotAvailable(format!("cannot run {TWOFOLD_BIN}: {e}")),
        Ok(Ok(output)) => output,
    };
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Rebuilt> = stdout.lines().filter_map(parse_rebuilt).collect();
    if !output.status.success() || lines.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no `rebuilt` line on stdout");
        return RebuildOutcome::NotAvailable(format!("{}: {reason}", output.status));
    }
    RebuildOutcome::Done { lines, wall }
}

/// Inserts `rows` finished `order_summary` rows (real rows with fresh ids)
/// into an identical empty table, 1,000 per INSERT; drops the table after.
async fn bulk_insert(db: &Db, rows: u64, timeout: Duration) -> anyhow::Result<BulkInsert> {
    let templates = order_summary::Entity::find().limit(BULK_BATCH as u64).all(&db.conn).await?;
    if templates.is_empty() {
        bail!("order_summary is empty: no rows to copy");
    }
    create_bulk_table(db).await?;
    let started = Instant::now();
    let mut inserted = 0u64;
    while inserted < rows && started.elapsed() < timeout {
        let n = (rows - inserted).min(BULK_BATCH as u64);
        let mut insert = Query::insert();
        insert.into_table(Alias::new(BULK_TABLE)).columns(order_summary::Column::iter());
        for i in 0..n {
            let mut row = templates[(i as usize) % templates.len()].clone();
            row.order_id = Uuid::now_v7();
            row.placed_position = (inserted + i) as i64;
            insert.values(order_summary::Column::iter().map(|c| row.get(c).into())).context("build the bulk INSERT")?;
        }
        db.conn.execute(&insert).await.context("bulk INSERT")?;
        inserted += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    db.conn.execute_unprepared(&format!("DROP TABLE {BULK_TABLE}")).await.ok();
    Ok(BulkInsert {
        method: "multi-row INSERT",
        rows: inserted,
        seconds,
        rows_per_second: inserted as f64 / seconds.max(1e-9),
    })
}

/// PostgreSQL's own bulk path: the same finished rows as
/// [`bulk_insert`], sent with one `COPY … FROM STDIN` (CSV), so the
/// baseline is the fastest way the database takes rows in.
async fn bulk_copy(db: &Db, rows: u64, timeout: Duration) -> anyhow::Result<BulkInsert> {
    let templates = order_summary::Entity::find().limit(BULK_BATCH as u64).all(&db.conn).await?;
    if templates.is_empty() {
        bail!("order_summary is empty: no rows to copy");
    }
    create_bulk_table(db).await?;
    let columns: Vec<&str> = order_summary::Column::iter().map(|c| sea_orm::IdenStatic::as_str(&c)).collect();
    let mut conn = db.conn.get_postgres_connection_pool().acquire().await.context("a connection for COPY")?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY {BULK_TABLE} ({}) FROM STDIN WITH (FORMAT csv)", columns.join(", ")))
        .await
        .context("start COPY")?;
    let mut sent = 0u64;
    while sent < rows && started.elapsed() < timeout {
        let n = (rows - sent).min(BULK_BATCH as u64);
        let mut chunk = String::with_capacity(n as usize * 512);
        for i in 0..n {
            let mut row = templates[(i as usize) % templates.len()].clone();
            row.order_id = Uuid::now_v7();
            row.placed_position = (sent + i) as i64;
            for (k, column) in order_summary::Column::iter().enumerate() {
                if k > 0 {
                    chunk.push(',');
                }
                csv_field(&mut chunk, &row.get(column))?;
            }
            chunk.push('\n');
        }
        copy.send(chunk.into_bytes()).await.context("COPY data")?;
        sent += n;
    }
    let copied = copy.finish().await.context("finish COPY")?;
    let seconds = started.elapsed().as_secs_f64();
    drop(conn);
    db.conn.execute_unprepared(&format!("DROP TABLE {BULK_TABLE}")).await.ok();
    Ok(BulkInsert { method: "COPY", rows: copied, seconds, rows_per_second: copied as f64 / seconds.max(1e-9) })
}

/// One CSV field for `COPY … (FORMAT csv)`: NULL is an unquoted empty field,
/// text is always quoted (so an empty string stays a string).
fn csv_field(out: &mut String, value: &sea_orm::Value) -> anyhow::Result<()> {
    use sea_orm::Value;
    use std::fmt::Write;
    match value {
        Value::String(Some(text)) => {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        }
        Value::Uuid(Some(id)) => write!(out, "{id}")?,
        Value::BigInt(Some(n)) => write!(out, "{n}")?,
        Value::Int(Some(n)) => write!(out, "{n}")?,
        Value::SmallInt(Some(n)) => write!(out, "{n}")?,
        Value::Bool(Some(b)) => write!(out, "{b}")?,
        Value::ChronoDateTimeUtc(Some(at)) => write!(out, "{}", at.to_rfc3339())?,
        Value::String(None)
        | Value::Uuid(None)
        | Value::BigInt(None)
        | Value::Int(None)
        | Value::SmallInt(None)
        | Value::Bool(None)
        | Value::ChronoDateTimeUtc(None) => {}
        other => bail!("no CSV form for {other:?} in the COPY baseline"),
    }
    Ok(())
}

/// `order_summary`'s twin: same columns, primary key and indexes.
async fn create_bulk_table(db: &Db) -> anyhow::Result<()> {
    db.conn.execute_unprepared(&format!("DROP TABLE IF EXISTS {BULK_TABLE}")).await?;
    match db.backend() {
        DbBackend::Postgres => {
            db.conn
                .execute_unprepared(&format!("CREATE TABLE {BULK_TABLE} (LIKE order_summary INCLUDING ALL)"))
                .await?;
        }
        _ => {
            let ddl = db
                .conn
                .query_all_raw(Statement::from_string(
                    db.backend(),
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'order_summary' AND sql IS NOT NULL ORDER BY type DESC".to_owned(),
                ))
                .await?;
            for row in ddl {
                let statement: String = row.try_get_by_index(0)?;
                db.conn.execute_unprepared(&statement.replace("order_summary", BULK_TABLE)).await?;
            }
        }
    }
    Ok(())
}
