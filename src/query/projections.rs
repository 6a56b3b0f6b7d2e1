//! Projection status: checkpoints (a read table) and lag.
use sea_orm::{EntityTrait, QueryOrder};

use entity::read::projection_checkpoint;

use super::{CheckpointRow, QueryError, ReadModel};
use crate::token::LogPosition;

/// A projection's checkpoint row and how far behind the log it is.
#[derive(Debug, Clone)]
pub struct ProjectionState {
    pub row: CheckpointRow,
    pub lag: i64,
}

impl ReadModel {
    pub async fn projections(&self) -> Result<Vec<ProjectionState>, QueryError> {
        let rows = projection_checkpoint::Entity::find()
            .order_by_asc(projection_checkpoint::Column::Name)
            .all(self.conn())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let lag =
                crate::projection::status::lag(&self.events_db, LogPosition::new(row.last_tx_id, row.last_position))
                    .await?;
            out.push(ProjectionState { row, lag });
        }
        Ok(out)
    }
}
