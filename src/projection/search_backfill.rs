//! Fills the search words of rows written before search existed (or by an
//! older release still running during a rolling upgrade): the migration
//! adds the columns empty (instant on a live database), and this fills
//! them from the views' own rows, a batch per transaction, with the same
//! code the projections use ([`super::order_summary::index`] and its
//! twins), so a backfilled row is indexed exactly as a projected one.
//!
//! It fills only what is still empty (`COALESCE`), so a row a projector
//! wrote meanwhile keeps what the projector computed. Idempotent: several
//! instances may run it at once.
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, IdenStatic, Iterable, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use entity::read::{customer_view, order_summary, product_catalog};

use super::fold::{Kind, RowSet};
use crate::db::Db;

/// Rows filled per transaction.
const BATCH: u64 = 1_000;
/// How often an idle backfill looks again (rows an older release wrote).
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// A stored row's key and its search words (`search_name`, `search_text`).
type Indexed = (Value, String, String);

/// A searchable view's part of the backfill.
struct Searchable {
    table: &'static str,
    key: &'static str,
    columns: fn() -> Vec<&'static str>,
    /// `(key, search_name, search_text)` of a stored row.
    index: fn(&sea_orm::QueryResult) -> Result<Indexed, DbErr>,
}

const VIEWS: [Searchable; 3] = [
    Searchable {
        table: "order_summary",
        key: "order_id",
        columns: || order_summary::Column::iter().map(|c| c.as_str()).collect(),
        index: |row| {
            let mut row = order_summary::Model::from_query_result(row, "")?;
            super::order_summary::index(&mut row);
            Ok((row.order_id.into(), row.search_name.unwrap_or_default(), row.search_text.unwrap_or_default()))
        },
    },
    Searchable {
        table: "customer_view",
        key: "customer_id",
        columns: || customer_view::Column::iter().map(|c| c.as_str()).collect(),
        index: |row| {
            let mut row = customer_view::Model::from_query_result(row, "")?;
            super::customer_view::index(&mut row);
            Ok((row.customer_id.into(), row.search_name.unwrap_or_default(), row.search_text.unwrap_or_default()))
        },
    },
    Searchable {
        table: "product_catalog",
        key: "product_id",
        columns: || product_catalog::Column::iter().map(|c| c.as_str()).collect(),
        index: |row| {
            let mut row = product_catalog::Model::from_query_result(row, "")?;
            super::product_catalog::index(&mut row);
            Ok((row.product_id.into(), row.search_name.unwrap_or_default(), row.search_text.unwrap_or_default()))
        },
    },
];

/// One batch of each view; returns how many rows were filled (0: done).
pub async fn fill_once(db: &Db) -> Result<u64, DbErr> {
    let mut filled = 0;
    for view in &VIEWS {
        let select = format!(
            "SELECT {} FROM {} WHERE search_name IS NULL OR search_text IS NULL LIMIT {BATCH}",
            (view.columns)().join(", "),
            view.table
        );
        let rows = db.conn.query_all_raw(sea_orm::Statement::from_string(db.backend(), select)).await?;
        if rows.is_empty() {
            continue;
        }
        let mut set =
            RowSet::new(vec![(view.key, Kind::Uuid), ("search_name", Kind::Text), ("search_text", Kind::Text)]);
        for row in &rows {
            let (key, name, text) = (view.index)(row)?;
            set.push(vec![key, name.into(), text.into()]);
        }
        let txn = db.begin_write_as("the search backfill", &mut |_| {}).await?;
        let (t, key) = (view.table, view.key);
        set.run(&txn, false, |u| {
            format!(
                "UPDATE {t} SET search_name = COALESCE({t}.search_name, u.search_name), \
                 search_text = COALESCE({t}.search_text, u.search_text) FROM {u} WHERE {t}.{key} = u.{key}"
            )
        })
        .await?;
        txn.commit().await?;
        filled += rows.len() as u64;
    }
    Ok(filled)
}

/// Runs the backfill until `shutdown`: batches while there is work, then a
/// look every minute. `done` turns true each time a pass finds nothing.
pub fn spawn(db: Db, done: watch::Sender<bool>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            let pause = match fill_once(&db).await {
                Ok(0) => {
                    if total > 0 {
                        tracing::info!(rows = total, "search backfill: every row is indexed");
                        total = 0;
                    }
                    done.send_replace(true);
                    LOOK_AGAIN
                }
                Ok(n) => {
                    total += n;
                    tracing::debug!(rows = n, "search backfill: a batch filled");
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search backfill: a batch failed; trying again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}
