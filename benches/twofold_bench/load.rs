//! The load generator's closed loop, and seeding through the real command
//! path (GraphQL mutations over HTTP, concurrently).
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::progress;
use crate::report::Report;
use crate::server::Server;
use crate::stats::LoopResult;
use crate::workload::{Catalog, Customer, Product};

/// Runs `op(seq)` from `concurrency` workers, each starting its next
/// operation as soon as the previous one finished, until `max_ops`
/// operations were started or `duration` has passed. `seq` numbers the
/// operations 0, 1, 2, … across workers. Long loops print progress.
pub async fn closed_loop<F, Fut>(label: &str, concurrency: usize, duration: Duration, max_ops: u64, op: F) -> LoopResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let reporter = spawn_progress_reporter(label.to_owned(), next.clone(), max_ops);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut part = LoopResult::default();
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= max_ops {
                        break;
                    }
                    let t0 = Instant::now();
                    match op(seq).await {
                        Ok(()) => part.latencies.push(t0.elapsed()),
                        Err(e) => {
                            part.errors += 1;
                            part.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                part
            })
        })
        .collect();
    let mut result = LoopResult::default();
    for worker in workers {
        match worker.await {
            Ok(part) => {
                result.latencies.extend(part.latencies);
                result.errors += part.errors;
                if result.first_error.is_none() {
                    result.first_error = part.first_error;
                }
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| format!("worker panicked: {e}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    reporter.store(true, Ordering::Relaxed);
    result
}

/// Prints `label: N/max` every 15 s until the returned flag is set.
fn spawn_progress_reporter(label: String, done_so_far: Arc<AtomicU64>, max_ops: u64) -> Arc<AtomicBool> {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let n = done_so_far.load(Ordering::Relaxed).min(max_ops);
            match max_ops {
                u64::MAX => progress!("  {label}: {n} so far"),
                _ => progress!("  {label}: {n}/{max_ops}"),
            }
        }
    });
    finished
}

/// How many write-side requests run at once while seeding.
const SEED_CONCURRENCY: usize = 32;

