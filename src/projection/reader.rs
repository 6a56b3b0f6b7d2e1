//! Reading the event log in commit-safe order.
//!
//! PostgreSQL: a `GENERATED … AS IDENTITY` position is taken at INSERT but
//! becomes visible at COMMIT, so position order is not commit order and a
//! reader that skipped a "gap" would lose a late commit. We read in
//! `(tx_id, position)` order and only below a horizon under which every
//! transaction that could still append has finished, so nothing can later
//! appear behind the checkpoint. No wall-clock gap timeout anywhere.
//!
//! The horizon counts only event writers ([`HORIZON`]). Every transaction
//! that appends holds a shared advisory lock ([`crate::db::APPENDER_LOCK`])
//! taken *before it has an xid* (commands: their first statement; any other
//! INSERT into `event`: a statement trigger, so its first write must be
//! that insert). In one statement, with its snapshot S taken when the
//! statement starts:
//!
//! ```text
//! H = min( xmax(S),
//!          every xid x in S's in-progress list that
//!            (a) belongs to a current holder of the appender lock, or
//!            (b) is no longer in progress (it ended after S was taken) )
//! ```
//!
//! and we read only events with `tx_id < H`, through S. Why no event with
//! `tx_id < H` can be missing from S (committed later, behind the
//! checkpoint): let T append with xid x < H, invisible in S, so T had not
//! committed when S was taken.
//!
//! - If T had no xid when S was taken, x was assigned later, so x ≥ xmax(S) ≥ H.
//! - Otherwise x is in S's in-progress list. When the statement then reads
//!   the locks (after S), either T has ended — (b) counts x — or T is still
//!   running. A running T that will append holds the appender lock already:
//!   it took it before it had an xid, and x exists. So (a) counts x.
//!
//! Either way H ≤ x, a contradiction. Transactions in other databases,
//! Twofold's own read-only and projector sessions, and writers of other
//! tables hold no appender lock and, once they have an xid, never take it:
//! they no longer hold the horizon back (as they did when it was the
//! snapshot's xmin). A session whose xid the reader may not see (another
//! role, without `pg_read_all_stats`) makes the proof unusable: the reader
//! then falls back to the global horizon ([`FALLBACK_HORIZON`]) and says so
//! ([`horizon_probe`]).
//!
//! SQLite: writers are serialized, so `position` (the rowid) is commit order.
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement, Value};

use crate::domain::event::RecordedEvent;
use crate::domain::DomainEvent;
use crate::projection::sql::statement;
use crate::token::LogPosition;

/// An event row that could not be decoded (unknown type or version, bad
/// payload): a poison event for every projection.
#[derive(Debug, Clone)]
pub struct Undecodable {
    pub position: i64,
    pub tx_id: i64,
    pub stream_id: uuid::Uuid,
    pub event_type: String,
    pub error: String,
    /// Written by a newer release: not poison, a reason to stand down.
    pub newer: bool,
}

impl Undecodable {
    /// A decoded event that a projection could not apply, for `reason`.
    pub fn poison(e: &RecordedEvent, reason: String) -> Self {
        Self {
            position: e.position,
            tx_id: e.tx_id,
            stream_id: e.stream_id,
            event_type: e.event.event_type().to_owned(),
            error: reason,
            newer: false,
        }
    }
}

/// An extra upcaster tried before the built-in decoding: given an event's
/// type, schema version and payload, it may return an older version and
/// payload this release can read. None in production; tests use one to
/// play a newer release during a rolling upgrade.
pub type Upcaster = std::sync::Arc<dyn Fn(&str, i32, &str) -> Option<(i32, String)> + Send + Sync>;

/// A decoded event, or the row that could not be decoded.
pub type ReadEvent = Result<RecordedEvent, Undecodable>;

/// The appender-lock holders in this database (advisory locks are per
/// database, but `pg_locks` lists every database's), their xids (32-bit, as
/// `pg_stat_activity` shows them), and whether the reader may not see a
/// holder's xid.
const APPENDERS: &str = "appenders AS MATERIALIZED (\
       SELECT a.backend_xid::text::bigint AS xid, a.xact_start, \
              (a.pid IS NULL OR a.usesysid IS NULL \
               OR NOT (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_read_all_stats', 'USAGE'))) AS hidden \
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
       WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 1953984358 AND l.objid = 1 AND l.objsubid = 2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

