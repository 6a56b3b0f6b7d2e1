//! Products: `product_catalog`.
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use entity::read::product_catalog;

use super::{ProductRow, QueryError, ReadModel};

pub const MAX_TOP_PRODUCTS: u64 = 100;
pub const MAX_SEARCH_CHARS: usize = 100;

pub struct ProductPage {
    pub rows: Vec<ProductRow>,
    pub has_next: bool,
}

impl ReadModel {
    /// Products, newest first, optionally matching `search` in the title or
    /// sku (case-insensitive substring).
    pub async fn products(
        &self,
        search: Option<&str>,
        first: u64,
        after: Option<i64>,
    ) -> Result<ProductPage, QueryError> {
        let mut select = product_catalog::Entity::find();
        if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
            if search.chars().count() > MAX_SEARCH_CHARS {
                return Err(QueryError::Validation(format!("search must be at most {MAX_SEARCH_CHARS} characters")));
            }
            let escaped = search.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            select = select.filter(
                Condition::any()
                    .add(
                        Expr::expr(Func::lower(Expr::col(product_catalog::Column::Title)))
                            .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(product_catalog::Column::Sku)))
                            .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
                    ),
            );
        }
        if let Some(after) = after {
            select = select.filter(product_catalog::Column::AddedPosition.lt(after));
        }
        let mut rows: Vec<ProductRow> = select
            .order_by_desc(product_catalog::Column::AddedPosition)
            .limit(first + 1)
            .all(self.conn())
            .await?
            .into_iter()
            .map(ProductRow::from)
            .collect();
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Ok(ProductPage { rows, has_next })
    }

    /// Best sellers by revenue, then units.
    pub async fn top_products(&self, limit: Option<i32>) -> Result<Vec<ProductRow>, QueryError> {
        let limit = match limit {
            None => 10,
            Some(n) if n < 1 || n as u64 > MAX_TOP_PRODUCTS => {
                return Err(QueryError::Validation(format!("limit must be between 1 and {MAX_TOP_PRODUCTS}, got {n}")))
            }
            Some(n) => n as u64,
        };
        Ok(product_catalog::Entity::find()
            .order_by_desc(product_catalog::Column::RevenueCents)
            .order_by_desc(product_catalog::Column::UnitsSold)
            .order_by_asc(product_catalog::Column::Sku)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(ProductRow::from)
            .collect())
    }

    pub async fn products_by_ids(&self, ids: &[Uuid]) -> Result<Vec<ProductRow>, QueryError> {
        Ok(product_catalog::Entity::find()
            .filter(product_catalog::Column::ProductId.is_in(ids.iter().copied()))
            .all(self.conn())
            .await?
            .into_iter()
            .map(ProductRow::from)
            .collect())
    }
}
