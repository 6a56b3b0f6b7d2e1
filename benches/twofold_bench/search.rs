//! Search and filters (issue 35): `orders(search:)` for a two-word query
//! and a one-letter prefix, every filter + sort combination the lists offer
//! (what `src/query/list.rs` accepts: a sort with the filters its index
//! serves, see each view's `SortSpec::serves`), and `totalCount` under a
//! filter against the same page without it.
//!
//! The server is started afresh for this phase with kept answers (the
//! response cache) off, so every request is computed: a repeated query
//! would otherwise be answered from memory. On PostgreSQL the search is set
//! beside the SQL a PostGraphile user writes without the full-text plugin:
//! an `ILIKE '%…%'` filter on the joined customer name and product title
//! over the write tables, run by the bench's own pool (the SQL alone, so a
//! lower bound on what PostGraphile would take; the PostGraphile server
//! itself is not started here).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use twofold::db::Db;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::closed_loop;
use crate::progress;
use crate::report::{latency, per_s, times, Figure, Report};
use crate::server::Server;
use crate::stats::LoopResult;
use crate::workload::Catalog;

/// Concurrent clients of every loop of this phase.
const READERS: usize = 8;
/// The product words of the seeded titles (`load::seed_catalog`).
const WORDS: [&str; 6] = ["mug", "lamp", "chair", "desk", "pen", "book"];
/// One-letter prefixes that start a product word but not "customer"
/// (which every order holds).
const LETTERS: [&str; 5] = ["m", "l", "d", "p", "b"];

/// Every filter + sort combination the lists offer, as `(label, field and arguments)`.
/// `{customer}` is replaced by a customer's id.
const COMBINATIONS: [(&str, &str); 14] = [
    ("orders PLACED_AT DESC, no filter", "orders(first: 20)"),
    ("orders PLACED_AT DESC, status eq", "orders(first: 20, filter: {status: {eq: SHIPPED}})"),
    ("orders PLACED_AT ASC, status in", "orders(first: 20, filter: {status: {in: [CANCELLED, SHIPPED]}}, orderBy: [{field: PLACED_AT, direction: ASC}])"),
    ("orders PLACED_AT DESC, placedAt range", "orders(first: 20, filter: {placedAt: {gte: \"2000-01-01T00:00:00Z\"}})"),
    ("orders PLACED_AT DESC, status + placedAt", "orders(first: 20, filter: {status: {eq: PLACED}, placedAt: {gte: \"2000-01-01T00:00:00Z\"}})"),
    ("orders TOTAL_CENTS DESC, no filter", "orders(first: 20, orderBy: [{field: TOTAL_CENTS}])"),
    ("orders TOTAL_CENTS ASC, totalCents range", "orders(first: 20, filter: {totalCents: {gte: 5000, lt: 20000}}, orderBy: [{field: TOTAL_CENTS, direction: ASC}])"),
    ("orders customerId, TOTAL_CENTS + status", "orders(first: 20, filter: {customerId: {eq: \"{customer}\"}, status: {eq: PLACED}}, orderBy: [{field: TOTAL_CENTS}])"),
    ("customers REGISTERED_AT DESC, no filter", "customers(first: 20)"),
    ("customers LIFETIME_VALUE DESC, lifetimeValueCents range", "customers(first: 20, filter: {lifetimeValueCents: {gte: 1000}}, orderBy: [{field: LIFETIME_VALUE}])"),
    ("customers ORDERS_PLACED DESC, ordersPlaced range", "customers(first: 20, filter: {ordersPlaced: {gte: 1}}, orderBy: [{field: ORDERS_PLACED}])"),
    ("products ADDED_AT DESC, no filter", "products(first: 20)"),
    ("products PRICE ASC, priceCents range", "products(first: 20, filter: {priceCents: {gte: 500, lte: 5000}}, orderBy: [{field: PRICE, direction: ASC}])"),
    ("products UNITS_SOLD DESC, unitsSold range", "products(first: 20, filter: {unitsSold: {gte: 1}}, orderBy: [{field: UNITS_SOLD}])"),
];

/// The PostGraphile user's search: the newest 20 orders whose customer's
/// name and one of whose products' titles hold the two words (`$1`, `$2`).
const ILIKE_SEARCH: &str = "SELECT o.id, o.placed_at, c.name FROM customer_order o
JOIN customer c ON c.id = o.customer_id
WHERE c.name ILIKE $1
  AND EXISTS (SELECT 1 FROM order_line l JOIN product p ON p.id = l.product_id
              WHERE l.order_id = o.id AND p.title ILIKE $2)
