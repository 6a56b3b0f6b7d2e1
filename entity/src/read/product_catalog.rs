use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The catalog with per-product sales.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "product_catalog")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: Uuid,
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
    /// Units on orders that are not cancelled.
    pub units_sold: i64,
    /// Revenue of orders that are not cancelled, at the prices they were placed at.
    pub revenue_cents: i64,
    pub added_at: ChronoDateTimeUtc,
    pub added_position: i64,
    /// Last applied product stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// The title as search words; NULL until the search backfill reaches a
    /// row written before search.
    pub search_name: Option<String>,
    /// The SKU as search words.
    pub search_text: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
