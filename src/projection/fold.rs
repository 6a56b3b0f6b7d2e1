//! The one fold pipeline: how every view turns a batch of events into
//! statements, written once for both stores.
//!
//! A view supplies only what is its own (which rows an event touches and
//! what it does to them); this file does the rest:
//!
//! - [`RowSet`]: rows shipped to the database in one statement. PostgreSQL
//!   gets one array parameter per column, expanded by `UNNEST` (one
//!   statement and one parameter per column however many rows, in the
//!   binary protocol); SQLite a `VALUES` list in a `WITH` clause (in chunks
//!   under its parameter limit). Every statement below reads the rows as
//!   `u`, so it is written once for both.
//! - [`Table`]: a view's rows as whole rows (`order_summary`,
//!   `order_activity`, new customers and products): loaded by key (one
//!   statement), and written with an upsert whose `ON CONFLICT` the view
//!   chooses (keep the stored row, or merge by version).
//! - [`Counters`]: a view's additive part (`customer_view`,
//!   `product_catalog`, `daily_sales`): collect the keys each event moves,
//!   sort and dedupe them, load their markers (the `(tx_id, position)` of
//!   the last event each row applied), sum the deltas of the events each
//!   row has not applied yet, and add them with one statement. Additive
//!   writes keep concurrent inline writers from overwriting each other.
//!
//! Idempotency lives here for the counters (the markers) and in each
//! view's fold for whole rows (their versions), so a replayed batch changes
//! nothing either way.
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, FromQueryResult, TryGetable, Value};

use super::apply::{ApplyContext, ApplyError};
use super::sql::{array, execute, load_markers, pending};
use crate::domain::event::RecordedEvent;
use crate::token::LogPosition;

/// How a column travels: its PostgreSQL array type and SQL type, and for
/// nullable columns the '' that stands for NULL in the arrays (which
/// cannot carry NULLs here; those fields are never stored blank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    /// Nullable UUID: '' in the array, `NULLIF(…, '')::uuid` on the way in.
    OptUuid,
    Text,
    /// Nullable text: '' in the array, `NULLIF(…, '')` on the way in.
    OptText,
    Int,
    BigInt,
    Time,
    /// Nullable timestamp: RFC 3339 text or '' in the array.
    OptTime,
}

impl Kind {
    fn array_type(self) -> (ArrayType, &'static str) {
        match self {
            Self::Uuid => (ArrayType::Uuid, "uuid"),
            Self::Text | Self::OptText | Self::OptUuid | Self::OptTime => (ArrayType::String, "text"),
            Self::Int => (ArrayType::Int, "int"),
            Self::BigInt => (ArrayType::BigInt, "bigint"),
            Self::Time => (ArrayType::ChronoDateTimeUtc, "timestamptz"),
        }
    }

    /// The expression that reads column `name` of the shipped rows `u`.
    fn read(self, backend: DbBackend, name: &str) -> String {
        match (backend, self) {
            (DbBackend::Postgres, Self::OptText) => format!("NULLIF(u.{name}, '')"),
            (DbBackend::Postgres, Self::OptUuid) => format!("NULLIF(u.{name}, '')::uuid"),
            (DbBackend::Postgres, Self::OptTime) => format!("NULLIF(u.{name}, '')::timestamptz"),
            _ => format!("u.{name}"),
        }
    }

    /// A value as its PostgreSQL array element ('' for NULL, text for the
    /// nullable UUIDs and timestamps).
    fn element(self, value: Value) -> Value {
        match (self, value) {
            (Self::OptText, Value::String(v)) => Value::String(Some(v.unwrap_or_default())),
            (Self::OptUuid, Value::Uuid(v)) => Value::String(Some(v.map(|u| u.to_string()).unwrap_or_default())),
            (Self::OptTime, Value::ChronoDateTimeUtc(v)) => {
                Value::String(Some(v.map(|t| t.to_rfc3339()).unwrap_or_default()))
            }
            (_, value) => value,
        }
    }
}

/// One column of a view's rows `R`: its name, how it travels, its value.
pub struct Column<R> {
    pub name: &'static str,
    pub kind: Kind,
    pub value: fn(&R) -> Value,
}

/// Parameters per SQLite statement (its limit is 32,766).
const SQLITE_PARAMETERS: usize = 10_000;

