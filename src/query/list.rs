//! Lists with search, filters and sorts: what the three list fields share
//! (`orders`, `customers`, `products`, and `Customer.orders`).
//!
//! **Only what an index serves.** Each view lists the sorts it offers, and
//! for each sort the filters its indexes serve (a range on the sort column,
//! an equality on a column the sort's index leads with). A list that a
//! search or a bounding equality (one customer's orders) already narrows
//! may filter on anything. [`ListQuery::check`] refuses every other
//! combination with `VALIDATION`, naming what is allowed, so no list ever
//! reads a view from end to end (`tests/it/search.rs` runs `EXPLAIN` on
//! every offered combination).
//!
//! **Keyset pagination.** A page continues after its last row's sort key
//! and id ([`Cursor`]), never at an `OFFSET`: stable under every ordering,
//! however the view changes meanwhile.
//!
//! **Search** ([`crate::search`]): PostgreSQL's `tsvector` column with its
//! GIN index, SQLite's FTS5 table. Ranked by relevance (`ts_rank_cd`,
//! `bm25`) among the [`SEARCH_WINDOW`] matches that come first in the
//! view's default order (newest first; on SQLite, with nothing but the
//! search, the newest the view received: [`Matching::Recent`]), so a
//! one-letter prefix that matches half the view ranks a thousand rows,
//! not half a million; with an explicit `orderBy`, every match is listed
//! in that order.
use sea_orm::{DbBackend, Statement, Value};
use uuid::Uuid;

use super::QueryError;

mod run;

/// How many matches a search ranks (the first in the view's default order).
pub const SEARCH_WINDOW: u64 = 1_000;
/// The most values an `in` filter may list.
pub const MAX_IN_VALUES: usize = 8;

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
    fn after(self) -> &'static str {
        match self {
            Self::Asc => ">",
            Self::Desc => "<",
        }
    }
}

/// A bound on one column: any of `gt`, `gte`, `lt`, `lte`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Range<T> {
    pub gt: Option<T>,
    pub gte: Option<T>,
    pub lt: Option<T>,
    pub lte: Option<T>,
}

impl<T: Clone + Into<Value>> Range<T> {
    pub fn is_empty(&self) -> bool {
        self.gt.is_none() && self.gte.is_none() && self.lt.is_none() && self.lte.is_none()
    }

    fn conditions(&self, column: &'static str) -> Vec<Condition> {
        [(">", &self.gt), (">=", &self.gte), ("<", &self.lt), ("<=", &self.lte)]
            .into_iter()
            .filter_map(|(op, v)| v.clone().map(|v| Condition::Compare { column, op, value: v.into() }))
            .collect()
    }
}

/// One condition of a list's `WHERE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare {
        column: &'static str,
        op: &'static str,
        value: Value,
    },
    /// `column IN (…)`: written as one index range per value, merged, so an
    /// index that leads with `column` serves it in sort order.
    In {
        column: &'static str,
        values: Vec<Value>,
    },
}

impl Condition {
    pub fn eq(column: &'static str, value: impl Into<Value>) -> Self {
        Self::Compare { column, op: "=", value: value.into() }
    }
}

/// A filter the API offers, by the name the API gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The argument's name (`placedAt`), for messages.
    pub name: &'static str,
    pub conditions: Vec<Condition>,
}

impl Filter {
    pub fn range<T: Clone + Into<Value>>(name: &'static str, column: &'static str, range: &Range<T>) -> Option<Self> {
        (!range.is_empty()).then(|| Self { name, conditions: range.conditions(column) })
    }
}

/// A sort a view offers: the API's name, its column, and the filters its
/// indexes serve besides a range on that column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortSpec {
    pub name: &'static str,
    pub column: &'static str,
    /// The column holds a timestamp (else a 64-bit integer).
    pub time: bool,
    /// Filters (by API name) an index of this sort serves: a range on the
    /// sort column itself, an equality on a column its index leads with.
    pub serves: &'static [&'static str],
}

