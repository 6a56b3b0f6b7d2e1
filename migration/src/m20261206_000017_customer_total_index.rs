//! The speed of search and filters (issue 35): one customer's orders sorted
//! by total (`orders(filter: {customerId}, orderBy: TOTAL_CENTS)`, and a
//! customer caller's own orders in that order).
//!
//! The only index that led with `customer_id` was `(customer_id,
//! placed_at, order_id)`: sorted by total, PostgreSQL read the customer's
//! rows through it (or ANDed it with a status index of every PLACED order)
//! and sorted them (27 ms at 100k orders, `EXPLAIN ANALYZE` in
//! docs/performance.md). `(customer_id, total_cents, order_id)` serves the
//! page in order: the customer's rows, highest total first, and the first
//! page stops after `first + 1` of them.
//!
//! Built by migration 15's `build_index`: `CREATE INDEX CONCURRENTLY` on
//! PostgreSQL (outside a transaction; an INVALID index a killed run left
//! is dropped and built again), `IF NOT EXISTS` everywhere.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000017_customer_total_index"
    }
}

const NAME: &str = "order_summary_customer_total_idx";
const ON: &str = "order_summary (customer_id, total_cents, order_id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == sea_orm::DbBackend::Postgres;
        crate::m20261206_000015_search_and_filter_indexes::build_index(manager.get_connection(), postgres, NAME, ON)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(&format!("DROP INDEX IF EXISTS {NAME}")).await?;
        Ok(())
    }
}