/// The horizon of the module docs: below it every transaction that could
/// append has ended. Falls back to [`FALLBACK_HORIZON`]'s rule when an
/// appender's xid cannot be seen.
fn horizon_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s), {APPENDERS}, \
         horizon AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM appenders WHERE hidden) THEN ({FALLBACK}) \
           ELSE LEAST(pg_snapshot_xmax(snap.s)::text::bigint, \
             (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap.s) AS x \
               WHERE pg_xact_status(x) <> 'in progress' \
                  OR EXISTS (SELECT 1 FROM appenders ap WHERE ap.xid = (x::text::bigint & 4294967295)))) \
           END AS h FROM snap)",
            FALLBACK = FALLBACK_HORIZON
        )
    })
}

/// Watches the horizon every `every` until `shutdown`: keeps the
/// `twofold_horizon_fallback` and `twofold_appender_oldest_age_seconds`
/// gauges current and logs when the reader falls back to the global
/// horizon (and when it stops).
pub async fn monitor_horizon(
    db: crate::db::Db,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut fallback = false;
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(Some(probe)) = horizon_probe(&db.conn).await else { continue };
        metrics::gauge!(crate::metrics::HORIZON_FALLBACK).set(f64::from(u8::from(probe.fallback)));
        metrics::gauge!(crate::metrics::APPENDER_AGE).set(probe.oldest_appender_age);
        if probe.fallback != fallback {
            fallback = probe.fallback;
            if fallback {
                tracing::warn!("an event writer's transaction id is not visible to this role (grant pg_read_all_stats): projections fall back to the global horizon, which any open transaction on the server holds back");
            } else {
                tracing::info!("projections use the appenders' horizon again");
            }
        }
    }
}

/// The global horizon, used when the appenders cannot be seen: the oldest
/// transaction running in this statement's snapshot, not counting projector
/// sessions (they never append), or the snapshot's xmax. Any open
/// transaction anywhere on the server holds it back.
pub const FALLBACK_HORIZON: &str = "COALESCE( \
       (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap.s) AS x \
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                           WHERE a.application_name = 'twofold-projector' AND a.backend_xid IS NOT NULL \
                             AND a.backend_xid::text::bigint = (x::text::bigint & 4294967295))), \
       pg_snapshot_xmax(snap.s)::text::bigint)";

/// How the horizon stands right now (for `/readyz` and `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HorizonProbe {
    /// True when some appender's xid cannot be seen: the global horizon is in use.
    pub fallback: bool,
    /// Seconds the oldest appender holding an xid has been running.
    pub oldest_appender_age: f64,
}

/// Looks at the appenders once (PostgreSQL; `None` elsewhere).
pub async fn horizon_probe(db: &impl ConnectionTrait) -> Result<Option<HorizonProbe>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let sql = format!(
        "WITH {APPENDERS} SELECT COALESCE(bool_or(hidden), false) AS fallback, \
         COALESCE(EXTRACT(EPOCH FROM now() - min(xact_start) FILTER (WHERE xid IS NOT NULL))::float8, 0) AS age FROM appenders"
    );
    let row = db.query_one_raw(statement(DbBackend::Postgres, &sql, vec![])).await?;
    Ok(row.map(|r| HorizonProbe {
        fallback: r.try_get("", "fallback").unwrap_or(true),
        oldest_appender_age: r.try_get("", "age").unwrap_or(0.0),
    }))
}

