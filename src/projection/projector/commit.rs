//! Committing a batch: the checkpoint moves by compare-and-set in the same
//! read-database transaction as the projection's rows, then the notice is
//! published and the batch measured.
//!
//! Used alone ([`Projector::commit_batch`], by the step and the poison
//! paths) and in a group (a [`Claim`] per member, moved together by
//! [`claim_all`]): one claim statement and one after-commit tail serve both,
//! so a single runner and a group fence, count and announce alike.
use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use entity::read::projection_checkpoint::{self, StoredStatus};

use super::Projector;
use crate::domain::event::RecordedEvent;
use crate::notice::ProjectionUpdated;
use crate::projection::apply::{ApplyContext, ApplyError};
use crate::projection::runtime::{StepError, StepOutcome};
use crate::token::LogPosition;

/// Where a member of a group stands before a grouped step.
pub(in crate::projection) enum Standing {
    At(LogPosition),
    Stopped,
    /// No checkpoint row yet: its own step registers it.
    Unregistered,
}

/// One projection's share of a batch: move its checkpoint from `from` to
/// `to` (`read` events) and announce `update`.
pub(in crate::projection) struct Claim<'a> {
    projector: &'a Projector,
    from: LogPosition,
    to: LogPosition,
    read: usize,
    update: ProjectionUpdated,
}

impl<'a> Claim<'a> {
    /// `projector` applied `events` (its part of a grouped batch), moving it
    /// from `from` to `to`.
    pub(in crate::projection) fn new(
        projector: &'a Projector,
        from: LogPosition,
        to: LogPosition,
        events: &[RecordedEvent],
    ) -> Self {
        Self { projector, from, to, read: events.len(), update: projector.update(to, events) }
    }

    /// After the transaction committed: remember the checkpoint, announce,
    /// measure (`batch` is what the group read, for the notice latency).
    pub(in crate::projection) fn committed(self, seconds: f64, batch: &[RecordedEvent]) -> StepOutcome {
        self.projector.remember_checkpoint(self.to);
        self.projector.published(self.update, self.read, seconds, batch);
        StepOutcome::Applied { events: self.read, checkpoint: self.to }
    }
}