/// Rows shipped to the database as `u`, with named, typed columns.
pub struct RowSet {
    columns: Vec<(&'static str, Kind)>,
    rows: Vec<Vec<Value>>,
}

impl RowSet {
    pub fn new(columns: Vec<(&'static str, Kind)>) -> Self {
        Self { columns, rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column list, for `INSERT INTO t (…)`.
    pub fn names(&self) -> String {
        self.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// The select list that reads every column of `u` (typed back from the arrays).
    pub fn reads(&self, backend: DbBackend) -> String {
        self.columns.iter().map(|(name, kind)| kind.read(backend, name)).collect::<Vec<_>>().join(", ")
    }

    /// Runs `body(source)` over the rows, where `source` is what a `FROM`
    /// names to read them as `u`: one statement on PostgreSQL, and on
    /// SQLite one per chunk of rows under its parameter limit (`per_row`:
    /// one statement per row, in their order, whatever the store).
    pub async fn run(
        self,
        txn: &DatabaseTransaction,
        per_row: bool,
        body: impl Fn(&str) -> String,
    ) -> Result<(), DbErr> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let backend = txn.get_database_backend();
        let width = self.columns.len().max(1);
        let chunk = match (per_row, backend) {
            (true, _) => 1,
            (false, DbBackend::Postgres) => self.rows.len(),
            (false, _) => (SQLITE_PARAMETERS / width).max(1),
        };
        let names = self.names();
        let mut rows = self.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<Vec<Value>> = rows.by_ref().take(chunk).collect();
            let (sql, values) = match backend {
                DbBackend::Postgres => {
                    let arrays: Vec<String> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, (_, kind))| format!("${}::{}[]", i + 1, kind.array_type().1))
                        .collect();
                    let values: Vec<Value> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, (_, kind))| {
                            let items = batch.iter().map(|row| kind.element(row[i].clone())).collect();
                            array(kind.array_type().0, items)
                        })
                        .collect();
                    (body(&format!("UNNEST({}) AS u({names})", arrays.join(", "))), values)
                }
                _ => {
                    let tuples: Vec<String> = (0..batch.len())
                        .map(|r| {
                            let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
                            format!("({})", params.join(", "))
                        })
                        .collect();
                    let sql = format!("WITH u({names}) AS (VALUES {}) {}", tuples.join(", "), body("u"));
                    (sql, batch.into_iter().flatten().collect())
                }
            };
            execute(txn, &sql, values).await?;
        }
        Ok(())
    }
}

/// A view table written as whole rows of `R`.
pub struct Table<R: 'static> {
    pub name: &'static str,
    pub key: &'static str,
    pub key_kind: Kind,
    /// Every column, in the table's order (a test per view holds it equal
    /// to the entity's).
    pub columns: &'static [Column<R>],
}

impl<R> Table<R> {
    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.name).collect()
    }

    /// The columns, for a `SELECT` (what the store keeps besides them, such
    /// as PostgreSQL's `search` vector, is not read).
    fn select_list(&self) -> String {
        self.column_names().join(", ")
    }

    /// Inserts `rows`; `on_conflict` decides what a stored row keeps
    /// (e.g. `ON CONFLICT (id) DO NOTHING`, or a merge by version).
    pub async fn write(&self, txn: &DatabaseTransaction, rows: &[&R], on_conflict: &str) -> Result<(), DbErr> {
        let mut set = RowSet::new(self.columns.iter().map(|c| (c.name, c.kind)).collect());
        for row in rows {
            set.push(self.columns.iter().map(|c| (c.value)(row)).collect());
        }
        let backend = txn.get_database_backend();
        let (names, reads) = (set.names(), set.reads(backend));
        // (SQLite needs a WHERE before ON CONFLICT in an INSERT … SELECT.)
        set.run(txn, false, |u| {
            format!("INSERT INTO {} ({names}) SELECT {reads} FROM {u} WHERE true {on_conflict}", self.name)
        })
        .await
    }
}

impl<R: FromQueryResult + Send + Sync> Table<R> {
    /// The stored rows of `keys` (one statement on PostgreSQL, one per
    /// thousand keys on SQLite).
    pub async fn load<K: Clone + Into<Value>>(&self, txn: &DatabaseTransaction, keys: &[K]) -> Result<Vec<R>, DbErr> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let backend = txn.get_database_backend();
        if backend == DbBackend::Postgres {
            let (ty, sql_type) = self.key_kind.array_type();
            let keys = array(ty, keys.iter().cloned().map(Into::into).collect());
            let sql =
                format!("SELECT {} FROM {} WHERE {} = ANY($1::{sql_type}[])", self.select_list(), self.name, self.key);
            return R::find_by_statement(super::sql::statement(backend, &sql, vec![keys])).all(txn).await;
        }
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} IN ({})",
                self.select_list(),
                self.name,
                self.key,
                placeholders.join(", ")
            );
            let values = chunk.iter().cloned().map(Into::into).collect();
            rows.extend(R::find_by_statement(super::sql::statement(backend, &sql, values)).all(txn).await?);
        }
        Ok(rows)
    }
}

/// What a batch adds to one row of a [`Counters`] view.
pub trait Delta: Default + Send {
    /// Adds `other`, which `e` moves it by (checked: a sum that would leave
    /// the 64-bit range makes `e` a poison event).
    fn add(&mut self, other: &Self, e: &RecordedEvent) -> Result<(), ApplyError>;
}

/// How a delta column merges into the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `stored + delta`.
    Sum,
    /// The later of the two (a nullable timestamp; NULL is the earliest).
    Latest,
}

/// One delta column: the view's column, how it travels and merges, its value.
pub struct DeltaColumn<D> {
    pub name: &'static str,
    pub kind: Kind,
    pub merge: Merge,
    pub value: fn(&D) -> Value,
}

