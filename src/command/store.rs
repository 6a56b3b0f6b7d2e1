//! Loading, locking and saving aggregates in the normalized write model.
//!
//! The write model rows are the aggregates' snapshots: a command loads one
//! row (plus an order's lines), never folds the stream, so there is no need
//! for event snapshots however long a stream grows.
use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use entity::write::{customer, customer_order, order_line, product};

use super::CommandError;
use crate::db::is_unique_violation;
use crate::domain::customer::Customer;
use crate::domain::order::{Order, OrderLine, OrderStatus};
use crate::domain::product::Product;
use crate::domain::{DomainError, DomainEvent};

/// A state-stored aggregate: the write-model row is its snapshot.
#[async_trait::async_trait]
pub trait Stored: Sized + Send + Sync {
    /// Its name in messages ("customer").
    const WHAT: &'static str;
    fn id(&self) -> Uuid;
    fn version(&self) -> i64;
    /// The customer this aggregate belongs to (`None`: the catalog's).
    fn owner(&self) -> Option<Uuid>;
    /// The domain's fold: the state after `event`.
    fn apply(state: Option<Self>, event: &DomainEvent) -> Option<Self>;
    async fn load(txn: &DatabaseTransaction, id: Uuid, lock: Lock) -> Result<Self, CommandError>;
    async fn insert(&self, txn: &DatabaseTransaction) -> Result<(), CommandError>;
    async fn update(&self, txn: &DatabaseTransaction) -> Result<(), CommandError>;
}

/// How a row is locked for the rest of the transaction (no-op on SQLite,
/// whose single writer already serializes commands).
#[derive(Debug, Clone, Copy)]
pub enum Lock {
    /// The command changes this aggregate.
    ForUpdate,
    /// The command only reads this aggregate but depends on its state.
    ForShare,
}

fn locked<S: QuerySelect>(select: S, lock: Lock) -> S {
    match lock {
        Lock::ForUpdate => select.lock_exclusive(),
        Lock::ForShare => select.lock_shared(),
    }
}

fn customer_from_row(row: customer::Model) -> Customer {
    Customer { id: row.id, name: row.name, email: row.email, version: row.version }
}

fn product_from_row(row: product::Model) -> Product {
    Product { id: row.id, sku: row.sku, title: row.title, price_cents: row.price_cents, version: row.version }
}

async fn load_customer(txn: &DatabaseTransaction, id: Uuid, lock: Lock) -> Result<Customer, CommandError> {
    let row = locked(customer::Entity::find_by_id(id), lock).one(txn).await?;
    row.map(customer_from_row).ok_or_else(|| DomainError::not_found(format!("customer {id} does not exist")).into())
}

/// Loads and share-locks the given products, in id order (a fixed lock order
/// cannot deadlock). Missing products are simply absent from the map.
pub async fn load_products(txn: &DatabaseTransaction, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, CommandError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows = product::Entity::find()
        .filter(product::Column::Id.is_in(ids))
        .order_by_asc(product::Column::Id)
        .lock_shared()
        .all(txn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, product_from_row(r))).collect())
}

/// `placeOrder`'s reads: its customer and its products, share-locked (the
/// customer first, then the products in id order, as [`load_customer`] and
/// [`load_products`] take them one after the other). On PostgreSQL one
/// statement reads both, each in a CTE with its own locking clause: one
/// round trip instead of two on the hottest command (plain SQL makes
/// neither read, so this is the round trip the command adds).
pub async fn load_customer_and_products(
    txn: &DatabaseTransaction,
    customer_id: Uuid,
    product_ids: &[Uuid],
) -> Result<(Customer, HashMap<Uuid, Product>), CommandError> {
    if txn.get_database_backend() != DbBackend::Postgres || product_ids.is_empty() {
        let customer = load_customer(txn, customer_id, Lock::ForShare).await?;
        return Ok((customer, load_products(txn, product_ids).await?));
    }
    #[derive(sea_orm::FromQueryResult)]
    struct Loaded {
        is_customer: bool,
        id: Uuid,
        /// A customer's name, a product's sku.
        first: String,
        /// A customer's email, a product's title.
        second: String,
        price_cents: i64,
        version: i64,
    }
    let mut ids = product_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "WITH c AS (SELECT id, name, email, version FROM customer WHERE id = $1 FOR SHARE), \
         p AS (SELECT id, sku, title, price_cents, version FROM product WHERE id IN ({}) ORDER BY id FOR SHARE) \
         SELECT true AS is_customer, id, name AS first, email AS second, 0::bigint AS price_cents, version FROM c \
         UNION ALL SELECT false, id, sku, title, price_cents, version FROM p",
        placeholders.join(", ")
    );
    let values = std::iter::once(customer_id.into()).chain(ids.iter().map(|id| (*id).into()));
    let statement = sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let mut customer = None;
    let mut products = HashMap::with_capacity(ids.len());
    for row in Loaded::find_by_statement(statement).all(txn).await? {
        if row.is_customer {
            customer = Some(Customer { id: row.id, name: row.first, email: row.second, version: row.version });
        } else {
            let product = Product {
                id: row.id,
                sku: row.first,
                title: row.second,
                price_cents: row.price_cents,
                version: row.version,
            };
            products.insert(row.id, product);
        }
    }
    let customer = customer
        .ok_or_else(|| CommandError::from(DomainError::not_found(format!("customer {customer_id} does not exist"))))?;
    Ok((customer, products))
}

