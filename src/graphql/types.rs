//! Output types: thin wrappers over the read rows.
use async_graphql::{ComplexObject, Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::error::from_query;
use super::loaders::{unwrap_arc, CustomerLoaderHandle, ProductLoaderHandle};
use super::scalars::{int, BigInt, Token};
use crate::admin::ProjectionState;
use crate::query::{ActivityRow, CustomerRow, DailySalesRow, OrderSummaryRow, ProductRow};
use crate::token::LogPosition;

pub use super::enums::{OrderStatus, SalesChannel};

/// A stored value that is not one of the enum's: the view is corrupt, so
/// an internal error (with an incident id), never a silent default.
fn stored<T>(what: &str, value: &str, parsed: Option<T>) -> async_graphql::Result<T> {
    parsed.ok_or_else(|| {
        super::error::internal_error_of(&format_args!(
            "order_summary holds {what} {value:?}, which is not one of its values"
        ))
    })
}

/// Who did something, as recorded in the event log.
#[derive(SimpleObject)]
pub struct Actor {
    /// The token's `sub` (`open` in development mode; `twofold …` for operator commands).
    pub sub: String,
    pub role: super::access::ViewerRole,
}

/// An order, as the `order_summary` view shows it.
pub struct OrderSummary(pub OrderSummaryRow);

impl AsRef<OrderSummaryRow> for OrderSummary {
    fn as_ref(&self) -> &OrderSummaryRow {
        &self.0
    }
}

/// One line of an order, with the product's sku and title as at order time.
#[derive(SimpleObject, serde::Deserialize)]
#[graphql(complex)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    #[graphql(skip)]
    pub product_id: uuid::Uuid,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    #[graphql(skip)]
    pub unit_price_cents: i64,
    #[graphql(skip)]
    pub line_total_cents: i64,
}

#[ComplexObject]
impl OrderLine {
    /// The unit price paid, in cents (at most 100,000,000).
    async fn unit_price_cents(&self) -> async_graphql::Result<i32> {
        int("unitPriceCents", self.unit_price_cents)
    }
    /// Quantity × unit price, in cents (at most an order's total).
    async fn line_total_cents(&self) -> async_graphql::Result<i32> {
        int("lineTotalCents", self.line_total_cents)
    }

    #[graphql(name = "productId")]
    async fn product_id_field(&self) -> ID {
        ID(self.product_id.to_string())
    }

    /// The product as the catalog shows it now (current price and sales).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let loader = ctx.data::<ProductLoaderHandle>()?;
        let row = loader.load_one(self.product_id).await.map_err(|e| from_query(unwrap_arc(e)))?;
        Ok(row.map(Product))
    }
}

/// The product ids in an order summary's `lines` JSON.
pub fn line_product_ids(lines: &str) -> Result<Vec<uuid::Uuid>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Id {
        product_id: uuid::Uuid,
    }
    Ok(serde_json::from_str::<Vec<Id>>(lines)?.into_iter().map(|i| i.product_id).collect())
}

/// Global object identification (Relay). Every id is a UUID that names
/// exactly one stream of the event log, whatever its type (an id taken by
/// a customer cannot be reused for an order), so the `id` each type already
/// has is its global id: stable, and the same one commands take.
#[derive(async_graphql::Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "A UUID, unique across every type: pass it to `node(id:)`."))]
pub enum Node {
    OrderSummary(OrderSummary),
    Customer(Customer),
    Product(Product),
}

