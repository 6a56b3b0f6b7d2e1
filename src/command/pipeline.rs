//! The one unit of work every command goes through. A command supplies only
//! what it loads and what it decides ([`Handler`]); most need less: one
//! that creates an aggregate from its input gives only the domain decision
//! ([`Creates`]), one that changes an existing aggregate gives its id and
//! the decision ([`Changes`]). The pipeline does the rest, in this order,
//! in one transaction:
//!
//! 1. the idempotency key: a command already executed is answered from the
//!    command log, before any transaction;
//! 2. begin, taking the appender lock first (PostgreSQL, see `super::begin`);
//! 3. **load**: check what the actor may do (its role; for a customer,
//!    that the aggregate is its own), read and lock the aggregates the command decides on
//!    (`SELECT … FOR UPDATE`, `FOR SHARE` for what it only reads). Locking
//!    first makes xid order agree with each stream's version order;
//! 4. claim the idempotency key (`command_log`): a concurrent duplicate
//!    waits on that row and then replays the first result;
//! 5. **decide**: the domain aggregate accepts the command (its events and
//!    new state) or rejects it;
//! 6. save the new state in the write model (insert what was created,
//!    update what was changed: [`Stored`](super::store::Stored));
//! 7. append the events, apply inline projections, record the
//!    acknowledgement under the key, queue the NOTIFY, commit;
//! 8. wake this process's projectors; count and time the outcome.
use sea_orm::DatabaseTransaction;
use serde::Serialize;
use uuid::Uuid;

use super::idempotency::{self, Key};
use super::store::{Lock, Stored};
use super::{Ack, CommandError, CommandMeta, CommandService};
use crate::domain::{Actor, DomainError, DomainEvent};

/// What a command decided: its events (each with the stream version it
/// brings its aggregate to), the aggregate's new state, and the id it
/// created, if any (a created aggregate is inserted, a changed one updated).
pub struct Decision<S> {
    pub created: Option<Uuid>,
    pub state: S,
    pub events: Vec<(DomainEvent, i64)>,
}

impl<S: Stored> Decision<S> {
    /// `event` applied to `current` (`None`: the event creates the aggregate).
    pub fn after(current: Option<S>, event: DomainEvent) -> Result<Self, CommandError> {
        let creates = current.is_none();
        let state = S::apply(current, &event).ok_or_else(|| {
            CommandError::Internal(format!("a {} did not apply its own {}", S::WHAT, event.event_type()))
        })?;
        Ok(Self { created: creates.then(|| state.id()), events: vec![(event, state.version())], state })
    }
}

/// A command's own steps. Its input (serialized) is the fingerprint its
/// idempotency key is checked against.
#[async_trait::async_trait]
pub trait Handler: Serialize + Send + Sync {
    /// What [`Handler::load`] reads for [`Handler::decide`].
    type Loaded: Send;
    /// The aggregate the command creates or changes.
    type State: Stored;

    /// Checks what `by` may do, then reads and locks what the decision depends on.
    async fn load(&self, txn: &DatabaseTransaction, by: &Actor) -> Result<Self::Loaded, CommandError>;

    /// Accepts or rejects the command: pure, no I/O.
    fn decide(&self, loaded: Self::Loaded, by: &Actor) -> Result<Decision<Self::State>, CommandError>;
}

/// A command that creates an aggregate from its input alone.
pub trait Creates: Serialize + Send + Sync {
    type Aggregate: Stored;
    /// Whether `by` may run it at all (default: anyone signed in).
    fn permitted(&self, by: &Actor) -> Result<(), DomainError> {
        by.require_signed_in()
    }
    /// The new aggregate's id when `by` determines it (default: a fresh one).
    fn chosen_id(&self, _by: &Actor) -> Result<Option<Uuid>, DomainError> {
        Ok(None)
    }
    /// The domain's decision for the new aggregate `id`.
    fn decide(&self, id: Uuid) -> Result<DomainEvent, DomainError>;
}

/// A command on one existing aggregate, which it locks for update. A
/// customer may change only what it owns ([`Stored::owner`]); a command
/// that is not for customers at all says so in [`Changes::permitted`].
pub trait Changes: Serialize + Send + Sync {
    type Aggregate: Stored;
    /// Whether `by` may run it at all, before anything is read (default: anyone signed in).
    fn permitted(&self, by: &Actor) -> Result<(), DomainError> {
        by.require_signed_in()
    }
    fn target(&self) -> Uuid;
    /// The domain's decision on the aggregate as it stands.
    fn decide(&self, current: &Self::Aggregate) -> Result<DomainEvent, DomainError>;
}

