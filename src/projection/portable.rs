//! The rows of a recovery snapshot, copied between a store and the snapshot
//! file (a SQLite database) through the read entities, so that every value
//! keeps its exact type: a uuid is the 16-byte blob, a timestamp the text,
//! a bigint the integer SQLite's read database holds, and it comes back to
//! PostgreSQL as the uuid, timestamptz and bigint it was.
//!
//! Rows go `BATCH` at a time in primary-key order (keyset pagination, each
//! page an index range scan), so no table is ever held in memory whole.
//! Only the entities' columns travel: PostgreSQL's `search` document is not
//! one of them, and its trigger (copied onto the rebuild's shadow tables)
//! computes it from `search_name` and `search_text` as each row goes in.
use std::future::Future;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IdenStatic, IntoActiveModel,
    Iterable, ModelTrait, QueryFilter, QueryOrder, QuerySelect, Schema,
};

use crate::catalog::View;

/// Rows read and written per statement: an `INSERT` of 500 rows of the
/// widest view binds about 11,000 values, under both stores' limits.
pub const BATCH: u64 = 500;

/// Lines sent per `COPY` message when a restore streams a snapshot table
/// into PostgreSQL.
pub const LOAD_BATCH: u64 = 5_000;

/// A table a snapshot file holds rows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    View(View),
    /// `projection_checkpoint`: where each view's rows stand.
    Checkpoints,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Self::View(view) => view.name(),
            Self::Checkpoints => "projection_checkpoint",
        }
    }

    /// Every table of a snapshot file, views first.
    pub fn all() -> impl Iterator<Item = Table> {
        View::ALL.into_iter().map(Table::View).chain(std::iter::once(Table::Checkpoints))
    }
}

/// Runs `$body` with `$E` the entity of `$table` and `$K` its key column
/// (every read table has a one-column primary key).
macro_rules! with_entity {
    ($table:expr, $E:ident, $K:ident => $body:expr) => {{
        use entity::read as r;
        match $table {
            Table::View(View::OrderSummary) => {
                type $E = r::order_summary::Entity;
                let $K = r::order_summary::Column::OrderId;
                $body
            }
            Table::View(View::CustomerView) => {
                type $E = r::customer_view::Entity;
                let $K = r::customer_view::Column::CustomerId;
                $body
            }
            Table::View(View::ProductCatalog) => {
                type $E = r::product_catalog::Entity;
                let $K = r::product_catalog::Column::ProductId;
                $body
            }
            Table::View(View::DailySales) => {
                type $E = r::daily_sales::Entity;
                let $K = r::daily_sales::Column::Day;
                $body
            }
            Table::View(View::OrderActivity) => {
                type $E = r::order_activity::Entity;
                let $K = r::order_activity::Column::Position;
                $body
            }
            Table::Checkpoints => {
                type $E = r::projection_checkpoint::Entity;
                let $K = r::projection_checkpoint::Column::Name;
                $body
            }
        }
    }};
}

/// The columns that travel in a snapshot, in the entity's order.
pub fn columns(table: Table) -> Vec<&'static str> {
    fn of<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter().map(|c| c.as_str()).collect()
    }
    with_entity!(table, E, _key => of::<E>())
}

/// Creates `table` in a SQLite snapshot file, as its entity describes it
/// (SQLite's declared types only name an affinity: the values stored are
/// those the read database stores).
pub async fn create_table(file: &impl ConnectionTrait, table: Table) -> Result<(), DbErr> {
    let schema = Schema::new(DbBackend::Sqlite);
    with_entity!(table, E, _key => file.execute(&schema.create_table_from_entity(E::default())).await)?;
    Ok(())
}

