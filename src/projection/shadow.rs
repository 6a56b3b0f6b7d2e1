//! A rebuild's shadow tables: made beside the live ones (PostgreSQL: a
//! schema of their own; SQLite: temporary tables on the rebuild's
//! connection), filled from a snapshot file when the rebuild starts from
//! one, and dropped when it ends.
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, DbErr};

use super::apply::Projection;
use super::portable::{self, Table};
use crate::catalog::View;
use crate::db::Db;

/// Why a snapshot's rows could not be loaded into a shadow.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Connect(#[from] crate::db::ConnectError),
}

/// The schema a view's shadow lives in (PostgreSQL).
pub(super) fn shadow_schema(projection: &str) -> String {
    format!("twofold_rebuild_{projection}")
}

/// Points unqualified table names at the shadows for this transaction.
pub(super) async fn use_shadow(
    txn: &sea_orm::DatabaseTransaction,
    chosen: &[Arc<dyn Projection>],
) -> Result<(), DbErr> {
    search_shadows(txn, chosen.iter().map(|p| p.name())).await
}

/// The one `SET LOCAL search_path`: these views' shadow schemas first, then
/// `public` (PostgreSQL; SQLite's temporary tables come first by themselves).
async fn search_shadows<'a>(
    txn: &sea_orm::DatabaseTransaction,
    views: impl IntoIterator<Item = &'a str>,
) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let schemas: Vec<String> = views.into_iter().map(shadow_schema).collect();
        txn.execute_unprepared(&format!("SET LOCAL search_path TO {}, public", schemas.join(", "))).await?;
    }
    Ok(())
}

/// Creates a shadow table. On PostgreSQL it is UNLOGGED while it fills (a
/// crash simply loses the shadow, which a rebuild recreates anyway) and
/// starts with its primary key only: the other indexes are returned, to be
/// built once the replay is done (one sort beats a million index
/// insertions), after the table is made durable (`SET LOGGED`).
pub(super) async fn create_shadow(shadow: &Db, table: &str) -> Result<Vec<String>, DbErr> {
    let mut deferred = Vec::new();
    match shadow.backend() {
        DbBackend::Postgres => {
            let schema = shadow_schema(table);
            shadow.conn.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
            shadow.conn.execute_unprepared(&format!("CREATE SCHEMA {schema}")).await?;
            shadow
                .conn
                .execute_unprepared(&format!("CREATE UNLOGGED TABLE {schema}.{table} (LIKE public.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
                .await?;
            let indexes = shadow
                .conn
                .query_all_raw(super::sql::statement(
                    shadow.backend(),
                    "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisprimary AS is_primary \
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     WHERE i.indrelid = to_regclass('public.' || $1)",
                    vec![table.into()],
                ))
                .await?;
            // Its triggers (the search document's), so the replay keeps
            // them as the live table does; they move with it at the switch.
            let triggers = shadow
                .conn
                .query_all_raw(super::sql::statement(
                    shadow.backend(),
                    "SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t \
                     WHERE t.tgrelid = to_regclass('public.' || $1) AND NOT t.tgisinternal",
                    vec![table.into()],
                ))
                .await?;
            for trigger in triggers {
                let def: String = trigger.try_get("", "def")?;
                let def = def.replacen(&format!(" ON public.{table} "), &format!(" ON {schema}.{table} "), 1).replacen(
                    &format!(" ON {table} "),
                    &format!(" ON {schema}.{table} "),
                    1,
                );
                shadow.conn.execute_unprepared(&def).await?;
            }
            for index in indexes {
                let name: String = index.try_get("", "name")?;
                let def: String = index.try_get("", "def")?;
                let def = def.replacen(&format!(" ON public.{table} "), &format!(" ON {schema}.{table} "), 1);
                if index.try_get::<bool>("", "is_primary")? {
                    shadow.conn.execute_unprepared(&def).await?;
                    shadow
                        .conn
                        .execute_unprepared(&format!(
                            "ALTER TABLE {schema}.{table} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
                        ))
                        .await?;
                } else {
                    deferred.push(def);
                }
            }
        }
        _ => {
            let row = shadow
                .conn
                .query_one_raw(super::sql::statement(
                    shadow.backend(),
                    "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = $1",
                    vec![table.into()],
                ))
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("table {table} in sqlite_master")))?;
            let ddl: String = row.try_get("", "sql")?;
            let ddl = ddl.replacen("CREATE TABLE", "CREATE TEMP TABLE", 1);
            shadow.conn.execute_unprepared(&format!("DROP TABLE IF EXISTS temp.{table}")).await?;
            shadow.conn.execute_unprepared(&ddl).await?;
        }
    }
    Ok(deferred)
}

/// Fills a shadow with the rows of the snapshot file (a SQLite database,
/// whichever store wrote it: see [`super::portable`]). SQLite attaches the
/// file and copies in one statement; PostgreSQL streams it into the shadow
/// with one `COPY … FROM STDIN`, each line written by SQLite itself (see
/// [`super::portable::copy_line`]), where the search trigger computes each
/// row's document. Returns the rows loaded.
pub(super) async fn load_snapshot(shadow: &Db, view: View, path: &std::path::Path) -> Result<u64, LoadError> {
    let table = view.name();
    let rows = match shadow.backend() {
        DbBackend::Postgres => {
            let file = Db::connect_dedicated(&format!("sqlite://{}?mode=ro", path.to_string_lossy())).await?;
            let loaded = async {
                // The dedicated connection's one connection, idle between transactions.
                let mut conn =
                    shadow.conn.get_postgres_connection_pool().acquire().await.map_err(crate::db::connection_error)?;
                let target = format!("{}.{table}", shadow_schema(table));
                portable::copy_into_postgres(
                    Table::View(view),
                    file.conn.get_sqlite_connection_pool(),
                    &mut conn,
                    &target,
                    portable::LOAD_BATCH,
                )
                .await
            }
            .await;
            if let Err(e) = file.conn.close().await {
                tracing::debug!(error = %e, "closing the snapshot file failed");
            }
            loaded?
        }
        _ => {
            // By name: a file written from PostgreSQL orders its columns as the entity does.
            let columns = portable::columns(Table::View(view)).join(", ");
            let file = path.to_string_lossy().replace('\'', "''");
            shadow.conn.execute_unprepared(&format!("ATTACH DATABASE '{file}' AS twofold_snapshot")).await?;
            let copied = shadow
                .conn
                .execute_unprepared(&format!(
                    "INSERT INTO temp.{table} ({columns}) SELECT {columns} FROM twofold_snapshot.{table}"
                ))
                .await;
            shadow.conn.execute_unprepared("DETACH DATABASE twofold_snapshot").await?;
            copied?.rows_affected()
        }
    };
    Ok(rows)
}

pub(super) async fn drop_shadow(shadow: &Db, table: &str) -> Result<(), DbErr> {
    match shadow.backend() {
        DbBackend::Postgres => {
            shadow.conn.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {} CASCADE", shadow_schema(table))).await?
        }
        _ => shadow.conn.execute_unprepared(&format!("DROP TABLE IF EXISTS temp.{table}")).await?,
    };
    Ok(())
}
