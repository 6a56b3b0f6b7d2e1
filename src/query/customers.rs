//! Customers: `customer_view`.
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use entity::read::customer_view;

use super::{CustomerRow, QueryError, ReadModel, Scope};

pub struct CustomerPage {
    pub rows: Vec<CustomerRow>,
    pub has_next: bool,
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

    /// Customers in `scope`, newest registration first, after the cursor (a registered_position).
    pub async fn customers(&self, first: u64, after: Option<i64>, scope: Scope) -> Result<CustomerPage, QueryError> {
        let mut select = customer_view::Entity::find();
        if let Scope::Customer(own) = scope {
            select = select.filter(customer_view::Column::CustomerId.eq(own));
        }
        if let Some(after) = after {
            select = select.filter(customer_view::Column::RegisteredPosition.lt(after));
        }
        let mut rows: Vec<CustomerRow> = select
            .order_by_desc(customer_view::Column::RegisteredPosition)
            .limit(first + 1)
            .all(self.conn())
            .await?
            .into_iter()
            .map(CustomerRow::from)
            .collect();
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Ok(CustomerPage { rows, has_next })
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
