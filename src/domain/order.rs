//! The order aggregate: placed, then either cancelled or shipped, never both.
use std::collections::HashMap;

use uuid::Uuid;

use super::customer::Customer;
use super::event::{CancelledLine, OrderCancelled, OrderPlaced, OrderShipped, PlacedLine, SalesChannel};
use super::product::Product;
use super::validate::{self, MAX_ORDER_LINES, MAX_ORDER_TOTAL_CENTS, MAX_QUANTITY, MAX_TEXT_CHARS};
use super::{DomainError, DomainEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Placed,
    Cancelled,
    Shipped,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Cancelled => "CANCELLED",
            Self::Shipped => "SHIPPED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PLACED" => Some(Self::Placed),
            "CANCELLED" => Some(Self::Cancelled),
            "SHIPPED" => Some(Self::Shipped),
            _ => None,
        }
    }
}

/// A requested order line, before the product is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineRequest {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// The lines of an order to place, checked once: at least one, at most
/// [`MAX_ORDER_LINES`], each quantity from 1 to [`MAX_QUANTITY`]. Holding
/// one is the proof; nothing checks them again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct OrderLines(Vec<LineRequest>);

impl OrderLines {
    /// Checks the shape of requested lines before anything is looked up, so
    /// a malformed order is a `VALIDATION` error whatever the ids refer to.
    pub fn parse(lines: Vec<LineRequest>) -> Result<Self, DomainError> {
        if lines.is_empty() {
            return Err(DomainError::validation("an order needs at least one line"));
        }
        if lines.len() > MAX_ORDER_LINES {
            return Err(DomainError::validation(format!("an order has at most {MAX_ORDER_LINES} lines")));
        }
        for (i, line) in lines.iter().enumerate() {
            if line.quantity <= 0 {
                return Err(DomainError::validation(format!(
                    "line {}: quantity must be greater than 0, got {}",
                    i + 1,
                    line.quantity
                )));
            }
            if line.quantity > MAX_QUANTITY {
                return Err(DomainError::validation(format!(
                    "line {}: quantity must be at most {MAX_QUANTITY}",
                    i + 1
                )));
            }
        }
        Ok(Self(lines))
    }

    pub fn iter(&self) -> impl Iterator<Item = &LineRequest> {
        self.0.iter()
    }

    /// The products the lines ask for.
    pub fn product_ids(&self) -> Vec<Uuid> {
        self.0.iter().map(|l| l.product_id).collect()
    }
}

/// A line of an existing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub line_no: i32,
    pub product_id: Uuid,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// An order's current state (the `customer_order` row and its `order_line` rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub total_cents: i64,
    pub lines: Vec<OrderLine>,
    pub cancel_reason: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub version: i64,
}

impl Order {
    /// Decides the placement of an order for `customer`, pricing each line at
    /// the product's current price. `products` must hold every requested
    /// product; a missing one is `NOT_FOUND`.
    pub fn place(
        order_id: Uuid,
        customer: &Customer,
        lines: &OrderLines,
        products: &HashMap<Uuid, Product>,
        channel: SalesChannel,
    ) -> Result<DomainEvent, DomainError> {
        let mut placed = Vec::with_capacity(lines.0.len());
        let mut total: i64 = 0;
        for (i, line) in lines.iter().enumerate() {
            let product = products
                .get(&line.product_id)
                .ok_or_else(|| DomainError::not_found(format!("product {} does not exist", line.product_id)))?;
            let placed_line = PlacedLine {
                line_no: i as i32 + 1,
                product_id: product.id,
                sku: product.sku.clone(),
                title: product.title.clone(),
                quantity: line.quantity,
                unit_price_cents: product.price_cents,
            };
            total = placed_line
                .line_total_cents()
                .and_then(|line| total.checked_add(line))
                .filter(|t| *t <= MAX_ORDER_TOTAL_CENTS)
                .ok_or_else(|| {
                    DomainError::validation(format!(
                        "an order's total must be at most {MAX_ORDER_TOTAL_CENTS} cents ($10,000,000.00)"
                    ))
                })?;
            placed.push(placed_line);
        }
        Ok(DomainEvent::OrderPlaced(OrderPlaced {
            order_id,
            customer_id: customer.id,
            customer_name: customer.name.clone(),
            customer_email: customer.email.clone(),
            customer_version: customer.version,
            lines: placed,
            total_cents: total,
            channel,
        }))
    }