/// Copies every row of `table` from `from` to `to` (the same table name on
/// both: the caller points `to` at the right schema), `batch` rows at a
/// time; `between(table, rows so far)` runs after each batch. Returns the
/// number of rows copied.
pub async fn copy<F, Fut>(
    table: Table,
    from: &impl ConnectionTrait,
    to: &impl ConnectionTrait,
    batch: u64,
    between: &mut F,
) -> Result<u64, DbErr>
where
    F: FnMut(Table, u64) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    with_entity!(table, E, key => copy_rows::<E, _, _, _, _>(table, key, from, to, batch.max(1), between).await)
}

async fn copy_rows<E, C1, C2, F, Fut>(
    table: Table,
    key: E::Column,
    from: &C1,
    to: &C2,
    batch: u64,
    between: &mut F,
) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
    C1: ConnectionTrait,
    C2: ConnectionTrait,
    F: FnMut(Table, u64) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let mut after: Option<sea_orm::Value> = None;
    let mut copied = 0u64;
    loop {
        let mut page = E::find().order_by_asc(key).limit(batch);
        if let Some(after) = after.take() {
            page = page.filter(key.gt(after));
        }
        let rows = page.all(from).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.get(key));
        let count = rows.len() as u64;
        E::insert_many(rows.into_iter().map(IntoActiveModel::into_active_model)).exec_without_returning(to).await?;
        copied += count;
        between(table, copied).await;
        if count < batch {
            break;
        }
    }
    Ok(copied)
}

/// Copies every row of `table` from `file` (the snapshot, a SQLite
/// database) into `target` (a PostgreSQL table with the same columns,
/// schema-qualified) with one `COPY … FROM STDIN`. SQLite itself writes
/// each row as a line of `COPY`'s text format ([`copy_line`]), read in one
/// streaming query and sent `batch` lines at a time: no row is decoded into
/// Rust values on the way. Row triggers fire as for an `INSERT`. Returns
/// the number of rows copied.
pub async fn copy_into_postgres(
    table: Table,
    file: &sqlx::SqlitePool,
    to: &mut sqlx::PgConnection,
    target: &str,
    batch: u64,
) -> Result<u64, DbErr> {
    use futures_util::TryStreamExt;
    let select = format!("SELECT {} FROM \"{}\"", copy_line(table), table.name());
    let statement = format!("COPY {target} ({}) FROM STDIN", columns(table).join(", "));
    let mut copy = to.copy_in_raw(&statement).await.map_err(crate::db::statement_error)?;
    let sent = async {
        // Built from the entity's column names and types only.
        let mut lines = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(select)).fetch(file);
        let mut chunk = String::new();
        let mut in_chunk = 0u64;
        while let Some(line) = lines.try_next().await.map_err(crate::db::statement_error)? {
            chunk.push_str(&line);
            chunk.push('\n');
            in_chunk += 1;
            if in_chunk >= batch.max(1) {
                copy.send(std::mem::take(&mut chunk).into_bytes()).await.map_err(crate::db::statement_error)?;
                in_chunk = 0;
            }
        }
        if !chunk.is_empty() {
            copy.send(chunk.into_bytes()).await.map_err(crate::db::statement_error)?;
        }
        Ok::<(), DbErr>(())
    }
    .await;
    match sent {
        Ok(()) => copy.finish().await.map_err(crate::db::statement_error),
        Err(e) => {
            if let Err(aborted) = copy.abort(e.to_string()).await {
                tracing::debug!(error = %aborted, "aborting the COPY failed");
            }
            Err(e)
        }
    }
}

