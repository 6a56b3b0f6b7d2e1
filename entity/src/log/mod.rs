//! The event log (append-only outbox and audit trail) and the command log.
pub mod command_log;
pub mod event;