async fn load_product(txn: &DatabaseTransaction, id: Uuid, lock: Lock) -> Result<Product, CommandError> {
    let row = locked(product::Entity::find_by_id(id), lock).one(txn).await?;
    row.map(product_from_row).ok_or_else(|| DomainError::not_found(format!("product {id} does not exist")).into())
}

async fn load_order(txn: &DatabaseTransaction, id: Uuid, lock: Lock) -> Result<Order, CommandError> {
    let Some(row) = locked(customer_order::Entity::find_by_id(id), lock).one(txn).await? else {
        return Err(DomainError::not_found(format!("order {id} does not exist")).into());
    };
    let lines = order_line::Entity::find()
        .filter(order_line::Column::OrderId.eq(id))
        .order_by_asc(order_line::Column::LineNo)
        .all(txn)
        .await?;
    let status = OrderStatus::parse(&row.status)
        .ok_or_else(|| CommandError::Internal(format!("order {id} has an unknown status {}", row.status)))?;
    Ok(Order {
        id: row.id,
        customer_id: row.customer_id,
        status,
        total_cents: row.total_cents,
        lines: lines
            .into_iter()
            .map(|l| OrderLine {
                line_no: l.line_no,
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
            })
            .collect(),
        cancel_reason: row.cancel_reason,
        carrier: row.carrier,
        tracking_number: row.tracking_number,
        version: row.version,
    })
}

/// Inserts `row`; a unique violation of one of the `taken` constraints is
/// the invariant its message describes (checked by the database, one round
/// trip fewer).
async fn insert_unique<A>(txn: &DatabaseTransaction, row: A, taken: &[(&str, String)]) -> Result<(), CommandError>
where
    A: sea_orm::ActiveModelTrait + Send,
{
    match <A::Entity as EntityTrait>::insert(row).exec_without_returning(txn).await {
        Ok(_) => Ok(()),
        Err(e) => match taken.iter().find(|(constraint, _)| is_unique_violation(&e, constraint)) {
            Some((_, message)) => Err(DomainError::invariant(message.clone()).into()),
            None => Err(e.into()),
        },
    }
}

