//! Rebuild by replay, blue/green.
//!
//! The whole log is replayed into *shadow* tables while the service keeps
//! serving (and the live projector keeps updating) the current ones; then,
//! in one transaction that holds the checkpoint row, the shadow catches up
//! with the last events, replaces the live table, and the checkpoint moves
//! to where the replay ended. The live projector goes on from there: its
//! next batch is fenced out if it raced the switch, so no event is skipped
//! or applied twice.
//!
//! The projection code is not told it is rebuilding: it writes unqualified
//! table names, and the shadow tables shadow them on a dedicated connection
//! (PostgreSQL: a schema first on `search_path`; SQLite: TEMP tables, which
//! SQLite resolves before `main`).
//!
//! With `until`, the replay stops at that token and the result is kept as a
//! named copy (`<table>__<name>`) for audits; the live view is untouched.
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait};

use super::apply::{ApplyContext, Projection};
use super::reader;
use super::shadow::{create_shadow, drop_shadow, load_snapshot, shadow_schema, use_shadow};
use crate::catalog::{Status, View};
use crate::db::Db;
use crate::domain::event::RecordedEvent;
use crate::token::LogPosition;

/// Events read and applied per replay transaction (defined in `catalog`,
/// where `args` can take its default from it).
pub use crate::catalog::REPLAY_BATCH;

/// How often a running rebuild says it is alive (`rebuild_reported_at`).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long a `rebuilding` is believed without a report: past this, the
/// rebuild died with its process (a killed `twofold rebuild`) and the
/// projection shows what its runner says. Generous, because a switch's
/// last catch-up holds the checkpoint row its report would write.
pub const SILENT_AFTER: Duration = Duration::from_secs(30);

/// Whether a rebuild that last reported at `reported_at` is still believed at `now`.
pub fn reports_now(reported_at: Option<chrono::DateTime<chrono::Utc>>, now: chrono::DateTime<chrono::Utc>) -> bool {
    let silent = chrono::Duration::from_std(SILENT_AFTER).unwrap_or(chrono::Duration::MAX);
    reported_at.is_some_and(|at| now - at < silent)
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown projection '{0}'; known: {known}", known = crate::catalog::View::names().join(", "))]
    UnknownProjection(String),
    #[error(
        "the exporter ({}) cannot be rebuilt: what it published stays published; it goes on from its checkpoint",
        crate::catalog::EXPORTER
    )]
    NotRebuildable,
    #[error("the copy name '{0}' must be 1-40 characters of a-z, 0-9 and _")]
    BadCopyName(String),
    #[error("event at position {position} cannot be applied: {reason}; fix the projection and rebuild again")]
    Poison { position: i64, reason: String },
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// Something besides the database failed (a broker a projection needs).
    #[error("{0}")]
    Unavailable(String),
    /// A task of the rebuild itself failed (a reader or a worker ended early).
    #[error("{0}")]
    Worker(String),
    #[error(transparent)]
    Connect(#[from] crate::db::ConnectError),
    #[error(transparent)]
    Load(#[from] super::shadow::LoadError),
}

/// What to rebuild.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub projections: Vec<String>,
    /// Replay only up to this token (inclusive) into a named copy.
    pub until: Option<LogPosition>,
    /// The copy's name, with `until`.
    pub copy_name: Option<String>,
    pub batch_size: u64,
    /// Start from these rows (a recovery snapshot, already checked) instead
    /// of empty tables: only the events after its checkpoint are replayed.
    pub from_snapshot: Option<SnapshotStart>,
}

/// Where a rebuild from a snapshot starts: the snapshot file (SQLite) whose
/// tables fill the shadows, and the checkpoint those rows stand at.
#[derive(Debug, Clone)]
pub struct SnapshotStart {
    pub path: std::path::PathBuf,
    pub checkpoint: LogPosition,
}

/// Progress, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

/// One rebuilt projection.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub elapsed: Duration,
    pub checkpoint: LogPosition,
    /// For `until`: the tables the copy was written to.
    pub copy_tables: Vec<String>,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn stmt(db: &Db, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    super::sql::statement(db.backend(), sql, values)
}

