//! The domain: pure Rust, no I/O. Aggregates decide which events a command
//! produces and enforce the business invariants; `apply` folds an event into
//! the aggregate's state. The command layer loads an aggregate, asks it to
//! decide, applies the events and saves the new state with the events in one
//! transaction.
pub mod actor;
pub mod customer;
pub mod error;
pub mod event;
pub mod order;
pub mod product;
pub mod validate;

pub use actor::{Actor, Narrowing, Role, Widening};
pub use error::DomainError;
pub use event::{DomainEvent, StreamType};