/// Moves every claimed checkpoint in `txn`, or fails (their rows are locked
/// and checked already, so a claim that misses is an error).
pub(in crate::projection) async fn claim_all(txn: &DatabaseTransaction, claims: &[Claim<'_>]) -> Result<(), StepError> {
    let moved = move_checkpoints(txn, claims).await?;
    if moved != claims.len() {
        return Err(StepError::CheckpointsMoved { moved, claimed: claims.len() });
    }
    Ok(())
}

/// The compare-and-set every claim is: each row of `rows` (aliased `u`)
/// moves its checkpoint if it is still at `u.from_*`, not stopped, and
/// (with a fence token) still fenced by this runner. A batch applied past
/// an event an older release stood down at ends the `outdated` status.
/// The move is the runner's heartbeat too (`heartbeat_at`): a beat skips a
/// row a batch holds (`super::super::heartbeat`).
fn move_sql(rows: &str) -> String {
    use sea_orm::ActiveEnum;
    let (outdated, running, stopped) =
        (StoredStatus::Outdated.to_value(), StoredStatus::Running.to_value(), StoredStatus::Stopped.to_value());
    format!(
        "UPDATE projection_checkpoint AS c SET last_tx_id = u.to_tx, last_position = u.to_pos, \
           events_applied = c.events_applied + u.n, updated_at = $1, heartbeat_at = $1, \
           status = CASE WHEN c.status = '{outdated}' THEN '{running}' ELSE c.status END, \
           last_error = CASE WHEN c.status = '{outdated}' THEN NULL ELSE c.last_error END \
         FROM {rows} AS u \
         WHERE c.name = u.name AND c.last_tx_id = u.from_tx AND c.last_position = u.from_pos \
           AND c.status <> '{stopped}' AND c.fence = COALESCE(u.fence, c.fence)"
    )
}

/// Runs [`move_sql`] for `claims`; returns how many checkpoints moved.
/// PostgreSQL: one statement for all, which also queues each projection's
/// NOTIFY (delivered at commit); SQLite: one small statement each.
async fn move_checkpoints(txn: &DatabaseTransaction, claims: &[Claim<'_>]) -> Result<usize, DbErr> {
    use sea_orm::sea_query::ArrayType;
    use sea_orm::Value;
    let now: Value = chrono::Utc::now().into();
    if txn.get_database_backend() != DbBackend::Postgres {
        let rows =
            "(SELECT $2 AS name, $3 AS n, $4 AS from_tx, $5 AS from_pos, $6 AS to_tx, $7 AS to_pos, $8 AS fence)";
        let sql = move_sql(rows);
        let mut moved = 0;
        for c in claims {
            let values = vec![
                now.clone(),
                c.projector.name().into(),
                (c.read as i64).into(),
                c.from.tx_id.into(),
                c.from.position.into(),
                c.to.tx_id.into(),
                c.to.position.into(),
                c.projector.fence_token().into(),
            ];
            let result = txn.execute_raw(crate::projection::sql::statement(DbBackend::Sqlite, &sql, values)).await?;
            moved += result.rows_affected() as usize;
        }
        return Ok(moved);
    }
    let mut notices = Vec::with_capacity(claims.len());
    for c in claims {
        notices.push(Value::from(crate::notice::postgres::ProjectionNotice::encode(
            c.projector.notices.instance_id(),
            &c.update,
        )));
    }
    let array = |ty: ArrayType, items: Vec<Value>| crate::projection::sql::array(ty, items);
    let values: Vec<Value> = vec![
        now,
        array(ArrayType::String, claims.iter().map(|c| c.projector.name().into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| (c.read as i64).into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.from.tx_id.into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.from.position.into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.to.tx_id.into()).collect()),
        array(ArrayType::BigInt, claims.iter().map(|c| c.to.position.into()).collect()),
        // No NULL elements in an array parameter: no fence travels as ''.
        array(
            ArrayType::String,
            claims
                .iter()
                .map(|c| c.projector.fence_token().map(|f| f.to_string()).unwrap_or_default().into())
                .collect(),
        ),
        array(ArrayType::String, notices),
        crate::notice::postgres::PROJECTION_CHANNEL.into(),
    ];
    let rows = "(SELECT name, n, from_tx, from_pos, to_tx, to_pos, NULLIF(fence, '')::bigint AS fence, notice \
                 FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[]) \
                 AS r(name, n, from_tx, from_pos, to_tx, to_pos, fence, notice))";
    let sql =
        format!("WITH claimed AS ({} RETURNING u.notice) SELECT pg_notify($10, notice) FROM claimed", move_sql(rows));
    let rows = txn.query_all_raw(crate::projection::sql::statement(DbBackend::Postgres, &sql, values)).await?;
    Ok(rows.len())
}

/// Whether a locked checkpoint row is still where a runner holding
/// `fence` left it at `from`, and not stopped (the fencing check).
fn still_at(row: &projection_checkpoint::Model, from: LogPosition, fence: Option<i64>) -> bool {
    LogPosition::new(row.last_tx_id, row.last_position) == from
        && row.status != StoredStatus::Stopped
        && fence.is_none_or(|f| f == row.fence)
}

impl Projector {
    /// Applies `events` and moves the checkpoint from `from` to `to`, in one
    /// transaction, then publishes. `Ok(Err(poison))` rolls everything back.
    pub(super) async fn commit_batch(
        &self,
        from: LogPosition,
        to: LogPosition,
        events: &[RecordedEvent],
        apply: bool,
        read: usize,
    ) -> Result<Result<StepOutcome, ApplyError>, DbErr> {
        let started = std::time::Instant::now();
        // A segment applies its own events and moves past the others.
        let own;
        let (events, read) = if self.segment.is_split() {
            own = self.own(events);
            (&own[..], own.len())
        } else {
            (events, read)
        };
        let claim = Claim { projector: self, from, to, read, update: self.update(to, events) };
        let txn = self.begin(&[self.name()]).await?;
        // First statement: claim the batch by moving the checkpoint (a
        // compare-and-set that also locks the row and queues the NOTIFY,
        // delivered at commit). Should the apply fail, the rollback undoes both.
        if move_checkpoints(&txn, std::slice::from_ref(&claim)).await? != 1 {
            return Ok(Ok(StepOutcome::Fenced));
        }
        if apply && !(self.segment.is_split() && events.is_empty()) {
            if let Err(e) = self.projection.apply(&txn, events, ApplyContext { position_guard: true }).await {
                return Ok(Err(e));
            }
        }
        txn.commit().await?;
        self.published(claim.update, read, started.elapsed().as_secs_f64(), events);
        Ok(Ok(StepOutcome::Applied { events: read, checkpoint: to }))
    }

    /// Locks the checkpoint row and checks it is still at `from`.
    pub(super) async fn fence(&self, txn: &DatabaseTransaction, from: LogPosition) -> Result<bool, DbErr> {
        Ok(Self::unmoved(txn, &[(self, from)]).await?.first().copied().unwrap_or(false))
    }

    /// Where each of `members` stands: the checkpoints they know, or, when
    /// any does not know its own, every row read in one query (and
    /// remembered).
    pub(in crate::projection) async fn standings(members: &[&Projector]) -> Result<Vec<Standing>, DbErr> {
        let known: Option<Vec<Standing>> = members.iter().map(|p| p.known_checkpoint().map(Standing::At)).collect();
        if let Some(known) = known {
            return Ok(known);
        }
        let Some(first) = members.first() else { return Ok(Vec::new()) };
        let names: Vec<&str> = members.iter().map(|p| p.name()).collect();
        let rows = projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(names))
            .all(&first.read_db.conn)
            .await?;
        Ok(members
            .iter()
            .map(|p| match rows.iter().find(|r| r.name == p.name()) {
                Some(row) if row.status == StoredStatus::Stopped => Standing::Stopped,
                Some(row) => {
                    let at = LogPosition::new(row.last_tx_id, row.last_position);
                    p.remember_checkpoint(at);
                    Standing::At(at)
                }
                None => Standing::Unregistered,
            })
            .collect())
    }

    /// Locks the checkpoint rows of `members` for the rest of `txn` (in
    /// name order, like every other taker of several of them) and tells,
    /// for each, whether it is still at its `from` (see [`still_at`]).
    pub(in crate::projection) async fn unmoved(
        txn: &DatabaseTransaction,
        members: &[(&Projector, LogPosition)],
    ) -> Result<Vec<bool>, DbErr> {
        let names: Vec<&str> = members.iter().map(|(p, _)| p.name()).collect();
        let rows = projection_checkpoint::Entity::find()
            .filter(projection_checkpoint::Column::Name.is_in(names))
            .order_by_asc(projection_checkpoint::Column::Name)
            .lock_exclusive()
            .all(txn)
            .await?;
        Ok(members
            .iter()
            .map(|(p, from)| {
                rows.iter().find(|r| r.name == p.name()).is_some_and(|r| still_at(r, *from, p.fence_token()))
            })
            .collect())
    }

    /// After a commit: announce, measure.
    fn published(&self, update: ProjectionUpdated, read: usize, seconds: f64, events: &[RecordedEvent]) {
        self.notices.publish(update);
        metrics::histogram!(crate::metrics::BATCH_SIZE, "projection" => self.name()).record(read as f64);
        metrics::histogram!(crate::metrics::BATCH_DURATION, "projection" => self.name()).record(seconds);
        if let Some(newest) = events.iter().map(|e| e.recorded_at).max() {
            let latency = (chrono::Utc::now() - newest).to_std().unwrap_or_default();
            metrics::histogram!(crate::metrics::NOTICE_LATENCY, "projection" => self.name())
                .record(latency.as_secs_f64());
        }
    }

    /// The notice a batch up to `to` of `events` announces.
    fn update(&self, to: LogPosition, events: &[RecordedEvent]) -> ProjectionUpdated {
        let streams: BTreeMap<uuid::Uuid, Option<uuid::Uuid>> =
            events.iter().map(|e| (e.stream_id, e.event.owner())).collect();
        let event_types: BTreeSet<&str> = events.iter().map(|e| e.event.event_type()).collect();
        ProjectionUpdated {
            projection: self.name().to_owned(),
            token: to,
            stream_ids: streams.keys().copied().collect(),
            owners: streams.values().copied().collect(),
            event_types: event_types.into_iter().map(str::to_owned).collect(),
            complete: true,
            rebuild_percent: None,
        }
    }
}
