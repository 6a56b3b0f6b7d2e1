use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Sales per UTC day, as a cash-flow view: a cancellation counts on the day it happens.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "daily_sales")]
pub struct Model {
    /// UTC day, `YYYY-MM-DD`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    /// Orders placed on this day.
    pub orders_placed: i64,
    /// Cancellations made on this day.
    pub orders_cancelled: i64,
    /// Totals of the orders placed on this day.
    pub gross_cents: i64,
    /// Totals of the orders cancelled on this day (refunds).
    pub cancelled_cents: i64,
    /// `gross_cents - cancelled_cents`: the day's net takings.
    pub net_cents: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