/// The parts of an event's stored metadata a reader uses.
#[derive(Debug, Default)]
pub struct StoredMetadata {
    pub actor: Option<crate::domain::Actor>,
    pub command_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl StoredMetadata {
    /// The ids as [`EventMeta`] explains them (older events included).
    pub fn meta(&self) -> crate::domain::event::EventMeta {
        match &self.causation_id {
            Some(causation) => crate::domain::event::EventMeta::caused_by(
                causation.clone(),
                self.correlation_id.clone(),
                self.traceparent.clone(),
            ),
            // Before causation was recorded: `correlationId` was the request id.
            None => crate::domain::event::EventMeta {
                correlation_id: self.command_id.clone(),
                causation_id: self.command_id.clone(),
                traceparent: self.traceparent.clone(),
            },
        }
    }
}

/// What a reader needs of an event row: the payload as JSON text (decoded
/// straight into the typed event) and the metadata (its actor, ids and
/// trace context, see [`StoredMetadata`]).
const COLUMNS: &str = "position, tx_id, stream_id, stream_version, event_type, event_version, CAST(payload AS TEXT) AS payload, recorded_at, CAST(metadata AS TEXT) AS metadata";

#[derive(Debug, FromQueryResult)]
struct LogRow {
    position: i64,
    tx_id: i64,
    stream_id: uuid::Uuid,
    stream_version: i64,
    event_type: String,
    event_version: i32,
    payload: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
    /// The metadata, as JSON text.
    metadata: Option<String>,
}

/// Reads up to `limit` committed events after `after`, in checkpoint order.
pub async fn read_after(db: &impl ConnectionTrait, after: LogPosition, limit: u64) -> Result<Vec<ReadEvent>, DbErr> {
    read_range(db, after, None, limit).await
}

/// [`read_after`], decoding through `upcaster` first.
pub async fn read_after_with(
    db: &impl ConnectionTrait,
    after: LogPosition,
    limit: u64,
    upcaster: Option<&Upcaster>,
) -> Result<Vec<ReadEvent>, DbErr> {
    let rows = read_rows(db, after, None, limit).await?;
    Ok(rows.into_iter().map(|row| decode_row(row, upcaster)).collect())
}

/// Like [`read_after`], but stops at `until` (inclusive), for time travel.
pub async fn read_range(
    db: &impl ConnectionTrait,
    after: LogPosition,
    until: Option<LogPosition>,
    limit: u64,
) -> Result<Vec<ReadEvent>, DbErr> {
    let rows = read_rows(db, after, until, limit).await?;
    Ok(rows.into_iter().map(|row| decode_row(row, None)).collect())
}

async fn read_rows(
    db: &impl ConnectionTrait,
    after: LogPosition,
    until: Option<LogPosition>,
    limit: u64,
) -> Result<Vec<LogRow>, DbErr> {
    let stmt = range_statement(db.get_database_backend(), after, until, limit);
    LogRow::find_by_statement(stmt).all(db).await
}

/// The statement that reads the log after `after` (up to `until`, at most
/// `limit` events), in `(tx_id, position)` order, below the horizon.
///
/// The horizon is a scalar subquery, not a join: joined, the planner may put
/// the one-row horizon on the outside of a nested loop, which loses the
/// index's order, and then sort every event after `after` to return the
/// first `limit` — on a million-event backlog with statistics taken before
/// it grew, five seconds and half a gigabyte of temporary files per batch.
/// As a subquery it is a parameter of the ordered index scan, which stops
/// after `limit` rows (`tests/it/horizon.rs` checks the plan).
pub fn range_statement(backend: DbBackend, after: LogPosition, until: Option<LogPosition>, limit: u64) -> Statement {
    let until = until.unwrap_or(LogPosition::new(i64::MAX, i64::MAX));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match backend {
        DbBackend::Postgres => statement(
            backend,
            &format!(
                "{} SELECT {COLUMNS} FROM event \
                 WHERE (tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4) \
                   AND tx_id < (SELECT h FROM horizon) \
                 ORDER BY tx_id, position LIMIT $5",
                horizon_sql()
            ),
            vec![after.tx_id.into(), after.position.into(), until.tx_id.into(), until.position.into(), limit.into()],
        ),
        _ => statement(
            backend,
            &format!("SELECT {COLUMNS} FROM event WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"),
            vec![after.position.into(), until.position.into(), limit.into()],
        ),
    }
}

/// The committed events of one stream after its version `after_version`
/// (up to `upto`, inclusive, in the log's order), in stream order: the
/// stream index (`event_stream_version_key`), never a scan of the log.
/// Within a stream, versions commit in order (each command holds the
/// aggregate's lock), so what this returns has no gap.
pub async fn read_stream(
    db: &impl ConnectionTrait,
    stream_id: uuid::Uuid,
    after_version: i64,
    upto: Option<LogPosition>,
    limit: u64,
) -> Result<Vec<ReadEvent>, DbErr> {
    let backend = db.get_database_backend();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let upto = upto.unwrap_or(LogPosition::new(i64::MAX, i64::MAX));
    let stmt = match backend {
        DbBackend::Postgres => statement(
            backend,
            &format!(
                "SELECT {COLUMNS} FROM event WHERE stream_id = $1 AND stream_version > $2 \
                 AND (tx_id, position) <= ($3, $4) ORDER BY stream_version LIMIT $5"
            ),
            vec![stream_id.into(), after_version.into(), upto.tx_id.into(), upto.position.into(), limit.into()],
        ),
        _ => statement(
            backend,
            &format!(
                "SELECT {COLUMNS} FROM event WHERE stream_id = $1 AND stream_version > $2 AND position <= $3 \
                 ORDER BY stream_version LIMIT $4"
            ),
            vec![stream_id.into(), after_version.into(), upto.position.into(), limit.into()],
        ),
    };
    let rows = LogRow::find_by_statement(stmt).all(db).await?;
    Ok(rows.into_iter().map(|row| decode_row(row, None)).collect())
}

/// What [`read_stream_at`] reads beside the stream's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beside {
    /// Nothing.
    Nothing,
    /// The stream is an order's: also its customer's events after the
    /// customer version the order was placed at (the renames an order's
    /// summary folds), found through the order's `OrderPlaced` event
    /// (its `customerId` and `customerVersion`) in the same statement,
    /// so a read at the token needs no second round trip for them.
    PlacingCustomer,
}

