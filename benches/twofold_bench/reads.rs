//! Figure 2: the read payoff. The page "50 newest PLACED orders with
//! customer name and product titles", read four ways:
//!
//! - (a) the projected `order_summary` view through SeaORM,
//! - (b) the best join over the normalized write tables (50 ids from the
//!   status index first, then join customer, lines and products),
//! - (b′) the naive join (join and aggregate every PLACED order, then sort
//!   and limit), for reference,
//! - (c) the GraphQL `orders` query over HTTP with 16 keep-alive connections.
use std::sync::Arc;

use anyhow::{bail, Context};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement};
use uuid::Uuid;

use entity::read::order_summary;
use twofold::db::Db;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::{closed_loop, count};
use crate::progress;
use crate::report::Report;

/// Concurrent readers for the direct database variants (a), (b), (b′).
pub const DB_READERS: usize = 8;
/// Keep-alive connections for the GraphQL variant (c).
pub const HTTP_READERS: usize = 16;
const PAGE: usize = 50;

const BEST_JOIN: &str = "WITH newest AS (
    SELECT id, customer_id, placed_at FROM customer_order
    WHERE status = 'PLACED'
    ORDER BY placed_at DESC, id DESC
    LIMIT 50
)
SELECT n.id AS order_id, c.name AS customer_name, p.title AS title, l.quantity AS quantity
FROM newest n
JOIN customer c ON c.id = n.customer_id
JOIN order_line l ON l.order_id = n.id
JOIN product p ON p.id = l.product_id
ORDER BY n.placed_at DESC, n.id DESC, l.line_no";

const NAIVE_JOIN_POSTGRES: &str = "SELECT o.id AS order_id, c.name AS customer_name,
       json_agg(json_build_object('title', p.title, 'quantity', l.quantity) ORDER BY l.line_no)::text AS lines
FROM customer_order o
JOIN customer c ON c.id = o.customer_id
JOIN order_line l ON l.order_id = o.id
JOIN product p ON p.id = l.product_id
WHERE o.status = 'PLACED'
GROUP BY o.id, c.name
ORDER BY o.placed_at DESC, o.id DESC
LIMIT 50";

const NAIVE_JOIN_SQLITE: &str = "SELECT o.id AS order_id, c.name AS customer_name,
       json_group_array(json_object('title', p.title, 'quantity', l.quantity)) AS lines
FROM customer_order o
JOIN customer c ON c.id = o.customer_id
JOIN order_line l ON l.order_id = o.id
JOIN product p ON p.id = l.product_id
WHERE o.status = 'PLACED'
GROUP BY o.id, c.name
ORDER BY o.placed_at DESC, o.id DESC
LIMIT 50";

/// One order of the page, however it was read (built so every variant
/// does the same client-side work: materialize names, titles, quantities).
#[derive(Debug)]
#[allow(dead_code)] // Fields are read only by Debug; building them is the point.
struct PageOrder {
    id: Uuid,
    customer_name: String,
    lines: Vec<(String, i64)>,
}

/// The variants read straight from the database.
#[derive(Debug, Clone, Copy)]
enum DbVariant {
    View,
    BestJoin,
    NaiveJoin,
}

impl DbVariant {
    const ALL: [Self; 3] = [Self::View, Self::BestJoin, Self::NaiveJoin];

    fn name(self) -> &'static str {
        match self {
            Self::View => "a_order_summary_seaorm",
            Self::BestJoin => "b_best_join",
            Self::NaiveJoin => "b_naive_join",
        }
    }

    async fn read(self, db: &Db) -> anyhow::Result<Vec<PageOrder>> {
        match self {
            Self::View => read_view(db).await,
            Self::BestJoin => read_best_join(db).await,
            Self::NaiveJoin => read_naive_join(db).await,
        }
    }
}

