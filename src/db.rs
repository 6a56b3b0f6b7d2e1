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

pub mod classify;
mod codes;
pub mod reach;
pub mod replica;

pub use classify::{classify, is_unique_violation, is_writer_slot_timeout, DbFailure, Recovery};

/// `application_name` of projector sessions on PostgreSQL (see [`Db::for_projectors`]).
pub const PROJECTOR_APPLICATION: &str = "twofold-projector";

/// A connection pool plus what the backend needs to write safely.
#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    pub url: String,
    /// SQLite admits one writer at a time; queueing this process's writers
    /// here instead of in SQLite's busy handler (which sleeps and retries)
    /// keeps latency low. Another *process* holding the file's write lock
    /// still makes `BEGIN IMMEDIATE` wait in the busy handler and then fail
    /// with `database is locked` (SQLITE_BUSY). `None` on PostgreSQL.
    sqlite_writer: Option<WriterSlot>,
    /// The longest wait for the writer slot (the pool's acquire timeout).
    slot_deadline: Duration,
}

/// The writer slot of one SQLite file, and who holds it (for a waiter's
/// message and a stalled projection's cause).
#[derive(Clone, Default)]
struct WriterSlot {
    lock: Arc<Mutex<()>>,
    holder: Arc<std::sync::Mutex<Option<(&'static str, std::time::Instant)>>>,
}

/// Holds the writer slot; clears the holder when dropped.
struct SlotGuard {
    _guard: OwnedMutexGuard<()>,
    holder: Arc<std::sync::Mutex<Option<(&'static str, std::time::Instant)>>>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A wait inside [`Db::begin_write_as`], reported to its observer as it begins and ends.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteWait {
    /// Queued for this process's SQLite writer slot, held by `holder` for `held_for`.
    WriterSlot { holder: &'static str, held_for: Duration },
    /// In `BEGIN IMMEDIATE`: SQLite's busy handler waits for a write lock
    /// that another connection or process holds (it returns at once otherwise).
    FileLock,
    /// The wait is over.
    Done,
}

/// A write transaction; on SQLite it also holds the writer slot until dropped.
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    _writer: Option<SlotGuard>,
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

/// Why a database could not be opened (the URL redacted), with the
/// driver's own error as its cause: [`ConnectError::outlook`] tells whether
/// it may clear by itself.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL '{0}': use sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    /// The first connection, made directly, failed: refused, timed out, a
    /// missing database, file or directory, bad credentials…
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The pool on it could not be opened.
    #[error("cannot open a connection pool on {url}")]
    Pool {
        url: String,
        #[source]
        source: DbErr,
    },
}

impl ConnectError {
    /// Whether the failure may clear by itself (see [`reach`]).
    pub fn outlook(&self) -> reach::Outlook {
        reach::outlook(self)
    }
}

/// One connection made directly, not through a pool (whose wait for a
/// connection would hide why none came, as "pool timed out"), and closed:
/// the driver's own error at once, or a time-out after `timeout`.
async fn probe(url: &str, timeout: Duration, application_name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let timed_out = |_| {
        let message = format!("no connection within {} ms", timeout.as_millis());
        sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
    };
    if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let conn = tokio::time::timeout(timeout, sqlx::sqlite::SqliteConnection::connect_with(&options))
            .await
            .map_err(timed_out)??;
        conn.close().await
    } else {
        let options = url.parse::<sqlx::postgres::PgConnectOptions>()?.application_name(application_name);
        let conn = tokio::time::timeout(timeout, sqlx::postgres::PgConnection::connect_with(&options))
            .await
            .map_err(timed_out)??;
        conn.close().await
    }
}

/// A pooled connection that was in use within this long is handed out again
/// without a ping; one idle for longer is pinged first (and replaced if the
/// database or the link dropped it meanwhile).
///
/// sqlx pings on *every* acquire by default (`test_before_acquire`), and on
/// every release too (that one it always does). On PostgreSQL each ping is a
/// round trip; on SQLite, a hand-off to the connection's worker thread and
/// back. The computed page is one statement: three round trips per request,
/// where one carries the work. A connection released within the window was
/// pinged on that release, so the check on acquire adds nothing but the
/// round trip. The window is HikariCP's (`aliveBypassWindowMs`, 500 ms by
/// default), the JVM's reference pool, for the same reason.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_millis(500);

/// How a pool is sized and how long a caller waits for one of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// Past this wait for a free connection, the caller gets
    /// [`DbFailure::Unavailable`] instead of queueing on.
    pub acquire_timeout: Duration,
}

