//! What stands in a runner's way, found out when a step is blocked: the
//! cause of a failed step (a lock timeout, with the backends that hold the
//! lock; the SQLite write lock; the writer slot; an outage), the horizon,
//! and the waits inside `begin_write`. The runner records them in
//! [`crate::notice::Progress`], from where the status, `/readyz`,
//! `/metrics` and `writeVisible` read them (see `crate::notice::progress`).
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

use crate::catalog::WaitKind;
use crate::db::{Db, DbFailure, WriteTxn, WriteWait};
use crate::notice::progress::{Blocker, Wait};
use crate::notice::Progress;
use crate::projection::runtime::StepError;

/// The cause of a failed step, as an operator reads it. On PostgreSQL a
/// lock timeout looks up who holds the locks on `tables` (on `db`).
pub async fn cause_of(error: &StepError, db: &Db, tables: &[&str]) -> Wait {
    let message = error.to_string();
    let error = match error {
        StepError::Database(e) => e,
        StepError::NoAnswer(_) => return Wait::new(WaitKind::DatabaseOutage, message),
        StepError::Unavailable(_) | StepError::CheckpointsMoved { .. } | StepError::Internal(_) => {
            return Wait::new(WaitKind::Failing, message)
        }
    };
    if crate::db::is_writer_slot_timeout(error) {
        return Wait::new(WaitKind::WriterSlot, message);
    }
    match crate::db::classify(error) {
        DbFailure::LockTimeout => {
            let blockers = lock_holders(db, tables).await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "could not look up the lock holders");
                Vec::new()
            });
            let detail = if blockers.is_empty() {
                format!(
                    "a lock wait ran past lock_timeout; no holder of a lock on {} was found (a row lock?)",
                    tables.join(", ")
                )
            } else {
                format!("a lock wait ran past lock_timeout on {}", tables.join(", "))
            };
            Wait { blockers, ..Wait::new(WaitKind::Lock, detail) }
        }
        DbFailure::Contention if !db.is_postgres() => Wait::new(
            WaitKind::SqliteWriteLock,
            format!("the database file's write lock is held by another connection or process ({message})"),
        ),
        DbFailure::Unavailable => Wait::new(WaitKind::DatabaseOutage, message),
        _ => Wait::new(WaitKind::Failing, message),
    }
}

/// The sessions (other than this one) that hold a lock on `tables` that an
/// INSERT or UPDATE must wait for, and those that block any projector
/// session waiting for a lock right now (`pg_blocking_pids`). PostgreSQL only.
pub async fn lock_holders(db: &Db, tables: &[&str]) -> Result<Vec<Blocker>, DbErr> {
    if !db.is_postgres() {
        return Ok(Vec::new());
    }
    let sql = "WITH holders AS (\
           SELECT l.pid, l.mode || ' on ' || c.relname AS lock FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
           WHERE l.granted AND l.locktype = 'relation' AND c.relname = ANY($1) AND l.pid <> pg_backend_pid() \
             AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') \
           UNION \
           SELECT b.pid, 'a lock that ' || w.pid || ' (' || w.application_name || ') waits for' AS lock \
           FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS b(pid) \
           WHERE w.application_name = $2 AND w.wait_event_type = 'Lock') \
         SELECT h.pid, COALESCE(a.application_name, '') AS application_name, COALESCE(a.state, '') AS state, \
           COALESCE(EXTRACT(EPOCH FROM now() - COALESCE(a.xact_start, a.state_change))::float8, 0) AS held_seconds, \
           string_agg(h.lock, '; ') AS lock \
         FROM holders h LEFT JOIN pg_stat_activity a ON a.pid = h.pid \
         GROUP BY h.pid, a.application_name, a.state, a.xact_start, a.state_change ORDER BY h.pid LIMIT 20";
    let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let values = vec![
        super::sql::array(sea_orm::sea_query::ArrayType::String, tables.into_iter().map(Into::into).collect()),
        crate::db::PROJECTOR_APPLICATION.into(),
    ];
    let rows = db.conn.query_all_raw(super::sql::statement(DbBackend::Postgres, sql, values)).await?;
    rows.iter()
        .map(|r| {
            Ok(Blocker {
                pid: r.try_get("", "pid")?,
                application_name: r.try_get("", "application_name")?,
                state: r.try_get("", "state")?,
                held_seconds: r.try_get("", "held_seconds")?,
                lock: r.try_get("", "lock")?,
            })
        })
        .collect()
}

/// The horizon, as a cause: on PostgreSQL with the age of the oldest open
/// event writer.
pub async fn horizon(log_db: &Db) -> Wait {
    let detail = match super::reader::horizon_probe(&log_db.conn).await {
        Ok(Some(probe)) if probe.fallback => {
            "committed events wait below the global horizon: an open transaction holds it back (grant pg_read_all_stats to tell event writers apart)".to_owned()
        }
        Ok(Some(probe)) => format!(
            "committed events wait behind an event writer's transaction that has been open for {:.1} s",
            probe.oldest_appender_age
        ),
        _ => "committed events this process heard of are not readable yet (an open event writer below the horizon)"
            .to_owned(),
    };
    Wait::new(WaitKind::Horizon, detail)
}

/// Begins a projector's write transaction on `db`, recording the waits on
/// the way (the writer slot, the SQLite write lock) as what `names` wait on.
pub async fn begin_observed(db: &Db, progress: &Progress, names: &[&str]) -> Result<WriteTxn, DbErr> {
    let mut observe = |wait: WriteWait| {
        let now = match wait {
            WriteWait::WriterSlot { holder, held_for } => Some(Wait::new(
                WaitKind::WriterSlot,
                format!("this process's SQLite writer slot, held by {holder} for {:.1} s", held_for.as_secs_f64()),
            )),
            WriteWait::FileLock => Some(Wait::new(
                WaitKind::SqliteWriteLock,
                "BEGIN IMMEDIATE waits for the database file's write lock, held by another connection or process",
            )),
            WriteWait::Done => None,
        };
        for name in names {
            progress.waiting(name, now.clone());
        }
    };
    db.begin_write_as("the projectors", &mut observe).await
}
