//! Truthful projection status and integer guards.
//!
//! - `projection_checkpoint.attempts`: consecutive failed attempts of the
//!   projection's runner (0 while healthy), shown with `status = 'retrying'`.
//! - `dead_letter.resolution`/`resolved_at`: what an operator did with a
//!   dead letter (`retried` or `skipped`), NULL while it is open.
//! - SQLite: integer arithmetic that overflows 64 bits silently turns into
//!   REAL there. Triggers refuse any counter or sum that is not an integer,
//!   so an overflow fails the statement (and the projection dead-letters the
//!   event) instead of storing a value the API cannot read. PostgreSQL
//!   raises "bigint out of range" by itself.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000007_hardening"
    }
}

/// The integer columns each guarded view must keep integral.
const GUARDED: [(&str, &[&str]); 3] = [
    ("customer_view", &["orders_placed", "orders_open", "orders_cancelled", "orders_shipped", "lifetime_value_cents"]),
    ("product_catalog", &["units_sold", "revenue_cents", "price_cents"]),
    ("daily_sales", &["orders_placed", "orders_cancelled", "gross_cents", "cancelled_cents", "net_cents"]),
];

fn sqlite_triggers() -> Vec<String> {
    let mut out = Vec::new();
    for (table, columns) in GUARDED {
        let condition: Vec<String> = columns.iter().map(|c| format!("typeof(NEW.{c}) <> 'integer'")).collect();
        for event in ["INSERT", "UPDATE"] {
            out.push(format!(
                "CREATE TRIGGER IF NOT EXISTS {table}_integers_{lower} BEFORE {event} ON {table} WHEN {cond} \
                 BEGIN SELECT RAISE(ABORT, '{table}: a counter or sum left the 64-bit integer range'); END",
                lower = event.to_lowercase(),
                cond = condition.join(" OR "),
            ));
        }
    }
    out
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE projection_checkpoint ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
                )
                .await?;
                conn.execute_unprepared("ALTER TABLE dead_letter ADD COLUMN resolution TEXT").await?;
                conn.execute_unprepared("ALTER TABLE dead_letter ADD COLUMN resolved_at TIMESTAMPTZ").await?;
            }
            _ => {
                conn.execute_unprepared(
                    "ALTER TABLE projection_checkpoint ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
                )
                .await?;
                conn.execute_unprepared("ALTER TABLE dead_letter ADD COLUMN resolution TEXT").await?;
                conn.execute_unprepared("ALTER TABLE dead_letter ADD COLUMN resolved_at TEXT").await?;
                for trigger in sqlite_triggers() {
                    conn.execute_unprepared(&trigger).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if manager.get_database_backend() == sea_orm::DbBackend::Sqlite {
            for (table, _) in GUARDED {
                for event in ["insert", "update"] {
                    conn.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_integers_{event}")).await?;
                }
            }
        }
        conn.execute_unprepared("ALTER TABLE dead_letter DROP COLUMN resolved_at").await?;
        conn.execute_unprepared("ALTER TABLE dead_letter DROP COLUMN resolution").await?;
        conn.execute_unprepared("ALTER TABLE projection_checkpoint DROP COLUMN attempts").await?;
        Ok(())
    }
}
