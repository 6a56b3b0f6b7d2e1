//! DataLoaders: cross-view lookups batched into one query per view per
//! request (no N+1), e.g. `OrderSummary.customer` → `customer_view`. The
//! batching is GraphQL's concern; the reads are the query side's.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::query::{CustomerRow, ProductRow, QueryError, ReadModel};

pub struct CustomerLoader(pub ReadModel);
pub struct ProductLoader(pub ReadModel);

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