async fn insert_customer(txn: &DatabaseTransaction, c: &Customer) -> Result<(), CommandError> {
    let now = chrono::Utc::now();
    let row = customer::ActiveModel {
        id: Set(c.id),
        name: Set(c.name.clone()),
        email: Set(c.email.clone()),
        version: Set(c.version),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let taken = [
        ("customer_email_key", format!("a customer with email {} is already registered", c.email)),
        ("customer_pkey", format!("customer {} is already registered", c.id)),
    ];
    insert_unique(txn, row, &taken).await
}

/// Writes the new state of an existing aggregate row, guarded by its
/// previous version (optimistic concurrency on top of the row lock).
async fn update_guarded<E: EntityTrait>(
    txn: &DatabaseTransaction,
    update: sea_orm::UpdateMany<E>,
    what: &str,
) -> Result<(), CommandError> {
    let result = update.exec(txn).await?;
    if result.rows_affected != 1 {
        return Err(DomainError::conflict(format!(
            "{what} was changed by another command at the same time; reload it and retry"
        ))
        .into());
    }
    Ok(())
}

async fn update_customer(txn: &DatabaseTransaction, c: &Customer) -> Result<(), CommandError> {
    let update = customer::Entity::update_many()
        .col_expr(customer::Column::Name, c.name.clone().into())
        .col_expr(customer::Column::Version, c.version.into())
        .col_expr(customer::Column::UpdatedAt, chrono::Utc::now().into())
        .filter(customer::Column::Id.eq(c.id))
        .filter(customer::Column::Version.eq(c.version - 1));
    update_guarded(txn, update, "the customer").await
}

async fn insert_product(txn: &DatabaseTransaction, p: &Product) -> Result<(), CommandError> {
    let now = chrono::Utc::now();
    let row = product::ActiveModel {
        id: Set(p.id),
        sku: Set(p.sku.clone()),
        title: Set(p.title.clone()),
        price_cents: Set(p.price_cents),
        version: Set(p.version),
        created_at: Set(now),
        updated_at: Set(now),
    };
    insert_unique(txn, row, &[("product_sku_key", format!("a product with sku {} already exists", p.sku))]).await
}

async fn update_product(txn: &DatabaseTransaction, p: &Product) -> Result<(), CommandError> {
    let update = product::Entity::update_many()
        .col_expr(product::Column::PriceCents, p.price_cents.into())
        .col_expr(product::Column::Version, p.version.into())
        .col_expr(product::Column::UpdatedAt, chrono::Utc::now().into())
        .filter(product::Column::Id.eq(p.id))
        .filter(product::Column::Version.eq(p.version - 1));
    update_guarded(txn, update, "the product").await
}

/// A duplicate order id is caught by the primary key on insert.
async fn insert_order(txn: &DatabaseTransaction, o: &Order) -> Result<(), CommandError> {
    let now = chrono::Utc::now();
    if txn.get_database_backend() == DbBackend::Postgres && !o.lines.is_empty() {
        return insert_order_in_one_statement(txn, o, now).await;
    }
    let header = customer_order::ActiveModel {
        id: Set(o.id),
        customer_id: Set(o.customer_id),
        status: Set(o.status.as_str().to_owned()),
        total_cents: Set(o.total_cents),
        cancel_reason: Set(None),
        carrier: Set(None),
        tracking_number: Set(None),
        version: Set(o.version),
        placed_at: Set(now),
        updated_at: Set(now),
    };
    insert_unique(txn, header, &[("customer_order_pkey", format!("an order with id {} already exists", o.id))]).await?;
    let lines = o.lines.iter().map(|l| order_line::ActiveModel {
        order_id: Set(o.id),
        line_no: Set(l.line_no),
        product_id: Set(l.product_id),
        quantity: Set(l.quantity),
        unit_price_cents: Set(l.unit_price_cents),
    });
    order_line::Entity::insert_many(lines).exec_without_returning(txn).await?;
    Ok(())
}

/// PostgreSQL: the order row and its lines in one statement (the header in
/// a data-modifying CTE), one round trip instead of two on `placeOrder`'s
/// path. The lines' foreign key is checked at the statement's end, when the
/// header is in. Same rows and the same "already exists" answer as the
/// two-INSERT path SQLite takes.
async fn insert_order_in_one_statement(
    txn: &DatabaseTransaction,
    o: &Order,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), CommandError> {
    use std::fmt::Write as _;
    let mut values: Vec<sea_orm::Value> = vec![
        o.id.into(),
        o.customer_id.into(),
        o.status.as_str().into(),
        o.total_cents.into(),
        o.version.into(),
        now.into(),
    ];
    let mut sql = String::from(
        "WITH header AS (INSERT INTO customer_order \
         (id, customer_id, status, total_cents, version, placed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)) \
         INSERT INTO order_line (order_id, line_no, product_id, quantity, unit_price_cents) VALUES ",
    );
    for (i, line) in o.lines.iter().enumerate() {
        let n = values.len();
        let separator = if i == 0 { "" } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(sql, "{separator}($1, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4);
        values.extend([
            line.line_no.into(),
            line.product_id.into(),
            line.quantity.into(),
            line.unit_price_cents.into(),
        ]);
    }
    let statement = sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    match txn.execute_raw(statement).await {
        Ok(_) => Ok(()),
        // The CTE and the outer INSERT run in no promised order, so a taken
        // id shows as either key: lines keyed by this order id exist only
        // if the order does.
        Err(e) if is_unique_violation(&e, "customer_order_pkey") || is_unique_violation(&e, "order_line_pkey") => {
            Err(DomainError::invariant(format!("an order with id {} already exists", o.id)).into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn update_order(txn: &DatabaseTransaction, o: &Order) -> Result<(), CommandError> {
    let update = customer_order::Entity::update_many()
        .col_expr(customer_order::Column::Status, o.status.as_str().into())
        .col_expr(customer_order::Column::CancelReason, o.cancel_reason.clone().into())
        .col_expr(customer_order::Column::Carrier, o.carrier.clone().into())
        .col_expr(customer_order::Column::TrackingNumber, o.tracking_number.clone().into())
        .col_expr(customer_order::Column::Version, o.version.into())
        .col_expr(customer_order::Column::UpdatedAt, chrono::Utc::now().into())
        .filter(customer_order::Column::Id.eq(o.id))
        .filter(customer_order::Column::Version.eq(o.version - 1));
    update_guarded(txn, update, "the order").await
}

/// Each aggregate's row, through [`Stored`]: what the command pipeline
/// loads, inserts and updates.
macro_rules! stored {
    ($aggregate:ty, $what:literal, $owner:expr, $load:ident, $insert:ident, $update:ident) => {
        #[async_trait::async_trait]
        impl Stored for $aggregate {
            const WHAT: &'static str = $what;
            fn id(&self) -> Uuid {
                self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn owner(&self) -> Option<Uuid> {
                let owner: fn(&Self) -> Option<Uuid> = $owner;
                owner(self)
            }
            fn apply(state: Option<Self>, event: &DomainEvent) -> Option<Self> {
                <$aggregate>::apply(state, event)
            }
            async fn load(txn: &DatabaseTransaction, id: Uuid, lock: Lock) -> Result<Self, CommandError> {
                $load(txn, id, lock).await
            }
            async fn insert(&self, txn: &DatabaseTransaction) -> Result<(), CommandError> {
                $insert(txn, self).await
            }
            async fn update(&self, txn: &DatabaseTransaction) -> Result<(), CommandError> {
                $update(txn, self).await
            }
        }
    };
}

stored!(Customer, "customer", |c| Some(c.id), load_customer, insert_customer, update_customer);
stored!(Product, "product", |_| None, load_product, insert_product, update_product);
stored!(Order, "order", |o| Some(o.customer_id), load_order, insert_order, update_order);
