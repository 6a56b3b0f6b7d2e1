//! Products: `product_catalog`.
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use entity::read::product_catalog;

use super::list::{Cursor, Direction, Filter, ListQuery, Order, Range, SortSpec, ViewSpec};
use super::{ProductRow, QueryError, ReadModel};

pub const MAX_TOP_PRODUCTS: u64 = 100;

/// Products as lists show them: newest first by default; sorted by price
/// or units sold, each filterable by its own range (served by its index);
/// any filter with a search.
pub static PRODUCTS: ViewSpec = ViewSpec {
    list: "products",
    table: "product_catalog",
    key: "product_id",
    fts: "product_catalog_fts",
    default_sort: ADDED_AT,
    default_direction: Direction::Desc,
    sorts: &[ADDED_AT, PRICE, UNITS_SOLD],
};

/// The order products were added in (the log position of the addition).
const ADDED_AT: SortSpec = SortSpec { name: "ADDED_AT", column: "added_position", time: false, serves: &[] };
const PRICE: SortSpec = SortSpec { name: "PRICE", column: "price_cents", time: false, serves: &["priceCents"] };
const UNITS_SOLD: SortSpec = SortSpec { name: "UNITS_SOLD", column: "units_sold", time: false, serves: &["unitsSold"] };

/// What products a list holds, beyond a search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductFilter {
    pub price_cents: Range<i64>,
    pub units_sold: Range<i64>,
}

impl ProductFilter {
    pub fn apply(self, list: &mut ListQuery) {
        list.filters.extend(Filter::range("priceCents", "price_cents", &self.price_cents));
        list.filters.extend(Filter::range("unitsSold", "units_sold", &self.units_sold));
    }
}

pub struct ProductPage {
    pub rows: Vec<ProductRow>,
    pub cursors: Vec<Cursor>,
    pub has_next: bool,
}

/// Every column of the view, for a page.
fn select_list() -> String {
    product_catalog::Column::iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

impl ReadModel {
    /// A list of products.
    pub async fn products(&self, list: ListQuery) -> Result<ProductPage, QueryError> {
        let raw = self.page_rows(&list, &select_list()).await?;
        let ranked = list.order == Order::Relevance;
        let mut page = ProductPage { rows: Vec::new(), cursors: Vec::new(), has_next: raw.len() as u64 > list.first };
        for row in raw.iter().take(list.first as usize) {
            let mut decoded = ProductRow::from(product_catalog::Model::from_query_result(row, "")?);
            if ranked {
                decoded.search_rank = Some(row.try_get("", "rank")?);
            }
            page.cursors.push(list.cursor(row, decoded.product_id)?);
            page.rows.push(decoded);
        }
        Ok(page)
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