/// What [`read_stream_at`] saw in one snapshot: whether the token's event
/// is in the log, whether every writer below the token had ended, and the
/// stream's events up to the token.
pub struct StreamAt {
    pub exists: bool,
    pub settled: bool,
    pub events: Vec<ReadEvent>,
    /// What [`Beside`] asked for, up to the token, in stream order; `None`
    /// when it asked for nothing or could not be read in the same
    /// statement (SQLite; an order whose `OrderPlaced` is not at or before
    /// the token), so the caller reads it apart.
    pub beside: Option<Vec<ReadEvent>>,
}

/// A row of [`read_stream_at`]'s statement: the horizon and the token's
/// presence, beside one event (none when there is none).
#[derive(Debug, FromQueryResult)]
struct StreamAtRow {
    h: i64,
    found: bool,
    position: Option<i64>,
    tx_id: Option<i64>,
    stream_id: Option<uuid::Uuid>,
    stream_version: Option<i64>,
    event_type: Option<String>,
    event_version: Option<i32>,
    payload: Option<String>,
    recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    metadata: Option<String>,
}

impl StreamAtRow {
    /// The event this row carries, if it carries one.
    fn event(self) -> Option<LogRow> {
        Some(LogRow {
            position: self.position?,
            tx_id: self.tx_id?,
            stream_id: self.stream_id?,
            stream_version: self.stream_version?,
            event_type: self.event_type?,
            event_version: self.event_version?,
            payload: self.payload?,
            recorded_at: self.recorded_at?,
            metadata: self.metadata,
        })
    }
}

/// Whether the token is in the log ([`exists`]), whether every writer that
/// could append an event at or before it has ended (PostgreSQL: the horizon
/// has passed its transaction id; SQLite: always, writers are serialized),
/// and [`read_stream`] of a whole stream up to
/// `token` (and what `beside` names), in one statement on PostgreSQL, so
/// one snapshot: the horizon is computed from the statement's own snapshot
/// (`pg_current_snapshot()`, see [`horizon_sql`]), so when it says the
/// writers below the token have ended, their events are visible to the
/// same statement's read (as the projector's batch read relies on). When
/// it says they have not, the events are not the answer there: the caller
/// waits and reads again. On SQLite (writers serialized, always settled)
/// it is the two reads, and `beside` is left to the caller.
pub async fn read_stream_at(
    db: &impl ConnectionTrait,
    stream_id: uuid::Uuid,
    beside: Beside,
    token: LogPosition,
    limit: u64,
) -> Result<StreamAt, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return serialized(db, token, read_stream(db, stream_id, 0, Some(token), limit)).await;
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let own = format!(
        "SELECT {COLUMNS} FROM event WHERE stream_id = $3 AND (tx_id, position) <= ($2, $1) \
         ORDER BY stream_version LIMIT $4"
    );
    let events = match beside {
        Beside::Nothing => own,
        // The placing customer's events after the version the order read
        // it at: `p` is the order's first event, at most one row.
        Beside::PlacingCustomer => format!(
            "({own}) UNION ALL (SELECT {COLUMNS} FROM event c JOIN (SELECT (payload->>'customerId')::uuid AS customer, \
             (payload->>'customerVersion')::bigint AS read_at FROM event WHERE stream_id = $3 AND stream_version = 1 \
             AND event_type = 'OrderPlaced' AND (tx_id, position) <= ($2, $1)) p \
             ON c.stream_id = p.customer AND c.stream_version > p.read_at \
             WHERE (c.tx_id, c.position) <= ($2, $1) ORDER BY c.stream_version LIMIT $4)"
        ),
    };
    let values = vec![stream_id.into(), limit.into()];
    let (exists, settled, rows) = look_at(db, token, &events, "e.stream_id, e.stream_version", values).await?;
    let (own, other): (Vec<LogRow>, Vec<LogRow>) = rows.into_iter().partition(|row| row.stream_id == stream_id);
    // The customer part is the answer only if the order's first event was
    // there to name the customer (else it is empty for want of it).
    let placed = own.first().is_some_and(|row| row.stream_version == 1 && row.event_type == "OrderPlaced");
    let beside = (beside == Beside::PlacingCustomer && placed)
        .then(|| other.into_iter().map(|row| decode_row(row, None)).collect());
    let events = own.into_iter().map(|row| decode_row(row, None)).collect();
    Ok(StreamAt { exists, settled, events, beside })
}