/// Rebuilds the named projections in one pass over the log.
pub async fn rebuild(
    events_db: &Db,
    read_db: &Db,
    options: &RebuildOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Vec<RebuildReport>, RebuildError> {
    let all = super::all();
    let mut chosen: Vec<Arc<dyn Projection>> = Vec::new();
    for name in &options.projections {
        if name == crate::catalog::EXPORTER {
            return Err(RebuildError::NotRebuildable);
        }
        let p = all.iter().find(|p| p.name() == name).ok_or_else(|| RebuildError::UnknownProjection(name.clone()))?;
        chosen.push(p.clone());
    }
    if let Some(name) = &options.copy_name {
        if name.is_empty()
            || name.len() > 40
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(RebuildError::BadCopyName(name.clone()));
        }
    }
    let started = Instant::now();
    if events_db.backend() == DbBackend::Postgres {
        // Fresh statistics for the replay's plans: a log that grew fast (an
        // import, a restore) may be many times what PostgreSQL last sampled.
        // A few hundred milliseconds on a million events; a role that does
        // not own the table gets a warning, not an error.
        events_db.conn.execute_unprepared("ANALYZE event").await?;
    }
    let shadow = Db::connect_dedicated(&read_db.url).await?;
    let mut deferred_indexes = Vec::new();
    let phase = Instant::now();
    for p in &chosen {
        deferred_indexes.push((p.name(), create_shadow(&shadow, p.name()).await?));
    }
    tracing::debug!(seconds = phase.elapsed().as_secs_f64(), "rebuild phase: shadow tables created");
    if let Some(start) = &options.from_snapshot {
        if let Err(e) = load_shadows(&shadow, &chosen, &start.path).await {
            for p in &chosen {
                // The load's error is the one to report; a shadow left
                // behind is replaced by the next rebuild's.
                if let Err(dropped) = drop_shadow(&shadow, p.name()).await {
                    tracing::warn!(projection = p.name(), error = %dropped, "could not drop the rebuild's shadow tables");
                }
            }
            return Err(e);
        }
    }
    let first = options.from_snapshot.as_ref().map_or(LogPosition::START, |s| s.checkpoint);
    let total = match options.until {
        Some(until) => u64::try_from(reader::count_after(&events_db.conn, LogPosition::START).await?)
            .unwrap_or(0)
            .min(until.position.max(0) as u64),
        None => u64::try_from(reader::count_after(&events_db.conn, first).await?).unwrap_or(0),
    };
    let reporter = if options.until.is_none() {
        set_status(read_db, &chosen, Status::Rebuilding.as_str(), 0, total as i64).await?;
        Some(report_alive(read_db, &chosen))
    } else {
        None
    };
    let result =
        replay(events_db, read_db, &shadow, &chosen, options, total, started, &deferred_indexes, &mut progress).await;
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if let Err(e) = &result {
        if options.until.is_none() {
            // Were this write lost too, the `rebuilding` stops being
            // believed once its reports stop (`SILENT_AFTER`).
            if let Err(reset) = set_status(read_db, &chosen, Status::Running.as_str(), 0, 0).await {
                tracing::error!(error = %reset, rebuild_error = %e, "the failed rebuild's status could not be reset; it clears once its reports stop");
            }
        }
    }
    for p in &chosen {
        if let Err(e) = drop_shadow(&shadow, p.name()).await {
            tracing::warn!(projection = p.name(), error = %e, "could not drop the rebuild's shadow tables; the next rebuild replaces them");
        }
    }
    // The dedicated connection goes either way; a failed close only logs.
    if let Err(e) = shadow.conn.close().await {
        tracing::debug!(error = %e, "closing the rebuild's connection failed");
    }
    result
}

/// Fills the shadows of `chosen` from the snapshot file. On PostgreSQL
/// every view loads at once, each on a connection of its own (a restore's
/// cost is these rows, and one view's load is bound by its one server
/// process: the search documents of `order_summary`, the width of
/// `order_activity`); SQLite's shadows are the rebuild connection's
/// temporary tables, filled one after the other.
async fn load_shadows(shadow: &Db, chosen: &[Arc<dyn Projection>], path: &std::path::Path) -> Result<(), RebuildError> {
    let load = |p: &Arc<dyn Projection>| {
        let name = p.name();
        async move {
            let view = View::parse(name).ok_or_else(|| RebuildError::UnknownProjection(name.to_owned()))?;
            let phase = Instant::now();
            let rows = match shadow.backend() {
                DbBackend::Postgres => {
                    on_own_connection(shadow, async |own| Ok(load_snapshot(own, view, path).await?)).await?
                }
                _ => load_snapshot(shadow, view, path).await?,
            };
            tracing::debug!(
                projection = name,
                rows,
                seconds = phase.elapsed().as_secs_f64(),
                "rebuild phase: snapshot rows loaded"
            );
            Ok::<(), RebuildError>(())
        }
    };
    match shadow.backend() {
        DbBackend::Postgres => {
            futures_util::future::try_join_all(chosen.iter().map(load)).await?;
        }
        _ => {
            for p in chosen {
                load(p).await?;
            }
        }
    }
    Ok(())
}

