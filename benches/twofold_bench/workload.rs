//! What the load looks like: the seeded customers and products, and random
//! orders over them (1–5 distinct products, 1–3 units each).
use uuid::Uuid;

/// SplitMix64: a tiny deterministic generator (the bench has no `rand`).
/// Seeded per operation, so concurrent workers never share state.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
}

/// Everything registered before the orders: orders pick from these.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
}

/// One order to place: indexes into the catalog plus a client-chosen id.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    pub order_id: Uuid,
    pub customer: usize,
    /// `(product index, quantity)`, products distinct.
    pub lines: Vec<(usize, i32)>,
}

impl Catalog {
    /// A random order; `seed` makes it reproducible.
    pub fn random_order(&self, seed: u64) -> OrderSpec {
        let mut rng = Rng::new(seed);
        let customer = rng.below(self.customers.len());
        let line_count = 1 + rng.below(5.min(self.products.len()));
        let mut lines: Vec<(usize, i32)> = Vec::with_capacity(line_count);
        while lines.len() < line_count {
            let product = rng.below(self.products.len());
            if lines.iter().all(|(p, _)| *p != product) {
                lines.push((product, 1 + rng.below(3) as i32));
            }
        }
        OrderSpec { order_id: Uuid::now_v7(), customer, lines }
    }

    /// The `placeOrder` input for an order.
    pub fn place_order_input(&self, order: &OrderSpec) -> serde_json::Value {
        let lines: Vec<serde_json::Value> = order
            .lines
            .iter()
            .map(|(p, q)| serde_json::json!({ "productId": self.products[*p].id, "quantity": q }))
            .collect();
        serde_json::json!({
            "orderId": order.order_id,
            "customerId": self.customers[order.customer].id,
            "lines": lines,
        })
    }

    pub fn total_cents(&self, order: &OrderSpec) -> i64 {
        order.lines.iter().map(|(p, q)| self.products[*p].price_cents * i64::from(*q)).sum()
    }
}
