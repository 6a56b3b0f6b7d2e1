//! Recovery snapshots of every view (`twofold snapshot create FILE`,
//! `twofold rebuild --from-snapshot FILE`).
//!
//! On SQLite a snapshot is `VACUUM INTO` of the read database: one read
//! transaction, so every view and its checkpoint row come from the same
//! moment. A table `twofold_snapshot` in the file records the format, the
//! release that wrote it and each view's projection version
//! ([`crate::catalog::View::projection_version`]); the file is written under
//! a temporary name and renamed once complete, so a file at FILE is whole.
//!
//! A rebuild from a snapshot fills the shadow tables from the file and
//! replays only the events after the view's checkpoint in it, blue/green as
//! any rebuild. A snapshot whose projection version differs for a view it
//! would restore is refused, naming the view and both versions.
//!
//! The file is the same on both stores: a SQLite database with each view's
//! table, `projection_checkpoint` and `twofold_snapshot`. On PostgreSQL,
//! `create` opens one `REPEATABLE READ, READ ONLY` transaction on the read
//! database and copies every view and the checkpoint rows into a new SQLite
//! file through the read entities ([`super::portable`]), in batches: every
//! table is read as of the same moment however long the copy takes, and the
//! projectors keep writing meanwhile. A restore on PostgreSQL streams the
//! file into the shadow tables with `COPY … FROM STDIN`, where the search
//! trigger computes the `search` document; on SQLite it attaches the file.
//! So a file written on one store restores on the other (PostgreSQL keeps
//! microseconds only).
use std::future::Future;
use std::path::{Path, PathBuf};

use sea_orm::{AccessMode, ConnectionTrait, DbBackend, IsolationLevel, Statement, TransactionTrait};

use super::portable::{self, Table};
use super::rebuild::{self, Progress, RebuildError, RebuildOptions, RebuildReport, SnapshotStart};
use crate::catalog::{View, SNAPSHOT_FORMAT};
use crate::db::Db;
use crate::token::LogPosition;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no snapshot at {0}")]
    Missing(PathBuf),
    #[error("{0} already exists; snapshots are never overwritten")]
    Exists(PathBuf),
    #[error("{path} is not a Twofold snapshot ({reason})")]
    NotASnapshot { path: PathBuf, reason: String },
    #[error(
        "{path} was taken by release {release} with projection version {found} of view {view}; \
         this release expects version {expected}: take a new snapshot or rebuild from zero"
    )]
    OtherVersion { path: PathBuf, release: String, view: String, found: i64, expected: i64 },
    #[error("unknown view '{0}'")]
    UnknownView(String),
    #[error("snapshot failed: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("could not write {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] crate::db::ConnectError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
}

fn quoted(path: &Path) -> String {
    path.to_string_lossy().replace('\'', "''")
}

/// Writes every view with its checkpoint to `path`, from one read transaction.
pub async fn create(read_db: &Db, path: &Path) -> Result<(), SnapshotError> {
    create_with(read_db, path, portable::BATCH, |_, _| std::future::ready(())).await
}

/// [`create`], copying `batch` rows at a time on PostgreSQL and running
/// `between(table, rows so far)` after each batch (the progress of a long
/// snapshot; tests change the database there, mid-snapshot). SQLite's
/// snapshot is one statement: `between` is not called.
pub async fn create_with<F, Fut>(read_db: &Db, path: &Path, batch: u64, mut between: F) -> Result<(), SnapshotError>
where
    F: FnMut(Table, u64) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    if path.exists() {
        return Err(SnapshotError::Exists(path.to_owned()));
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let written = async {
        let postgres = read_db.backend() == DbBackend::Postgres;
        if !postgres {
            read_db.conn.execute_unprepared(&format!("VACUUM INTO '{}'", quoted(&partial))).await?;
        }
        let file = Db::connect_dedicated(&format!("sqlite://{}?mode=rwc", partial.to_string_lossy())).await?;
        let filled = async {
            let txn = file.conn.begin().await?;
            if postgres {
                copy_from_postgres(read_db, &txn, batch, &mut between).await?;
            }
            txn.execute_unprepared(&describe()).await?;
            txn.commit().await?;
            Ok::<(), SnapshotError>(())
        }
        .await;
        let _ = file.conn.close().await;
        filled
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, path).map_err(|source| SnapshotError::File { path: path.to_owned(), source })?;
    Ok(())
}