/// [`exists`], the settle check and [`read_range`] from `after` up to `token`, in
/// one statement on PostgreSQL (one snapshot, as [`read_stream_at`]): once
/// the writers below the token have ended, the range holds every event up
/// to it. On SQLite it is the two reads. `beside` is always `None`.
pub async fn read_range_at(
    db: &impl ConnectionTrait,
    after: LogPosition,
    token: LogPosition,
    limit: u64,
) -> Result<StreamAt, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return serialized(db, token, read_range(db, after, Some(token), limit)).await;
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = format!(
        "SELECT {COLUMNS} FROM event WHERE (tx_id, position) > ($3, $4) AND (tx_id, position) <= ($2, $1) \
         ORDER BY tx_id, position LIMIT $5"
    );
    let values = vec![after.tx_id.into(), after.position.into(), limit.into()];
    let (exists, settled, rows) = look_at(db, token, &events, "e.tx_id, e.position", values).await?;
    let events = rows.into_iter().map(|row| decode_row(row, None)).collect();
    Ok(StreamAt { exists, settled, events, beside: None })
}

/// A read at `token` on a store whose writers are serialized (SQLite), so
/// always settled: the token's presence, then `read`; nothing beside.
async fn serialized(
    db: &impl ConnectionTrait,
    token: LogPosition,
    read: impl std::future::Future<Output = Result<Vec<ReadEvent>, DbErr>>,
) -> Result<StreamAt, DbErr> {
    let exists = exists(db, token).await?;
    Ok(StreamAt { exists, settled: true, events: read.await?, beside: None })
}

/// One statement at `token` (PostgreSQL): the horizon, whether the token's
/// event is in the log, and the events `events` selects (its parameters
/// from `$3`, after the token's position `$1` and transaction `$2`), in
/// `order`: `(exists, settled, events)`; no row at all (the horizon always
/// gives one) reads as neither.
async fn look_at(
    db: &impl ConnectionTrait,
    token: LogPosition,
    events: &str,
    order: &str,
    values: Vec<sea_orm::Value>,
) -> Result<(bool, bool, Vec<LogRow>), DbErr> {
    let sql = format!(
        "{} SELECT horizon.h, EXISTS (SELECT 1 FROM event WHERE position = $1 AND tx_id = $2) AS found, e.* \
         FROM horizon LEFT JOIN LATERAL ({events}) e ON true ORDER BY {order}",
        horizon_sql()
    );
    let mut all = vec![token.position.into(), token.tx_id.into()];
    all.extend(values);
    let rows = StreamAtRow::find_by_statement(statement(DbBackend::Postgres, &sql, all)).all(db).await?;
    let Some(first) = rows.first() else { return Ok((false, false, Vec::new())) };
    let (exists, settled) = (first.found, token.tx_id < first.h);
    Ok((exists, settled, rows.into_iter().filter_map(StreamAtRow::event).collect()))
}

/// Why the event at `token` happened (its metadata), if one is there.
pub async fn meta_at(
    db: &impl ConnectionTrait,
    token: LogPosition,
) -> Result<Option<crate::domain::event::EventMeta>, DbErr> {
    let stmt = statement(
        db.get_database_backend(),
        "SELECT CAST(metadata AS TEXT) AS metadata FROM event WHERE position = $1 AND tx_id = $2",
        vec![token.position.into(), token.tx_id.into()],
    );
    let row = db.query_one_raw(stmt).await?;
    let text: Option<String> = row.map(|r| r.try_get("", "metadata")).transpose()?;
    Ok(text.map(|t| metadata_of(Some(&t)).meta()))
}