#[Object]
impl OrderSummary {
    async fn id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    /// The customer's current name (kept up to date on rename).
    async fn customer_name(&self) -> &str {
        &self.0.customer_name
    }
    async fn customer_email(&self) -> &str {
        &self.0.customer_email
    }
    /// The customer's dashboard (batched through a DataLoader).
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let loader = ctx.data::<CustomerLoaderHandle>()?;
        let row = loader.load_one(self.0.customer_id).await.map_err(|e| from_query(unwrap_arc(e)))?;
        Ok(row.map(Customer))
    }
    async fn lines(&self) -> async_graphql::Result<Vec<OrderLine>> {
        serde_json::from_str(&self.0.lines).map_err(|e| {
            super::error::internal_error_of(&format!("order {}: stored lines cannot be read: {e}", self.0.order_id))
        })
    }
    /// At most 100.
    async fn line_count(&self) -> i32 {
        self.0.line_count
    }
    /// The order's total in cents (at most 1,000,000,000: see docs/frontend.md, "Money and counters").
    async fn total_cents(&self) -> async_graphql::Result<i32> {
        int("totalCents", self.0.total_cents)
    }
    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        stored("status", &self.0.status, crate::domain::order::OrderStatus::parse(&self.0.status)).map(Into::into)
    }
    async fn cancel_reason(&self) -> Option<&str> {
        self.0.cancel_reason.as_deref()
    }
    async fn carrier(&self) -> Option<&str> {
        self.0.carrier.as_deref()
    }
    async fn tracking_number(&self) -> Option<&str> {
        self.0.tracking_number.as_deref()
    }
    async fn placed_at(&self) -> DateTime<Utc> {
        self.0.placed_at
    }
    async fn cancelled_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancelled_at
    }
    async fn shipped_at(&self) -> Option<DateTime<Utc>> {
        self.0.shipped_at
    }
    /// Where the order was placed.
    async fn channel(&self) -> async_graphql::Result<SalesChannel> {
        let channel = &self.0.channel;
        stored("channel", channel, crate::domain::event::SalesChannel::parse(channel)).map(Into::into)
    }
    /// The order's version; pass as `expectedVersion` to guard a command.
    async fn version(&self) -> async_graphql::Result<i32> {
        int("version", self.0.version)
    }
    /// Relevance to the list's `search`: higher is better; null outside a
    /// search. Comparable only within one answer (each store ranks its own
    /// way: PostgreSQL's `ts_rank_cd`, SQLite's `bm25`).
    async fn search_rank(&self) -> Option<f64> {
        self.0.search_rank
    }
}

/// A customer dashboard (`customer_view`).
pub struct Customer(pub CustomerRow);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }
    /// All orders ever placed.
    async fn orders_placed(&self) -> BigInt {
        BigInt(self.0.orders_placed)
    }
    /// Orders placed and neither cancelled nor shipped.
    async fn orders_open(&self) -> BigInt {
        BigInt(self.0.orders_open)
    }
    async fn orders_cancelled(&self) -> BigInt {
        BigInt(self.0.orders_cancelled)
    }
    async fn orders_shipped(&self) -> BigInt {
        BigInt(self.0.orders_shipped)
    }
    /// Sum of the totals of orders that are not cancelled, in cents.
    async fn lifetime_value_cents(&self) -> BigInt {
        BigInt(self.0.lifetime_value_cents)
    }
    async fn last_order_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_order_at
    }
    /// Pass as `expectedVersion` to guard a command.
    async fn version(&self) -> async_graphql::Result<i32> {
        int("version", self.0.version)
    }
    /// Relevance to the list's `search`: higher is better; null outside a
    /// search. Comparable only within one answer (each store ranks its own
    /// way: PostgreSQL's `ts_rank_cd`, SQLite's `bm25`).
    async fn search_rank(&self) -> Option<f64> {
        self.0.search_rank
    }
    /// The customer's orders: newest first, or as `orderBy` says; narrowed
    /// by `filter` (any filter and sort: one customer's orders). Under a
    /// list of customers, every customer's page is read in one statement.
    #[graphql(complexity = "super::lists::page_cost(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Narrows the list (any filter and sort: one customer's orders; not `customerId`).")]
        filter: Option<super::lists::OrderFilter>,
        #[graphql(desc = "One sort (ties by id). Default: `PLACED_AT DESC`.")] order_by: Option<
            Vec<super::lists::OrderOrderBy>,
        >,
        #[graphql(desc = "Page size, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the page before, exactly as returned.")] after: Option<String>,
    ) -> async_graphql::Result<super::direct::ListedPage<OrderSummary>> {
        if filter.as_ref().is_some_and(|f| f.customer_id.is_some()) {
            return Err(super::error::validation(
                "Customer.orders lists this customer's orders: drop filter.customerId",
            ));
        }
        // The customer goes into the statement (all the request's customers
        // at once), not into the list, which every customer shares.
        let list = super::lists::order_list(None, filter, order_by, None, None, first, after)?;
        let columns = super::lists::order_columns(ctx);
        let key = super::loaders::CustomerOrdersKey {
            customer: self.0.customer_id,
            list: super::loaders::CustomerOrdersList::new(list.clone(), columns),
        };
        let loader = ctx.data::<super::loaders::CustomerOrdersLoaderHandle>()?;
        let page = loader.load_one(key.clone()).await.map_err(|e| from_query(unwrap_arc(e)))?;
        let empty = crate::query::orders::OrderPage { rows: Vec::new(), cursors: Vec::new(), has_next: false };
        let page = page.map(|p| (*p).clone()).unwrap_or(empty);
        let rows = page
            .cursors
            .into_iter()
            .zip(page.rows.into_iter().map(|row| super::direct::ListedOrder(OrderSummary(row))));
        Ok(super::direct::ListedPage(super::lists::page(
            rows,
            list.after.is_some(),
            page.has_next,
            super::lists::CountOf::CustomerOrders(key),
        )))
    }
}

