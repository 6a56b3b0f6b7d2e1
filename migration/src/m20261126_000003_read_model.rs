//! The read model: denormalized views built by projections, their
//! checkpoints and their dead letters. Nothing here has a foreign key to the
//! write model: the read store may be another database, and a view is
//! rebuilt by replaying the log, never by reading write tables.
//!
//! Every view row remembers what it last applied (`version` for the stream it
//! is keyed by, `last_tx_id`/`last_position` for rows folded from many
//! streams), so a replayed or duplicated event changes nothing.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000003_read_model"
    }
}

/// The read tables, by name (also used to drop them in order).
pub const READ_TABLES: [&str; 7] = [
    "order_summary",
    "customer_view",
    "product_catalog",
    "daily_sales",
    "order_activity",
    "projection_checkpoint",
    "dead_letter",
];

const POSTGRES: &str = r#"
CREATE TABLE order_summary (
    order_id         UUID PRIMARY KEY NOT NULL,
    customer_id      UUID NOT NULL,
    customer_name    TEXT NOT NULL,
    customer_email   TEXT NOT NULL,
    customer_version BIGINT NOT NULL,
    lines            JSONB NOT NULL,
    line_count       INTEGER NOT NULL,
    total_cents      BIGINT NOT NULL,
    status           TEXT NOT NULL,
    cancel_reason    TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    placed_at        TIMESTAMPTZ NOT NULL,
    cancelled_at     TIMESTAMPTZ,
    shipped_at       TIMESTAMPTZ,
    placed_position  BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    last_tx_id       BIGINT NOT NULL,
    last_position    BIGINT NOT NULL
);
CREATE TABLE customer_view (
    customer_id          UUID PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL,
    registered_at        TIMESTAMPTZ NOT NULL,
    registered_position  BIGINT NOT NULL,
    orders_placed        BIGINT NOT NULL,
    orders_open          BIGINT NOT NULL,
    orders_cancelled     BIGINT NOT NULL,
    orders_shipped       BIGINT NOT NULL,
    lifetime_value_cents BIGINT NOT NULL,
    last_order_at        TIMESTAMPTZ,
    version              BIGINT NOT NULL,
    last_tx_id           BIGINT NOT NULL,
    last_position        BIGINT NOT NULL
);
CREATE TABLE product_catalog (
    product_id     UUID PRIMARY KEY NOT NULL,
    sku            TEXT NOT NULL,
    title          TEXT NOT NULL,
    price_cents    BIGINT NOT NULL,
    units_sold     BIGINT NOT NULL,
    revenue_cents  BIGINT NOT NULL,
    added_at       TIMESTAMPTZ NOT NULL,
    added_position BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    last_tx_id     BIGINT NOT NULL,
    last_position  BIGINT NOT NULL
);
CREATE TABLE daily_sales (
    day             TEXT PRIMARY KEY NOT NULL,
    orders_placed   BIGINT NOT NULL,
    orders_cancelled BIGINT NOT NULL,
    gross_cents     BIGINT NOT NULL,
    cancelled_cents BIGINT NOT NULL,
    net_cents       BIGINT NOT NULL,
    last_tx_id      BIGINT NOT NULL,
    last_position   BIGINT NOT NULL
);
CREATE TABLE order_activity (
    position       BIGINT PRIMARY KEY NOT NULL,
    tx_id          BIGINT NOT NULL,
    order_id       UUID NOT NULL,
    stream_version BIGINT NOT NULL,
    event_type     TEXT NOT NULL,
    description    TEXT NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE projection_checkpoint (
    name           TEXT PRIMARY KEY NOT NULL,
    mode           TEXT NOT NULL,
    status         TEXT NOT NULL,
    last_tx_id     BIGINT NOT NULL,
    last_position  BIGINT NOT NULL,
    events_applied BIGINT NOT NULL,
    last_error     TEXT,
    owner          TEXT,
    fence          BIGINT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE TABLE dead_letter (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection     TEXT NOT NULL,
    event_position BIGINT NOT NULL,
    event_tx_id    BIGINT NOT NULL,
    stream_id      UUID NOT NULL,
    event_type     TEXT NOT NULL,
    error          TEXT NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT dead_letter_event_key UNIQUE (projection, event_position)
);
CREATE INDEX order_summary_status_idx ON order_summary (status, placed_position DESC);
CREATE INDEX order_summary_customer_idx ON order_summary (customer_id, placed_position DESC);
CREATE INDEX order_summary_placed_idx ON order_summary (placed_position DESC);
CREATE INDEX customer_view_registered_idx ON customer_view (registered_position DESC);
CREATE INDEX product_catalog_added_idx ON product_catalog (added_position DESC);
CREATE INDEX product_catalog_revenue_idx ON product_catalog (revenue_cents DESC, units_sold DESC);
CREATE INDEX order_activity_order_idx ON order_activity (order_id, stream_version)
"#;

const SQLITE: &str = r#"
CREATE TABLE order_summary (
    order_id         BLOB PRIMARY KEY NOT NULL,
    customer_id      BLOB NOT NULL,
    customer_name    TEXT NOT NULL,
    customer_email   TEXT NOT NULL,
    customer_version INTEGER NOT NULL,
    lines            TEXT NOT NULL,
    line_count       INTEGER NOT NULL,
    total_cents      INTEGER NOT NULL,
    status           TEXT NOT NULL,
    cancel_reason    TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    placed_at        TEXT NOT NULL,
    cancelled_at     TEXT,
    shipped_at       TEXT,
    placed_position  INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    last_tx_id       INTEGER NOT NULL,
    last_position    INTEGER NOT NULL
);
CREATE TABLE customer_view (
    customer_id          BLOB PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL,
    registered_at        TEXT NOT NULL,
    registered_position  INTEGER NOT NULL,
    orders_placed        INTEGER NOT NULL,
    orders_open          INTEGER NOT NULL,
    orders_cancelled     INTEGER NOT NULL,
    orders_shipped       INTEGER NOT NULL,
    lifetime_value_cents INTEGER NOT NULL,
    last_order_at        TEXT,
    version              INTEGER NOT NULL,
    last_tx_id           INTEGER NOT NULL,
    last_position        INTEGER NOT NULL
);
CREATE TABLE product_catalog (
    product_id     BLOB PRIMARY KEY NOT NULL,
    sku            TEXT NOT NULL,
    title          TEXT NOT NULL,
    price_cents    INTEGER NOT NULL,
    units_sold     INTEGER NOT NULL,
    revenue_cents  INTEGER NOT NULL,
    added_at       TEXT NOT NULL,
    added_position INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    last_tx_id     INTEGER NOT NULL,
    last_position  INTEGER NOT NULL
);
CREATE TABLE daily_sales (
    day             TEXT PRIMARY KEY NOT NULL,
    orders_placed   INTEGER NOT NULL,
    orders_cancelled INTEGER NOT NULL,
    gross_cents     INTEGER NOT NULL,
    cancelled_cents INTEGER NOT NULL,
    net_cents       INTEGER NOT NULL,
    last_tx_id      INTEGER NOT NULL,
    last_position   INTEGER NOT NULL
);
CREATE TABLE order_activity (
    position       INTEGER PRIMARY KEY NOT NULL,
    tx_id          INTEGER NOT NULL,
    order_id       BLOB NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    description    TEXT NOT NULL,
    occurred_at    TEXT NOT NULL
);
CREATE TABLE projection_checkpoint (
    name           TEXT PRIMARY KEY NOT NULL,
    mode           TEXT NOT NULL,
    status         TEXT NOT NULL,
    last_tx_id     INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    events_applied INTEGER NOT NULL,
    last_error     TEXT,
    owner          TEXT,
    fence          INTEGER NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE TABLE dead_letter (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    projection     TEXT NOT NULL,
    event_position INTEGER NOT NULL,
    event_tx_id    INTEGER NOT NULL,
    stream_id      BLOB NOT NULL,
    event_type     TEXT NOT NULL,
    error          TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    CONSTRAINT dead_letter_event_key UNIQUE (projection, event_position)
);
CREATE INDEX order_summary_status_idx ON order_summary (status, placed_position DESC);
CREATE INDEX order_summary_customer_idx ON order_summary (customer_id, placed_position DESC);
CREATE INDEX order_summary_placed_idx ON order_summary (placed_position DESC);
CREATE INDEX customer_view_registered_idx ON customer_view (registered_position DESC);
CREATE INDEX product_catalog_added_idx ON product_catalog (added_position DESC);
CREATE INDEX product_catalog_revenue_idx ON product_catalog (revenue_cents DESC, units_sold DESC);
CREATE INDEX order_activity_order_idx ON order_activity (order_id, stream_version)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in READ_TABLES {
            manager.get_connection().execute_unprepared(&format!("DROP TABLE {table}")).await?;
        }
        Ok(())
    }
}
