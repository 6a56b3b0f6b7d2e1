//! The normalized write model: customers, products, orders and their lines.
//! Every aggregate row carries a `version` (optimistic concurrency), every
//! business rule the database can check is a named constraint.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000001_write_model"
    }
}

const POSTGRES: &str = r#"
CREATE TABLE customer (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT customer_name_not_blank CHECK (length(trim(name)) > 0),
    email       TEXT NOT NULL CONSTRAINT customer_email_key UNIQUE,
    version     BIGINT NOT NULL CONSTRAINT customer_version_positive CHECK (version > 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE product (
    id          UUID PRIMARY KEY,
    sku         TEXT NOT NULL CONSTRAINT product_sku_key UNIQUE,
    title       TEXT NOT NULL CONSTRAINT product_title_not_blank CHECK (length(trim(title)) > 0),
    price_cents BIGINT NOT NULL CONSTRAINT product_price_positive CHECK (price_cents > 0),
    version     BIGINT NOT NULL CONSTRAINT product_version_positive CHECK (version > 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE customer_order (
    id              UUID PRIMARY KEY,
    customer_id     UUID NOT NULL CONSTRAINT customer_order_customer_fk REFERENCES customer (id),
    status          TEXT NOT NULL CONSTRAINT customer_order_status_known CHECK (status IN ('PLACED', 'CANCELLED', 'SHIPPED')),
    total_cents     BIGINT NOT NULL CONSTRAINT customer_order_total_positive CHECK (total_cents > 0),
    cancel_reason   TEXT,
    carrier         TEXT,
    tracking_number TEXT,
    version         BIGINT NOT NULL CONSTRAINT customer_order_version_positive CHECK (version > 0),
    placed_at       TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT customer_order_shipment_complete CHECK (status <> 'SHIPPED' OR (carrier IS NOT NULL AND tracking_number IS NOT NULL))
);
CREATE INDEX customer_order_customer_idx ON customer_order (customer_id);
CREATE INDEX customer_order_status_placed_idx ON customer_order (status, placed_at DESC, id DESC);
CREATE TABLE order_line (
    order_id         UUID NOT NULL CONSTRAINT order_line_order_fk REFERENCES customer_order (id),
    line_no          INTEGER NOT NULL CONSTRAINT order_line_no_positive CHECK (line_no > 0),
    product_id       UUID NOT NULL CONSTRAINT order_line_product_fk REFERENCES product (id),
    quantity         INTEGER NOT NULL CONSTRAINT order_line_quantity_positive CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CONSTRAINT order_line_unit_price_positive CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_line_product_idx ON order_line (product_id)
"#;

const SQLITE: &str = r#"
CREATE TABLE customer (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL CONSTRAINT customer_name_not_blank CHECK (length(trim(name)) > 0),
    email       TEXT NOT NULL CONSTRAINT customer_email_key UNIQUE,
    version     INTEGER NOT NULL CONSTRAINT customer_version_positive CHECK (version > 0),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE product (
    id          BLOB PRIMARY KEY NOT NULL,
    sku         TEXT NOT NULL CONSTRAINT product_sku_key UNIQUE,
    title       TEXT NOT NULL CONSTRAINT product_title_not_blank CHECK (length(trim(title)) > 0),
    price_cents INTEGER NOT NULL CONSTRAINT product_price_positive CHECK (price_cents > 0),
    version     INTEGER NOT NULL CONSTRAINT product_version_positive CHECK (version > 0),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE customer_order (
    id              BLOB PRIMARY KEY NOT NULL,
    customer_id     BLOB NOT NULL CONSTRAINT customer_order_customer_fk REFERENCES customer (id),
    status          TEXT NOT NULL CONSTRAINT customer_order_status_known CHECK (status IN ('PLACED', 'CANCELLED', 'SHIPPED')),
    total_cents     INTEGER NOT NULL CONSTRAINT customer_order_total_positive CHECK (total_cents > 0),
    cancel_reason   TEXT,
    carrier         TEXT,
    tracking_number TEXT,
    version         INTEGER NOT NULL CONSTRAINT customer_order_version_positive CHECK (version > 0),
    placed_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CONSTRAINT customer_order_shipment_complete CHECK (status <> 'SHIPPED' OR (carrier IS NOT NULL AND tracking_number IS NOT NULL))
);
CREATE INDEX customer_order_customer_idx ON customer_order (customer_id);
CREATE INDEX customer_order_status_placed_idx ON customer_order (status, placed_at DESC, id DESC);
CREATE TABLE order_line (
    order_id         BLOB NOT NULL CONSTRAINT order_line_order_fk REFERENCES customer_order (id),
    line_no          INTEGER NOT NULL CONSTRAINT order_line_no_positive CHECK (line_no > 0),
    product_id       BLOB NOT NULL CONSTRAINT order_line_product_fk REFERENCES product (id),
    quantity         INTEGER NOT NULL CONSTRAINT order_line_quantity_positive CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CONSTRAINT order_line_unit_price_positive CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_line_product_idx ON order_line (product_id)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, crate::pick(manager, POSTGRES, SQLITE)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            manager,
            "DROP TABLE order_line; DROP TABLE customer_order; DROP TABLE product; DROP TABLE customer",
        )
        .await
    }
}