pub async fn measure(db: &Db, base_url: &str, scale: &Scale, report: &mut Report) -> anyhow::Result<()> {
    let orders = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    let placed = count(db, "SELECT COUNT(*) FROM customer_order WHERE status = 'PLACED'").await?;
    progress!("reading the 50 newest PLACED of {orders} orders ({placed} PLACED)");
    report.set_data_set(orders, placed);
    // Fresh planner statistics, as a database in service would have: without
    // them PostgreSQL may plan the joins over a freshly loaded table badly.
    db.conn.execute_unprepared("ANALYZE").await.context("ANALYZE before the reads")?;
    for variant in DbVariant::ALL {
        let name = variant.name();
        let page = variant.read(db).await.with_context(|| format!("read variant {name}"))?;
        check_page(name, &page)?;
        let db = Arc::new(db.clone());
        let result = closed_loop(name, DB_READERS, scale.read_time, u64::MAX, move |_| {
            let db = db.clone();
            async move { variant.read(&db).await.map(drop) }
        })
        .await;
        progress!("read {name}: {}", result.brief());
        report.set_read(name, result, page.len());
    }

    let gql = Gql::new(base_url, HTTP_READERS)?;
    let orders = gql.orders_page().await.context("GraphQL orders page")?;
    let result = closed_loop("graphql orders", HTTP_READERS, scale.read_time, u64::MAX, move |_| {
        let gql = gql.clone();
        async move { gql.orders_page().await.map(drop) }
    })
    .await;
    progress!("read c_graphql_orders ({HTTP_READERS} connections): {}", result.brief());
    report.set_read("c_graphql_orders", result, orders);
    Ok(())
}

fn check_page(name: &str, page: &[PageOrder]) -> anyhow::Result<()> {
    if page.is_empty() {
        bail!("read variant {name} returned no orders");
    }
    if page.len() < PAGE {
        progress!("warning: read variant {name} returned {} orders (fewer than {PAGE} PLACED)", page.len());
    }
    Ok(())
}

/// (a) The projected view: one indexed range scan, no join.
async fn read_view(db: &Db) -> anyhow::Result<Vec<PageOrder>> {
    let rows = order_summary::Entity::find()
        .filter(order_summary::Column::Status.eq("PLACED"))
        .order_by_desc(order_summary::Column::PlacedPosition)
        .limit(PAGE as u64)
        .all(&db.conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(PageOrder { id: row.order_id, lines: parse_lines(&row.lines)?, customer_name: row.customer_name })
        })
        .collect()
}

/// `[{title, quantity, …}]` stored as JSON text → `(title, quantity)` pairs.
fn parse_lines(json_text: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let lines: serde_json::Value = serde_json::from_str(json_text).context("order lines are not JSON")?;
    let lines = lines.as_array().context("order lines are not a JSON array")?;
    Ok(lines
        .iter()
        .map(|l| (l["title"].as_str().unwrap_or_default().to_owned(), l["quantity"].as_i64().unwrap_or(0)))
        .collect())
}

/// (b) The best join: rows come back one per line, grouped here.
async fn read_best_join(db: &Db) -> anyhow::Result<Vec<PageOrder>> {
    let rows = db.conn.query_all_raw(Statement::from_string(db.backend(), BEST_JOIN.to_owned())).await?;
    let mut page: Vec<PageOrder> = Vec::with_capacity(PAGE);
    for row in rows {
        let id: Uuid = row.try_get("", "order_id")?;
        let title: String = row.try_get("", "title")?;
        let quantity: i32 = row.try_get("", "quantity")?;
        match page.last_mut() {
            Some(order) if order.id == id => order.lines.push((title, i64::from(quantity))),
            _ => page.push(PageOrder {
                id,
                customer_name: row.try_get("", "customer_name")?,
                lines: vec![(title, i64::from(quantity))],
            }),
        }
    }
    Ok(page)
}

/// (b′) The naive join: aggregates every PLACED order before the LIMIT.
async fn read_naive_join(db: &Db) -> anyhow::Result<Vec<PageOrder>> {
    let sql = match db.backend() {
        DbBackend::Postgres => NAIVE_JOIN_POSTGRES,
        _ => NAIVE_JOIN_SQLITE,
    };
    let rows = db.conn.query_all_raw(Statement::from_string(db.backend(), sql.to_owned())).await?;
    rows.into_iter()
        .map(|row| {
            let lines: String = row.try_get("", "lines")?;
            Ok(PageOrder {
                id: row.try_get("", "order_id")?,
                customer_name: row.try_get("", "customer_name")?,
                lines: parse_lines(&lines)?,
            })
        })
        .collect()
}
