//! Figure 2: the read payoff. The page "50 newest PLACED orders with
//! customer name and product titles", read four ways:
//!
//! - (a) the projected `order_summary` view through SeaORM,
//! - (b) the best join over the normalized write tables (50 ids from the
//!   status index first, then join customer, lines and products),
//! - (b′) the naive join (join and aggregate every PLACED order, then sort
//!   and limit), for reference,
//! - (c) the GraphQL `orders` query over HTTP with 16 keep-alive connections,
//!   kept answers on (the default; and right after it, the same beside 200
//!   `placeOrder`/s: [`crate::mixed`]),
//! - (c′) the same page from a second server over the same database with
//!   kept answers off (`--response-cache-entries 0`, `--role api`): every
//!   page computed, what a reader meets whenever the views have just moved.
//!
//! (a) and (b) through SeaORM are bound by the bench's own client (both near
//! the same rate), so on PostgreSQL the payoff is also measured at the
//! database alone: `pgbench -M prepared -c 8` runs (a)'s and (b)'s SQL, and
//! the figure reports pgbench's own CPU beside it.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
};
use uuid::Uuid;

use entity::read::order_summary;
use twofold::db::Db;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::{closed_loop, count};
use crate::progress;
use crate::report::Report;
use crate::stats::LoopResult;

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

pub async fn measure(
    db: &Db,
    database_url: &str,
    base_url: &str,
    scale: &Scale,
    out: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let orders = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    let placed = count(db, "SELECT COUNT(*) FROM customer_order WHERE status = 'PLACED'").await?;
    progress!("reading the 50 newest PLACED of {orders} orders ({placed} PLACED)");
    report.set_data_set(orders, placed);
    // Fresh planner statistics, as a database in service would have: without
    // them PostgreSQL may plan the joins over a freshly loaded table badly.
    db.conn.execute_unprepared("ANALYZE").await.context("ANALYZE before the reads")?;
    ensure_indexed(db, "the raw SQL page (pgbench)", VIEW_PAGE.trim_end_matches(';')).await?;
    let seaorm_page = view_query().build(db.backend()).to_string();
    ensure_indexed(db, "(a) the view via SeaORM", &seaorm_page).await?;
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

    if db.backend() == DbBackend::Postgres {
        match pgbench_payoff(database_url, scale.read_time).await {
            Ok((view, join)) => report.set_pgbench_payoff(view, join),
            Err(e) => progress!("pgbench payoff not measured: {e:#}"),
        }
    }

    let gql = Gql::new(base_url, HTTP_READERS)?;
    let orders = gql.orders_page().await.context("GraphQL orders page")?;
    let result = graphql_orders("graphql orders", &gql, scale.read_time).await;
    progress!("read c_graphql_orders ({HTTP_READERS} connections): {}", result.brief());
    report.set_read("c_graphql_orders", result, orders);

    let stem = if db.backend() == DbBackend::Postgres { "postgres" } else { "sqlite" };
    let computing = crate::server::Server::start_with(
        database_url,
        &out.join(format!("{stem}-reads-computed-server.log")),
        &["--response-cache-entries", "0", "--role", "api"],
    )
    .await
    .context("start the server with kept answers off")?;
    let gql = Gql::new(&computing.base_url, HTTP_READERS)?;
    let orders = gql.orders_page().await.context("GraphQL orders page, kept answers off")?;
    let result = graphql_orders("graphql orders (computed)", &gql, scale.read_time).await;
    computing.stop().await;
    progress!("read c_graphql_orders_computed ({HTTP_READERS} connections, kept answers off): {}", result.brief());
    report.set_read("c_graphql_orders_computed", result, orders);
    Ok(())
}

