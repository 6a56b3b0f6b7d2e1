//! Daily sales: `daily_sales`.
use chrono::NaiveDate;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use entity::read::daily_sales;

use super::{DailySalesRow, QueryError, ReadModel};

/// Longest range `dailySales` returns in one call.
pub const MAX_DAYS: i64 = 366;

impl ReadModel {
    /// Days from `from` to `to` inclusive that had sales, oldest first.
    pub async fn daily_sales(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailySalesRow>, QueryError> {
        if to < from {
            return Err(QueryError::Validation(format!("`to` ({to}) is before `from` ({from})")));
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(QueryError::Validation(format!("a range spans at most {MAX_DAYS} days")));
        }
        Ok(daily_sales::Entity::find()
            .filter(daily_sales::Column::Day.gte(from.format("%Y-%m-%d").to_string()))
            .filter(daily_sales::Column::Day.lte(to.format("%Y-%m-%d").to_string()))
            .order_by_asc(daily_sales::Column::Day)
            .all(self.conn())
            .await?
            .into_iter()
            .map(DailySalesRow::from)
            .collect())
    }
}
