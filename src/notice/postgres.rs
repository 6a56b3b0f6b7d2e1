//! Notices across instances, over PostgreSQL LISTEN/NOTIFY.
//!
//! - Commands `NOTIFY twofold_log, '<token>'` inside their transaction
//!   (delivered at commit): projectors in every process wake at once.
//! - Projectors `NOTIFY twofold_projection, '{…}'` inside their batch
//!   transaction: every instance republishes the batch to its own
//!   subscribers. Payloads stay small (names, a token, a bounded list of
//!   stream ids), far below PostgreSQL's 8000-byte limit.
//!
//! The listener runs on a dedicated connection and reconnects with back-off
//! when it drops. Because a notification can still be missed (sent while
//! reconnecting), a periodic poll of the checkpoint table publishes any
//! advance it has not heard of: a missed notification delays a notice, it
//! never loses one.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::EntityTrait;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use entity::read::projection_checkpoint;

use super::{Notices, ProjectionUpdated};
use crate::backoff::Backoff;
use crate::db::Db;
use crate::token::LogPosition;

pub const LOG_CHANNEL: &str = "twofold_log";
pub const PROJECTION_CHANNEL: &str = "twofold_projection";
/// A runner released a projection's leadership (payload: its name): standbys try at once.
pub const LEADERSHIP_CHANNEL: &str = "twofold_leadership";
/// A projection stopped or dead-lettered an event (payload: its name).
pub const STATUS_CHANNEL: &str = "twofold_status";
/// Stream ids (with their owners) carried in one notification at most (the
/// rest: `complete: false`); 50 of each keep it well under NOTIFY's 8000 bytes.
const MAX_STREAM_IDS: usize = 50;

/// The wire form of a projection notice.
#[derive(Debug, Deserialize)]
pub struct ProjectionNotice {
    /// The publishing instance (its own notifications are ignored).
    pub i: String,
    pub p: String,
    pub t: String,
    pub s: Vec<Uuid>,
    /// The owner of each of `s` (absent from an older release's notice).
    #[serde(default)]
    pub o: Vec<Option<Uuid>>,
    pub e: Vec<String>,
    pub c: bool,
}

impl ProjectionNotice {
    /// The notice's JSON. Built as a [`serde_json::Value`] of strings,
    /// arrays and a bool, whose printing cannot fail: a notice is never
    /// refused for its encoding, so there is no error to carry.
    /// [`ProjectionNotice`]'s `Deserialize` reads it back (tested below).
    pub fn encode(instance: &str, update: &ProjectionUpdated) -> String {
        use serde_json::Value;
        let complete = update.complete && update.stream_ids.len() <= MAX_STREAM_IDS;
        let uuid = |id: &Uuid| Value::String(id.to_string());
        let mut notice = serde_json::Map::new();
        notice.insert("i".into(), instance.into());
        notice.insert("p".into(), update.projection.as_str().into());
        notice.insert("t".into(), update.token.to_string().into());
        notice.insert("s".into(), update.stream_ids.iter().take(MAX_STREAM_IDS).map(uuid).collect());
        notice.insert(
            "o".into(),
            update.owners.iter().take(MAX_STREAM_IDS).map(|o| o.as_ref().map_or(Value::Null, uuid)).collect(),
        );
        notice.insert("e".into(), update.event_types.iter().take(20).map(|e| Value::String(e.clone())).collect());
        notice.insert("c".into(), complete.into());
        Value::Object(notice).to_string()
    }
}

/// Queues `NOTIFY twofold_projection` for a batch `instance` committed (the
/// instance that publishes it in-process itself; others republish it).
pub async fn announce_batch(
    txn: &impl sea_orm::ConnectionTrait,
    instance: &str,
    update: &ProjectionUpdated,
) -> Result<(), sea_orm::DbErr> {
    let notify = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        vec![PROJECTION_CHANNEL.into(), ProjectionNotice::encode(instance, update).into()],
    );
    txn.execute_raw(notify).await?;
    Ok(())
}

