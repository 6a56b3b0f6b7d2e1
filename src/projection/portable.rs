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

/// Rows read from the snapshot file per page when a restore streams them
/// into PostgreSQL with `COPY` (nothing is bound, so no parameter limit).
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

/// Copies every row of `table` from `from` (the snapshot file) into
/// `target` (a PostgreSQL table with the same columns, schema-qualified)
/// with one `COPY … FROM STDIN`: the rows are read `batch` at a time in key
/// order and sent in PostgreSQL's text format. Row triggers fire as for an
/// `INSERT`. Returns the number of rows copied.
pub async fn copy_into_postgres(
    table: Table,
    from: &impl ConnectionTrait,
    to: &mut sqlx::PgConnection,
    target: &str,
    batch: u64,
) -> Result<u64, DbErr> {
    let statement = format!("COPY {target} ({}) FROM STDIN", columns(table).join(", "));
    let mut copy = to.copy_in_raw(&statement).await.map_err(sqlx_err)?;
    let sent = with_entity!(table, E, key => send_rows::<E, _>(key, from, &mut copy, batch.max(1)).await);
    match sent {
        Ok(()) => copy.finish().await.map_err(sqlx_err),
        Err(e) => {
            if let Err(aborted) = copy.abort(e.to_string()).await {
                tracing::debug!(error = %aborted, "aborting the COPY failed");
            }
            Err(e)
        }
    }
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

async fn send_rows<E, C>(
    key: E::Column,
    from: &C,
    copy: &mut sqlx::postgres::PgCopyIn<&mut sqlx::PgConnection>,
    batch: u64,
) -> Result<(), DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut after: Option<sea_orm::Value> = None;
    loop {
        let mut page = E::find().order_by_asc(key).limit(batch);
        if let Some(after) = after.take() {
            page = page.filter(key.gt(after));
        }
        let rows = page.all(from).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.get(key));
        let mut chunk = String::with_capacity(rows.len() * 256);
        for row in &rows {
            for (i, column) in E::Column::iter().enumerate() {
                if i > 0 {
                    chunk.push('\t');
                }
                copy_text(&mut chunk, &row.get(column))?;
            }
            chunk.push('\n');
        }
        copy.send(chunk.into_bytes()).await.map_err(sqlx_err)?;
        if (rows.len() as u64) < batch {
            break;
        }
    }
    Ok(())
}

/// One field in `COPY`'s text format: `\N` for NULL, text with its
/// backslashes, tabs and line ends escaped; a timestamp to the microsecond,
/// truncated as a bound parameter is.
pub fn copy_text(out: &mut String, value: &sea_orm::Value) -> Result<(), DbErr> {
    use sea_orm::Value;
    use std::fmt::Write;
    let written = match value {
        Value::String(Some(text)) => {
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            Ok(())
        }
        Value::Uuid(Some(id)) => write!(out, "{id}"),
        Value::BigInt(Some(n)) => write!(out, "{n}"),
        Value::Int(Some(n)) => write!(out, "{n}"),
        Value::SmallInt(Some(n)) => write!(out, "{n}"),
        Value::Bool(Some(b)) => write!(out, "{}", if *b { 't' } else { 'f' }),
        Value::ChronoDateTimeUtc(Some(at)) => write!(out, "{}", at.format("%Y-%m-%d %H:%M:%S%.6f+00")),
        Value::String(None)
        | Value::Uuid(None)
        | Value::BigInt(None)
        | Value::Int(None)
        | Value::SmallInt(None)
        | Value::Bool(None)
        | Value::ChronoDateTimeUtc(None) => {
            out.push_str("\\N");
            Ok(())
        }
        other => return Err(DbErr::Custom(format!("no COPY text form for {other:?}"))),
    };
    written.map_err(|e| DbErr::Custom(e.to_string()))
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

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        use sea_orm::Value;
        let field = |value: Value| {
            let mut out = String::new();
            copy_text(&mut out, &value).expect("a COPY form");
            out
        };
        assert_eq!(field(Value::String(Some("a\\b\tc\nd\re".into()))), "a\\\\b\\tc\\nd\\re");
        assert_eq!(field(Value::String(None)), "\\N");
        assert_eq!(field(Value::String(Some("\\N".into()))), "\\\\N", "the text \\N is not NULL");
        assert_eq!(field(Value::BigInt(Some(-7))), "-7");
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T00:31:12.123456789Z").expect("time").to_utc();
        assert_eq!(
            field(Value::ChronoDateTimeUtc(Some(at))),
            "2026-12-07 00:31:12.123456+00",
            "truncated, as sqlx binds"
        );
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(field(Value::Uuid(Some(id))), "01234567-89ab-cdef-0123-456789abcdef");
        assert!(copy_text(&mut String::new(), &Value::Double(Some(1.0))).is_err());
    }
}
