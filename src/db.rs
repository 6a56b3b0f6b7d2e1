//! Database connections: one handle for the write store (write model, event
//! log, command log) and one for the read store (read views, checkpoints,
//! dead letters), which may be the same database.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database as SeaDatabase, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// `application_name` of projector sessions on PostgreSQL (see [`Db::for_projectors`]).
pub const PROJECTOR_APPLICATION: &str = "twofold-projector";

/// A connection pool plus what the backend needs to write safely.
#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    pub url: String,
    /// SQLite admits one writer at a time; queueing writers here instead of in
    /// SQLite's busy handler (which sleeps and retries) keeps latency low and
    /// never surfaces `database is locked`. `None` on PostgreSQL.
    sqlite_writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the writer slot until dropped.
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Why a database could not be opened; printed as one line at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL '{0}': use sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Unreachable { url: String, source: DbErr },
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ConnectError> {
        Self::connect_as(url, max_connections, "twofold").await
    }

    /// A pool for the projectors. On PostgreSQL its sessions are named
    /// [`PROJECTOR_APPLICATION`], which lets log readers tell projector
    /// transactions (which never append events) from writers; on SQLite the
    /// same pool (and writer slot) as `self`.
    pub async fn for_projectors(&self, max_connections: u32) -> Result<Self, ConnectError> {
        if self.is_postgres() {
            Self::connect_as(&self.url, max_connections, PROJECTOR_APPLICATION).await
        } else {
            Ok(self.clone())
        }
    }

    async fn connect_as(url: &str, max_connections: u32, application_name: &str) -> Result<Self, ConnectError> {
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(ConnectError::UnsupportedUrl(redact(url)));
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(if is_sqlite { max_connections.min(8) } else { max_connections })
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        if is_sqlite {
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
            });
        } else {
            // A stuck session must not hold the projection horizon back forever.
            let application_name = application_name.to_owned();
            options.map_sqlx_postgres_opts(move |o| {
                o.options([("idle_in_transaction_session_timeout", "30s")]).application_name(&application_name)
            });
        }
        let conn = SeaDatabase::connect(options)
            .await
            .map_err(|source| ConnectError::Unreachable { url: redact(url), source })?;
        conn.ping().await.map_err(|source| ConnectError::Unreachable { url: redact(url), source })?;
        Ok(Self { conn, url: url.to_owned(), sqlite_writer: is_sqlite.then(|| Arc::new(Mutex::new(()))) })
    }

    /// One long-lived connection that is never recycled (a rebuild keeps
    /// its shadow tables on it: SQLite temp tables live per connection).
    pub async fn connect_dedicated(url: &str) -> Result<Self, ConnectError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(60))
            .sqlx_logging(false);
        if url.starts_with("sqlite:") {
            options.map_sqlx_sqlite_opts(|o| o.foreign_keys(true).busy_timeout(Duration::from_secs(30)));
        } else {
            // A rebuild's replay transactions never append events either.
            options.map_sqlx_postgres_opts(|o| o.application_name(PROJECTOR_APPLICATION));
        }
        let conn = SeaDatabase::connect(options)
            .await
            .map_err(|source| ConnectError::Unreachable { url: redact(url), source })?;
        Ok(Self { conn, url: url.to_owned(), sqlite_writer: None })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Begins a transaction that will write. On SQLite it waits for the
    /// writer slot and starts `BEGIN IMMEDIATE`, so it never fails half-way
    /// for want of the write lock.
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        match &self.sqlite_writer {
            Some(slot) => {
                let guard = slot.clone().lock_owned().await;
                let txn = self
                    .conn
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await?;
                Ok(WriteTxn { txn, _writer: Some(guard) })
            }
            None => Ok(WriteTxn { txn: self.conn.begin().await?, _writer: None }),
        }
    }

    /// Whether `other` is the very same database (so inline projections can
    /// share the command's transaction).
    pub fn same_database_as(&self, other: &Db) -> bool {
        self.url == other.url
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// True when `err` is a violation of the named constraint (or, when `name`
/// is empty, of any UNIQUE constraint).
pub fn is_unique_violation(err: &DbErr, name: &str) -> bool {
    let text = err.to_string();
    let unique =
        text.contains("duplicate key value") || text.contains("UNIQUE constraint failed") || text.contains("23505");
    unique && (name.is_empty() || text.contains(name) || sqlite_names_columns_of(name, &text))
}

/// SQLite reports `UNIQUE constraint failed: table.column`, not the constraint name.
fn sqlite_names_columns_of(constraint: &str, text: &str) -> bool {
    let columns: &[&str] = match constraint {
        "customer_email_key" => &["customer.email"],
        "product_sku_key" => &["product.sku"],
        "customer_order_pkey" => &["customer_order.id"],
        "event_stream_version_key" => &["event.stream_id, event.stream_version"],
        "command_log_pkey" => &["command_log.command_id"],
        _ => &[],
    };
    columns.iter().any(|c| text.contains(c))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