/// A catalog entry with its sales (`product_catalog`).
pub struct Product(pub ProductRow);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.product_id.to_string())
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// The current price in cents (at most 100,000,000).
    async fn price_cents(&self) -> async_graphql::Result<i32> {
        int("priceCents", self.0.price_cents)
    }
    /// Units on orders that are not cancelled.
    async fn units_sold(&self) -> BigInt {
        BigInt(self.0.units_sold)
    }
    /// Revenue of orders that are not cancelled, at the prices paid, in cents.
    async fn revenue_cents(&self) -> BigInt {
        BigInt(self.0.revenue_cents)
    }
    async fn added_at(&self) -> DateTime<Utc> {
        self.0.added_at
    }
    async fn version(&self) -> async_graphql::Result<i32> {
        int("version", self.0.version)
    }
    /// Relevance to the list's `search`: higher is better; null outside a
    /// search. Comparable only within one answer (each store ranks its own
    /// way: PostgreSQL's `ts_rank_cd`, SQLite's `bm25`).
    async fn search_rank(&self) -> Option<f64> {
        self.0.search_rank
    }
}

/// Sales of one UTC day. A cancellation counts on the day it happens.
pub struct DailySales(pub DailySalesRow);

#[Object]
impl DailySales {
    /// `YYYY-MM-DD` (UTC).
    async fn day(&self) -> &str {
        &self.0.day
    }
    async fn orders_placed(&self) -> BigInt {
        BigInt(self.0.orders_placed)
    }
    async fn orders_cancelled(&self) -> BigInt {
        BigInt(self.0.orders_cancelled)
    }
    /// Totals of the orders placed on this day, in cents.
    async fn gross_cents(&self) -> BigInt {
        BigInt(self.0.gross_cents)
    }
    /// Totals of the orders cancelled on this day, in cents.
    async fn cancelled_cents(&self) -> BigInt {
        BigInt(self.0.cancelled_cents)
    }
    /// Gross minus cancellations, in cents.
    async fn net_cents(&self) -> BigInt {
        BigInt(self.0.net_cents)
    }
}

/// One entry of an order's timeline.
pub struct OrderActivity(pub ActivityRow);

#[Object]
impl OrderActivity {
    async fn order_id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    /// The order version this event brought the order to.
    async fn version(&self) -> async_graphql::Result<i32> {
        int("version", self.0.stream_version)
    }
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Who did this step (`null` for steps recorded before actors were).
    async fn actor(&self) -> Option<Actor> {
        let sub = self.0.actor_sub.clone()?;
        let role = crate::domain::Role::parse(self.0.actor_role.as_deref()?)?;
        Some(Actor { sub, role: role.into() })
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// The event's position in the log.
    async fn token(&self) -> Token {
        Token(LogPosition::new(self.0.tx_id, self.0.position))
    }
    /// The work the event belongs to: the `Twofold-Correlation-Id` of the
    /// request that caused it, or else the root command's id. Null for
    /// steps recorded before it was (until `twofold rebuild order_activity`).
    async fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }
    /// What caused the event: the command's `commandId` (or the id the
    /// command was given, when it had none).
    async fn causation_id(&self) -> Option<&str> {
        self.0.causation_id.as_deref()
    }
}

/// An event a projection could not apply.
pub struct DeadLetter(pub crate::admin::DeadLetter);

#[Object]
impl DeadLetter {
    async fn id(&self) -> ID {
        ID(self.0.id().to_string())
    }
    async fn projection(&self) -> &str {
        self.0.projection()
    }
    /// The event's position in the log.
    async fn token(&self) -> Token {
        Token(self.0.event())
    }
    async fn stream_id(&self) -> ID {
        ID(self.0.stream_id().to_string())
    }
    async fn event_type(&self) -> &str {
        self.0.event_type()
    }
    /// Why it could not be applied.
    async fn error(&self) -> &str {
        self.0.error()
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at()
    }
    /// `retried` or `skipped` once an operator acted; null while open.
    async fn resolution(&self) -> Option<&'static str> {
        self.0.resolution().map(crate::catalog::Resolution::as_str)
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at()
    }
}

