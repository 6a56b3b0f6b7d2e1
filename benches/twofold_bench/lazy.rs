//! Lazy views and reads at the token (issue 36).
//!
//! Two servers in turn over the seeded data, both with kept answers (the
//! response cache) off so that every read is computed:
//!
//! 1. every view eager (the default): the projectors' busy share at 200
//!    `placeOrder`/s (from `/metrics`, as the lag phase reads it); a read at
//!    the token right after `placeOrder` (`order(id:, consistentWith:)`,
//!    which folds when the view is behind) against a list field that must
//!    wait for its view (`orders(filter: {customerId}, consistentWith:)`),
//!    the read alone timed, with how each was served (`extensions.served`);
//!    and the stored `orderActivity` read;
//! 2. `--projection-mode order_activity=lazy`: the same busy share, and the
//!    lazy `orderActivity` read, which folds the order's events since its
//!    snapshot (the seeded orders hold 1–3 events each);
//! 3. the lazy read against the log's tail since the snapshot, 0, 10, 100
//!    and 1,000 events, with every snapshot trigger out of reach (see
//!    [`tail_reads`]).
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};
use uuid::Uuid;

use twofold::db::Db;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::closed_loop;
use crate::pace::{place_orders, Schedule};
use crate::progress;
use crate::report::{latency, percent, times, Figure, Report};
use crate::scrape::ProjectorCounters;
use crate::server::Server;
use crate::stats::{LoopResult, Summary};
use crate::workload::Catalog;

const READERS: usize = 8;
/// Writers of the token loops: each places an order, then reads it.
const WRITERS: usize = 4;
const RATE: u64 = 200;
const PROJECTIONS: [&str; 5] = ["order_summary", "customer_view", "product_catalog", "daily_sales", "order_activity"];

const ORDER_AT: &str =
    "query($id: ID!, $t: Token!) { order(id: $id, consistentWith: $t) { id status totalCents lines { title quantity } } }";
const LIST_AT: &str = "query($c: ID!, $t: Token!) { orders(filter: {customerId: {eq: $c}}, first: 1, consistentWith: $t) { edges { node { id status totalCents lines { title quantity } } } } }";
const ACTIVITY: &str = "query($id: ID!) { orderActivity(orderId: $id) { version eventType description } }";

