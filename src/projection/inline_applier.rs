//! The command side's way into the inline projections: [`InlineApplier`]
//! implements [`crate::inline::InlineProjections`], the seam through which
//! a command applies every projection configured `inline` inside its own
//! transaction (no position guard: each event is applied exactly once,
//! atomically with its append). Their runners then only move checkpoints.
use std::sync::Arc;

use sea_orm::DatabaseTransaction;

use super::apply::ApplyError;
use super::apply::{ApplyContext, Projection};
use super::runtime::{Mode, RuntimeSettings};
use crate::domain::event::RecordedEvent;
use crate::inline::{InlineError, InlineProjections};

/// The inline projections, applied by commands inside their transaction.
pub struct InlineApplier {
    projections: Vec<Arc<dyn Projection>>,
}

impl InlineApplier {
    /// `None` when no projection is inline.
    pub fn new(settings: &RuntimeSettings) -> Option<Self> {
        let projections: Vec<_> =
            super::all().into_iter().filter(|p| settings.mode_of(p.name()) == Mode::Inline).collect();
        (!projections.is_empty()).then_some(Self { projections })
    }
}

#[async_trait::async_trait]
impl InlineProjections for InlineApplier {
    async fn apply_inline(&self, txn: &DatabaseTransaction, events: &[RecordedEvent]) -> Result<(), InlineError> {
        for projection in &self.projections {
            let name = projection.name();
            projection.apply(txn, events, ApplyContext { position_guard: false }).await.map_err(|e| match e {
                ApplyError::Database(source) => InlineError::Database { projection: name, source },
                other => InlineError::Failed { projection: name, reason: other.to_string() },
            })?;
        }
        Ok(())
    }
}