/// What the three views' lists have in common.
#[derive(Debug)]
pub struct ViewSpec {
    /// The API's name for the list, for messages (`orders`).
    pub list: &'static str,
    pub table: &'static str,
    pub key: &'static str,
    /// SQLite's FTS5 table over the view.
    pub fts: &'static str,
    /// The sort used without `orderBy` (and to break ties in relevance).
    pub default_sort: SortSpec,
    pub default_direction: Direction,
    pub sorts: &'static [SortSpec],
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// Relevance to the search (best first), then the default order.
    Relevance,
    By(SortSpec, Direction),
}

/// Where the previous page ended: the sort key and id of its last row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Which ordering it belongs to (a cursor of another is refused).
    pub order: String,
    pub key: CursorKey,
    pub id: Uuid,
}

/// A sort key's value in a cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CursorKey {
    Int(i64),
    Time(chrono::DateTime<chrono::Utc>),
    /// A relevance and the default sort key that breaks its ties.
    Rank(f64, Box<CursorKey>),
}

impl CursorKey {
    fn values(&self, out: &mut Vec<Value>) {
        match self {
            Self::Int(v) => out.push((*v).into()),
            Self::Time(t) => out.push((*t).into()),
            Self::Rank(r, tie) => {
                out.push((*r).into());
                tie.values(out);
            }
        }
    }

    /// The key a row of `view` was read with, in `order`.
    pub fn read(row: &sea_orm::QueryResult, view: &ViewSpec, order: Order) -> Result<Self, sea_orm::DbErr> {
        let key = |sort: SortSpec| -> Result<CursorKey, sea_orm::DbErr> {
            Ok(if sort.time {
                CursorKey::Time(row.try_get("", sort.column)?)
            } else {
                CursorKey::Int(row.try_get("", sort.column)?)
            })
        };
        Ok(match order {
            Order::Relevance => CursorKey::Rank(row.try_get::<f64>("", "rank")?, Box::new(key(view.default_sort)?)),
            Order::By(sort, _) => key(sort)?,
        })
    }
}

/// A list to read: its view, search, filters, order, page.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub view: &'static ViewSpec,
    pub search: Option<crate::search::Query>,
    pub filters: Vec<Filter>,
    /// A condition that bounds the list to a few rows whatever else it has
    /// (one customer's orders; a customer caller's own records).
    pub bound: Vec<Condition>,
    pub order: Order,
    pub first: u64,
    pub after: Option<Cursor>,
    /// How a search is matched (decided when the page is read).
    matching: Matching,
}

/// How a search's matches are found, by store (and on SQLite, by how many
/// there are: see [`super::ReadModel::page_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matching {
    /// PostgreSQL: `search @@ tsquery`; the planner picks the GIN index, or
    /// walks the sort's index checking each row, by how many rows match.
    Postgres,
    /// SQLite, few matches: every match read from FTS5 first.
    Few,
    /// SQLite, many matches: the sort's index walked, each row looked up
    /// in the matches (read from FTS5 once), until the page (or the
    /// window) is full.
    Many,
    /// SQLite, ranked by relevance with nothing but the search: the window
    /// is FTS5's newest matches by rowid (the order the view received its
    /// rows, which is the log's), read with their `bm25` in one pass over
    /// the index, so no match outside the window is looked up in the view
    /// and no probe counts them first. At 1M orders a one-letter prefix
    /// went from 22 to 126 searches/s this way, two words from 21 to 37
    /// (docs/performance.md).
    Recent,
}

/// Above this many matches, SQLite walks the sort's index instead of
/// reading every match first.
const FEW_MATCHES: i64 = 5_000;

impl ListQuery {
    /// A list of `view` in its default order, with nothing else.
    pub fn new(view: &'static ViewSpec, first: u64) -> Self {
        Self {
            view,
            search: None,
            filters: Vec::new(),
            bound: Vec::new(),
            order: Order::By(view.default_sort, view.default_direction),
            first,
            after: None,
            matching: Matching::Few,
        }
    }

    /// Sets the search (`None` or blank: none), and with it relevance order
    /// unless `orderBy` says otherwise.
    pub fn search(mut self, search: Option<&str>, order_by_given: bool) -> Result<Self, QueryError> {
        if let Some(text) = search.filter(|s| !s.trim().is_empty()) {
            let query = crate::search::parse(text).map_err(|e| QueryError::Validation(e.to_string()))?;
            self.search = Some(query);
            if !order_by_given {
                self.order = Order::Relevance;
            }
        }
        Ok(self)
    }