pub async fn measure(
    database_url: &str,
    db: &Db,
    out: &Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (store, _, size) = crate::load::store_and_size(db).await?;
    let ids = Arc::new(order_ids(db).await?);
    let catalog = Arc::new(catalog.clone());
    let stem = store.to_lowercase();

    // 1. Eager.
    let server = Server::start_with(
        database_url,
        &out.join(format!("{stem}-lazy-eager-server.log")),
        &["--response-cache-entries", "0"],
    )
    .await
    .context("start the eager server")?;
    let gql = Gql::new(&server.base_url, 16)?;
    let eager_busy = busy_share(&gql, &server.base_url, &catalog, scale, 0x36_0001).await?;
    // How often a read at the token found a writer below its token still
    // open and looked again (each look a pause of 1, 2, 4 … ms).
    let settle_waits = || crate::scrape::counter(&server.base_url, "twofold_fold_settle_waits_total");
    let waits_before = settle_waits().await?;
    let (at_token, at_token_served) = token_reads(&gql, &server.base_url, &catalog, scale.read_time, false).await?;
    let settle_per_read = (settle_waits().await? - waits_before) / at_token.len().max(1) as f64;
    let (list_wait, _) = token_reads(&gql, &server.base_url, &catalog, scale.read_time, true).await?;
    progress!(
        "order(id:) at the token: {} {:?}; {settle_per_read:.2} settle waits per read",
        Summary::of(&at_token).brief(),
        at_token_served
    );
    progress!("orders(filter: customerId) at the token: {}", Summary::of(&list_wait).brief());
    let stored = activity_loop(&gql, &ids, scale.read_time).await?;
    progress!("orderActivity eager (stored): {}", stored.brief());
    server.stop().await;

    // 2. order_activity lazy.
    let server = Server::start_with(
        database_url,
        &out.join(format!("{stem}-lazy-server.log")),
        &["--response-cache-entries", "0", "--projection-mode", "order_activity=lazy"],
    )
    .await
    .context("start the server with order_activity lazy")?;
    let gql = Gql::new(&server.base_url, 16)?;
    let lazy_busy = busy_share(&gql, &server.base_url, &catalog, scale, 0x36_0002).await?;
    let lazy = activity_loop(&gql, &ids, scale.read_time).await?;
    progress!("orderActivity lazy: {}", lazy.brief());
    server.stop().await;

    // 3. order_activity lazy, against the log's tail since its snapshot.
    let tails = tail_reads(database_url, db, out, &catalog, &ids, scale).await?;

    let (l, s) = (lazy.summary(), stored.summary());
    report.add_wire(
        Figure::new(format!("lazy `orderActivity` read, tail 1–3 events since snapshot ({size})"), latency(&l))
            .num(l.p99_ms)
            .baseline(format!("eager (stored row): {}", latency(&s)), Some(s.p99_ms))
            .ratio((s.p99_ms > 0.0).then(|| l.p99_ms / s.p99_ms), times)
            .target(
                "p99 < 5 ms with ≤ 100 events of tail (PostgreSQL)",
                (store == "PostgreSQL").then_some(l.p99_ms < 5.0),
            ),
    );
    for (tail, reads) in &tails {
        let r = reads.summary();
        let whose = if *tail == 0 { "orders placed before it" } else { "orders placed since it (1 own event each)" };
        report.add_wire(
            Figure::new(
                format!(
                    "lazy `orderActivity` read, {tail} events in the log since the snapshot, reading {whose} ({size})"
                ),
                latency(&r),
            )
            .num(r.p99_ms)
            .baseline(format!("eager (stored row): {}", latency(&s)), Some(s.p99_ms))
            .ratio((s.p99_ms > 0.0).then(|| r.p99_ms / s.p99_ms), times)
            .target(
                "p99 < 5 ms with ≤ 100 events of tail (PostgreSQL)",
                (store == "PostgreSQL" && *tail <= 100).then_some(r.p99_ms < 5.0),
            ),
        );
    }
    let ((lazy_s, lazy_share), (eager_s, eager_share)) = (lazy_busy, eager_busy);
    report.add_wire(
        Figure::new(
            format!("projector busy per 1,000 orders at {RATE} placeOrder/s, `order_activity` lazy ({size})"),
            format!("{lazy_s:.2} s ({} of the run)", percent(lazy_share)),
        )
        .num(lazy_s)
        .baseline(format!("all eager: {eager_s:.2} s ({} of the run)", percent(eager_share)), Some(eager_s))
        .ratio((eager_s > 0.0).then(|| lazy_s / eager_s), times),
    );
    let (t, w) = (Summary::of(&at_token), Summary::of(&list_wait));
    let ratio = (t.p99_ms > 0.0).then(|| w.p99_ms / t.p99_ms);
    report.add_wire(
        Figure::new(
            format!(
                "`order(id:)` at the token right after placeOrder ({size}; served {}; {settle_per_read:.2} settle waits per read)",
                served_text(&at_token_served)
            ),
            latency(&t),
        )
        .num(t.p99_ms)
        .baseline(format!("list `orders(customerId)` waiting at the token: {} ", latency(&w)), Some(w.p99_ms))
        .ratio(ratio, |r| format!("{r:.1}× lower p99"))
        .target("≥ 3× lower p99", Some(ratio.is_some_and(|r| r >= 3.0))),
    );
    Ok(())
}

/// The log tails the lazy read is measured against: events appended since
/// the view's snapshot.
const TAILS: [u64; 4] = [0, 10, 100, 1_000];