ORDER BY o.placed_at DESC, o.id DESC LIMIT 20";

pub async fn measure(
    database_url: &str,
    db: &Db,
    out: &Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    if let Some(orders) = scale.search_orders {
        crate::rebuild::grow_orders(database_url, db, catalog, orders, scale.rebuild_timeout).await?;
    }
    let (store, orders, size) = crate::load::store_and_size(db).await?;
    if db.backend() == DbBackend::Postgres {
        // The views as autovacuum keeps them on a database in service (this
        // machine runs with autovacuum off, and the seeding leaves every
        // updated row's old version behind and no statistics): without
        // statistics PostgreSQL guesses how many rows a search or a status
        // matches, and a prefix search that matches 40% of the orders was
        // planned as a GIN scan of all of them (665 ms); without a vacuum no
        // page is all-visible, so a count cannot be an index-only scan
        // (60 ms against 5.5 ms), docs/performance.md. SQLite is left as the
        // service leaves it (it runs no ANALYZE).
        db.conn.execute_unprepared("VACUUM ANALYZE").await.context("VACUUM ANALYZE before the search phase")?;
    }
    let server = Server::start_with(
        database_url,
        &out.join(format!("{}-search-server.log", store.to_lowercase())),
        &["--response-cache-entries", "0"],
    )
    .await
    .context("start the server for the search phase")?;
    let gql = Gql::new(&server.base_url, READERS)?;
    let customers = Arc::new(catalog.customers.iter().map(|c| (c.name.clone(), c.id)).collect::<Vec<_>>());

    // Two words: a customer's number (its name is "Customer N") and a product word.
    let two_words = {
        let customers = customers.clone();
        move |seq: u64| {
            let (name, _) = &customers[seq as usize % customers.len()];
            let number = name.rsplit(' ').next().unwrap_or("1").to_owned();
            (number, WORDS[(seq / 7) as usize % WORDS.len()].to_owned())
        }
    };
    let search_query = "query($q: String!) { orders(search: $q, first: 20) { edges { node { id customerName } } } }";
    let two = {
        let two_words = two_words.clone();
        search_loop("search two words", &gql, scale.read_time, search_query, move |seq| {
            let (number, word) = two_words(seq);
            format!("customer {number} {word}")
        })
        .await?
    };
    progress!("search two words ({size}): {}", two.brief());
    report.add_wire(search_figure("search, two words (customer N + product word)", &two, &size, store));

    let prefix = search_loop("search prefix", &gql, scale.read_time, search_query, |seq| {
        format!("{}*", LETTERS[seq as usize % LETTERS.len()])
    })
    .await?;
    progress!("search one-letter prefix ({size}): {}", prefix.brief());
    report.add_wire(search_figure("search, one-letter prefix (`m*`, `l*`, …)", &prefix, &size, store));

    if db.backend() == DbBackend::Postgres {
        let ilike = ilike_loop(db, scale.read_time, two_words).await?;
        progress!("ILIKE join, two words ({size}): {}", ilike.brief());
        let (ours, theirs) = (two.summary().p99_ms, ilike.summary().p99_ms);
        let ratio = (ours > 0.0).then(|| theirs / ours);
        report.add_wire(
            Figure::new(
                format!("search vs PostGraphile-style `ILIKE '%…%'` join (SQL alone), p99 ({size})"),
                format!("{ours:.2} ms"),
            )
            .num(ours)
            .baseline(format!("ILIKE join {}", latency(&ilike.summary())), Some(theirs))
            .ratio(ratio, times)
            .target("≥ 10× faster at 1M orders", (orders >= 1_000_000).then(|| ratio.is_some_and(|r| r >= 10.0))),
        );
    }

    for (label, field) in COMBINATIONS {
        let customer = catalog.customers[0].id.to_string();
        let query = format!("query {{ {} {{ edges {{ node {{ id }} }} }} }}", field.replace("{customer}", &customer));
        let result = query_loop(label, &gql, scale.read_time, query).await?;
        progress!("page {label} ({size}): {}", result.brief());
        let p99 = result.summary().p99_ms;
        report.add_wire(
            Figure::new(format!("page: {label} ({size})"), latency(&result.summary()))
                .num(p99)
                .baseline(per_s(result.per_second()), Some(result.per_second()))
                .target("p99 < 10 ms at 1M orders", (orders >= 1_000_000).then_some(p99 < 10.0)),
        );
    }

    let filter = "filter: {status: {eq: SHIPPED}}, first: 20";
    let with = query_loop(
        "totalCount",
        &gql,
        scale.read_time,
        format!("query {{ orders({filter}) {{ totalCount edges {{ node {{ id }} }} }} }}"),
    )
    .await?;
    let without = query_loop(
        "no totalCount",
        &gql,
        scale.read_time,
        format!("query {{ orders({filter}) {{ edges {{ node {{ id }} }} }} }}"),
    )
    .await?;
    progress!("totalCount under status = SHIPPED: {} (without: {})", with.brief(), without.brief());
    let (w, wo) = (with.summary().p99_ms, without.summary().p99_ms);
    report.add_wire(
        Figure::new(format!("page with `totalCount`, status = SHIPPED, p99 ({size})"), latency(&with.summary()))
            .num(w)
            .baseline(format!("without: {}", latency(&without.summary())), Some(wo))
            .ratio((wo > 0.0).then(|| w / wo), times),
    );
    server.stop().await;
    Ok(())
}

