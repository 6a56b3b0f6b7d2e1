//! The leader's heartbeat: every projection this process leads gets, in its
//! checkpoint row, the time of the beat, when its runner was last healthy,
//! what it waits on and how many of its steps failed in a row (see
//! `crate::notice::progress`). Any instance asked for a status reads them:
//! a heartbeat that stopped means no runner.
//!
//! Every beat writes the whole state, never a change: a beat that could
//! not be written (the lock that failed the steps holds the row too) is
//! made good by the next one, so nothing a failure wrote can outlive it.
//!
//! It runs beside the runners, not inside their loop, so a runner stuck in
//! a wait still has its cause written (on PostgreSQL; a SQLite file whose
//! write lock another process holds takes no heartbeat either, and only
//! this process can name that cause).
use sea_orm::{ConnectionTrait, DbBackend};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::WaitKind;
use crate::db::Db;
use crate::notice::Notices;

/// Writes the heartbeat of the projections this process leads, every
/// `Progress::heartbeat_every`, until `shutdown`.
pub fn spawn(views_db: Db, notices: Notices, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = notices.progress().heartbeat_every();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // A beat gets at most two periods: a late beat is no beat.
            match tokio::time::timeout(every * 2, beat(&views_db, &notices)).await {
                Ok(Ok(())) => {
                    if failing {
                        tracing::info!("projection heartbeats are written again");
                    }
                    failing = false;
                }
                outcome => {
                    metrics::counter!(crate::metrics::HEARTBEAT_FAILURES).increment(1);
                    if !failing {
                        let error = match outcome {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {} ms", (every * 2).as_millis()),
                        };
                        tracing::warn!(%error, "could not write the projection heartbeat; other instances will see no runner while it fails");
                    }
                    failing = true;
                }
            }
        }
    })
}

/// One heartbeat: one transaction, one small UPDATE per projection led here.
///
/// On PostgreSQL a row another transaction holds is skipped, never waited
/// on (`FOR UPDATE SKIP LOCKED`). A projector group holds its members'
/// checkpoint rows for a whole batch (`Projector::unmoved`); a beat that
/// waited for them held every row it had written meanwhile, so it held
/// those projectors back, and a batch longer than `lock_timeout` (seen at
/// 1,000 commands/s) cancelled the beat: no view got its heartbeat that
/// round. A beat that never waits cannot deadlock either, in whatever order
/// it writes. A row it skips is written by the batch that holds it: every
/// checkpoint move sets `heartbeat_at` (`projector::commit`), since a
/// commit is the runner's proof of life; the rest of the row (what it waits
/// on, its failures) is made good by the next beat. (SQLite has no row
/// locks: its one write lock orders the beat with the batches.)
async fn beat(views_db: &Db, notices: &Notices) -> Result<(), sea_orm::DbErr> {
    let led = notices.progress().led();
    // A SQLite file locked by another process takes no write: don't queue behind it.
    if led.is_empty() || led.iter().any(|(_, r)| r.wait.as_ref().is_some_and(|w| w.kind == WaitKind::SqliteWriteLock)) {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let txn = views_db.begin_write_as("the projector heartbeat", &mut |_| {}).await?;
    let row = match txn.get_database_backend() {
        DbBackend::Postgres => "(SELECT name FROM projection_checkpoint WHERE name = $6 FOR UPDATE SKIP LOCKED)",
        _ => "$6",
    };
    let sql = format!(
        "UPDATE projection_checkpoint SET heartbeat_at = $1, progressed_at = $2, waiting_on = $3, attempts = $4, \
         owner = $5 WHERE name = {row}"
    );
    let mut skipped = Vec::new();
    for (name, runner) in led {
        let waiting_on = runner.wait.as_ref().and_then(|w| serde_json::to_string(w).ok());
        let values = vec![
            now.into(),
            Some(runner.healthy_at).into(),
            waiting_on.into(),
            runner.attempts.into(),
            Some(notices.instance_id().to_owned()).into(),
            name.clone().into(),
        ];
        if crate::projection::sql::execute(&txn, &sql, values).await?.rows_affected() == 0 {
            skipped.push(name);
        }
    }
    if !skipped.is_empty() {
        tracing::debug!(?skipped, "heartbeat skipped checkpoint rows a batch holds (its commit writes them)");
    }
    txn.commit().await
}