/// The lazy `orderActivity` read against the log's tail since the view's
/// snapshot ([`TAILS`]). A first server snapshots the view to the head of
/// the log (every trigger at its smallest) and stops; a second one, with
/// every trigger out of reach, places orders until the tail holds each
/// size and reads at each: at 0 the orders placed before the snapshot
/// (nothing to fold), after that the orders placed since it, whose one
/// event lies in the tail. An order's stream holds at most three events
/// (placed, then cancelled or shipped), so the tail a single key can fold
/// is short by the domain's nature; what grows here is the log's tail, and
/// the stream index is what keeps the read from paying for it.
async fn tail_reads(
    database_url: &str,
    db: &Db,
    out: &Path,
    catalog: &Arc<Catalog>,
    stored_ids: &Arc<Vec<Uuid>>,
    scale: &Scale,
) -> anyhow::Result<Vec<(u64, LoopResult)>> {
    let stem = crate::load::store_and_size(db).await?.0.to_lowercase();
    let server = Server::start_with(
        database_url,
        &out.join(format!("{stem}-lazy-snapshot-server.log")),
        &["--projection-mode", "order_activity=lazy", "--lazy-snapshot-events", "1", "--lazy-snapshot-ms", "10"],
    )
    .await
    .context("start the server that snapshots order_activity")?;
    let deadline = Instant::now() + scale.catch_up_timeout;
    loop {
        let tail = tail_of(db).await?;
        if tail == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("order_activity's snapshot still {tail} events behind the log after {:?}", scale.catch_up_timeout);
        }
        // Another process's snapshotter, seen through the database: look again shortly (bounded above).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;

    let never = u32::MAX.to_string();
    let server = Server::start_with(
        database_url,
        &out.join(format!("{stem}-lazy-tail-server.log")),
        &[
            "--response-cache-entries",
            "0",
            "--projection-mode",
            "order_activity=lazy",
            "--lazy-snapshot-events",
            &never,
            "--lazy-snapshot-ms",
            &never,
            "--lazy-hot-events",
            &never,
            "--lazy-hot-ms",
            &never,
        ],
    )
    .await
    .context("start the server with every snapshot trigger out of reach")?;
    let gql = Gql::new(&server.base_url, 16)?;
    let mut results = Vec::new();
    let mut placed: Vec<Uuid> = Vec::new();
    for tail in TAILS {
        let before = tail_of(db).await?;
        let more =
            tail.checked_sub(before).with_context(|| format!("the tail already holds {before} events, past {tail}"))?;
        let salt = 0x36_7000_0000 + placed.len() as u64;
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (g, c, i) = (gql.clone(), catalog.clone(), ids.clone());
        let writes = closed_loop("placeOrder (tail)", 8, scale.catch_up_timeout, more, move |seq| {
            let (g, c, i) = (g.clone(), c.clone(), i.clone());
            async move {
                let order = c.random_order(salt + seq);
                g.place_order(&c, &order).await?;
                i.lock().unwrap_or_else(|p| p.into_inner()).push(order.order_id);
                Ok(())
            }
        })
        .await;
        if writes.errors > 0 {
            bail!("placeOrder for the tail: {}", writes.first_error.unwrap_or_default());
        }
        placed.append(&mut ids.lock().unwrap_or_else(|p| p.into_inner()));
        let now = tail_of(db).await?;
        if now != tail {
            bail!("the tail holds {now} events, not {tail}: did something snapshot order_activity?");
        }
        let ids = if tail == 0 { stored_ids.clone() } else { Arc::new(placed.clone()) };
        let reads = activity_loop(&gql, &ids, scale.read_time).await?;
        progress!("orderActivity lazy, tail {tail}: {}", reads.brief());
        results.push((tail, reads));
    }
    server.stop().await;
    Ok(results)
}

/// How many events lie after `order_activity`'s checkpoint (its snapshot).
async fn tail_of(db: &Db) -> anyhow::Result<u64> {
    let row = db
        .conn
        .query_one_raw(Statement::from_string(
            db.backend(),
            "SELECT last_tx_id, last_position FROM projection_checkpoint WHERE name = 'order_activity'".to_owned(),
        ))
        .await
        .context("read order_activity's checkpoint")?
        .context("order_activity has no checkpoint")?;
    let at = twofold::token::LogPosition {
        tx_id: row.try_get("", "last_tx_id")?,
        position: row.try_get("", "last_position")?,
    };
    Ok(twofold::projection::status::lag(db, at).await? as u64)
}

fn served_text(served: &BTreeMap<String, u64>) -> String {
    if served.is_empty() {
        return "not said".to_owned();
    }
    served.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

async fn order_ids(db: &Db) -> anyhow::Result<Vec<Uuid>> {
    let rows = db
        .conn
        .query_all_raw(Statement::from_string(db.backend(), "SELECT id FROM customer_order LIMIT 2000".to_owned()))
        .await
        .context("read order ids")?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.try_get::<Uuid>("", "id")).collect::<Result<_, _>>()?;
    if ids.is_empty() {
        bail!("no orders to read");
    }
    Ok(ids)
}