/// The SQLite expression that writes a row of `table`, as the snapshot file
/// holds it, as one line of PostgreSQL's `COPY` text format (without its
/// line end): fields in the entity's column order, tab-separated, `\N` for
/// NULL; a uuid (the 16-byte blob) as 32 hex digits; text with its
/// backslashes, tabs and line ends escaped; a timestamp (the text sqlx
/// writes, `…T…+00:00`) cut to the microsecond, as a bound parameter is
/// truncated (nanoseconds come only from a file SQLite wrote).
pub fn copy_line(table: Table) -> String {
    use sea_orm::sea_query::ColumnType;
    fn of<E: EntityTrait>() -> String {
        let mut fields = Vec::new();
        for column in E::Column::iter() {
            let c = format!("\"{}\"", column.as_str());
            let value = match column.def().get_column_type() {
                ColumnType::Uuid => format!("CASE typeof({c}) WHEN 'blob' THEN lower(hex({c})) ELSE {c} END"),
                ColumnType::TimestampWithTimeZone | ColumnType::Timestamp | ColumnType::DateTime => format!(
                    "CASE WHEN length({c}) = 35 AND substr({c}, 20, 1) = '.' \
                     THEN substr({c}, 1, 26) || substr({c}, 30) ELSE {c} END"
                ),
                ColumnType::BigInteger | ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger => {
                    format!("CAST({c} AS TEXT)")
                }
                // Text, and every other type the views use (booleans as 0/1,
                // which PostgreSQL reads; JSON and decimals as their text):
                // the column's text with COPY's escapes.
                _ => format!(
                    "replace(replace(replace(replace(CAST({c} AS TEXT), '\\', '\\\\'), char(9), '\\t'), \
                     char(10), '\\n'), char(13), '\\r')"
                ),
            };
            fields.push(format!("coalesce({value}, '\\N')"));
        }
        fields.join(" || char(9) || ")
    }
    with_entity!(table, E, _key => of::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_travels_with_its_checkpoints() {
        let names: Vec<&str> = Table::all().map(Table::name).collect();
        assert_eq!(names.len(), View::ALL.len() + 1);
        assert!(names.contains(&"projection_checkpoint"));
        for table in Table::all() {
            assert!(!columns(table).is_empty(), "{}", table.name());
            assert!(!columns(table).contains(&"search"), "the tsvector is recomputed, never copied");
            // The key the pages go by is the entity's one primary key.
            let (keys, paged): (Vec<&str>, &str) = with_entity!(table, E, key => (
                <E as EntityTrait>::PrimaryKey::iter().map(|k| sea_orm::PrimaryKeyToColumn::into_column(k).as_str()).collect(),
                key.as_str(),
            ));
            assert_eq!(keys, vec![paged], "{}", table.name());
        }
    }

    #[tokio::test]
    async fn a_row_becomes_one_line_of_copy_text() {
        let file = sea_orm::Database::connect("sqlite::memory:").await.expect("sqlite");
        let table = Table::View(View::OrderActivity);
        create_table(&file, table).await.expect("table");
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T00:31:12.123456789Z").expect("time").to_utc();
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let row = entity::read::order_activity::Model {
            position: 7,
            tx_id: -3,
            order_id: id,
            stream_version: 1,
            event_type: "OrderPlaced".into(),
            description: "a\\b\tc\nd\re \\N".into(),
            occurred_at: at,
            customer_id: None,
            actor_sub: Some(String::new()),
            actor_role: None,
            correlation_id: None,
            causation_id: None,
        };
        EntityTrait::insert(row.into_active_model()).exec_without_returning(&file).await.expect("insert");
        let select = format!("SELECT {} AS line FROM order_activity", copy_line(table));
        let line: String = file
            .query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, select))
            .await
            .expect("select")
            .expect("a row")
            .try_get("", "line")
            .expect("text");
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), columns(table).len(), "{line}");
        assert_eq!(fields[0], "7");
        assert_eq!(fields[1], "-3");
        assert_eq!(fields[2], "0123456789abcdef0123456789abcdef", "PostgreSQL reads a uuid from its 32 hex digits");
        assert_eq!(fields[5], "a\\\\b\\tc\\nd\\re \\\\N", "escaped, and the text \\N is not NULL");
        assert_eq!(fields[6], "2026-12-07T00:31:12.123456+00:00", "truncated to the microsecond, as sqlx binds");
        assert_eq!(fields[7], "\\N");
        assert_eq!(fields[8], "", "an empty string is not NULL");
        assert!(!line.contains('\n'));
    }
}