/// (c): the GraphQL `orders` page from [`HTTP_READERS`] workers sharing
/// `gql`'s keep-alive pool, in a closed loop for `duration` (also the
/// reader side of [`crate::mixed`]).
pub async fn graphql_orders(label: &str, gql: &Gql, duration: Duration) -> LoopResult {
    let gql = gql.clone();
    closed_loop(label, HTTP_READERS, duration, u64::MAX, move |_| {
        let gql = gql.clone();
        async move { gql.orders_page().await.map(drop) }
    })
    .await
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

/// (a)'s statement: the 50 newest PLACED orders of the view.
fn view_query() -> sea_orm::Select<order_summary::Entity> {
    order_summary::Entity::find()
        .filter(order_summary::Column::Status.eq("PLACED"))
        .order_by_desc(order_summary::Column::PlacedAt)
        .order_by_desc(order_summary::Column::OrderId)
        .limit(PAGE as u64)
}

/// (a) The projected view: one indexed range scan, no join.
async fn read_view(db: &Db) -> anyhow::Result<Vec<PageOrder>> {
    let rows = view_query().all(&db.conn).await?;
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

/// The view's page as a prepared statement for pgbench (the same rows (a)
/// reads, in the order the API's `orders(status:)` reads them, through the
/// same index).
const VIEW_PAGE: &str = "SELECT order_id, customer_name, lines FROM order_summary
WHERE status = 'PLACED' ORDER BY placed_at DESC, order_id DESC LIMIT 50;";

/// Fails unless `sql` reads its page through an index: no sort of the
/// view, no scan of it from end to end. The view's rows ordered by a
/// column no index serves (`placed_position`, once the search migration
/// had moved the status index to `placed_at`) made the raw SQL row a sort
/// of every PLACED order, 28/s, and the ratio beside it meaningless.
async fn ensure_indexed(db: &Db, label: &str, sql: &str) -> anyhow::Result<()> {
    let backend = db.backend();
    let explain = match backend {
        DbBackend::Postgres => format!("EXPLAIN {sql}"),
        _ => format!("EXPLAIN QUERY PLAN {sql}"),
    };
    let rows = db.conn.query_all_raw(Statement::from_string(backend, explain)).await.context("EXPLAIN the page")?;
    let plan: Vec<String> = rows
        .iter()
        .filter_map(|r| match backend {
            DbBackend::Postgres => r.try_get::<String>("", "QUERY PLAN").ok(),
            _ => r.try_get::<String>("", "detail").ok(),
        })
        .collect();
    let unserved = plan.iter().any(|line| {
        let line = line.trim_start().trim_start_matches("->").trim_start();
        line.starts_with("Sort ")
            || line.starts_with("Seq Scan on order_summary")
            || line.contains("TEMP B-TREE FOR ORDER BY")
            || (line.starts_with("SCAN order_summary") && !line.contains("USING"))
    });
    if unserved {
        bail!(
            "{label}: the page is not read through an index, so its figure would measure a sort:\n{}",
            plan.join("\n")
        );
    }
    Ok(())
}

/// One pgbench run: transactions/s, and pgbench's own CPU seconds per
/// 1,000 transactions (from `/usr/bin/time`, when present).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgbenchRun {
    pub tps: f64,
    pub client_cpu_per_1000: Option<f64>,
}

/// (a) and (b) at the database alone: `pgbench -M prepared -c 8 -j 2`.
async fn pgbench_payoff(database_url: &str, duration: std::time::Duration) -> anyhow::Result<(PgbenchRun, PgbenchRun)> {
    let dir = std::env::temp_dir().join(format!("twofold-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("create the pgbench script directory")?;
    let mut runs = Vec::new();
    for (name, sql) in [("view", VIEW_PAGE.to_owned()), ("best_join", format!("{BEST_JOIN};"))] {
        let script = dir.join(format!("{name}.sql"));
        // pgbench takes one statement per line unless it ends with `;`: join the lines.
        std::fs::write(&script, sql.replace('\n', " ") + "\n").context("write the pgbench script")?;
        let run = pgbench(database_url, &script, duration.as_secs().max(2))
            .await
            .with_context(|| format!("pgbench {name}"))?;
        progress!(
            "pgbench -M prepared -c {DB_READERS} {name}: {:.0} tps, client CPU {:?} s per 1,000",
            run.tps,
            run.client_cpu_per_1000
        );
        runs.push(run);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let join = runs.pop().context("no join run")?;
    let view = runs.pop().context("no view run")?;
    Ok((view, join))
}

async fn pgbench(database_url: &str, script: &std::path::Path, seconds: u64) -> anyhow::Result<PgbenchRun> {
    let timed = std::path::Path::new("/usr/bin/time").exists();
    let mut command = if timed {
        let mut c = tokio::process::Command::new("/usr/bin/time");
        c.args(["-f", "cpu %U %S", "pgbench"]);
        c
    } else {
        tokio::process::Command::new("pgbench")
    };
    let clients = DB_READERS.to_string();
    command
        .args(["-n", "-M", "prepared", "-c", &clients, "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(script)
        .arg(database_url);
    let output = command.output().await.context("run pgbench (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}): {}", output.status, stderr.trim());
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let transactions = stdout.lines().find_map(|l| {
        l.trim()
            .strip_prefix("number of transactions actually processed: ")?
            .split('/')
            .next()?
            .trim()
            .parse::<f64>()
            .ok()
    });
    let cpu = stderr.lines().find_map(|l| {
        let mut parts = l.trim().strip_prefix("cpu ")?.split_whitespace();
        Some(parts.next()?.parse::<f64>().ok()? + parts.next()?.parse::<f64>().ok()?)
    });
    let client_cpu_per_1000 = cpu.zip(transactions).filter(|(_, n)| *n > 0.0).map(|(cpu, n)| cpu / n * 1000.0);
    Ok(PgbenchRun { tps, client_cpu_per_1000 })
}
