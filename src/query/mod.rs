//! The read side: data access over the read views only (`entity::read`)
//! and read-your-own-writes waits (the DataLoaders over it live in
//! `graphql::loaders`).
//!
//! Never imports the write-model or event-log entities, nor the command layer
//! (enforced by `tests/it/architecture.rs`).
pub mod consistency;
pub mod customers;
mod durable;
mod error;
pub mod list;
pub mod orders;
pub mod products;
pub mod replica;
mod rows;
pub mod sales;
pub mod served;

use std::time::Duration;

use crate::db::Db;
use crate::notice::Notices;

pub use error::QueryError;
pub use rows::{ActivityRow, CustomerRow, DailySalesRow, OrderSummaryRow, ProductRow};

/// Whose rows a read may return. Applied in the SQL of every read of
/// customer data (a `customer_id` filter), not by field guards: a row
/// outside the scope never leaves the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Staff and admin.
    Everyone,
    /// A customer: only its own records and orders.
    Customer(uuid::Uuid),
}

impl Scope {
    /// Whether rows of `customer_id` are in scope.
    pub fn includes(self, customer_id: uuid::Uuid) -> bool {
        match self {
            Self::Everyone => true,
            Self::Customer(own) => own == customer_id,
        }
    }
}

/// Largest page a list query returns; larger requests are a `VALIDATION` error.
pub const MAX_PAGE_SIZE: u64 = 100;
pub const DEFAULT_PAGE_SIZE: u64 = 20;

/// How long `consistentWith` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencySettings {
    pub default_wait: Duration,
    pub max_wait: Duration,
    /// How long a read at the token waits for the event writers below its
    /// token to end before it folds (see [`crate::lazy::Folder::with_settle_wait`]).
    pub settle_wait: Duration,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        Self {
            default_wait: Duration::from_millis(crate::defaults::CONSISTENCY_WAIT_MS),
            max_wait: Duration::from_millis(crate::defaults::CONSISTENCY_MAX_WAIT_MS),
            settle_wait: crate::lazy::SETTLE_WAIT,
        }
    }
}

/// Which views are lazy, and the folder that reads them (see [`served`]).
#[derive(Clone)]
pub struct Folding {
    pub folder: crate::lazy::Folder,
    pub lazy: Vec<crate::catalog::View>,
}

/// Handle to the read store.
#[derive(Clone)]
pub struct ReadModel {
    /// The read database (the primary, when replicas serve the queries).
    pub db: Db,
    /// Where the view reads go: a replica in rotation, or `db` (see [`replica`]).
    read: crate::db::replica::ReadConn,
    /// SQL statements issued by the query layer (for tests and metrics: a
    /// page of orders with their customers must cost a constant number).
    pub statements: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub notices: Notices,
    pub consistency: ConsistencySettings,
    /// The one durable checkpoint read in flight, shared by concurrent waiters.
    durable_read: durable::SharedDurableRead,
    /// Lazy views and reads at the token (see [`served`]); none: every read waits.
    folding: Option<Folding>,
}

impl ReadModel {
    pub fn new(db: Db, notices: Notices, waits: ConsistencySettings) -> Self {
        let read = crate::db::replica::ReadConn::new(db.conn.clone(), None);
        Self {
            db,
            read,
            notices,
            consistency: waits,
            statements: Default::default(),
            durable_read: Default::default(),
            folding: None,
        }
    }

    /// The connection view reads use (a replica in rotation, or the read
    /// database), counting one statement.
    pub(crate) fn conn(&self) -> &crate::db::replica::ReadConn {
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.read
    }

    /// The read database itself (never a replica), counting one statement:
    /// the checkpoints that decide whether a write is visible.
    pub(crate) fn primary(&self) -> &sea_orm::DatabaseConnection {
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.db.conn
    }

    /// The store view reads go to (no statement is counted).
    pub(crate) fn read_backend(&self) -> sea_orm::DbBackend {
        use sea_orm::ConnectionTrait;
        self.read.get_database_backend()
    }

    pub fn statement_count(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Validates `first` against the page-size cap.
pub fn page_size(first: Option<i32>) -> Result<u64, QueryError> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n < 0 => Err(QueryError::Validation(format!("first must not be negative, got {n}"))),
        Some(n) if n as u64 > MAX_PAGE_SIZE => Err(QueryError::Validation(format!(
            "first must be at most {MAX_PAGE_SIZE}, got {n}; page through with `after`"
        ))),
        Some(n) => Ok(n as u64),
    }
}
