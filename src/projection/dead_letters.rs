//! What an operator can do with a dead letter (an event a projection could
//! not apply): list them, retry one (the projection, stopped at it, tries it
//! again — after the cause was fixed), or skip one (the projection, stopped
//! at it, moves past it). Each action is one transaction that holds the
//! projection's checkpoint row, so it cannot race the projection's runner.
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use entity::read::dead_letter::{self, Resolution};
use entity::read::projection_checkpoint::{self, StoredStatus};

use crate::db::Db;
use crate::notice::Notices;
use crate::token::LogPosition;

pub use entity::read::dead_letter::Model as DeadLetter;

/// Why an action on a dead letter was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("there is no dead letter {0}")]
    NotFound(i64),
    #[error("dead letter {id} was already {resolution}")]
    AlreadyResolved { id: i64, resolution: crate::catalog::Resolution },
    #[error("{0}")]
    Refused(String),
    /// The database failed (unreachable, contention, anything else).
    #[error(transparent)]
    Database(#[from] crate::failure::DbError),
}

/// `?` on a sea-orm error (see [`crate::failure::DbError`]).
impl From<DbErr> for DeadLetterError {
    fn from(e: DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// A stored resolution, in the vocabulary the layers share.
pub fn resolved(stored: Resolution) -> crate::catalog::Resolution {
    match stored {
        Resolution::Retried => crate::catalog::Resolution::Retried,
        Resolution::Skipped => crate::catalog::Resolution::Skipped,
    }
}

/// Dead letters, newest first; open ones only unless `include_resolved`.
pub async fn list(
    db: &Db,
    projection: Option<&str>,
    include_resolved: bool,
    limit: u64,
) -> Result<Vec<DeadLetter>, DbErr> {
    let mut select = dead_letter::Entity::find();
    if let Some(p) = projection {
        select = select.filter(dead_letter::Column::Projection.eq(p));
    }
    if !include_resolved {
        select = select.filter(dead_letter::Column::Resolution.is_null());
    }
    select.order_by_desc(dead_letter::Column::Id).limit(limit).all(&db.conn).await
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub dead_letter: DeadLetter,
    /// The projection's checkpoint afterwards.
    pub checkpoint: LogPosition,
}

enum Action {
    Retry,
    Skip,
}

/// The projection, stopped at this event, tries it again.
pub async fn retry(db: &Db, notices: &Notices, id: i64) -> Result<Resolved, DeadLetterError> {
    resolve(db, notices, id, Action::Retry).await
}

/// The projection, stopped at this event, moves past it. A dead letter the
/// `skip` policy already passed is simply marked as skipped.
pub async fn skip(db: &Db, notices: &Notices, id: i64) -> Result<Resolved, DeadLetterError> {
    resolve(db, notices, id, Action::Skip).await
}

async fn resolve(db: &Db, notices: &Notices, id: i64, action: Action) -> Result<Resolved, DeadLetterError> {
    let txn = db.begin_write().await?;
    let letter = dead_letter::Entity::find_by_id(id).one(&*txn).await?.ok_or(DeadLetterError::NotFound(id))?;
    if let Some(resolution) = &letter.resolution {
        return Err(DeadLetterError::AlreadyResolved { id, resolution: resolved(*resolution) });
    }
    let checkpoint = projection_checkpoint::Entity::find_by_id(letter.projection.clone())
        .lock_exclusive()
        .one(&*txn)
        .await?
        .ok_or_else(|| DeadLetterError::Refused(format!("projection {} has no checkpoint", letter.projection)))?;
    let at = LogPosition::new(checkpoint.last_tx_id, checkpoint.last_position);
    let event = LogPosition::new(letter.event_tx_id, letter.event_position);
    let stopped_here = checkpoint.status == StoredStatus::Stopped && at < event;
    let (resolution, new_checkpoint) = match action {
        Action::Retry if stopped_here => (Resolution::Retried, at),
        Action::Retry => {
            return Err(DeadLetterError::Refused(format!(
            "projection {} is not stopped at this event (it is {} at {at}); rebuild the projection to apply it again",
            letter.projection, checkpoint.status
        )))
        }
        Action::Skip if stopped_here => (Resolution::Skipped, event),
        Action::Skip if at >= event => (Resolution::Skipped, at),
        Action::Skip => {
            return Err(DeadLetterError::Refused(format!(
                "projection {} has not reached this event yet (it is {} at {at})",
                letter.projection, checkpoint.status
            )))
        }
    };
    if stopped_here {
        let mut row = checkpoint.into_active_model();
        row.status = Set(StoredStatus::Running);
        row.last_error = Set(None);
        row.attempts = Set(0);
        row.last_tx_id = Set(new_checkpoint.tx_id);
        row.last_position = Set(new_checkpoint.position);
        row.updated_at = Set(chrono::Utc::now());
        projection_checkpoint::Entity::update(row).exec(&*txn).await?;
    }
    let mut letter = letter.into_active_model();
    letter.resolution = Set(Some(resolution));
    letter.resolved_at = Set(Some(chrono::Utc::now()));
    let letter = dead_letter::Entity::update(letter).exec(&*txn).await?;
    if db.is_postgres() {
        crate::notice::postgres::announce_status(&*txn, &letter.projection).await?;
    }
    txn.commit().await?;
    notices.advance(&letter.projection, new_checkpoint);
    notices.status_changed();
    tracing::info!(dead_letter = id, projection = %letter.projection, %resolution, "dead letter resolved by an operator");
    Ok(Resolved { dead_letter: letter, checkpoint: new_checkpoint })
}
