//! Small helpers for the projections' hand-written SQL: conditional updates
//! and upserts that SeaORM's builders do not express (row-value guards).
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, Statement, Value};

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

/// `WHERE` fragment: the row has not yet applied the event at `($tx, $pos)`,
/// or guards are off (`$guard` = 0). Parameters are given by number.
pub fn not_yet_applied(tx: usize, pos: usize, guard: usize) -> String {
    format!("(${guard} = 0 OR (last_tx_id, last_position) < (${tx}, ${pos}))")
}

/// `SET` fragment: move the row's marker forward to `($tx, $pos)`, never back.
pub fn advance_marker(tx: usize, pos: usize) -> String {
    format!(
        "last_tx_id = CASE WHEN (last_tx_id, last_position) < (${tx}, ${pos}) THEN ${tx} ELSE last_tx_id END, \
         last_position = CASE WHEN (last_tx_id, last_position) < (${tx}, ${pos}) THEN ${pos} ELSE last_position END"
    )
}
