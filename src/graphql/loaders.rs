//! DataLoaders: cross-view lookups batched into one query per view per
//! request (no N+1), e.g. `OrderSummary.customer` → `customer_view`. The
//! batching is GraphQL's concern; the reads are the query side's.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::query::list::ListQuery;
use crate::query::orders::{OrderColumns, OrderPage};
use crate::query::{CustomerRow, ProductRow, QueryError, ReadModel};

pub struct CustomerLoader(pub Arc<ReadModel>);
pub struct ProductLoader(pub Arc<ReadModel>);

impl Loader<Uuid> for CustomerLoader {
    type Value = CustomerRow;
    type Error = Arc<QueryError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self.0.customers_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|r| (r.customer_id, r)).collect())
    }
}

impl Loader<Uuid> for ProductLoader {
    type Value = ProductRow;
    type Error = Arc<QueryError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self.0.products_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|r| (r.product_id, r)).collect())
    }
}

/// `OrderSummary.customer` → `customer_view`, batched (and, per request, cached).
pub type CustomerLoaderHandle =
    async_graphql::dataloader::DataLoader<CustomerLoader, async_graphql::dataloader::HashMapCache>;
/// `OrderLine.product` → `product_catalog`, batched (and, per request, cached).
pub type ProductLoaderHandle =
    async_graphql::dataloader::DataLoader<ProductLoader, async_graphql::dataloader::HashMapCache>;

/// One customer's orders as `Customer.orders` lists them: the customer,
/// and the list (filter, sort, page) the field was asked for, shared by
/// every customer of the request that asked the same.
#[derive(Clone, Debug)]
pub struct CustomerOrdersKey {
    pub customer: Uuid,
    pub list: Arc<CustomerOrdersList>,
}

/// A `Customer.orders` list, told apart from others by its fingerprint.
#[derive(Debug)]
pub struct CustomerOrdersList {
    pub list: ListQuery,
    pub columns: OrderColumns,
    /// Everything that makes two lists differ (filter, sort, page, columns).
    pub fingerprint: String,
}

impl CustomerOrdersList {
    pub fn new(list: ListQuery, columns: OrderColumns) -> Arc<Self> {
        let fingerprint = format!("{list:?} {columns:?}");
        Arc::new(Self { list, columns, fingerprint })
    }
}

impl PartialEq for CustomerOrdersKey {
    fn eq(&self, other: &Self) -> bool {
        self.customer == other.customer && self.list.fingerprint == other.list.fingerprint
    }
}

impl Eq for CustomerOrdersKey {}

impl std::hash::Hash for CustomerOrdersKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.customer.hash(state);
        self.list.fingerprint.hash(state);
    }
}

/// The keys of a batch, grouped by list: one statement per distinct list.
fn by_list(keys: &[CustomerOrdersKey]) -> Vec<(Arc<CustomerOrdersList>, Vec<Uuid>)> {
    let mut groups: Vec<(Arc<CustomerOrdersList>, Vec<Uuid>)> = Vec::new();
    for key in keys {
        match groups.iter_mut().find(|(list, _)| list.fingerprint == key.list.fingerprint) {
            Some((_, customers)) => customers.push(key.customer),
            None => groups.push((key.list.clone(), vec![key.customer])),
        }
    }
    groups
}

/// `Customer.orders`: every customer's page in one statement per list.
pub struct CustomerOrdersLoader(pub Arc<ReadModel>);

impl Loader<CustomerOrdersKey> for CustomerOrdersLoader {
    type Value = Arc<OrderPage>;
    type Error = Arc<QueryError>;

    async fn load(&self, keys: &[CustomerOrdersKey]) -> Result<HashMap<CustomerOrdersKey, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for (list, customers) in by_list(keys) {
            let mut pages = self.0.orders_of_customers(&customers, &list.list, list.columns).await.map_err(Arc::new)?;
            for customer in customers {
                let page = pages.remove(&customer).unwrap_or(OrderPage {
                    rows: Vec::new(),
                    cursors: Vec::new(),
                    has_next: false,
                });
                out.insert(CustomerOrdersKey { customer, list: list.clone() }, Arc::new(page));
            }
        }
        Ok(out)
    }
}

/// `Customer.orders { totalCount }`: every customer's count in one statement per list.
pub struct CustomerOrderCountLoader(pub Arc<ReadModel>);

impl Loader<CustomerOrdersKey> for CustomerOrderCountLoader {
    type Value = i64;
    type Error = Arc<QueryError>;

    async fn load(&self, keys: &[CustomerOrdersKey]) -> Result<HashMap<CustomerOrdersKey, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for (list, customers) in by_list(keys) {
            let counts = self.0.count_orders_of_customers(&customers, &list.list).await.map_err(Arc::new)?;
            for customer in customers {
                out.insert(
                    CustomerOrdersKey { customer, list: list.clone() },
                    counts.get(&customer).copied().unwrap_or(0),
                );
            }
        }
        Ok(out)
    }
}

pub type CustomerOrdersLoaderHandle =
    async_graphql::dataloader::DataLoader<CustomerOrdersLoader, async_graphql::dataloader::HashMapCache>;
pub type CustomerOrderCountLoaderHandle =
    async_graphql::dataloader::DataLoader<CustomerOrderCountLoader, async_graphql::dataloader::HashMapCache>;

/// A loader's shared error, as a query error.
pub fn unwrap_arc(e: Arc<QueryError>) -> QueryError {
    Arc::try_unwrap(e).unwrap_or_else(|shared| QueryError::Validation(shared.to_string()))
}
