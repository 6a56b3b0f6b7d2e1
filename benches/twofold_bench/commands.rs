//! Figure 1: `placeOrder` throughput and latency over GraphQL/HTTP at
//! concurrency 1, 8 and 32, against the same rows and event rows inserted by
//! plain SQL at the same concurrency (the database's own limit).
use std::sync::Arc;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::{closed_loop, wait_caught_up};
use crate::progress;
use crate::report::Report;
use crate::server::Server;
use crate::sql;
use crate::workload::Catalog;

pub const CONCURRENCY_LEVELS: [usize; 3] = [1, 8, 32];

pub async fn measure(
    gql: &Gql,
    db: &twofold::db::Db,
    server: &Server,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let catalog = Arc::new(catalog.clone());
    let cpu_before = server.cpu_seconds();
    let mut commands = 0;
    // All HTTP levels first, then all SQL levels, each after the projector
    // has caught up: the two never compete for the machine.
    for concurrency in CONCURRENCY_LEVELS {
        let (gql, catalog) = (gql.clone(), catalog.clone());
        let salt = 0xC0DE_0000_0000 + (concurrency as u64) * 1_000_000_000;
        let result =
            closed_loop("placeOrder", concurrency, scale.throughput_time, scale.throughput_max_ops, move |seq| {
                let (gql, catalog) = (gql.clone(), catalog.clone());
                async move {
                    let order = catalog.random_order(salt + seq);
                    gql.place_order(&catalog, &order).await.map(drop)
                }
            })
            .await;
        progress!("placeOrder over HTTP, concurrency {concurrency}: {}", result.brief());
        commands += result.ok() as u64;
        report.set_command_http(concurrency, result);
    }
    wait_caught_up(gql, scale.catch_up_timeout).await?;
    // The server's CPU for these commands, projecting them included.
    if let (Some(before), Some(after)) = (cpu_before, server.cpu_seconds()) {
        report.add_cpu_window(after - before, commands);
    }
    for concurrency in CONCURRENCY_LEVELS {
        let (db, catalog) = (db.clone(), catalog.clone());
        let salt = 0x5A1_0000_0000 + (concurrency as u64) * 1_000_000_000;
        let result =
            closed_loop("plain SQL", concurrency, scale.throughput_time, scale.throughput_max_ops, move |seq| {
                let (db, catalog) = (db.clone(), catalog.clone());
                async move {
                    let order = catalog.random_order(salt + seq);
                    sql::insert_order(&db, &catalog, &order).await
                }
            })
            .await;
        progress!("plain SQL baseline, concurrency {concurrency}: {}", result.brief());
        report.set_command_sql(concurrency, result);
    }
    // The projector folds the baseline's events too; let it finish first.
    wait_caught_up(gql, scale.catch_up_timeout).await?;
    Ok(())
}