/// A view's additive part.
pub struct Counters<D: 'static> {
    pub table: &'static str,
    pub key: &'static str,
    pub key_kind: Kind,
    pub columns: &'static [DeltaColumn<D>],
    /// Whether a row is created when missing (`daily_sales`: a day's first
    /// event), or always exists before its first delta (a customer, a
    /// product: the log registers them first).
    pub creates_rows: bool,
}

impl<D: Delta> Counters<D> {
    /// The pipeline for one batch: `deltas` says what each event adds to
    /// which rows; rows skip the events they applied already (with the
    /// position guard), and the sums are added in one statement.
    pub async fn apply<K>(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
        deltas: impl Fn(&RecordedEvent) -> Result<Vec<(K, D)>, ApplyError>,
    ) -> Result<(), ApplyError>
    where
        K: Ord + Hash + Clone + Into<Value> + TryGetable + Send + Sync,
    {
        let per_event: Vec<(&RecordedEvent, Vec<(K, D)>)> =
            events.iter().map(|e| Ok((e, deltas(e)?))).collect::<Result<_, ApplyError>>()?;
        let mut keys: Vec<K> = per_event.iter().flat_map(|(_, ds)| ds.iter().map(|(k, _)| k.clone())).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let markers: HashMap<K, LogPosition> =
            if ctx.position_guard { load_markers(txn, self.table, self.key, &keys).await? } else { HashMap::new() };
        let mut sums: BTreeMap<K, (D, LogPosition)> = BTreeMap::new();
        for (e, ds) in per_event {
            let at = LogPosition::new(e.tx_id, e.position);
            for (key, delta) in ds {
                if !pending(markers.get(&key), at, ctx.position_guard) {
                    continue;
                }
                let (sum, last) = sums.entry(key).or_default();
                sum.add(&delta, e)?;
                *last = (*last).max(at);
            }
        }
        let mut columns = vec![(self.key, self.key_kind)];
        columns.extend(self.columns.iter().map(|c| (c.name, c.kind)));
        columns.extend([("last_tx_id", Kind::BigInt), ("last_position", Kind::BigInt)]);
        let mut set = RowSet::new(columns);
        for (key, (sum, last)) in sums {
            let mut row = vec![key.into()];
            row.extend(self.columns.iter().map(|c| (c.value)(&sum)));
            row.extend([last.tx_id.into(), last.position.into()]);
            set.push(row);
        }
        // One statement for all rows when a single runner applies (async,
        // rebuild). Inline on PostgreSQL, concurrent commands add row by
        // row in key order instead, so their row locks cannot deadlock.
        let backend = txn.get_database_backend();
        let per_row = !ctx.position_guard && backend == DbBackend::Postgres;
        let t = self.table;
        if self.creates_rows {
            let (names, reads) = (set.names(), set.reads(backend));
            let merges = self.merges("excluded");
            set.run(txn, per_row, |u| {
                format!(
                    "INSERT INTO {t} ({names}) SELECT {reads} FROM {u} WHERE true ON CONFLICT ({}) DO UPDATE SET {merges}",
                    self.key
                )
            })
            .await?;
        } else {
            let merges = self.merges_from_u(backend);
            set.run(txn, per_row, |u| {
                format!("UPDATE {t} SET {merges} FROM {u} WHERE {t}.{} = u.{}", self.key, self.key)
            })
            .await?;
        }
        Ok(())
    }

    /// `SET` items adding the row source `x`'s columns (already typed) to
    /// the stored row, and moving its marker forward.
    fn merges(&self, x: &str) -> String {
        let t = self.table;
        let values: Vec<(&str, String)> = self.columns.iter().map(|c| (c.name, format!("{x}.{}", c.name))).collect();
        self.merge_items(&values, (&format!("{x}.last_tx_id"), &format!("{x}.last_position")), t)
    }

    /// The same, reading the shipped rows `u` (typed back from the arrays).
    fn merges_from_u(&self, backend: DbBackend) -> String {
        let values: Vec<(&str, String)> = self.columns.iter().map(|c| (c.name, c.kind.read(backend, c.name))).collect();
        self.merge_items(&values, ("u.last_tx_id", "u.last_position"), self.table)
    }

    fn merge_items(&self, values: &[(&str, String)], (tx, pos): (&str, &str), t: &str) -> String {
        let mut items: Vec<String> = self
            .columns
            .iter()
            .zip(values)
            .map(|(c, (name, v))| match c.merge {
                Merge::Sum => format!("{name} = {t}.{name} + {v}"),
                Merge::Latest => {
                    format!("{name} = CASE WHEN {v} IS NOT NULL AND ({t}.{name} IS NULL OR {t}.{name} < {v}) THEN {v} ELSE {t}.{name} END")
                }
            })
            .collect();
        let newer = format!("({t}.last_tx_id, {t}.last_position) < ({tx}, {pos})");
        items.push(format!("last_tx_id = CASE WHEN {newer} THEN {tx} ELSE {t}.last_tx_id END"));
        items.push(format!("last_position = CASE WHEN {newer} THEN {pos} ELSE {t}.last_position END"));
        items.join(", ")
    }
}