/// Queues `NOTIFY twofold_status, '<projection>'`: a projection stopped,
/// dead-lettered an event, or was acted on; waiters on every instance look again.
pub async fn announce_status(txn: &impl sea_orm::ConnectionTrait, projection: &str) -> Result<(), sea_orm::DbErr> {
    let notify = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        vec![STATUS_CHANNEL.into(), projection.into()],
    );
    txn.execute_raw(notify).await?;
    Ok(())
}

/// Runs the listener and the checkpoint poll until `shutdown`.
pub fn spawn(
    read_db: Db,
    write_db: Db,
    notices: Notices,
    appended: Arc<watch::Sender<LogPosition>>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if read_db.is_postgres() {
        let channels: Vec<&'static str> = if write_db.same_database_as(&read_db) {
            vec![PROJECTION_CHANNEL, LEADERSHIP_CHANNEL, STATUS_CHANNEL, LOG_CHANNEL]
        } else {
            vec![PROJECTION_CHANNEL, LEADERSHIP_CHANNEL, STATUS_CHANNEL]
        };
        tasks.push(tokio::spawn(listen(
            read_db.url.clone(),
            channels,
            notices.clone(),
            appended.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(poll_checkpoints(read_db.clone(), notices.clone(), poll_interval, shutdown.clone())));
    }
    if write_db.is_postgres() && !write_db.same_database_as(&read_db) {
        tasks.push(tokio::spawn(listen(write_db.url.clone(), vec![LOG_CHANNEL], notices, appended, shutdown)));
    }
    tasks
}

async fn listen(
    url: String,
    channels: Vec<&'static str>,
    notices: Notices,
    appended: Arc<watch::Sender<LogPosition>>,
    shutdown: CancellationToken,
) {
    // A cut link is tried again at once, then at most half a second apart,
    // so LISTEN is back within that of the link's return.
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500)).immediate_first();
    let mut connected_before = false;
    loop {
        let (mut listener, pool) = match connect(&url, &channels).await {
            Ok(l) => {
                if backoff.failures() > 0 {
                    tracing::info!(failures = backoff.failures(), "LISTEN connection is back");
                }
                backoff.reset();
                l
            }
            Err(e) => {
                let pause = backoff.next_pause();
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "LISTEN connection failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        // Anything appended while the connection was away was announced to
        // nobody here: wake the runners at the log's head now, so they read
        // from their checkpoints instead of waiting for the next poll. As a
        // commit heard of: a head no newer than the one known still wakes
        // them, since what was missed may be a commit below it.
        if connected_before && channels.contains(&LOG_CHANNEL) {
            match log_head(&pool).await {
                Ok(Some(head)) => super::commit_heard(&appended, head),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "could not read the log's head after reconnecting"),
            }
        }
        connected_before = true;
        // A release announced while nobody here listened (before this first
        // connection was up, or while the link was away) was heard by no
        // standby, which then waits for its periodic try (`--standby-retry-ms`):
        // let every standby here try once now instead.
        if channels.contains(&LEADERSHIP_CHANNEL) {
            notices.leadership_released("");
        }
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.try_recv() => r,
            };
            match received {
                Ok(Some(n)) => handle(n.channel(), n.payload(), &notices, &appended),
                // The connection dropped; sqlx would reconnect silently, we
                // reconnect explicitly so the gap is logged.
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str, channels: &[&'static str]) -> Result<(PgListener, sqlx::PgPool), sqlx::Error> {
    let options = url.parse::<sqlx::postgres::PgConnectOptions>()?.application_name("twofold-listener");
    // A refused connection fails within 2 s instead of sqlx's default 30 s
    // of quiet retrying: the loop above retries, and logs each try.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok((listener, pool))
}

/// The newest position in the log (the highest `(tx_id, position)`).
async fn log_head(pool: &sqlx::PgPool) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id, position FROM event ORDER BY tx_id DESC, position DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(tx, pos)| LogPosition::new(tx, pos)))
}