/// Registers the customers and adds the products, concurrently.
pub async fn seed_catalog(gql: &Gql, scale: &Scale) -> anyhow::Result<Catalog> {
    let started = Instant::now();
    let customers: Vec<Customer> = stream::iter(0..scale.customers)
        .map(|i| async move {
            let name = format!("Customer {i}");
            let email = format!("customer{i}@bench.example");
            let id = gql.register_customer(&name, &email).await.with_context(|| format!("register {email}"))?;
            anyhow::Ok(Customer { id, name, email })
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let products: Vec<Product> = stream::iter(0..scale.products)
        .map(|i| async move {
            let sku = format!("SKU-{i:05}");
            let title = format!("Product {i} ({})", ["mug", "lamp", "chair", "desk", "pen", "book"][i % 6]);
            let price_cents = 100 + (i as i64 * 37) % 9_900;
            let id = gql.add_product(&sku, &title, price_cents).await.with_context(|| format!("add {sku}"))?;
            anyhow::Ok(Product { id, sku, title, price_cents })
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    progress!(
        "seeded {} customers and {} products in {:.1} s",
        customers.len(),
        products.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Catalog { customers, products })
}

/// Places orders over HTTP until the database holds `scale.orders`, then
/// cancels 20% and ships 20% of all orders (those of the throughput phases
/// included), and waits for the projections to catch up. The server's CPU
/// time over all of it is one sample of the CPU cost per 1,000 commands.
pub async fn seed_orders(
    gql: &Gql,
    db: &twofold::db::Db,
    server: &Server,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let existing = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    let wanted = scale.orders.saturating_sub(existing);
    progress!("seeding {wanted} orders over HTTP (concurrency {SEED_CONCURRENCY}; {existing} exist)");
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();

    let placed = {
        let (gql, catalog) = (gql.clone(), Arc::new(catalog.clone()));
        closed_loop("orders placed", SEED_CONCURRENCY, scale.seed_time, wanted, move |seq| {
            let (gql, catalog) = (gql.clone(), catalog.clone());
            async move {
                let order = catalog.random_order(0x5EED_0000_0000 + seq);
                gql.place_order(&catalog, &order).await.map(drop)
            }
        })
        .await
    };
    progress!("placed: {}", placed.brief());

    let changes = changes_for(&placed_order_ids(db).await?);
    let changed = {
        let (gql, changes) = (gql.clone(), Arc::new(changes));
        let n = changes.len() as u64;
        closed_loop("cancels/ships", SEED_CONCURRENCY, scale.seed_time, n, move |seq| {
            let (gql, changes) = (gql.clone(), changes.clone());
            async move {
                match changes[seq as usize] {
                    Change::Cancel(id) => gql.cancel_order(id).await.map(drop),
                    Change::Ship(id) => gql.ship_order(id).await.map(drop),
                }
            }
        })
        .await
    };
    progress!("cancelled/shipped: {}", changed.brief());

    let caught_up = wait_caught_up(gql, scale.catch_up_timeout).await?;
    let commands = (placed.ok() + changed.ok()) as u64;
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    progress!(
        "seeding done in {:.1} s ({commands} commands; projections caught up {:.1} s after the last one)",
        started.elapsed().as_secs_f64(),
        caught_up.as_secs_f64()
    );
    report.set_seeding(&placed, &changed);
    if let Some(cpu) = cpu {
        report.add_cpu_window(cpu, commands);
    }
    let total = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    if total < scale.orders {
        progress!(
            "warning: only {total} orders were seeded (wanted {}); the figures below are for {total}",
            scale.orders
        );
    }
    Ok(())
}

enum Change {
    Cancel(Uuid),
    Ship(Uuid),
}

/// Every 5th order cancelled, the next one shipped: 60% stay PLACED.
fn changes_for(ids: &[Uuid]) -> Vec<Change> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| match i % 5 {
            0 => Some(Change::Cancel(*id)),
            1 => Some(Change::Ship(*id)),
            _ => None,
        })
        .collect()
}

/// Every PLACED order, oldest first.
async fn placed_order_ids(db: &twofold::db::Db) -> anyhow::Result<Vec<Uuid>> {
    let sql = "SELECT id FROM customer_order WHERE status = 'PLACED' ORDER BY placed_at, id";
    let rows = db
        .conn
        .query_all_raw(Statement::from_string(db.backend(), sql.to_owned()))
        .await
        .context("list the placed orders")?;
    rows.iter().map(|row| row.try_get_by_index::<Uuid>(0).context("read an order id")).collect()
}

/// Polls the projections until none lags; fails if they do not catch up in
/// time. Returns how long it waited.
pub async fn wait_caught_up(gql: &Gql, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let (lag, error) = gql.projection_lag().await?;
        if lag == 0 {
            return Ok(started.elapsed());
        }
        if let (Some(error), false) = (&error, warned) {
            progress!("warning: a projection reports an error: {error}");
            warned = true;
        }
        if started.elapsed() > timeout {
            bail!("projections still {lag} events behind after {timeout:?} (last error: {error:?})");
        }
        // The lag is another process's, read over HTTP: look again shortly (bounded by `timeout`).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A single `COUNT(*)`-style number.
pub async fn count(db: &twofold::db::Db, sql: &str) -> anyhow::Result<u64> {
    let row = db
        .conn
        .query_one_raw(Statement::from_string(db.backend(), sql.to_owned()))
        .await
        .with_context(|| format!("run {sql}"))?
        .with_context(|| format!("no row from {sql}"))?;
    let n: i64 = row.try_get_by_index(0).with_context(|| format!("read the result of {sql}"))?;
    Ok(n.max(0) as u64)
}

/// The store's name, its orders, and what a row measured on it says of its size
/// (`PostgreSQL, 100000 orders, kept answers off`), for the phases that
/// run their own server with kept answers off.
pub async fn store_and_size(db: &twofold::db::Db) -> anyhow::Result<(&'static str, u64, String)> {
    let store = match db.backend() {
        sea_orm::DbBackend::Postgres => "PostgreSQL",
        _ => "SQLite",
    };
    let orders = count(db, "SELECT COUNT(*) FROM customer_order").await?;
    Ok((store, orders, format!("{store}, {orders} orders, kept answers off")))
}