/// The `twofold_snapshot` table: format, release, each view's projection version.
fn describe() -> String {
    let mut sql = String::from(
        "CREATE TABLE twofold_snapshot (view TEXT PRIMARY KEY, projection_version INTEGER NOT NULL, \
         format INTEGER NOT NULL, release TEXT NOT NULL);",
    );
    for view in View::ALL {
        sql.push_str(&format!(
            "INSERT INTO twofold_snapshot VALUES ('{}', {}, {SNAPSHOT_FORMAT}, '{}');",
            view.name(),
            view.projection_version(),
            env!("CARGO_PKG_VERSION")
        ));
    }
    sql
}

/// Copies every view and the checkpoints from PostgreSQL into the (SQLite)
/// file, all from one `REPEATABLE READ, READ ONLY` transaction: every table
/// is read as of the same moment, however long the copy takes, and the
/// projectors go on writing meanwhile (nothing here takes a lock they wait on).
async fn copy_from_postgres<F, Fut>(
    read_db: &Db,
    file: &sea_orm::DatabaseTransaction,
    batch: u64,
    between: &mut F,
) -> Result<(), SnapshotError>
where
    F: FnMut(Table, u64) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let source =
        read_db.conn.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?;
    for table in Table::all() {
        portable::create_table(file, table).await?;
        portable::copy(table, &source, file, batch, between).await?;
    }
    // Read only: nothing to keep, and a failed commit cannot undo a read.
    source.commit().await?;
    Ok(())
}

/// Checks the snapshot for `views` and returns each one's checkpoint in it.
pub async fn check(path: &Path, views: &[View]) -> Result<Vec<(View, LogPosition)>, SnapshotError> {
    if !path.is_file() {
        return Err(SnapshotError::Missing(path.to_owned()));
    }
    let not = |reason: String| SnapshotError::NotASnapshot { path: path.to_owned(), reason };
    let file = Db::connect_dedicated(&format!("sqlite://{}?mode=ro", path.to_string_lossy()))
        .await
        .map_err(|e| not(e.to_string()))?;
    let outcome = async {
        let mut found = Vec::new();
        for view in views {
            let row = file
                .conn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "SELECT s.projection_version AS version, s.format AS format, s.release AS release, \
                     c.last_tx_id AS tx_id, c.last_position AS position \
                     FROM twofold_snapshot s JOIN projection_checkpoint c ON c.name = s.view WHERE s.view = $1",
                    vec![view.name().into()],
                ))
                .await
                .map_err(|e| not(e.to_string()))?
                .ok_or_else(|| not(format!("it holds no view {view}")))?;
            let get = |column: &str| row.try_get::<i64>("", column).map_err(|e| not(e.to_string()));
            let release: String = row.try_get("", "release").map_err(|e| not(e.to_string()))?;
            if get("format")? != SNAPSHOT_FORMAT {
                return Err(not(format!("format {} (expected {SNAPSHOT_FORMAT})", get("format")?)));
            }
            let version = get("version")?;
            if version != view.projection_version() {
                return Err(SnapshotError::OtherVersion {
                    path: path.to_owned(),
                    release,
                    view: view.name().to_owned(),
                    found: version,
                    expected: view.projection_version(),
                });
            }
            // The whole table must read (a truncated file fails here).
            file.conn
                .execute_unprepared(&format!("SELECT count(*) FROM {}", view.name()))
                .await
                .map_err(|e| not(e.to_string()))?;
            found.push((*view, LogPosition::new(get("tx_id")?, get("position")?)));
        }
        Ok(found)
    }
    .await;
    let _ = file.conn.close().await;
    outcome
}

/// Rebuilds `views` from the snapshot at `path`: the rows in it, then the
/// events after each view's checkpoint (views at the same checkpoint in one pass).
pub async fn rebuild_from(
    events_db: &Db,
    read_db: &Db,
    path: &Path,
    views: &[String],
    batch_size: u64,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Vec<RebuildReport>, SnapshotError> {
    let views: Vec<View> = views
        .iter()
        .map(|n| View::parse(n).ok_or_else(|| SnapshotError::UnknownView(n.clone())))
        .collect::<Result<_, _>>()?;
    let checked = check(path, &views).await?;
    let mut groups: Vec<(LogPosition, Vec<String>)> = Vec::new();
    for (view, at) in checked {
        match groups.iter_mut().find(|(g, _)| *g == at) {
            Some((_, names)) => names.push(view.name().to_owned()),
            None => groups.push((at, vec![view.name().to_owned()])),
        }
    }
    let mut reports = Vec::new();
    for (checkpoint, projections) in groups {
        let options = RebuildOptions {
            projections,
            until: None,
            copy_name: None,
            batch_size,
            from_snapshot: Some(SnapshotStart { path: path.to_owned(), checkpoint }),
        };
        reports.extend(rebuild::rebuild(events_db, read_db, &options, &mut progress).await?);
    }
    Ok(reports)
}
