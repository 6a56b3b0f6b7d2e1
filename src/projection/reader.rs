//! Reading the event log in commit-safe order.
//!
//! PostgreSQL: a `GENERATED … AS IDENTITY` position is taken at INSERT but
//! becomes visible at COMMIT, so position order is not commit order and a
//! reader that skipped a "gap" would lose a late commit. We read in
//! `(tx_id, position)` order and only below a horizon under which every
//! transaction that could still append has finished (the snapshot's xmin,
//! refined to ignore projector sessions, see [`HORIZON`]), so nothing can
//! later appear behind the checkpoint. No wall-clock gap timeout anywhere.
//!
//! SQLite: writers are serialized, so `position` (the rowid) is commit order.
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Value};

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

/// An extra upcaster tried before the built-in decoding: given an event's
/// type, schema version and payload, it may return an older version and
/// payload this release can read. None in production; tests use one to
/// play a newer release during a rolling upgrade.
pub type Upcaster = std::sync::Arc<dyn Fn(&str, i32, &str) -> Option<(i32, String)> + Send + Sync>;

/// A decoded event, or the row that could not be decoded.
pub type ReadEvent = Result<RecordedEvent, Undecodable>;

/// The horizon below which every transaction that could append has ended:
/// the oldest transaction still running in this statement's snapshot, not
/// counting projector sessions (they only write read tables, never events),
/// or the snapshot's xmax when none is running. Ignoring projectors matters:
/// counted, every projector batch in flight would hold every other
/// projection back. A session whose name cannot be read (no privilege) is
/// counted: the horizon is then merely more cautious.
const HORIZON: &str = "WITH snap AS (SELECT pg_current_snapshot() AS s), \
     horizon AS (SELECT COALESCE( \
       (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x \
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                           WHERE a.application_name = 'twofold-projector' AND a.backend_xid IS NOT NULL \
                             AND a.backend_xid::text::bigint = (x::text::bigint & 4294967295))), \
       (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)) AS h)";

/// What a reader needs of an event row: the payload as JSON text (decoded
/// straight into the typed event), no metadata.
const COLUMNS: &str = "position, tx_id, stream_id, stream_version, event_type, event_version, CAST(payload AS TEXT) AS payload, recorded_at";

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
    let backend = db.get_database_backend();
    let until = until.unwrap_or(LogPosition::new(i64::MAX, i64::MAX));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = match backend {
        DbBackend::Postgres => statement(
            backend,
            &format!(
                "{HORIZON} SELECT {COLUMNS} FROM event, horizon \
                 WHERE (tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4) AND tx_id < horizon.h \
                 ORDER BY tx_id, position LIMIT $5"
            ),
            vec![after.tx_id.into(), after.position.into(), until.tx_id.into(), until.position.into(), limit.into()],
        ),
        _ => statement(
            backend,
            &format!("SELECT {COLUMNS} FROM event WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"),
            vec![after.position.into(), until.position.into(), limit.into()],
        ),
    };
    LogRow::find_by_statement(stmt).all(db).await
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

fn decode_row(row: LogRow, upcaster: Option<&Upcaster>) -> ReadEvent {
    let upcast = upcaster.and_then(|u| u(&row.event_type, row.event_version, &row.payload));
    let (version, payload) = match &upcast {
        Some((version, payload)) => (*version, payload.as_str()),
        None => (row.event_version, row.payload.as_str()),
    };
    match DomainEvent::decode_json(&row.event_type, version, payload) {
        Ok(event) => Ok(RecordedEvent {
            position: row.position,
            tx_id: row.tx_id,
            stream_id: row.stream_id,
            stream_version: row.stream_version,
            recorded_at: row.recorded_at,
            event,
        }),
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
