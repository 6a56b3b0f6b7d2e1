//! Figure: isolation under overload. 500 clients read a heavy page (100
//! orders with lines, products and customers) as fast as they can while
//! `placeOrder` runs beside them at concurrency 4. Commands have their own
//! pool and reads beyond the read pool's wait are shed with HTTP 503, so
//! the commands' latency should stay near its value without the readers.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::{closed_loop, wait_caught_up};
use crate::progress;
use crate::report::Report;
use crate::workload::Catalog;

pub const READERS: usize = 500;
pub const WRITERS: usize = 4;

const HEAVY_PAGE: &str = "query { orders(first: 100) { edges { node { id customerName totalCents
    customer { name lifetimeValueCents ordersPlaced } lines { title quantity product { title unitsSold revenueCents } } } } } }";

/// What the readers saw.
#[derive(Debug, Clone, Default)]
pub struct ReadersOutcome {
    pub ok: u64,
    /// Answered 503 + UNAVAILABLE (shed before they queued for seconds).
    pub shed: u64,
    /// Anything else (transport errors, other statuses).
    pub failed: u64,
    pub elapsed: Duration,
}

async fn place_orders(gql: &Gql, catalog: &Arc<Catalog>, salt: u64, scale: &Scale) -> crate::stats::LoopResult {
    let (gql, catalog) = (gql.clone(), catalog.clone());
    closed_loop("placeOrder", WRITERS, scale.overload_time, u64::MAX, move |seq| {
        let (gql, catalog) = (gql.clone(), catalog.clone());
        async move {
            let order = catalog.random_order(salt + seq);
            gql.place_order(&catalog, &order).await.map(drop)
        }
    })
    .await
}

pub async fn measure(
    gql: &Gql,
    base_url: &str,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let catalog = Arc::new(catalog.clone());
    let alone = place_orders(gql, &catalog, 0x007E_0000_0000, scale).await;
    progress!("placeOrder alone, concurrency {WRITERS}: {}", alone.brief());
    wait_caught_up(gql, scale.catch_up_timeout).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(READERS)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("build the readers' client")?;
    let url = format!("{base_url}/graphql");
    let (ok, shed, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + scale.overload_time;
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (http, url, ok, shed, failed) = (http.clone(), url.clone(), ok.clone(), shed.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match http.post(&url).json(&json!({ "query": HEAVY_PAGE })).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status() == 503 => {
                            let _ = r.bytes().await;
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let loaded = place_orders(gql, &catalog, 0x007F_0000_0000, scale).await;
    for reader in readers {
        let _ = reader.await;
    }
    let outcome = ReadersOutcome {
        ok: ok.load(Ordering::Relaxed),
        shed: shed.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    };
    progress!("placeOrder beside {READERS} heavy readers: {} (readers: {outcome:?})", loaded.brief());
    report.set_overload(alone, loaded, outcome);
    wait_caught_up(gql, scale.catch_up_timeout).await?;
    Ok(())
}