    /// Sets the order from the API's sort name and direction.
    pub fn order_by(mut self, name: &str, direction: Direction) -> Result<Self, QueryError> {
        let sort = self.view.sorts.iter().find(|s| s.name == name).ok_or_else(|| {
            QueryError::Validation(format!(
                "{} cannot be sorted by {name}; it sorts by {}",
                self.view.list,
                self.view.sorts.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ))
        })?;
        self.order = Order::By(*sort, direction);
        Ok(self)
    }

    /// The name of the ordering, for cursors.
    fn order_name(&self) -> String {
        match self.order {
            Order::Relevance => "RELEVANCE".to_owned(),
            Order::By(sort, direction) => format!("{}_{}", sort.name, direction.sql()),
        }
    }

    /// Continues after `cursor`, which must come from this ordering.
    pub fn after(mut self, cursor: Option<Cursor>) -> Result<Self, QueryError> {
        if let Some(cursor) = &cursor {
            let expected = self.order_name();
            let shape_fits = match (&cursor.key, self.order) {
                (CursorKey::Rank(..), Order::Relevance) => true,
                (CursorKey::Rank(..), _) | (_, Order::Relevance) => false,
                _ => true,
            };
            if cursor.order != expected || !shape_fits {
                return Err(QueryError::Validation(format!(
                    "`after` is a cursor of another ordering ({}); this list is ordered by {expected}: start again without `after`",
                    cursor.order
                )));
            }
        }
        self.after = cursor;
        Ok(self)
    }

    /// The cursor of a row this list read (the page statement's columns).
    pub fn cursor(&self, row: &sea_orm::QueryResult, id: Uuid) -> Result<Cursor, sea_orm::DbErr> {
        Ok(Cursor { order: self.order_name(), key: CursorKey::read(row, self.view, self.order)?, id })
    }