/// Whether a committed event is at `token` (a token names the last event
/// of the command that returned it).
pub async fn exists(db: &impl ConnectionTrait, token: LogPosition) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let stmt = statement(
        backend,
        "SELECT 1 AS found FROM event WHERE position = $1 AND tx_id = $2",
        vec![token.position.into(), token.tx_id.into()],
    );
    Ok(db.query_one_raw(stmt).await?.is_some())
}

/// How many committed events lie after `after`.
pub async fn count_after(db: &impl ConnectionTrait, after: LogPosition) -> Result<i64, DbErr> {
    count_where(db, ">", after).await
}

/// How many committed events lie at or before `upto` (one statement, so a
/// concurrent append cannot fall between two counts).
pub async fn count_upto(db: &impl ConnectionTrait, upto: LogPosition) -> Result<i64, DbErr> {
    count_where(db, "<=", upto).await
}

/// When the oldest event after `after` (in checkpoint order) was recorded;
/// `None` when nothing lies after it. How far behind in time a consumer is.
pub async fn oldest_after(
    db: &impl ConnectionTrait,
    after: LogPosition,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, DbErr> {
    let backend = db.get_database_backend();
    let stmt = match backend {
        DbBackend::Postgres => statement(
            backend,
            "SELECT recorded_at FROM event WHERE (tx_id, position) > ($1, $2) ORDER BY tx_id, position LIMIT 1",
            vec![after.tx_id.into(), after.position.into()],
        ),
        _ => statement(
            backend,
            "SELECT recorded_at FROM event WHERE position > $1 ORDER BY position LIMIT 1",
            vec![Value::from(after.position)],
        ),
    };
    let row = db.query_one_raw(stmt).await?;
    row.map(|r| r.try_get::<chrono::DateTime<chrono::Utc>>("", "recorded_at")).transpose()
}

/// Counts the events on one side (`cmp`: `>` or `<=`) of `at`, in checkpoint order.
async fn count_where(db: &impl ConnectionTrait, cmp: &str, at: LogPosition) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let stmt = match backend {
        DbBackend::Postgres => statement(
            backend,
            &format!("SELECT count(*) AS n FROM event WHERE (tx_id, position) {cmp} ($1, $2)"),
            vec![at.tx_id.into(), at.position.into()],
        ),
        _ => statement(
            backend,
            &format!("SELECT count(*) AS n FROM event WHERE position {cmp} $1"),
            vec![Value::from(at.position)],
        ),
    };
    let row = db.query_one_raw(stmt).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

/// The metadata's parts, each unknown when it does not read (a field at a
/// time: an actor of another shape does not hide the ids).
fn metadata_of(text: Option<&str>) -> StoredMetadata {
    let Some(value) = text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) else {
        return StoredMetadata::default();
    };
    let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
    StoredMetadata {
        actor: value.get("actor").and_then(|a| serde_json::from_value(a.clone()).ok()),
        command_id: text("commandId"),
        correlation_id: text("correlationId"),
        causation_id: text("causationId"),
        traceparent: text("traceparent"),
    }
}

fn decode_row(row: LogRow, upcaster: Option<&Upcaster>) -> ReadEvent {
    let upcast = upcaster.and_then(|u| u(&row.event_type, row.event_version, &row.payload));
    let (version, payload) = match &upcast {
        Some((version, payload)) => (*version, payload.as_str()),
        None => (row.event_version, row.payload.as_str()),
    };
    match DomainEvent::decode_json(&row.event_type, version, payload) {
        Ok(event) => {
            // Audit data, not the event: metadata this release cannot read
            // (a foreign writer's) is shown as unknown rather than poisoning
            // every projection.
            let metadata = metadata_of(row.metadata.as_deref());
            Ok(RecordedEvent {
                position: row.position,
                tx_id: row.tx_id,
                stream_id: row.stream_id,
                stream_version: row.stream_version,
                recorded_at: row.recorded_at,
                meta: metadata.meta(),
                actor: metadata.actor,
                event,
            })
        }
        Err(e) => Err(Undecodable {
            position: row.position,
            tx_id: row.tx_id,
            stream_id: row.stream_id,
            event_type: row.event_type,
            newer: e.newer,
            error: e.to_string(),
        }),
    }
}
