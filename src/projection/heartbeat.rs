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
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use entity::read::projection_checkpoint;

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

/// One heartbeat: one transaction, one small UPDATE per projection led here,
/// in name order.
///
/// The order is what keeps it from deadlocking with a projector group,
/// which locks its members' checkpoint rows in name order for a batch
/// (`Projector::unmoved`): in any other order the beat could hold one row
/// the group waits for while it waits for another the group holds, until
/// `lock_timeout` ended the group's batch (every view set aside for half a
/// second, seen as a 450–540 ms tail of `writeVisible` at 200 commands/s).
/// Every transaction that locks several checkpoint rows locks them in name
/// order.
async fn beat(views_db: &Db, notices: &Notices) -> Result<(), sea_orm::DbErr> {
    let mut led = notices.progress().led();
    led.sort_by(|a, b| a.0.cmp(&b.0));
    // A SQLite file locked by another process takes no write: don't queue behind it.
    if led.is_empty() || led.iter().any(|(_, r)| r.wait.as_ref().is_some_and(|w| w.kind == WaitKind::SqliteWriteLock)) {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let txn = views_db.begin_write_as("the projector heartbeat", &mut |_| {}).await?;
    for (name, runner) in led {
        let waiting_on = runner.wait.as_ref().and_then(|w| serde_json::to_string(w).ok());
        projection_checkpoint::Entity::update_many()
            .col_expr(projection_checkpoint::Column::HeartbeatAt, Some(now).into())
            .col_expr(projection_checkpoint::Column::ProgressedAt, Some(runner.healthy_at).into())
            .col_expr(projection_checkpoint::Column::WaitingOn, waiting_on.into())
            .col_expr(projection_checkpoint::Column::Attempts, runner.attempts.into())
            .col_expr(projection_checkpoint::Column::Owner, Some(notices.instance_id().to_owned()).into())
            .filter(projection_checkpoint::Column::Name.eq(name))
            .exec(&*txn)
            .await?;
    }
    txn.commit().await
}