    /// Refuses a combination of filters and order that no index serves,
    /// naming what is allowed.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.search.is_some() || !self.bound.is_empty() || self.filters.is_empty() {
            return Ok(());
        }
        let Order::By(sort, _) = self.order else { return Ok(()) };
        let unserved: Vec<&str> =
            self.filters.iter().map(|f| f.name).filter(|name| !sort.serves.contains(name)).collect();
        if unserved.is_empty() {
            return Ok(());
        }
        let offers: Vec<String> = self
            .view
            .sorts
            .iter()
            .map(|s| {
                if s.serves.is_empty() {
                    format!("orderBy {} with no filter", s.name)
                } else {
                    format!("orderBy {} with {}", s.name, s.serves.join(", "))
                }
            })
            .collect();
        Err(QueryError::Validation(format!(
            "{}: no index serves filtering on {} with orderBy {}; offered: {}, or any filter together with search{}",
            self.view.list,
            unserved.join(", "),
            sort.name,
            offers.join("; "),
            if self.view.list == "orders" { " or customerId" } else { "" },
        )))
    }

    /// Every condition of the list (filters and bounds), for `WHERE`.
    fn conditions(&self) -> impl Iterator<Item = &Condition> {
        self.bound.iter().chain(self.filters.iter().flat_map(|f| f.conditions.iter()))
    }

    /// The statement for one page: `select` is the column list (without
    /// the table's alias), and the result has one row more than `first`
    /// when another page follows. Relevance adds a `rank` column.
    pub fn page_statement(&self, backend: DbBackend, select: &str) -> Statement {
        let mut sql = Sql::new(backend);
        let text = match self.order {
            Order::Relevance => self.relevance_sql(&mut sql, select),
            Order::By(sort, direction) => self.sorted_sql(&mut sql, select, sort, direction),
        };
        Statement::from_sql_and_values(backend, text, sql.values)
    }

    /// Every page statement this list may run on `backend`: one per way
    /// its search may be matched (SQLite decides by the matches it finds,
    /// in `page_rows`). The plan test explains each.
    pub fn possible_page_statements(&self, backend: DbBackend, select: &str) -> Vec<Statement> {
        let ways = match (&self.search, backend) {
            (Some(_), DbBackend::Sqlite) if self.ranks_search_alone() => vec![Matching::Recent],
            (Some(_), DbBackend::Sqlite) => vec![Matching::Few, Matching::Many],
            _ => vec![self.matching],
        };
        ways.into_iter()
            .map(|way| {
                let mut list = self.clone();
                list.matching = way;
                list.page_statement(backend, select)
            })
            .collect()
    }

    /// Ranked by relevance, with nothing but the search to narrow it
    /// (SQLite then reads the window from FTS5 alone: [`Matching::Recent`]).
    fn ranks_search_alone(&self) -> bool {
        self.search.is_some() && self.order == Order::Relevance && self.conditions().next().is_none()
    }

    /// `SELECT count(*)` of every row the list holds (all its pages).
    pub fn count_statement(&self, backend: DbBackend) -> Statement {
        let mut sql = Sql::new(backend);
        let mut wheres = self.wheres(&mut sql, None);
        let matching = if backend == DbBackend::Postgres { Matching::Postgres } else { Matching::Few };
        self.matches(&mut sql, &mut wheres, matching);
        let text = format!("SELECT count(*) AS n FROM {} t{}", self.view.table, where_clause(&wheres));
        Statement::from_sql_and_values(backend, text, sql.values)
    }

    /// SQLite: how many rows match the search, counted up to one more than
    /// [`FEW_MATCHES`] (which way to read them).
    fn probe_statement(&self, query: &crate::search::Query) -> Statement {
        let fts = self.view.fts;
        let text = format!(
            "SELECT count(*) AS n FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH ?1 LIMIT {})",
            FEW_MATCHES + 1
        );
        Statement::from_sql_and_values(DbBackend::Sqlite, text, [query.to_fts5().into()])
    }

    /// With a search, the condition a row of `t` matches it by.
    fn matches(&self, sql: &mut Sql, wheres: &mut Vec<String>, matching: Matching) {
        let Some(query) = &self.search else { return };
        let fts = self.view.fts;
        let matching = if sql.backend == DbBackend::Postgres { Matching::Postgres } else { matching };
        wheres.push(match matching {
            Matching::Postgres => {
                let q = sql.bind(query.to_tsquery());
                match query.to_tsquery_exact() {
                    // The index asked for the exact words only; every row
                    // they find checked against the whole query (a function
                    // call, which no index answers). A prefix in the index
                    // scan costs every row the prefix begins a word of.
                    Some(exact) => {
                        let e = sql.bind(exact);
                        format!("t.search @@ to_tsquery('simple', {e}) AND ts_match_vq(t.search, to_tsquery('simple', {q}))")
                    }
                    None => format!("t.search @@ to_tsquery('simple', {q})"),
                }
            }
            // (`Recent` reads its window straight from FTS5, in
            // `relevance_sql`; as a condition it is `Few`'s.)
            Matching::Few | Matching::Recent => {
                let q = sql.bind(query.to_fts5());
                format!("t.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH {q})")
            }
            Matching::Many => {
                // The matches read once (the list SQLite builds for `IN`),
                // each row of the sort's index looked up in it: the `+`
                // keeps the list from driving the loop. Not an `EXISTS`
                // per row: each would run the query again, and a prefix
                // (`m*`) merges its whole doclist every time.
                let q = sql.bind(query.to_fts5());
                format!("+t.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH {q})")
            }
        });
    }

    /// The list's conditions as SQL (an `IN` as one branch per value when
    /// `branch` names which).
    fn wheres(&self, sql: &mut Sql, branch: Option<(&'static str, &Value)>) -> Vec<String> {
        let mut out = Vec::new();
        for condition in self.conditions() {
            match condition {
                Condition::Compare { column, op, value } => {
                    let p = sql.bind(value.clone());
                    out.push(format!("t.{column} {op} {p}"));
                }
                Condition::In { column, values } => match branch {
                    Some((c, value)) if c == *column => {
                        let p = sql.bind(value.clone());
                        out.push(format!("t.{column} = {p}"));
                    }
                    _ => {
                        let ps: Vec<String> = values.iter().map(|v| sql.bind(v.clone())).collect();
                        out.push(format!("t.{column} IN ({})", ps.join(", ")));
                    }
                },
            }
        }
        out
    }

    /// A page in a column's order: keyset after the cursor, `LIMIT first + 1`.
    /// An `IN` on a column the sort's index leads with becomes one branch
    /// per value (each an index range in sort order), merged.
    fn sorted_sql(&self, sql: &mut Sql, select: &str, sort: SortSpec, direction: Direction) -> String {
        let (dir, after_op) = (direction.sql(), direction.after());
        let key = self.view.key;
        let columns = qualified(select);
        let split = self.conditions().find_map(|c| match c {
            Condition::In { column, values } if self.search.is_none() => Some((*column, values.clone())),
            _ => None,
        });
        let branches: Vec<Option<(&'static str, Value)>> = match &split {
            Some((column, values)) => values.iter().map(|v| Some((*column, v.clone()))).collect(),
            None => vec![None],
        };
        let limit = self.first + 1;
        let mut parts = Vec::new();
        for branch in &branches {
            let mut wheres = self.wheres(sql, branch.as_ref().map(|(c, v)| (*c, v)));
            self.matches(sql, &mut wheres, self.matching);
            if let Some(cursor) = &self.after {
                let mut values = Vec::new();
                cursor.key.values(&mut values);
                let k = sql.bind(values.remove(0));
                let id = sql.bind(cursor.id);
                wheres.push(format!("(t.{}, t.{key}) {after_op} ({k}, {id})", sort.column));
            }
            parts.push(format!(
                "SELECT {columns} FROM {} t{} ORDER BY t.{} {dir}, t.{key} {dir} LIMIT {limit}",
                self.view.table,
                where_clause(&wheres),
                sort.column
            ));
        }
        if parts.len() == 1 {
            return parts.remove(0);
        }
        let union: Vec<String> = parts.into_iter().map(|p| format!("SELECT * FROM ({p}) b")).collect();
        format!(
            "SELECT * FROM ({}) u ORDER BY u.{} {dir}, u.{key} {dir} LIMIT {limit}",
            union.join(" UNION ALL "),
            sort.column
        )
    }

    /// A search ranked by relevance among its first [`SEARCH_WINDOW`]
    /// matches in the default order; ties by that order.
    fn relevance_sql(&self, sql: &mut Sql, select: &str) -> String {
        let v = self.view;
        let (key, tie) = (v.key, v.default_sort.column);
        let dir = v.default_direction.sql();
        let columns = qualified(select);
        let Some(query) = &self.search else { return String::new() };
        let mut wheres = self.wheres(sql, None);
        if self.matching != Matching::Recent {
            self.matches(sql, &mut wheres, self.matching);
        }
        let mut prefix = String::new();
        let window = match sql.backend {
            DbBackend::Postgres => {
                let inner = format!(
                    "SELECT {columns}, t.search FROM {} t{} ORDER BY t.{tie} {dir}, t.{key} {dir} LIMIT {SEARCH_WINDOW}",
                    v.table,
                    where_clause(&wheres)
                );
                let q = sql.bind(query.to_tsquery());
                format!("SELECT w.*, ts_rank_cd(w.search, to_tsquery('simple', {q}))::float8 AS rank FROM ({inner}) w")
            }
            DbBackend::Sqlite if self.matching == Matching::Recent => {
                // Nothing narrows the list but the search (`page_rows`
                // chose this only then): the window and each match's rank
                // from FTS5 alone, then the view's rows of the window.
                let q = sql.bind(query.to_fts5());
                prefix = format!(
                    "WITH m AS MATERIALIZED (SELECT rowid AS rid, bm25({fts}) AS score FROM {fts} WHERE {fts} MATCH {q} \
                     ORDER BY rowid DESC LIMIT {SEARCH_WINDOW}) ",
                    fts = v.fts
                );
                format!("SELECT {columns}, -m.score AS rank FROM m JOIN {} t ON t.rowid = m.rid", v.table)
            }
            _ => {
                // The window's matches in the default order; the rank of
                // each from FTS5 (bm25: lower is better), read in one pass
                // over the matches between the window's least and greatest
                // rowid. Not one `bm25` subquery per row: each would run
                // the query again and recount every phrase's documents for
                // its IDF (a word in every order: the whole view, per row).
                let inner = format!(
                    "SELECT {columns}, t.rowid AS rid FROM {} t{} ORDER BY t.{tie} {dir}, t.{key} {dir} LIMIT {SEARCH_WINDOW}",
                    v.table,
                    where_clause(&wheres)
                );
                let q = sql.bind(query.to_fts5());
                prefix = format!(
                    "WITH w AS MATERIALIZED ({inner}), m AS MATERIALIZED (SELECT rowid AS rid, bm25({fts}) AS score \
                     FROM {fts} WHERE {fts} MATCH {q} AND rowid BETWEEN (SELECT min(rid) FROM w) AND (SELECT max(rid) FROM w)) ",
                    fts = v.fts
                );
                "SELECT w.*, -m.score AS rank FROM w JOIN m ON m.rid = w.rid".to_owned()
            }
        };
        let mut outer = Vec::new();
        if let Some(cursor) = &self.after {
            let mut values = Vec::new();
            cursor.key.values(&mut values);
            let (r, t) = (sql.bind(values.remove(0)), sql.bind(values.remove(0)));
            let id = sql.bind(cursor.id);
            outer.push(format!("(r.rank, r.{tie}, r.{key}) < ({r}, {t}, {id})"));
        }
        format!(
            "{prefix}SELECT * FROM ({window}) r{} ORDER BY r.rank DESC, r.{tie} {dir}, r.{key} {dir} LIMIT {}",
            where_clause(&outer),
            self.first + 1
        )
    }
}