impl PoolOptions {
    pub fn new(max_connections: u32, acquire_timeout: Duration) -> Self {
        Self { max_connections: max_connections.max(1), acquire_timeout }
    }
}

/// The writer slot of each SQLite file, shared by every pool on that file
/// (commands, queries and projectors use separate pools but one writer).
fn sqlite_writer_slot(url: &str) -> WriterSlot {
    static SLOTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, WriterSlot>>> =
        std::sync::OnceLock::new();
    let file = url.split('?').next().unwrap_or(url).to_owned();
    let mut slots = SLOTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    slots.entry(file).or_default().clone()
}

impl Db {
    /// A pool for tools and tests: waits up to 10 s for a connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ConnectError> {
        Self::open(url, PoolOptions::new(max_connections, Duration::from_secs(10)), "twofold").await
    }

    /// A pool for the projectors. On PostgreSQL its sessions are named
    /// [`PROJECTOR_APPLICATION`], which lets log readers tell projector
    /// transactions (which never append events) from writers.
    pub async fn for_projectors(&self, max_connections: u32) -> Result<Self, ConnectError> {
        Self::open(&self.url, PoolOptions::new(max_connections, Duration::from_secs(10)), PROJECTOR_APPLICATION).await
    }

    /// The `lock_timeout` of projector sessions (PostgreSQL): how long one
    /// projection's statement may wait for a lock inside a batch before it
    /// is set aside for that batch (see `projection::group`), so one
    /// blocked view never holds back the others.
    pub const PROJECTOR_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

    /// Opens a pool on `url`, its PostgreSQL sessions named
    /// `application_name`, after one direct connection (see [`probe`]), so
    /// that a failure names its cause at once.
    pub async fn open(url: &str, pool: PoolOptions, application_name: &str) -> Result<Self, ConnectError> {
        let is_sqlite = match reach::kind(url) {
            "sqlite" => true,
            "postgres" => false,
            _ => return Err(ConnectError::UnsupportedUrl(redact(url))),
        };
        let connect_timeout = Duration::from_secs(5).min(pool.acquire_timeout.max(Duration::from_millis(500)));
        probe(url, connect_timeout, application_name)
            .await
            .map_err(|source| ConnectError::Connect { url: redact(url), source })?;
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(if is_sqlite { pool.max_connections.min(8) } else { pool.max_connections })
            .min_connections(1)
            .connect_timeout(connect_timeout)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            .sqlx_logging(false);
        if is_sqlite {
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
            });
            // A timed-out acquire is reported to the client (and counted);
            // sqlx's own warning per slow acquire would flood the log under load.
            options.map_sqlx_sqlite_pool_opts(|o| o.acquire_slow_level(log::LevelFilter::Off));
        } else {
            // A stuck session must not hold the projection horizon back forever.
            let application_name = application_name.to_owned();
            // A projector's lock waits are bounded (see PROJECTOR_LOCK_TIMEOUT).
            let lock_timeout = (application_name == PROJECTOR_APPLICATION)
                .then(|| format!("{}ms", Self::PROJECTOR_LOCK_TIMEOUT.as_millis()));
            options.map_sqlx_postgres_opts(move |o| {
                let o = o.options([("idle_in_transaction_session_timeout", "30s")]).application_name(&application_name);
                match &lock_timeout {
                    Some(timeout) => o.options([("lock_timeout", timeout.as_str())]),
                    None => o,
                }
            });
            options.map_sqlx_postgres_pool_opts(|o| o.acquire_slow_level(log::LevelFilter::Off));
        }
        let conn =
            SeaDatabase::connect(options).await.map_err(|source| ConnectError::Pool { url: redact(url), source })?;
        conn.ping().await.map_err(|source| ConnectError::Pool { url: redact(url), source })?;
        Ok(Self {
            conn,
            url: url.to_owned(),
            sqlite_writer: is_sqlite.then(|| sqlite_writer_slot(url)),
            slot_deadline: pool.acquire_timeout,
        })
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
        let conn =
            SeaDatabase::connect(options).await.map_err(|source| ConnectError::Pool { url: redact(url), source })?;
        Ok(Self { conn, url: url.to_owned(), sqlite_writer: None, slot_deadline: Duration::from_secs(60) })
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
        self.begin_write_as("a writer", &mut |_| {}).await
    }

    /// [`Db::begin_write`] for `who` (named to the writers queued behind
    /// it), telling `observe` when it waits and for what. The wait for the
    /// writer slot has a deadline (the pool's acquire timeout): past it the
    /// caller gets an `Unavailable` error that names the slot's holder.
    pub async fn begin_write_as(
        &self,
        who: &'static str,
        observe: &mut (dyn FnMut(WriteWait) + Send),
    ) -> Result<WriteTxn, DbErr> {
        let Some(slot) = &self.sqlite_writer else {
            return Ok(WriteTxn { txn: self.begin_transaction(false).await?, _writer: None });
        };
        let guard = match slot.lock.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                let holder = *slot.holder.lock().unwrap_or_else(|p| p.into_inner());
                let (holder, held_for) = holder.map_or(("another writer", Duration::ZERO), |(h, at)| (h, at.elapsed()));
                observe(WriteWait::WriterSlot { holder, held_for });
                let started = std::time::Instant::now();
                let queued = tokio::time::timeout(self.slot_deadline, slot.lock.clone().lock_owned()).await;
                observe(WriteWait::Done);
                metrics::histogram!(crate::metrics::WRITER_SLOT_WAIT).record(started.elapsed().as_secs_f64());
                match queued {
                    Ok(guard) => guard,
                    Err(_) => {
                        metrics::counter!(crate::metrics::WRITER_SLOT_TIMEOUTS).increment(1);
                        let holder = *slot.holder.lock().unwrap_or_else(|p| p.into_inner());
                        let held = holder.map_or_else(
                            || "another writer".to_owned(),
                            |(h, at)| format!("{h} (for {:.1} s)", at.elapsed().as_secs_f64()),
                        );
                        let message = format!(
                            "{who} waited {:.1} s for this process's SQLite writer slot, held by {held}",
                            self.slot_deadline.as_secs_f64()
                        );
                        tracing::warn!(%message, "writer slot wait timed out");
                        return Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(message)));
                    }
                }
            }
        };
        *slot.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some((who, std::time::Instant::now()));
        let guard = SlotGuard { _guard: guard, holder: slot.holder.clone() };
        observe(WriteWait::FileLock);
        let txn = self.begin_transaction(true).await;
        observe(WriteWait::Done);
        Ok(WriteTxn { txn: txn?, _writer: Some(guard) })
    }

    /// Begins a transaction (SQLite: `BEGIN IMMEDIATE`). Cancelling it is
    /// safe: sqlx rolls back a `BEGIN` whose caller is gone, and SeaORM a
    /// transaction dropped unfinished (`tests/it/stalls.rs` holds that).
    async fn begin_transaction(&self, immediate: bool) -> Result<DatabaseTransaction, DbErr> {
        if immediate {
            self.conn
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await
        } else {
            self.conn.begin().await
        }
    }

    /// Begins a transaction that will append to the event log. On
    /// PostgreSQL its first statement takes the shared appender lock
    /// ([`APPENDER_LOCK`]) before the transaction has an xid, and marks the
    /// transaction (`twofold.appender`) so the `event_appender_lock`
    /// trigger lets its later event INSERTs through: projectors then see
    /// every transaction that may append before any of its events can
    /// exist (see `projection::reader`). Any transaction that writes other
    /// rows before its events must begin here; the trigger refuses one
    /// that did not.
    pub async fn begin_append(&self) -> Result<WriteTxn, DbErr> {
        let txn = self.begin_write_as("a command", &mut |_| {}).await?;
        if self.is_postgres() {
            let (class, object) = APPENDER_LOCK;
            let lock = sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock_shared($1, $2), set_config('twofold.appender', 'on', true)",
                vec![class.into(), object.into()],
            );
            sea_orm::ConnectionTrait::execute_raw(&*txn, lock).await?;
        }
        Ok(txn)
    }

    /// Whether `other` is the very same database (so inline projections can
    /// share the command's transaction).
    pub fn same_database_as(&self, other: &Db) -> bool {
        self.url == other.url
    }
}

