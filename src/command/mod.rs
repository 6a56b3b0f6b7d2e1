//! The write side: one handler per command, grouped by aggregate
//! (`customer`, `product`, `order`).
//!
//! Every command runs as one unit of work on the write database, in one
//! transaction with its events (the outbox): [`pipeline`] describes its
//! steps, in order, once.
//!
//! Concurrency: commands on one aggregate serialize on its row lock, so the
//! second of two racing commands is decided against the state the first
//! left (e.g. `cancelOrder` after `shipOrder` is an invariant violation). A
//! stale `expectedVersion` is a `CONFLICT`; `UNIQUE (stream_id,
//! stream_version)` on the log turns any race that slips past the lock into a
//! `CONFLICT` too, never into a lost update.
//!
//! This module never reads the read model: it imports no read entity, nor
//! the query or projection layers. Inline
//! projections are reached through the [`crate::inline::InlineProjections`] trait.
pub mod contract;
pub mod customer;
pub mod idempotency;
pub mod log;
pub mod order;
pub mod pipeline;
pub mod product;
pub mod store;

use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::{Db, WriteTxn};
use crate::domain::{DomainError, DomainEvent};
pub use crate::inline::InlineProjections;
use crate::token::LogPosition;
pub use contract::{Ack, CommandError, CommandMeta};

/// Points in a command's unit of work where a test may hold it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The appender lock is held; the transaction has no xid yet.
    AppenderLockTaken,
    /// The new state is written (the transaction has its xid); nothing is appended yet.
    StateSaved,
}

/// What a test installs to hold commands at [`Pause`] points.
#[doc(hidden)]
#[async_trait::async_trait]
pub trait CommandPauses: Send + Sync {
    async fn at(&self, point: Pause);
}

/// Executes commands against the write database.
#[derive(Clone)]
pub struct CommandService {
    db: Db,
    inline: Option<Arc<dyn InlineProjections>>,
    appended: Arc<watch::Sender<LogPosition>>,
    /// Shared by every clone (the schema's copy included), so a test can
    /// install pauses on a running service.
    pauses: Arc<std::sync::RwLock<Option<Arc<dyn CommandPauses>>>>,
}

impl CommandService {
    /// `appended` hears of every commit ([`crate::notice::commit_heard`]),
    /// to wake the projectors of this process.
    pub fn new(db: Db, inline: Option<Arc<dyn InlineProjections>>, appended: Arc<watch::Sender<LogPosition>>) -> Self {
        Self { db, inline, appended, pauses: Arc::default() }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Opens a unit of work for one command: a transaction that holds the
    /// appender lock from its first statement ([`Db::begin_append`]).
    async fn begin(&self, command_type: &'static str, meta: &CommandMeta) -> Result<UnitOfWork, CommandError> {
        let txn = self.db.begin_append().await?;
        self.pause(Pause::AppenderLockTaken).await;
        Ok(UnitOfWork { txn, command_type, meta: meta.clone() })
    }

    /// Waits at `point` when a test installed [`CommandService::set_pauses`].
    async fn pause(&self, point: Pause) {
        let pauses = self.pauses.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(pauses) = pauses {
            pauses.at(point).await;
        }
    }

    /// Test seam: commands call `pauses.at(point)` at each [`Pause`] point,
    /// so a test can hold a command between its steps (e.g. after it took
    /// its xid, before it appended) and race the projectors against it.
    #[doc(hidden)]
    pub fn set_pauses(&self, pauses: Option<Arc<dyn CommandPauses>>) {
        *self.pauses.write().unwrap_or_else(|p| p.into_inner()) = pauses;
    }

    /// Finishes a command attempt: on success signal the projectors; if a
    /// concurrent duplicate won the idempotency key, replay its result.
    /// Records the outcome and latency.
    async fn settle(
        &self,
        attempt: Result<Ack, CommandError>,
        key: &idempotency::Key,
        started: std::time::Instant,
    ) -> Result<Ack, CommandError> {
        let result = self.settle_inner(attempt, key).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommandError::Rejected(DomainError::Validation(_))) => "validation",
            Err(CommandError::Rejected(DomainError::NotFound(_))) => "not_found",
            Err(CommandError::Rejected(DomainError::InvariantViolation(_))) => "invariant_violation",
            Err(CommandError::Rejected(DomainError::Conflict(_))) | Err(CommandError::AlreadyExecuted) => "conflict",
            Err(_) => "error",
        };
        metrics::counter!(crate::metrics::COMMANDS, "command" => key.command_type, "outcome" => outcome).increment(1);
        metrics::histogram!(crate::metrics::COMMAND_DURATION, "command" => key.command_type)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn settle_inner(
        &self,
        attempt: Result<Ack, CommandError>,
        key: &idempotency::Key,
    ) -> Result<Ack, CommandError> {
        match attempt {
            Ok(ack) => {
                crate::notice::commit_heard(&self.appended, ack.token);
                Ok(ack)
            }
            Err(CommandError::AlreadyExecuted) => match idempotency::replay(&self.db.conn, key).await? {
                Some(ack) => Ok(ack),
                None => Err(CommandError::Internal("an idempotency key vanished after a conflict".into())),
            },
            Err(e) => Err(e),
        }
    }
}

/// One command's transaction.
pub struct UnitOfWork {
    txn: WriteTxn,
    command_type: &'static str,
    meta: CommandMeta,
}

impl UnitOfWork {
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Appends the events, runs inline projections, records the ack under
    /// the idempotency key and commits.
    async fn commit(
        self,
        service: &CommandService,
        key: &idempotency::Key,
        id: Option<Uuid>,
        events: Vec<(DomainEvent, i64)>,
    ) -> Result<Ack, CommandError> {
        service.pause(Pause::StateSaved).await;
        let recorded = log::append(&self.txn, &events, &self.meta, self.command_type).await?;
        let token = recorded
            .last()
            .map(|e| LogPosition::new(e.tx_id, e.position))
            .ok_or_else(|| CommandError::Internal(format!("{} decided no event", self.command_type)))?;
        if let Some(inline) = &service.inline {
            inline.apply_inline(&self.txn, &recorded).await?;
        }
        let ack = Ack { id, token };
        idempotency::record(&*self.txn, key, &ack).await?;
        self.txn.commit().await?;
        Ok(ack)
    }
}