pub struct ProjectionStatus(pub ProjectionState);

#[Object]
impl ProjectionStatus {
    async fn name(&self) -> &str {
        self.0.name()
    }
    /// `async` or `inline`.
    async fn mode(&self) -> &str {
        self.0.mode().as_str()
    }
    /// `running`, `retrying` (failing, with back-off; see `lastError`),
    /// `stalled` (behind the log with no progress for `--stall-after-ms`;
    /// `waitingOn` says on what), `stopped` (a poison event under the `stop`
    /// policy), `rebuilding`, or `outdated` (this instance is older than an
    /// event it met; a newer one takes over). Derived from facts when asked,
    /// on whichever instance answers.
    async fn status(&self) -> &str {
        self.0.status().as_str()
    }
    /// While `stalled`: what the projection waits on.
    async fn waiting_on(&self) -> Option<ProjectionWait> {
        self.0.waiting_on.clone().map(ProjectionWait)
    }
    /// How long the projection has been behind the log without progress,
    /// in seconds (0 at the head).
    async fn seconds_since_progress(&self) -> f64 {
        self.0.behind_for.as_secs_f64()
    }
    /// Every write with a token at or before this one is visible in the projection.
    async fn checkpoint(&self) -> Token {
        Token(self.0.checkpoint())
    }
    /// Committed events not yet applied.
    async fn lag(&self) -> BigInt {
        BigInt(self.0.lag)
    }
    async fn events_applied(&self) -> BigInt {
        BigInt(self.0.events_applied())
    }
    /// Consecutive failed attempts while `retrying` (0 while healthy).
    async fn attempts(&self) -> BigInt {
        BigInt(self.0.attempts())
    }
    /// What explains the status: while `stalled`, what the projection
    /// waits on; while `retrying`, why its last step failed; while
    /// `stopped` or `outdated`, the reason. Null while `running`.
    async fn last_error(&self) -> Option<String> {
        self.0.last_error()
    }
    /// While `rebuilding`: how far the replay has come, in percent.
    async fn rebuild_percent(&self) -> Option<f64> {
        self.0.rebuild_percent()
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at()
    }
}

// The catalog's variants, held equal by `remote`.
/// What a stalled projection waits on.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::catalog::WaitKind")]
pub enum ProjectionWaitKind {
    /// A lock another database session holds (see `blockers`).
    Lock,
    /// The SQLite write lock, held by another connection or process.
    SqliteWriteLock,
    /// An open event writer's transaction holds the horizon back.
    Horizon,
    /// This process's SQLite writer slot, held by another task.
    WriterSlot,
    /// The database cannot be reached.
    DatabaseOutage,
    /// The runner fails with another error and retries (see `detail`).
    Failing,
    /// No instance runs the projection (no heartbeat).
    NoRunner,
    /// The runner is alive and names no cause.
    Unknown,
}

/// What a stalled projection waits on, and since when.
pub struct ProjectionWait(pub crate::notice::progress::Wait);

#[Object]
impl ProjectionWait {
    async fn kind(&self) -> ProjectionWaitKind {
        self.0.kind.into()
    }
    /// One line for an operator.
    async fn detail(&self) -> &str {
        &self.0.detail
    }
    async fn since(&self) -> DateTime<Utc> {
        self.0.since
    }
    /// For `LOCK`: the sessions holding the lock (PostgreSQL).
    async fn blockers(&self) -> Vec<LockHolder> {
        self.0.blockers.iter().cloned().map(LockHolder).collect()
    }
}

/// A database session holding a lock a projection waits for.
pub struct LockHolder(pub crate::notice::progress::Blocker);

#[Object]
impl LockHolder {
    async fn pid(&self) -> i32 {
        self.0.pid
    }
    async fn application_name(&self) -> &str {
        &self.0.application_name
    }
    /// `active`, `idle in transaction`, …
    async fn state(&self) -> &str {
        &self.0.state
    }
    /// How long its transaction has lasted, in seconds.
    async fn held_seconds(&self) -> f64 {
        self.0.held_seconds
    }
    /// The lock, e.g. `AccessExclusiveLock on order_summary`.
    async fn lock(&self) -> &str {
        &self.0.lock
    }
}