/// An error of a sqlx connection this crate drives itself (outside
/// SeaORM: the migration lock, a restore's `COPY`), as SeaORM reports it
/// when getting or opening a connection, so [`classify`] reads it the same.
pub fn connection_error(e: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(e)))
}

/// The same for a statement on such a connection.
pub fn statement_error(e: sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(e)))
}

/// A URL fit for messages, logs, `/readyz` and metric labels: the password
/// becomes `***`. A user name alone stays for a database (`postgres://app@…`
/// names a role) and goes for anything else, where that position holds a
/// secret (`nats://<token>@…`). The one redaction of the service.
pub fn redact(url: &str) -> String {
    let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) else { return url.to_owned() };
    if at < scheme_end {
        return url.to_owned();
    }
    let (scheme, userinfo) = (&url[..scheme_end], &url[scheme_end + 3..at]);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &url[at..]),
        None if matches!(scheme, "postgres" | "postgresql" | "sqlite") => url.to_owned(),
        None => format!("{scheme}://***{}", &url[at..]),
    }
}

/// The shared, transaction-scoped advisory lock every transaction that
/// appends to the event log holds (PostgreSQL; `pg_locks` shows it as
/// classid, objid, objsubid 2). Commands take it as their first statement;
/// the `event_appender_lock` trigger (migration 8) takes it for any other
/// INSERT into `event`. Projectors wait only for its holders.
pub const APPENDER_LOCK: (i32, i32) = (1_953_984_358, 1);