/// The projectors' busy time while `placeOrder` runs at [`RATE`]/s for
/// the scale's `read_time` (and the views catch up): the seconds spent in
/// batch transactions per 1,000 orders placed, the largest over the
/// projections (the eager views share one batch transaction, so each
/// reports the same time; a lazy view's projector does next to nothing),
/// and that time's share of the run's wall time.
async fn busy_share(
    gql: &Gql,
    base_url: &str,
    catalog: &Arc<Catalog>,
    scale: &Scale,
    salt: u64,
) -> anyhow::Result<(f64, f64)> {
    let before = counters(base_url).await?;
    let started = Instant::now();
    let schedule = Schedule::new(RATE, scale.read_time.max(Duration::from_secs(3)), started);
    let writes = place_orders(gql, catalog, &schedule, 64, salt).await;
    crate::load::wait_caught_up(gql, scale.catch_up_timeout).await.ok();
    let wall = started.elapsed().as_secs_f64();
    let after = counters(base_url).await?;
    let busy: Vec<f64> = before.iter().zip(&after).map(|(b, a)| a.busy_seconds - b.busy_seconds).collect();
    let each: Vec<String> = PROJECTIONS.iter().zip(&busy).map(|(name, s)| format!("{name} {s:.2} s")).collect();
    progress!("projectors busy over {wall:.1} s ({}): {}", each.join(", "), writes.brief());
    if writes.ok == 0 {
        bail!("no placeOrder succeeded: {}", writes.first_error.unwrap_or_default());
    }
    let most = busy.iter().copied().fold(0.0, f64::max);
    Ok((most / writes.ok as f64 * 1000.0, most / wall))
}

async fn counters(base_url: &str) -> anyhow::Result<Vec<ProjectorCounters>> {
    let mut all = Vec::new();
    for name in PROJECTIONS {
        all.push(ProjectorCounters::read(base_url, name).await?);
    }
    Ok(all)
}

/// [`WRITERS`] workers for `duration`: each places an order, then reads it
/// at the returned token (`list`: through the customer's orders list), and
/// times the read alone. Returns the read times and how they were served.
async fn token_reads(
    gql: &Gql,
    base_url: &str,
    catalog: &Arc<Catalog>,
    duration: Duration,
    list: bool,
) -> anyhow::Result<(Vec<Duration>, BTreeMap<String, u64>)> {
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let url = format!("{base_url}/graphql");
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..WRITERS as u64)
        .map(|w| {
            let (gql, catalog, http, url) = (gql.clone(), catalog.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut served: BTreeMap<String, u64> = BTreeMap::new();
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    seq += 1;
                    let order = catalog.random_order(0x36_1000_0000 + w * 1_000_000 + seq + u64::from(list) * 500_000);
                    let token = gql.place_order(&catalog, &order).await?;
                    let body = if list {
                        json!({ "query": LIST_AT, "variables": { "c": catalog.customers[order.customer].id, "t": token } })
                    } else {
                        json!({ "query": ORDER_AT, "variables": { "id": order.order_id, "t": token } })
                    };
                    let t0 = Instant::now();
                    let answer: Value = http.post(&url).json(&body).send().await?.json().await?;
                    times.push(t0.elapsed());
                    if let Some(errors) = answer.get("errors") {
                        anyhow::bail!("read at the token: {errors}");
                    }
                    for kind in served_kinds(&answer) {
                        *served.entry(kind).or_default() += 1;
                    }
                }
                anyhow::Ok((times, served))
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut served = BTreeMap::new();
    for worker in workers {
        let (t, s) = worker.await.context("token worker panicked")??;
        times.extend(t);
        for (k, v) in s {
            *served.entry(k).or_default() += v;
        }
    }
    Ok((times, served))
}

/// The `served` extension's values, whatever its shape (a map of field to
/// kind, a list, or a string).
fn served_kinds(answer: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(served) = answer.pointer("/extensions/served") {
        walk(served, &mut out);
    }
    out
}

async fn activity_loop(gql: &Gql, ids: &Arc<Vec<Uuid>>, duration: Duration) -> anyhow::Result<LoopResult> {
    let first = gql.execute(ACTIVITY, json!({ "id": ids[0] })).await.context("orderActivity")?;
    if first["orderActivity"].as_array().is_none_or(Vec::is_empty) {
        bail!("orderActivity of {} is empty", ids[0]);
    }
    let (gql, ids) = (gql.clone(), ids.clone());
    let result = closed_loop("orderActivity", READERS, duration, u64::MAX, move |seq| {
        let (gql, ids) = (gql.clone(), ids.clone());
        async move { gql.execute(ACTIVITY, json!({ "id": ids[seq as usize % ids.len()] })).await.map(drop) }
    })
    .await;
    if result.ok() == 0 {
        bail!("orderActivity: no read succeeded ({})", result.first_error.unwrap_or_default());
    }
    Ok(result)
}