/// [`Creates`] as a [`Handler`] (serialized as the command itself).
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Creating<C>(pub C);

#[async_trait::async_trait]
impl<C: Creates> Handler for Creating<C> {
    type Loaded = ();
    type State = C::Aggregate;

    async fn load(&self, _: &DatabaseTransaction, by: &Actor) -> Result<(), CommandError> {
        Ok(self.0.permitted(by)?)
    }

    fn decide(&self, _: (), by: &Actor) -> Result<Decision<C::Aggregate>, CommandError> {
        let id = self.0.chosen_id(by)?.unwrap_or_else(Uuid::now_v7);
        Decision::after(None, self.0.decide(id)?)
    }
}

/// [`Changes`] as a [`Handler`] (serialized as the command itself).
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Changing<C>(pub C);

#[async_trait::async_trait]
impl<C: Changes> Handler for Changing<C> {
    type Loaded = C::Aggregate;
    type State = C::Aggregate;

    /// For a customer, another customer's aggregate and a missing one look
    /// the same (`FORBIDDEN`, one message): no answer confirms that
    /// someone else's id exists.
    async fn load(&self, txn: &DatabaseTransaction, by: &Actor) -> Result<C::Aggregate, CommandError> {
        self.0.permitted(by)?;
        let id = self.0.target();
        let not_yours =
            || DomainError::forbidden(format!("{} {id} is not yours, or does not exist", C::Aggregate::WHAT));
        let current = match C::Aggregate::load(txn, id, Lock::ForUpdate).await {
            Err(CommandError::Rejected(DomainError::NotFound(_))) if by.own_customer().is_some() => {
                return Err(not_yours().into())
            }
            loaded => loaded?,
        };
        match by.own_customer() {
            Some(own) if current.owner() != Some(own) => Err(not_yours().into()),
            _ => Ok(current),
        }
    }

    fn decide(&self, current: C::Aggregate, _: &Actor) -> Result<Decision<C::Aggregate>, CommandError> {
        let event = self.0.decide(&current)?;
        Decision::after(Some(current), event)
    }
}

impl CommandService {
    /// Runs `command`, named `command_type` (in the command log, events'
    /// metadata and metrics), through the pipeline (see the module docs).
    pub(crate) async fn execute<C: Handler>(
        &self,
        command_type: &'static str,
        command: C,
        meta: CommandMeta,
    ) -> Result<Ack, CommandError> {
        // The command's span (traces only), with its transaction in a child.
        let traced = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "command",
            otel.name = %format_args!("command {command_type}"),
            twofold.command.type = command_type,
            twofold.command.id = meta.command_id.as_deref().unwrap_or(""),
        );
        let transaction = tracing::info_span!(
            target: crate::telemetry::TARGET,
            parent: &traced,
            "transaction",
            otel.name = %format_args!("{command_type} transaction"),
            db.operation.name = "transaction",
        );
        tracing::Instrument::instrument(self.run(command_type, command, meta, transaction), traced).await
    }

    async fn run<C: Handler>(
        &self,
        command_type: &'static str,
        command: C,
        meta: CommandMeta,
        transaction: tracing::Span,
    ) -> Result<Ack, CommandError> {
        let key = Key::new(meta.command_id.as_deref(), command_type, &command, &meta.actor)?;
        if let Some(ack) = idempotency::replay(&self.db.conn, &key).await? {
            return Ok(ack);
        }
        let started = std::time::Instant::now();
        let attempt = async {
            let uow = self.begin(command_type, &meta).await?;
            let loaded = command.load(uow.txn(), &meta.actor).await?;
            idempotency::claim(uow.txn(), &key).await?;
            let decision = command.decide(loaded, &meta.actor)?;
            match decision.created {
                Some(_) => decision.state.insert(uow.txn()).await?,
                None => decision.state.update(uow.txn()).await?,
            }
            uow.commit(self, &key, decision.created, decision.events).await
        };
        let span = tracing::info_span!(
            "command",
            command = command_type,
            command_id = meta.command_id.as_deref().unwrap_or(""),
            request_id = meta.request_id.as_deref().unwrap_or("")
        );
        let attempt =
            tracing::Instrument::instrument(tracing::Instrument::instrument(attempt, transaction), span).await;
        self.settle(attempt, &key, started).await
    }
}
