//! Small helpers for the projections' hand-written SQL: conditional updates
//! and upserts that SeaORM's builders do not express (row-value guards).
use std::collections::HashMap;
use std::hash::Hash;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, Statement, TryGetable, Value};

use crate::token::LogPosition;

/// Builds a statement from SQL written with `$1, $2…` placeholders; SQLite
/// gets `?1, ?2…`, its numbered form.
pub fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

pub async fn execute(txn: &DatabaseTransaction, sql: &str, values: Vec<Value>) -> Result<ExecResult, DbErr> {
    txn.execute_raw(statement(txn.get_database_backend(), sql, values)).await
}

/// The `(last_tx_id, last_position)` marker of each existing row among `keys`
/// (one query per batch, whatever the number of rows).
pub async fn load_markers<K>(
    txn: &DatabaseTransaction,
    table: &str,
    key_column: &str,
    keys: &[K],
) -> Result<HashMap<K, LogPosition>, DbErr>
where
    K: Clone + Eq + Hash + Into<Value> + TryGetable,
{
    let mut markers = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {key_column} AS k, last_tx_id, last_position FROM {table} WHERE {key_column} IN ({})",
            placeholders.join(", ")
        );
        let values: Vec<Value> = chunk.iter().cloned().map(Into::into).collect();
        let rows = txn.query_all_raw(statement(txn.get_database_backend(), &sql, values)).await?;
        for row in rows {
            let key: K = row.try_get("", "k")?;
            markers.insert(key, LogPosition::new(row.try_get("", "last_tx_id")?, row.try_get("", "last_position")?));
        }
    }
    Ok(markers)
}

/// Whether an event at `at` still has to be applied to a row at `marker`.
pub fn pending(marker: Option<&LogPosition>, at: LogPosition, guard: bool) -> bool {
    !guard || marker.is_none_or(|m| at > *m)
}

/// A PostgreSQL array parameter (for `UNNEST` bulk statements). Its
/// elements cannot be NULL: nullable columns travel as '' and come back
/// through `NULLIF`.
pub fn array(ty: sea_orm::sea_query::ArrayType, values: Vec<Value>) -> Value {
    Value::Array(ty, Some(Box::new(values)))
}