/// Makes each PostgreSQL shadow durable (`SET LOGGED`, every table at
/// once), then builds the secondary indexes on [`INDEX_BUILDS`] connections
/// at once: an index build is one sort in one server process, and builds on
/// one table share its lock (`SHARE`). SQLite's shadows
/// have none to build: the switch copies them into the indexed live tables.
async fn finish_shadows(shadow: &Db, deferred: &[(&'static str, Vec<String>)]) -> Result<(), RebuildError> {
    if shadow.backend() != DbBackend::Postgres {
        for index in deferred.iter().flat_map(|(_, indexes)| indexes) {
            shadow.conn.execute_unprepared(index).await?;
        }
        return Ok(());
    }
    let phase = Instant::now();
    futures_util::future::try_join_all(deferred.iter().map(|(table, _)| {
        run_on_own_connection(shadow, vec![format!("ALTER TABLE {}.{table} SET LOGGED", shadow_schema(table))])
    }))
    .await?;
    tracing::debug!(seconds = phase.elapsed().as_secs_f64(), "rebuild phase: shadows made durable");
    let phase = Instant::now();
    let mut lanes: Vec<Vec<String>> = vec![Vec::new(); INDEX_BUILDS];
    for (i, index) in deferred.iter().flat_map(|(_, indexes)| indexes).enumerate() {
        lanes[i % INDEX_BUILDS].push(index.clone());
    }
    let built: usize = lanes.iter().map(Vec::len).sum();
    futures_util::future::try_join_all(
        lanes.into_iter().filter(|l| !l.is_empty()).map(|lane| run_on_own_connection(shadow, lane)),
    )
    .await?;
    tracing::debug!(indexes = built, seconds = phase.elapsed().as_secs_f64(), "rebuild phase: secondary indexes built");
    Ok(())
}

/// Secondary index builds run at once at the end of a PostgreSQL rebuild.
const INDEX_BUILDS: usize = 4;

/// Runs statements in order on a dedicated connection to the shadow's database.
async fn run_on_own_connection(shadow: &Db, statements: Vec<String>) -> Result<(), RebuildError> {
    on_own_connection(shadow, async |own| {
        for sql in &statements {
            own.conn.execute_unprepared(sql).await?;
        }
        Ok(())
    })
    .await
}

/// Runs `work` on a dedicated connection to the shadow's database, closed
/// after it whatever `work` returned (work in parallel: one server process
/// each).
async fn on_own_connection<T>(
    shadow: &Db,
    work: impl AsyncFnOnce(&Db) -> Result<T, RebuildError>,
) -> Result<T, RebuildError> {
    let own = Db::connect_dedicated(&shadow.url).await?;
    let done = work(&own).await;
    if let Err(e) = own.conn.close().await {
        tracing::debug!(error = %e, "closing a rebuild connection failed");
    }
    done
}

/// Says the rebuild of `chosen` is alive every [`REPORT_EVERY`] until
/// aborted, so readers believe its `rebuilding` only while it runs.
fn report_alive(read_db: &Db, chosen: &[Arc<dyn Projection>]) -> tokio::task::JoinHandle<()> {
    let read_db = read_db.clone();
    let names: Vec<&'static str> = chosen.iter().map(|p| p.name()).collect();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(REPORT_EVERY);
        loop {
            ticks.tick().await;
            for name in &names {
                let report = read_db.conn.execute_raw(stmt(
                    &read_db,
                    "UPDATE projection_checkpoint SET rebuild_reported_at = $1 WHERE name = $2 AND status = $3",
                    vec![chrono::Utc::now().into(), (*name).into(), Status::Rebuilding.as_str().into()],
                ));
                match tokio::time::timeout(REPORT_EVERY, report).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(projection = name, error = %e, "a rebuild report failed; the next one may pass")
                    }
                    Err(_) => tracing::debug!(
                        projection = name,
                        "a rebuild report got no answer in time; the next one may pass"
                    ),
                }
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn replay(
    events_db: &Db,
    read_db: &Db,
    shadow: &Db,
    chosen: &[Arc<dyn Projection>],
    options: &RebuildOptions,
    total: u64,
    started: Instant,
    deferred_indexes: &[(&'static str, Vec<String>)],
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<Vec<RebuildReport>, RebuildError> {
    let mut from = options.from_snapshot.as_ref().map_or(LogPosition::START, |s| s.checkpoint);
    let mut done: u64 = 0;
    let mut last_reported = Instant::now();
    // Read ahead: the next batch is fetched while this one is applied.
    let fetch = |from: LogPosition| {
        let (events_db, until, size) = (events_db.clone(), options.until, options.batch_size);
        tokio::spawn(async move { read_batch(&events_db, from, until, size).await })
    };
    let mut next = fetch(from);
    let phase = Instant::now();
    let mut workers = match shadow.backend() {
        DbBackend::Postgres if chosen.len() > 1 => Some(ShadowWorkers::start(&shadow.url, chosen).await?),
        _ => None,
    };
    loop {
        let batch = next.await.map_err(|e| RebuildError::Worker(format!("the read-ahead task failed: {e}")))??;
        let Some(last) = batch.last() else { break };
        from = LogPosition::new(last.tx_id, last.position);
        next = fetch(from);
        done += batch.len() as u64;
        match &mut workers {
            Some(workers) => workers.dispatch(Arc::new(batch)).await?,
            None => apply_batch(shadow, chosen, &batch, None).await?,
        }
        progress(Progress { done, total: total.max(done), elapsed: started.elapsed() });
        if options.until.is_none() && last_reported.elapsed() > Duration::from_millis(500) {
            set_status(read_db, chosen, Status::Rebuilding.as_str(), done as i64, total.max(done) as i64).await?;
            last_reported = Instant::now();
        }
    }
    if let Some(workers) = workers {
        workers.finish().await?;
    }
    tracing::debug!(events = done, seconds = phase.elapsed().as_secs_f64(), "rebuild phase: events replayed");
    let mut copy_tables = Vec::new();
    let checkpoint = match (options.until, &options.copy_name) {
        (Some(_), name) => {
            let name = name.clone().unwrap_or_else(|| format!("as_of_{}", from.position));
            for p in chosen {
                copy_tables.push(keep_copy(shadow, p.name(), &name).await?);
            }
            from
        }
        (None, _) => {
            // Durable, then the secondary indexes in one sort each, before the switch.
            finish_shadows(shadow, deferred_indexes).await?;
            let phase = Instant::now();
            let (switched_at, extra) = switch(events_db, shadow, chosen, from, options.batch_size).await?;
            tracing::debug!(
                caught_up = extra,
                seconds = phase.elapsed().as_secs_f64(),
                "rebuild phase: switched to the rebuilt tables"
            );
            done += extra;
            switched_at
        }
    };
    progress(Progress { done, total: total.max(done), elapsed: started.elapsed() });
    Ok(chosen
        .iter()
        .map(|p| RebuildReport {
            projection: p.name().to_owned(),
            events: done,
            elapsed: started.elapsed(),
            checkpoint,
            copy_tables: copy_tables.iter().filter(|t| t.starts_with(p.name())).cloned().collect(),
        })
        .collect())
}

/// On PostgreSQL, several shadows fill in parallel: one worker per
/// projection, each on its own connection and in its own transactions, fed
/// the same batches by the one reader (projections touch only their own
/// tables, so they need no common transaction). On two cores this overlaps
/// one projection's round trips with another's work; on SQLite, which has
/// one writer, the shadows fill one after the other in one transaction.
struct ShadowWorkers {
    workers: Vec<ShadowWorker>,
}

struct ShadowWorker {
    batches: tokio::sync::mpsc::Sender<Arc<Vec<RecordedEvent>>>,
    task: tokio::task::JoinHandle<Result<(), RebuildError>>,
}

impl ShadowWorkers {
    /// Batches queued per worker beyond the one it applies: enough to keep
    /// it busy, few enough to bound memory.
    const QUEUE: usize = 2;

    async fn start(url: &str, chosen: &[Arc<dyn Projection>]) -> Result<Self, RebuildError> {
        let mut workers = Vec::with_capacity(chosen.len());
        for projection in chosen {
            let db = Db::connect_dedicated(url).await?;
            let (batches, mut queue) = tokio::sync::mpsc::channel::<Arc<Vec<RecordedEvent>>>(Self::QUEUE);
            let projection = [projection.clone()];
            let task = tokio::spawn(async move {
                let mut outcome = Ok(());
                while let Some(batch) = queue.recv().await {
                    outcome = apply_batch(&db, &projection, &batch, None).await;
                    if outcome.is_err() {
                        break;
                    }
                }
                // The worker's dedicated connection goes either way; a failed close only logs.
                if let Err(e) = db.conn.close().await {
                    tracing::debug!(error = %e, "closing a rebuild worker's connection failed");
                }
                outcome
            });
            workers.push(ShadowWorker { batches, task });
        }
        Ok(Self { workers })
    }

    /// Hands the batch to every worker (waiting while a worker's queue is
    /// full); a worker that stopped on an error reports it here.
    async fn dispatch(&mut self, batch: Arc<Vec<RecordedEvent>>) -> Result<(), RebuildError> {
        let mut stopped = false;
        for worker in &self.workers {
            stopped |= worker.batches.send(batch.clone()).await.is_err();
        }
        if stopped {
            let workers = std::mem::take(&mut self.workers);
            Self { workers }.finish().await?;
            return Err(RebuildError::Worker("a rebuild worker stopped early".to_owned()));
        }
        Ok(())
    }

    /// Waits until every worker has applied everything it was given; the
    /// first error wins.
    async fn finish(self) -> Result<(), RebuildError> {
        let mut first_error = None;
        for ShadowWorker { batches, task } in self.workers {
            drop(batches);
            let outcome =
                task.await.unwrap_or_else(|e| Err(RebuildError::Worker(format!("a rebuild worker failed: {e}"))));
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn read_batch(
    events_db: &Db,
    from: LogPosition,
    until: Option<LogPosition>,
    limit: u64,
) -> Result<Vec<RecordedEvent>, RebuildError> {
    let rows = reader::read_range(&events_db.conn, from, until, limit).await?;
    rows.into_iter()
        .map(|r| r.map_err(|bad| RebuildError::Poison { position: bad.position, reason: bad.error }))
        .collect()
}

/// Applies a batch to every shadow, in its own transaction or in `txn`.
async fn apply_batch(
    shadow: &Db,
    chosen: &[Arc<dyn Projection>],
    batch: &[RecordedEvent],
    txn: Option<&sea_orm::DatabaseTransaction>,
) -> Result<(), RebuildError> {
    match txn {
        Some(txn) => apply_in(txn, chosen, batch).await,
        None => {
            let txn = shadow.conn.begin().await?;
            apply_in(&txn, chosen, batch).await?;
            txn.commit().await?;
            Ok(())
        }
    }
}

async fn apply_in(
    txn: &sea_orm::DatabaseTransaction,
    chosen: &[Arc<dyn Projection>],
    batch: &[RecordedEvent],
) -> Result<(), RebuildError> {
    use_shadow(txn, chosen).await?;
    for p in chosen {
        p.apply(txn, batch, ApplyContext { position_guard: true }).await.map_err(|e| match e {
            super::apply::ApplyError::Poison { position, reason } => RebuildError::Poison { position, reason },
            super::apply::ApplyError::Database(db) => RebuildError::Database(db),
            super::apply::ApplyError::Unavailable(message) => RebuildError::Unavailable(message),
        })?;
    }
    Ok(())
}

/// Keeps a shadow as `<table>__<name>` beside the live table.
async fn keep_copy(shadow: &Db, table: &str, name: &str) -> Result<String, DbErr> {
    let copy = format!("{table}__{name}");
    match shadow.backend() {
        DbBackend::Postgres => {
            let schema = shadow_schema(table);
            let txn = shadow.conn.begin().await?;
            // A plain copy (no indexes: their names would clash with the live table's).
            txn.execute_unprepared(&format!("DROP TABLE IF EXISTS public.{copy}")).await?;
            txn.execute_unprepared(&format!("CREATE TABLE public.{copy} AS SELECT * FROM {schema}.{table}")).await?;
            txn.commit().await?;
        }
        _ => {
            let txn = begin_immediate(shadow).await?;
            txn.execute_unprepared(&format!("DROP TABLE IF EXISTS main.{copy}")).await?;
            txn.execute_unprepared(&format!("CREATE TABLE main.{copy} AS SELECT * FROM temp.{table}")).await?;
            txn.commit().await?;
        }
    }
    Ok(copy)
}

/// The atomic switch: hold the checkpoint rows, catch the shadows up with
/// the log, replace the live tables, move the checkpoints. Returns where the
/// projections now stand and how many events the catch-up applied.
async fn switch(
    events_db: &Db,
    shadow: &Db,
    chosen: &[Arc<dyn Projection>],
    mut from: LogPosition,
    batch_size: u64,
) -> Result<(LogPosition, u64), RebuildError> {
    let txn = begin_immediate(shadow).await?;
    let names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
    if shadow.backend() == DbBackend::Postgres {
        let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        // With the rows of their segments, if split (`view#k/N`).
        let segments: Vec<String> = names.iter().map(|n| format!(" OR {}", segment_rows(n))).collect();
        txn.execute_unprepared(&format!(
            // In name order, as every transaction that locks several checkpoint rows and may wait (design.md).
            "SELECT name FROM public.projection_checkpoint WHERE name IN ({}){} ORDER BY name FOR UPDATE",
            list.join(", "),
            segments.join("")
        ))
        .await?;
    }
    // With the live runners held off, apply whatever arrived meanwhile.
    let mut extra = 0u64;
    loop {
        let batch = read_batch(events_db, from, None, batch_size).await?;
        let Some(last) = batch.last() else { break };
        from = LogPosition::new(last.tx_id, last.position);
        apply_batch(shadow, chosen, &batch, Some(&txn)).await?;
        extra += batch.len() as u64;
    }
    if shadow.backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL search_path TO public").await?;
    }
    // Events at or before the new checkpoint (later ones are the live runner's to count).
    let applied = reader::count_upto(&events_db.conn, from).await?;
    for name in &names {
        match shadow.backend() {
            DbBackend::Postgres => {
                let schema = shadow_schema(name);
                txn.execute_unprepared(&format!("DROP TABLE public.{name}")).await?;
                txn.execute_unprepared(&format!("ALTER TABLE {schema}.{name} SET SCHEMA public")).await?;
            }
            _ => {
                txn.execute_unprepared(&format!("DELETE FROM main.{name}")).await?;
                txn.execute_unprepared(&format!("INSERT INTO main.{name} SELECT * FROM temp.{name}")).await?;
            }
        }
        txn.execute_raw(stmt(
            shadow,
            "UPDATE projection_checkpoint SET last_tx_id = $1, last_position = $2, status = $3, last_error = NULL, \
             events_applied = $4, fence = fence + 1, rebuild_done = 0, rebuild_total = 0, updated_at = $5 WHERE name = $6",
            vec![from.tx_id.into(), from.position.into(), Status::Running.as_str().into(), applied.into(), chrono::Utc::now().into(), (*name).into()],
        ))
        .await?;
        // A split view's segments go: the next runners (or the live ones,
        // fenced out now) make them again where the view now stands, in
        // the layout they run with (see `super::segment`).
        txn.execute_unprepared(&format!("DELETE FROM projection_checkpoint WHERE {}", segment_rows(name))).await?;
        if shadow.backend() == DbBackend::Postgres {
            let update = crate::notice::ProjectionUpdated {
                projection: (*name).to_owned(),
                token: from,
                stream_ids: Vec::new(),
                owners: Vec::new(),
                event_types: Vec::new(),
                complete: false,
                rebuild_percent: None,
            };
            crate::notice::postgres::announce_batch(&txn, "rebuild", &update).await?;
        }
    }
    txn.commit().await?;
    Ok((from, extra))
}

/// The condition on `projection_checkpoint` that finds the segment rows of
/// view `name` (a name from the catalog: no quoting needed).
fn segment_rows(name: &str) -> String {
    format!("substr(name, 1, {}) = '{name}#'", name.len() + 1)
}

/// A transaction that takes SQLite's write lock up front (waiting for it)
/// instead of failing on upgrade; a plain transaction on PostgreSQL.
async fn begin_immediate(db: &Db) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    match db.backend() {
        DbBackend::Sqlite => {
            db.conn
                .begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await
        }
        _ => db.conn.begin().await,
    }
}

async fn set_status(
    read_db: &Db,
    chosen: &[Arc<dyn Projection>],
    status: &str,
    done: i64,
    total: i64,
) -> Result<(), DbErr> {
    for p in chosen {
        read_db
            .conn
            .execute_raw(stmt(
                read_db,
                "UPDATE projection_checkpoint SET status = $1, rebuild_done = $2, rebuild_total = $3, updated_at = $4, rebuild_reported_at = $4 WHERE name = $5",
                vec![status.into(), done.into(), total.into(), chrono::Utc::now().into(), p.name().into()],
            ))
            .await?;
    }
    Ok(())
}
