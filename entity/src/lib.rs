//! SeaORM entities of Twofold, split by who may use them:
//!
//! - [`write`]: the normalized write model. Only the command side touches it.
//! - [`log`]: the event log (outbox, audit trail) and the command log.
//!   Written by the command side, read by projections.
//! - [`read`]: denormalized read views, their checkpoints and dead letters.
//!   Written by projections, read by queries.
pub mod log;
pub mod read;
pub mod write;
