use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A customer dashboard: profile plus order counters.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "customer_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: Uuid,
    pub name: String,
    pub email: String,
    pub registered_at: ChronoDateTimeUtc,
    pub registered_position: i64,
    pub orders_placed: i64,
    pub orders_open: i64,
    pub orders_cancelled: i64,
    pub orders_shipped: i64,
    /// Sum of the totals of the customer's orders that are not cancelled.
    pub lifetime_value_cents: i64,
    pub last_order_at: Option<ChronoDateTimeUtc>,
    /// Last applied customer stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// The name as search words (kept current on rename); NULL until the
    /// search backfill reaches a row written before search.
    pub search_name: Option<String>,
    /// The email as search words.
    pub search_text: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
