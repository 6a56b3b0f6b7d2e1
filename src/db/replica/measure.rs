//! One health measure of a replica: in recovery or not, how old its last
//! replayed commit is, and its own copy of the checkpoint rows.
use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::state::Position;

pub(super) struct Measure {
    pub(super) in_recovery: bool,
    /// Seconds since the commit it last replayed was made on the primary.
    pub(super) replay_age: Option<f64>,
    pub(super) checkpoints: HashMap<String, Position>,
}

pub(super) async fn measure(conn: &DatabaseConnection) -> Result<Measure, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS in_recovery, \
             EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8 AS replay_age",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("no answer to the recovery check".into()))?;
    let in_recovery: bool = row.try_get("", "in_recovery")?;
    let replay_age: Option<f64> = row.try_get("", "replay_age")?;
    let checkpoints = if in_recovery { checkpoints(conn).await? } else { HashMap::new() };
    Ok(Measure { in_recovery, replay_age: replay_age.map(|a| a.max(0.0)), checkpoints })
}

pub(super) async fn checkpoints(conn: &DatabaseConnection) -> Result<HashMap<String, Position>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT name, last_tx_id, last_position FROM projection_checkpoint",
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok((r.try_get::<String>("", "name")?, (r.try_get("", "last_tx_id")?, r.try_get("", "last_position")?)))
        })
        .collect()
}
