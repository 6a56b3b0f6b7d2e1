//! The rows the read side hands out: its own structs, one per read view,
//! so the layers above it (`graphql`) never hold an `entity` type. Each is
//! the view's columns, converted from the entity model it is read as.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use entity::read::{customer_view, daily_sales, order_activity, order_summary, product_catalog};

/// A customer's dashboard (`customer_view`): profile plus order counters.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub customer_id: Uuid,
    pub name: String,
    pub email: String,
    pub registered_at: DateTime<Utc>,
    pub registered_position: i64,
    pub orders_placed: i64,
    pub orders_open: i64,
    pub orders_cancelled: i64,
    pub orders_shipped: i64,
    /// Sum of the totals of the customer's orders that are not cancelled.
    pub lifetime_value_cents: i64,
    pub last_order_at: Option<DateTime<Utc>>,
    /// Last applied customer stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// Its relevance to the search it was found by (higher is better).
    pub search_rank: Option<f64>,
}

impl From<customer_view::Model> for CustomerRow {
    fn from(m: customer_view::Model) -> Self {
        Self {
            customer_id: m.customer_id,
            name: m.name,
            email: m.email,
            registered_at: m.registered_at,
            registered_position: m.registered_position,
            orders_placed: m.orders_placed,
            orders_open: m.orders_open,
            orders_cancelled: m.orders_cancelled,
            orders_shipped: m.orders_shipped,
            lifetime_value_cents: m.lifetime_value_cents,
            last_order_at: m.last_order_at,
            version: m.version,
            last_tx_id: m.last_tx_id,
            last_position: m.last_position,
            search_rank: None,
        }
    }
}

/// Sales of one UTC day (`daily_sales`), as a cash-flow view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySalesRow {
    /// UTC day, `YYYY-MM-DD`.
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

impl From<daily_sales::Model> for DailySalesRow {
    fn from(m: daily_sales::Model) -> Self {
        Self {
            day: m.day,
            orders_placed: m.orders_placed,
            orders_cancelled: m.orders_cancelled,
            gross_cents: m.gross_cents,
            cancelled_cents: m.cancelled_cents,
            net_cents: m.net_cents,
            last_tx_id: m.last_tx_id,
            last_position: m.last_position,
        }
    }
}

/// One event on an order's timeline (`order_activity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// The event's log position (one row per order event).
    pub position: i64,
    pub tx_id: i64,
    pub order_id: Uuid,
    pub stream_version: i64,
    pub event_type: String,
    pub description: String,
    pub occurred_at: DateTime<Utc>,
    /// The customer the order belongs to (a customer's reads filter by it).
    pub customer_id: Option<Uuid>,
    /// Who caused the event (`sub`; NULL for events recorded before actors were).
    pub actor_sub: Option<String>,
    /// The actor's role (`customer`, `staff`, `admin`, `anonymous`).
    pub actor_role: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

impl From<order_activity::Model> for ActivityRow {
    fn from(m: order_activity::Model) -> Self {
        Self {
            position: m.position,
            tx_id: m.tx_id,
            order_id: m.order_id,
            stream_version: m.stream_version,
            event_type: m.event_type,
            description: m.description,
            occurred_at: m.occurred_at,
            customer_id: m.customer_id,
            actor_sub: m.actor_sub,
            actor_role: m.actor_role,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
        }
    }
}

/// One order as a page or list shows it (`order_summary`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSummaryRow {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Kept current when the customer is renamed.
    pub customer_name: String,
    pub customer_email: String,
    /// The customer stream version the name and email come from.
    pub customer_version: i64,
    /// JSON text: `[{productId, sku, title, quantity, unitPriceCents, lineTotalCents}]`, titles as at order time.
    pub lines: String,
    pub line_count: i32,
    pub total_cents: i64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    /// Log position of `OrderPlaced`: the newest-first sort key and page cursor.
    pub placed_position: i64,
    /// Last applied order stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// `WEB`, `MOBILE`, `API` or `UNKNOWN` (from `OrderPlaced` v2).
    pub channel: String,
    /// Its relevance to the search it was found by (higher is better).
    pub search_rank: Option<f64>,
}

impl From<order_summary::Model> for OrderSummaryRow {
    fn from(m: order_summary::Model) -> Self {
        Self {
            order_id: m.order_id,
            customer_id: m.customer_id,
            customer_name: m.customer_name,
            customer_email: m.customer_email,
            customer_version: m.customer_version,
            lines: m.lines,
            line_count: m.line_count,
            total_cents: m.total_cents,
            status: m.status,
            cancel_reason: m.cancel_reason,
            carrier: m.carrier,
            tracking_number: m.tracking_number,
            placed_at: m.placed_at,
            cancelled_at: m.cancelled_at,
            shipped_at: m.shipped_at,
            placed_position: m.placed_position,
            version: m.version,
            last_tx_id: m.last_tx_id,
            last_position: m.last_position,
            channel: m.channel,
            search_rank: None,
        }
    }
}

/// A product with its sales (`product_catalog`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    pub product_id: Uuid,
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
    /// Units on orders that are not cancelled.
    pub units_sold: i64,
    /// Revenue of orders that are not cancelled, at the prices they were placed at.
    pub revenue_cents: i64,
    pub added_at: DateTime<Utc>,
    pub added_position: i64,
    /// Last applied product stream version.
    pub version: i64,
    pub last_tx_id: i64,
    pub last_position: i64,
    /// Its relevance to the search it was found by (higher is better).
    pub search_rank: Option<f64>,
}

impl From<product_catalog::Model> for ProductRow {
    fn from(m: product_catalog::Model) -> Self {
        Self {
            product_id: m.product_id,
            sku: m.sku,
            title: m.title,
            price_cents: m.price_cents,
            units_sold: m.units_sold,
            revenue_cents: m.revenue_cents,
            added_at: m.added_at,
            added_position: m.added_position,
            version: m.version,
            last_tx_id: m.last_tx_id,
            last_position: m.last_position,
            search_rank: None,
        }
    }
}