fn handle(channel: &str, payload: &str, notices: &Notices, appended: &watch::Sender<LogPosition>) {
    match channel {
        LOG_CHANNEL => {
            // Another instance's commit: wakes the runners here even when
            // its token is not the newest (see `commit_heard`).
            if let Ok(token) = payload.parse::<LogPosition>() {
                super::commit_heard(appended, token);
            }
        }
        LEADERSHIP_CHANNEL => notices.leadership_released(payload),
        STATUS_CHANNEL => notices.status_changed(),
        PROJECTION_CHANNEL => {
            let Ok(notice) = serde_json::from_str::<ProjectionNotice>(payload) else {
                return;
            };
            if notice.i == notices.instance_id() {
                return;
            }
            let Ok(token) = notice.t.parse::<LogPosition>() else {
                return;
            };
            notices.publish(ProjectionUpdated {
                projection: notice.p,
                token,
                stream_ids: notice.s,
                owners: notice.o,
                event_types: notice.e,
                complete: notice.c,
                rebuild_percent: None,
            });
        }
        _ => {}
    }
}

/// Publishes checkpoint advances that no notification announced.
async fn poll_checkpoints(read_db: Db, notices: Notices, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(rows) = projection_checkpoint::Entity::find().all(&read_db.conn).await else {
            continue;
        };
        // A split view's segments advance their view (see `Notices::advance`).
        for row in rows {
            let token = LogPosition::new(row.last_tx_id, row.last_position);
            // Only advances nobody announced become (stream-less) notices.
            if token > notices.known(&row.name) {
                notices.publish(ProjectionUpdated {
                    projection: row.name,
                    token,
                    stream_ids: Vec::new(),
                    owners: Vec::new(),
                    event_types: Vec::new(),
                    complete: false,
                    rebuild_percent: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(streams: usize) -> ProjectionUpdated {
        let stream_ids: Vec<Uuid> = (0..streams).map(|_| Uuid::now_v7()).collect();
        let owners = stream_ids.iter().enumerate().map(|(i, _)| (i % 2 == 0).then(Uuid::now_v7)).collect();
        ProjectionUpdated {
            projection: "order_summary".into(),
            token: LogPosition::new(12, 34),
            stream_ids,
            owners,
            event_types: vec!["OrderPlaced".into(), "Quote \"and\" \\ backslash".into()],
            complete: true,
            rebuild_percent: None,
        }
    }

    #[test]
    fn a_notice_reads_back_as_it_was_written() {
        let sent = update(3);
        let notice: ProjectionNotice =
            serde_json::from_str(&ProjectionNotice::encode("instance-1", &sent)).expect("decodes");
        assert_eq!(notice.i, "instance-1");
        assert_eq!((notice.p.as_str(), notice.t.parse::<LogPosition>().ok()), ("order_summary", Some(sent.token)));
        assert_eq!((notice.s, notice.o, notice.e, notice.c), (sent.stream_ids, sent.owners, sent.event_types, true));
    }

    #[test]
    fn another_instances_commit_below_the_head_wakes_the_runners_here() {
        let notices = Notices::new(16);
        let (appended, _) = watch::channel(LogPosition::START);
        let mut runner = appended.subscribe();
        handle(LOG_CHANNEL, "101.7", &notices, &appended);
        assert_eq!(*runner.borrow_and_update(), LogPosition::new(101, 7));
        handle(LOG_CHANNEL, "100.8", &notices, &appended);
        assert!(runner.has_changed().expect("open"), "a commit announced below the head must wake the runners");
        assert_eq!(*runner.borrow_and_update(), LogPosition::new(101, 7));
        handle(LOG_CHANNEL, "not a token", &notices, &appended);
        assert!(!runner.has_changed().expect("open"), "a payload that is not a token wakes nobody");
    }

    #[test]
    fn a_large_batch_is_cut_short_and_says_so() {
        let sent = update(MAX_STREAM_IDS + 1);
        let payload = ProjectionNotice::encode("i", &sent);
        assert!(payload.len() < 8000, "NOTIFY's limit: {} bytes", payload.len());
        let notice: ProjectionNotice = serde_json::from_str(&payload).expect("decodes");
        assert_eq!((notice.s.len(), notice.o.len(), notice.c), (MAX_STREAM_IDS, MAX_STREAM_IDS, false));
        assert_eq!(notice.s[..], sent.stream_ids[..MAX_STREAM_IDS]);
    }
}
