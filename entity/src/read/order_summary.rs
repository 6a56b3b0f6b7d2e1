use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One wide row per order: what an order page or list shows, joined once at projection time.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "order_summary")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Kept current when the customer is renamed.
    pub customer_name: String,
    pub customer_email: String,
    /// The customer stream version the name and email come from.
    pub customer_version: i64,
    /// JSON text: `[{productId, sku, title, quantity, unitPriceCents, lineTotalCents}]`, titles as at order time.
    #[sea_orm(column_type = "Text")]
    pub lines: String,
    pub line_count: i32,
    pub total_cents: i64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: ChronoDateTimeUtc,
    pub cancelled_at: Option<ChronoDateTimeUtc>,
    pub shipped_at: Option<ChronoDateTimeUtc>,
    /// Log position of `OrderPlaced`: the newest-first sort key and page cursor.
    pub placed_position: i64,
    /// Last applied order stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// `WEB`, `MOBILE`, `API` or `UNKNOWN` (from `OrderPlaced` v2).
    pub channel: String,
    /// The customer's name as search words (kept current on rename); NULL
    /// until the search backfill reaches a row written before search.
    pub search_name: Option<String>,
    /// The rest of what finds the order (email, product titles and SKUs,
    /// tracking number, id) as search words.
    pub search_text: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
