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
    let rows: HashMap<String, Position> = rows
        .into_iter()
        .map(|r| {
            Ok((r.try_get::<String>("", "name")?, (r.try_get("", "last_tx_id")?, r.try_get("", "last_position")?)))
        })
        .collect::<Result<_, DbErr>>()?;
    Ok(fold_segments(rows))
}

/// A split view (`view#k/N` rows, see `crate::notice::segments`) stands at
/// its segments' lowest, the start while one is missing.
fn fold_segments(mut rows: HashMap<String, Position>) -> HashMap<String, Position> {
    let mut views: HashMap<String, (u32, Vec<Position>)> = HashMap::new();
    for (name, at) in &rows {
        let Some((view, part)) = name.split_once('#') else { continue };
        let Some(count) = part.split_once('/').and_then(|(_, n)| n.parse::<u32>().ok()) else { continue };
        let entry = views.entry(view.to_owned()).or_insert((count, Vec::new()));
        entry.0 = entry.0.max(count);
        entry.1.push(*at);
    }
    for (view, (count, parts)) in views {
        let lowest = parts.iter().min().copied().unwrap_or((0, 0));
        let at = if parts.len() >= count as usize { lowest } else { (0, 0) };
        rows.insert(view, at);
    }
    rows
}
