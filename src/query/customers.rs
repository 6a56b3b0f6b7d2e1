//! Customers: `customer_view`.
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryFilter};
use uuid::Uuid;

use entity::read::customer_view;

use super::list::{Condition, Cursor, Direction, Filter, ListQuery, Order, Range, SortSpec, ViewSpec};
use super::{CustomerRow, QueryError, ReadModel, Scope};

/// Customers as lists show them: newest registration first by default;
/// sorted by lifetime value or orders placed, each filterable by its own
/// range (served by its index); any filter with a search.
pub static CUSTOMERS: ViewSpec = ViewSpec {
    list: "customers",
    table: "customer_view",
    key: "customer_id",
    fts: "customer_view_fts",
    default_sort: REGISTERED_AT,
    default_direction: Direction::Desc,
    sorts: &[REGISTERED_AT, LIFETIME_VALUE, ORDERS_PLACED],
};

/// Registration order (the log position of the registration).
const REGISTERED_AT: SortSpec =
    SortSpec { name: "REGISTERED_AT", column: "registered_position", time: false, serves: &[] };
const LIFETIME_VALUE: SortSpec =
    SortSpec { name: "LIFETIME_VALUE", column: "lifetime_value_cents", time: false, serves: &["lifetimeValueCents"] };
const ORDERS_PLACED: SortSpec =
    SortSpec { name: "ORDERS_PLACED", column: "orders_placed", time: false, serves: &["ordersPlaced"] };

/// What customers a list holds, beyond a search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerFilter {
    pub lifetime_value_cents: Range<i64>,
    pub orders_placed: Range<i64>,
}

impl CustomerFilter {
    pub fn apply(self, list: &mut ListQuery) {
        list.filters.extend(Filter::range("lifetimeValueCents", "lifetime_value_cents", &self.lifetime_value_cents));
        list.filters.extend(Filter::range("ordersPlaced", "orders_placed", &self.orders_placed));
    }
}

pub struct CustomerPage {
    pub rows: Vec<CustomerRow>,
    pub cursors: Vec<Cursor>,
    pub has_next: bool,
}

/// Every column of the view, for a page.
fn select_list() -> String {
    customer_view::Column::iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// A customer caller lists only itself.
fn scoped(mut list: ListQuery, scope: Scope) -> ListQuery {
    if let Scope::Customer(own) = scope {
        list.bound.push(Condition::eq("customer_id", own));
    }
    list
}

impl ReadModel {
    /// One customer's dashboard, if it exists and is in `scope`.
    pub async fn customer(&self, id: Uuid, scope: Scope) -> Result<Option<CustomerRow>, QueryError> {
        let mut select = customer_view::Entity::find_by_id(id);
        if let Scope::Customer(own) = scope {
            select = select.filter(customer_view::Column::CustomerId.eq(own));
        }
        Ok(select.one(self.conn()).await?.map(CustomerRow::from))
    }

    /// A list of customers in `scope`.
    pub async fn customers(&self, list: ListQuery, scope: Scope) -> Result<CustomerPage, QueryError> {
        let list = scoped(list, scope);
        let raw = self.page_rows(&list, &select_list()).await?;
        let ranked = list.order == Order::Relevance;
        let mut page = CustomerPage { rows: Vec::new(), cursors: Vec::new(), has_next: raw.len() as u64 > list.first };
        for row in raw.iter().take(list.first as usize) {
            let mut decoded = CustomerRow::from(customer_view::Model::from_query_result(row, "")?);
            if ranked {
                decoded.search_rank = Some(row.try_get("", "rank")?);
            }
            page.cursors.push(list.cursor(row, decoded.customer_id)?);
            page.rows.push(decoded);
        }
        Ok(page)
    }

    /// How many customers `list` holds in `scope`.
    pub async fn count_customers(&self, list: ListQuery, scope: Scope) -> Result<i64, QueryError> {
        self.count(&scoped(list, scope)).await
    }

    pub async fn customers_by_ids(&self, ids: &[Uuid]) -> Result<Vec<CustomerRow>, QueryError> {
        Ok(customer_view::Entity::find()
            .filter(customer_view::Column::CustomerId.is_in(ids.iter().copied()))
            .all(self.conn())
            .await?
            .into_iter()
            .map(CustomerRow::from)
            .collect())
    }
}