fn search_figure(what: &str, result: &LoopResult, size: &str, store: &str) -> Figure {
    let summary = result.summary();
    let (limit, target) =
        if store == "PostgreSQL" { (20.0, "p99 < 20 ms at 1M orders") } else { (30.0, "p99 < 30 ms at 1M orders") };
    let at_size = size.split(", ").nth(1).and_then(|n| n.split(' ').next()?.parse::<u64>().ok()).unwrap_or(0);
    Figure::new(format!("{what} ({size})"), latency(&summary))
        .num(summary.p99_ms)
        .baseline(per_s(result.per_second()), Some(result.per_second()))
        .target(target, (at_size >= 1_000_000).then_some(summary.p99_ms < limit))
}

/// `query` with `$q` from `q(seq)`, after one checked request.
async fn search_loop(
    label: &str,
    gql: &Gql,
    duration: Duration,
    query: &'static str,
    q: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<LoopResult> {
    let first = gql.execute(query, json!({ "q": q(0) })).await.with_context(|| format!("{label}: {}", q(0)))?;
    if first["orders"]["edges"].as_array().is_none_or(Vec::is_empty) {
        bail!("{label}: '{}' found no order", q(0));
    }
    let gql = gql.clone();
    let q = Arc::new(q);
    let result = closed_loop(label, READERS, duration, u64::MAX, move |seq| {
        let (gql, q) = (gql.clone(), q.clone());
        async move { gql.execute(query, json!({ "q": q(seq) })).await.map(drop) }
    })
    .await;
    checked(label, result)
}

/// The same document in a closed loop, after one checked request.
async fn query_loop(label: &str, gql: &Gql, duration: Duration, query: String) -> anyhow::Result<LoopResult> {
    gql.execute(&query, json!({})).await.with_context(|| format!("{label}: {query}"))?;
    let (gql, query) = (gql.clone(), Arc::new(query));
    let result = closed_loop(label, READERS, duration, u64::MAX, move |_| {
        let (gql, query) = (gql.clone(), query.clone());
        async move { gql.execute(&query, json!({})).await.map(drop) }
    })
    .await;
    checked(label, result)
}

async fn ilike_loop(
    db: &Db,
    duration: Duration,
    words: impl Fn(u64) -> (String, String) + Send + Sync + 'static,
) -> anyhow::Result<LoopResult> {
    let db = Arc::new(db.clone());
    let words = Arc::new(words);
    let result = closed_loop("ILIKE join", READERS, duration, u64::MAX, move |seq| {
        let (db, words) = (db.clone(), words.clone());
        async move {
            let (number, word) = words(seq);
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                ILIKE_SEARCH,
                [format!("%customer {number}%").into(), format!("%{word}%").into()],
            );
            db.conn.query_all_raw(statement).await.map(drop).map_err(anyhow::Error::from)
        }
    })
    .await;
    checked("ILIKE join", result)
}

fn checked(label: &str, result: LoopResult) -> anyhow::Result<LoopResult> {
    if result.ok() == 0 {
        bail!("{label}: no request succeeded ({})", result.first_error.unwrap_or_default());
    }
    Ok(result)
}
