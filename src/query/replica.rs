//! Read-your-writes through read replicas. A write is visible to a client
//! of an instance served by replicas once the read database has it (the
//! waits of [`super::consistency`], fed by LISTEN on the primary) *and*
//! every replica in rotation holds it: its own copy of each checkpoint row
//! has reached the token (see [`crate::db::replica`]). Reads are not pinned:
//! whichever replica serves the next statement has the write.
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::consistency::Visibility;
use super::{QueryError, ReadModel};
use crate::db::replica::ReplicaSet;
use crate::token::LogPosition;

impl ReadModel {
    /// The same reads, served by `replicas` while they are in rotation.
    pub fn with_replicas(mut self, replicas: Arc<ReplicaSet>) -> Self {
        self.read = crate::db::replica::ReadConn::new(self.db.conn.clone(), Some(replicas));
        self
    }

    /// The replicas serving the view reads, if any.
    pub fn replicas(&self) -> Option<&Arc<ReplicaSet>> {
        self.read.replicas()
    }

    /// Like [`ReadModel::wait_visible`], and then, on an instance served by
    /// replicas, until every replica in rotation holds the write too (in
    /// what is left of `wait`): visible means the next read here shows it.
    pub async fn wait_served(
        &self,
        projections: &[&str],
        token: LogPosition,
        wait: Duration,
    ) -> Result<Visibility, QueryError> {
        let deadline = Instant::now() + wait;
        let verdict = self.wait_visible(projections, token, wait).await?;
        let Some(replicas) = self.replicas() else { return Ok(verdict) };
        if verdict != Visibility::Visible {
            return Ok(verdict);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let held = replicas.wait_held(projections, (token.tx_id, token.position), left).await;
        Ok(if held { Visibility::Visible } else { Visibility::Pending })
    }

    /// Holds a `projectionUpdated` notice back until every replica in
    /// rotation holds its batch. Bounded: a replica that does not catch up
    /// leaves rotation within `max_lag` and a check; past that the notice
    /// goes out anyway, with a log line.
    pub async fn until_served(&self, projection: &str, token: LogPosition) {
        let Some(replicas) = self.replicas() else { return };
        let wait = replicas.max_lag() + replicas.check_interval() * 4;
        if !replicas.wait_held(&[projection], (token.tx_id, token.position), wait).await {
            tracing::warn!(
                projection,
                %token,
                waited_ms = wait.as_millis() as u64,
                "a replica in rotation still lacks a batch: projectionUpdated sent without it"
            );
        }
    }
}