/// An exclusive PostgreSQL advisory lock around schema migrations, held on
/// its own connection for as long as they run.
pub struct MigrationLock {
    conn: sqlx::PgConnection,
}

impl MigrationLock {
    /// How long an instance waits for another's migrations.
    const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

    /// Waits (at most two minutes) for the lock. It asks again every 100 ms
    /// rather than blocking in `pg_advisory_lock`: a waiting statement holds
    /// a snapshot, and `CREATE INDEX CONCURRENTLY` (which the holder may be
    /// running) waits for every older snapshot to end, so the two would wait
    /// on each other until the timeout.
    pub async fn acquire(url: &str) -> Result<Self, DbErr> {
        use sqlx::Connection;
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(connection_error)?
            .application_name("twofold-migrate");
        let mut conn = sqlx::PgConnection::connect_with(&options).await.map_err(connection_error)?;
        let deadline = tokio::time::Instant::now() + Self::WAIT;
        loop {
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .fetch_one(&mut conn)
                .await
                .map_err(connection_error)?;
            if held {
                return Ok(Self { conn });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DbErr::Migration(format!(
                    "another instance held the migration lock for {} s; is a migration stuck?",
                    Self::WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn release(mut self) {
        use sqlx::Connection;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// The advisory lock key of schema migrations ("twofold.migrate" as bytes).
const MIGRATION_LOCK_KEY: i64 = 0x7477_6f66_6f6c_646d;

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(super::redact("nats://s3cr3t-token@h:4222"), "nats://***@h:4222", "a NATS token");
        assert_eq!(super::redact("nats://u:p@h:4222"), "nats://u:***@h:4222");
        assert_eq!(super::redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(super::redact("u:p@h"), "u:p@h", "no scheme: not a URL we know");
    }
}