    pub fn cancel(&self, reason: Option<&str>, expected_version: Option<i64>) -> Result<DomainEvent, DomainError> {
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => Some(validate::required_text("reason", r, MAX_TEXT_CHARS)?),
            None => None,
        };
        DomainError::check_expected_version("order", expected_version, self.version)?;
        match self.status {
            OrderStatus::Placed => {}
            OrderStatus::Cancelled => {
                return Err(DomainError::invariant(format!("order {} is already cancelled", self.id)))
            }
            OrderStatus::Shipped => {
                return Err(DomainError::invariant(format!(
                    "order {} has been shipped and can no longer be cancelled",
                    self.id
                )))
            }
        }
        Ok(DomainEvent::OrderCancelled(OrderCancelled {
            order_id: self.id,
            customer_id: self.customer_id,
            reason,
            total_cents: self.total_cents,
            lines: self
                .lines
                .iter()
                .map(|l| CancelledLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    // Bounded by the placement's limits (unit price × quantity ≤ the order's total).
                    line_total_cents: l.unit_price_cents.saturating_mul(i64::from(l.quantity)),
                })
                .collect(),
        }))
    }

    pub fn ship(
        &self,
        carrier: &str,
        tracking_number: &str,
        expected_version: Option<i64>,
    ) -> Result<DomainEvent, DomainError> {
        let carrier = validate::required_text("carrier", carrier, MAX_TEXT_CHARS)?;
        let tracking_number = validate::required_text("trackingNumber", tracking_number, MAX_TEXT_CHARS)?;
        DomainError::check_expected_version("order", expected_version, self.version)?;
        match self.status {
            OrderStatus::Placed => {}
            OrderStatus::Cancelled => {
                return Err(DomainError::invariant(format!("order {} is cancelled and cannot be shipped", self.id)))
            }
            OrderStatus::Shipped => {
                return Err(DomainError::invariant(format!("order {} has already been shipped", self.id)))
            }
        }
        Ok(DomainEvent::OrderShipped(OrderShipped {
            order_id: self.id,
            customer_id: self.customer_id,
            carrier,
            tracking_number,
        }))
    }

    pub fn apply(state: Option<Self>, event: &DomainEvent) -> Option<Self> {
        match (state, event) {
            (None, DomainEvent::OrderPlaced(e)) => Some(Self {
                id: e.order_id,
                customer_id: e.customer_id,
                status: OrderStatus::Placed,
                total_cents: e.total_cents,
                lines: e
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        line_no: l.line_no,
                        product_id: l.product_id,
                        quantity: l.quantity,
                        unit_price_cents: l.unit_price_cents,
                    })
                    .collect(),
                cancel_reason: None,
                carrier: None,
                tracking_number: None,
                version: 1,
            }),
            (Some(mut o), DomainEvent::OrderCancelled(e)) => {
                o.status = OrderStatus::Cancelled;
                o.cancel_reason = e.reason.clone();
                o.version += 1;
                Some(o)
            }
            (Some(mut o), DomainEvent::OrderShipped(e)) => {
                o.status = OrderStatus::Shipped;
                o.carrier = Some(e.carrier.clone());
                o.tracking_number = Some(e.tracking_number.clone());
                o.version += 1;
                Some(o)
            }
            (state, _) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        customer: Customer,
        products: HashMap<Uuid, Product>,
        tea: Uuid,
        cake: Uuid,
    }

    fn world() -> World {
        let customer = Customer { id: Uuid::now_v7(), name: "Ada".into(), email: "ada@example.com".into(), version: 1 };
        let tea = Product { id: Uuid::now_v7(), sku: "TEA".into(), title: "Tea".into(), price_cents: 450, version: 1 };
        let cake =
            Product { id: Uuid::now_v7(), sku: "CAKE".into(), title: "Cake".into(), price_cents: 1200, version: 3 };
        let (tea_id, cake_id) = (tea.id, cake.id);
        World { customer, products: HashMap::from([(tea.id, tea), (cake.id, cake)]), tea: tea_id, cake: cake_id }
    }

    fn lines(lines: &[(Uuid, i32)]) -> OrderLines {
        OrderLines::parse(lines.iter().map(|&(product_id, quantity)| LineRequest { product_id, quantity }).collect())
            .expect("valid lines")
    }

    fn given_placed(w: &World) -> Order {
        let lines = lines(&[(w.tea, 2), (w.cake, 1)]);
        let placed = Order::place(Uuid::now_v7(), &w.customer, &lines, &w.products, SalesChannel::Web).unwrap();
        Order::apply(None, &placed).unwrap()
    }

    #[test]
    fn placing_an_order_prices_lines_at_current_prices() {
        let w = world();
        // when
        let lines = lines(&[(w.tea, 2), (w.cake, 1)]);
        let DomainEvent::OrderPlaced(e) =
            Order::place(Uuid::now_v7(), &w.customer, &lines, &w.products, SalesChannel::Web).unwrap()
        else {
            panic!("expected OrderPlaced")
        };
        // then
        assert_eq!(e.total_cents, 2 * 450 + 1200);
        assert_eq!(e.customer_name, "Ada");
        assert_eq!(e.lines[1].title, "Cake");
        assert_eq!(e.lines.iter().map(|l| l.line_no).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn an_empty_order_or_a_bad_quantity_is_rejected_before_anything_is_looked_up() {
        let w = world();
        assert!(matches!(OrderLines::parse(Vec::new()), Err(DomainError::Validation(_))));
        for quantity in [0, -3, validate::MAX_QUANTITY + 1] {
            let lines = vec![LineRequest { product_id: w.tea, quantity }];
            assert!(matches!(OrderLines::parse(lines), Err(DomainError::Validation(_))));
        }
        let too_many =
            (0..=validate::MAX_ORDER_LINES).map(|_| LineRequest { product_id: w.tea, quantity: 1 }).collect();
        assert!(matches!(OrderLines::parse(too_many), Err(DomainError::Validation(_))));
    }

    #[test]
    fn an_order_above_the_maximum_total_is_rejected() {
        let mut w = world();
        w.products.get_mut(&w.cake).expect("cake").price_cents = validate::MAX_PRICE_CENTS;
        let lines = lines(&[(w.cake, 11)]);
        let err = Order::place(Uuid::now_v7(), &w.customer, &lines, &w.products, SalesChannel::Web).expect_err("$11M");
        assert!(matches!(err, DomainError::Validation(m) if m.contains("at most")));
        let lines = self::lines(&[(w.cake, 10)]);
        assert!(
            Order::place(Uuid::now_v7(), &w.customer, &lines, &w.products, SalesChannel::Web).is_ok(),
            "$10M is the limit"
        );
    }

    #[test]
    fn ordering_an_unknown_product_is_not_found() {
        let w = world();
        let lines = lines(&[(Uuid::now_v7(), 1)]);
        assert!(matches!(
            Order::place(Uuid::now_v7(), &w.customer, &lines, &w.products, SalesChannel::Web),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn cancelling_a_placed_order_reverses_its_lines() {
        let w = world();
        let order = given_placed(&w);
        let DomainEvent::OrderCancelled(e) = order.cancel(Some(" changed my mind "), Some(1)).unwrap() else {
            panic!()
        };
        assert_eq!(e.reason.as_deref(), Some("changed my mind"));
        assert_eq!(e.total_cents, 2100);
        assert_eq!(e.lines.iter().map(|l| l.line_total_cents).sum::<i64>(), 2100);
    }

    #[test]
    fn cancelling_a_shipped_order_is_rejected() {
        let w = world();
        let order = given_placed(&w);
        let order = Order::apply(Some(order.clone()), &order.ship("DHL", "1Z", None).unwrap()).unwrap();
        assert!(matches!(order.cancel(None, None), Err(DomainError::InvariantViolation(_))));
    }

    #[test]
    fn cancelling_a_cancelled_order_is_rejected() {
        let w = world();
        let order = given_placed(&w);
        let order = Order::apply(Some(order.clone()), &order.cancel(None, None).unwrap()).unwrap();
        assert!(matches!(order.cancel(None, None), Err(DomainError::InvariantViolation(_))));
    }

    #[test]
    fn shipping_a_cancelled_or_shipped_order_is_rejected() {
        let w = world();
        let placed = given_placed(&w);
        let cancelled = Order::apply(Some(placed.clone()), &placed.cancel(None, None).unwrap()).unwrap();
        assert!(matches!(cancelled.ship("DHL", "1Z", None), Err(DomainError::InvariantViolation(_))));
        let shipped = Order::apply(Some(placed.clone()), &placed.ship("DHL", "1Z", None).unwrap()).unwrap();
        assert_eq!(shipped.version, 2);
        assert!(matches!(shipped.ship("DHL", "1Z", None), Err(DomainError::InvariantViolation(_))));
    }

    #[test]
    fn shipping_needs_a_carrier_and_tracking_number() {
        let w = world();
        let placed = given_placed(&w);
        assert!(matches!(placed.ship(" ", "1Z", None), Err(DomainError::Validation(_))));
        assert!(matches!(placed.ship("DHL", "", None), Err(DomainError::Validation(_))));
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict() {
        let w = world();
        let placed = given_placed(&w);
        assert!(matches!(placed.ship("DHL", "1Z", Some(2)), Err(DomainError::Conflict(_))));
        assert!(matches!(placed.cancel(None, Some(0)), Err(DomainError::Conflict(_))));
    }
}