/// Lists of several owners at once (`Customer.orders` under a page of
/// customers): each owner's page, by a window over the owner's rows.
impl ListQuery {
    fn partition_statement(&self, backend: DbBackend, select: &str, column: &str, owners: &[Uuid]) -> Statement {
        let mut sql = Sql::new(backend);
        let (sort, direction) = match self.order {
            Order::By(sort, direction) => (sort, direction),
            Order::Relevance => (self.view.default_sort, self.view.default_direction),
        };
        let (dir, key) = (direction.sql(), self.view.key);
        let mut wheres = self.wheres(&mut sql, None);
        let ids: Vec<String> = owners.iter().map(|id| sql.bind(*id)).collect();
        wheres.push(format!("t.{column} IN ({})", ids.join(", ")));
        if let Some(cursor) = &self.after {
            let mut values = Vec::new();
            cursor.key.values(&mut values);
            let k = sql.bind(values.remove(0));
            let id = sql.bind(cursor.id);
            wheres.push(format!("(t.{}, t.{key}) {} ({k}, {id})", sort.column, direction.after()));
        }
        let text = format!(
            "SELECT * FROM (SELECT {}, row_number() OVER (PARTITION BY t.{column} ORDER BY t.{} {dir}, t.{key} {dir}) AS rn \
             FROM {} t{}) p WHERE p.rn <= {} ORDER BY p.{column}, p.rn",
            qualified(select),
            sort.column,
            self.view.table,
            where_clause(&wheres),
            self.first + 1
        );
        Statement::from_sql_and_values(backend, text, sql.values)
    }

    fn partition_count_statement(&self, backend: DbBackend, column: &str, owners: &[Uuid]) -> Statement {
        let mut sql = Sql::new(backend);
        let mut wheres = self.wheres(&mut sql, None);
        let ids: Vec<String> = owners.iter().map(|id| sql.bind(*id)).collect();
        wheres.push(format!("t.{column} IN ({})", ids.join(", ")));
        let text = format!(
            "SELECT t.{column} AS k, count(*) AS n FROM {} t{} GROUP BY t.{column}",
            self.view.table,
            where_clause(&wheres)
        );
        Statement::from_sql_and_values(backend, text, sql.values)
    }
}

/// `a, b` as `t.a, t.b`.
fn qualified(select: &str) -> String {
    select.split(',').map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

fn where_clause(wheres: &[String]) -> String {
    if wheres.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", wheres.join(" AND "))
    }
}

/// SQL text and its values, with the store's numbered placeholders.
struct Sql {
    backend: DbBackend,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Self { backend, values: Vec::new() }
    }

    /// The placeholder for `value`, bound.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => format!("?{}", self.values.len()),
        }
    }
}
