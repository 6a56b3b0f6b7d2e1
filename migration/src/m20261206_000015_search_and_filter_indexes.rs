//! Full-text search and filters (issue 35), part two: the indexes that
//! serve every search, filter and sort the API offers (and nothing else:
//! the API refuses a combination no index serves).
//!
//! On PostgreSQL each index is built with `CREATE INDEX CONCURRENTLY`, so a
//! database already holding orders keeps serving reads and the projectors
//! keep writing while they build. That cannot run inside a transaction, so
//! this migration runs outside one and is written to be run again: an index
//! a killed run left INVALID is dropped and built anew, and every statement
//! is `IF [NOT] EXISTS`.
//!
//! Orders now sort by `(placed_at, order_id)` (a filter on `placedAt` and
//! the sort it goes with share one index); the three indexes on
//! `placed_position` that served the old newest-first order are dropped.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000015_search_and_filter_indexes"
    }
}

/// `(name, table, what)`: `what` follows `ON table` in both dialects.
const BTREES: [(&str, &str, &str); 9] = [
    ("order_summary_placed_at_idx", "order_summary", "(placed_at, order_id)"),
    ("order_summary_status_placed_at_idx", "order_summary", "(status, placed_at, order_id)"),
    ("order_summary_customer_placed_at_idx", "order_summary", "(customer_id, placed_at, order_id)"),
    ("order_summary_total_idx", "order_summary", "(total_cents, order_id)"),
    ("customer_view_value_idx", "customer_view", "(lifetime_value_cents, customer_id)"),
    ("customer_view_orders_idx", "customer_view", "(orders_placed, customer_id)"),
    ("product_catalog_price_idx", "product_catalog", "(price_cents, product_id)"),
    ("product_catalog_units_idx", "product_catalog", "(units_sold, product_id)"),
    // What the search backfill still has to fill (empty once it is done).
    ("order_summary_unsearched_idx", "order_summary", "(order_id) WHERE search_name IS NULL OR search_text IS NULL"),
];

/// The rows of the other two views the backfill still has to fill.
const UNSEARCHED: [(&str, &str, &str); 2] = [
    ("customer_view_unsearched_idx", "customer_view", "(customer_id) WHERE search_name IS NULL OR search_text IS NULL"),
    (
        "product_catalog_unsearched_idx",
        "product_catalog",
        "(product_id) WHERE search_name IS NULL OR search_text IS NULL",
    ),
];

/// Replaced by the `placed_at` indexes above.
const DROPPED: [&str; 3] = ["order_summary_status_idx", "order_summary_customer_idx", "order_summary_placed_idx"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let postgres = manager.get_database_backend() == sea_orm::DbBackend::Postgres;
        let mut indexes: Vec<(String, String, String)> = BTREES
            .iter()
            .chain(UNSEARCHED.iter())
            .map(|(n, t, w)| ((*n).to_owned(), (*t).to_owned(), (*w).to_owned()))
            .collect();
        if postgres {
            for view in crate::m20261206_000014_search_documents::VIEWS {
                indexes.push((format!("{view}_search_idx"), view.to_owned(), "USING gin (search)".to_owned()));
            }
        }
        for (name, table, what) in indexes {
            build_index(conn, postgres, &name, &format!("{table} {what}")).await?;
        }
        for name in DROPPED {
            let concurrently = if postgres { "CONCURRENTLY " } else { "" };
            conn.execute_unprepared(&format!("DROP INDEX {concurrently}IF EXISTS {name}")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for (name, _, _) in BTREES.iter().chain(UNSEARCHED.iter()) {
            conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        for view in crate::m20261206_000014_search_documents::VIEWS {
            conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {view}_search_idx")).await?;
        }
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS order_summary_status_idx ON order_summary (status, placed_position DESC)",
        )
        .await?;
        conn.execute_unprepared("CREATE INDEX IF NOT EXISTS order_summary_customer_idx ON order_summary (customer_id, placed_position DESC)").await?;
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS order_summary_placed_idx ON order_summary (placed_position DESC)",
        )
        .await?;
        Ok(())
    }
}

/// Builds index `name` `ON {on}` on a live database: `CONCURRENTLY` on
/// PostgreSQL (outside a transaction; an INVALID index a killed run left
/// behind is dropped and built again), `IF NOT EXISTS` everywhere.
/// Migration 17 builds its index the same way.
pub(crate) async fn build_index(
    conn: &impl sea_orm::ConnectionTrait,
    postgres: bool,
    name: &str,
    on: &str,
) -> Result<(), DbErr> {
    if !postgres {
        conn.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}")).await?;
        return Ok(());
    }
    let invalid = format!(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = '{name}' AND NOT i.indisvalid"
    );
    if conn.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, invalid)).await?.is_some() {
        conn.execute_unprepared(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")).await?;
    }
    conn.execute_unprepared(&format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {on}")).await?;
    Ok(())
}
