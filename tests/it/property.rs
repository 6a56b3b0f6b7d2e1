//! Property: after any sequence of valid and invalid commands, every read
//! view equals a straightforward fold of the event log, and agrees with the
//! write model's statuses and totals.
use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::{json, Value};
use twofold::domain::DomainEvent;

use crate::helpers::*;
use crate::projections::{all_events, dump};

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Register(u8),
    AddProduct(u8, i64),
    Place(u8, Vec<(u8, i32)>),
    Cancel(u8),
    Ship(u8),
    Rename(u8),
    ChangePrice(u8, i64),
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<u8>().prop_map(Op::Register),
        1 => (any::<u8>(), -100i64..3000).prop_map(|(i, p)| Op::AddProduct(i, p)),
        4 => (any::<u8>(), prop::collection::vec((any::<u8>(), -1i32..4), 0..4)).prop_map(|(c, l)| Op::Place(c, l)),
        2 => any::<u8>().prop_map(Op::Cancel),
        2 => any::<u8>().prop_map(Op::Ship),
        1 => any::<u8>().prop_map(Op::Rename),
        1 => (any::<u8>(), -10i64..3000).prop_map(|(i, p)| Op::ChangePrice(i, p)),
    ]
}

fn pick(list: &[String], i: u8) -> String {
    if list.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        list[i as usize % list.len()].clone()
    }
}

pub(crate) async fn run_ops(app: &TestApp, ops: &[Op]) {
    let (mut customers, mut products, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Register(i) => {
                // Every third registration reuses an email: a rejected duplicate.
                let email =
                    if i % 3 == 0 && n > 0 { "dup@example.com".to_owned() } else { format!("c{n}@example.com") };
                let r = app
                    .gql(
                        "mutation($e: String!, $n: String!) { registerCustomer(input: {name: $n, email: $e}) { id } }",
                        json!({ "e": email, "n": format!("Customer {n}") }),
                    )
                    .await;
                if let Some(id) = r["data"]["registerCustomer"]["id"].as_str() {
                    customers.push(id.to_owned());
                }
            }
            Op::AddProduct(i, price) => {
                let r = app
                    .gql(
                        "mutation($s: String!, $p: Int!) { addProduct(input: {sku: $s, title: \"Product\", priceCents: $p}) { id } }",
                        json!({ "s": format!("SKU-{}", i % 8), "p": price }),
                    )
                    .await;
                if let Some(id) = r["data"]["addProduct"]["id"].as_str() {
                    products.push(id.to_owned());
                }
            }
            Op::Place(c, lines) => {
                let lines: Vec<(String, i32)> = lines.iter().map(|(p, q)| (pick(&products, *p), *q)).collect();
                let refs: Vec<(&str, i32)> = lines.iter().map(|(p, q)| (p.as_str(), *q)).collect();
                let r = app.place_order_raw(&pick(&customers, *c), &refs, json!(null), json!(null)).await;
                if let Some(id) = r["data"]["placeOrder"]["id"].as_str() {
                    orders.push(id.to_owned());
                }
            }
            Op::Cancel(o) => {
                app.cancel_order(&pick(&orders, *o), Some("proptest")).await;
            }
            Op::Ship(o) => {
                app.ship_order(&pick(&orders, *o)).await;
            }
            Op::Rename(c) => {
                app.gql(
                    "mutation($id: ID!) { renameCustomer(input: {customerId: $id, name: \"Renamed\"}) { token } }",
                    json!({ "id": pick(&customers, *c) }),
                )
                .await;
            }
            Op::ChangePrice(p, price) => {
                app.gql("mutation($id: ID!, $p: Int!) { changeProductPrice(input: {productId: $id, priceCents: $p}) { token } }", json!({ "id": pick(&products, *p), "p": price })).await;
            }
        }
    }
}

/// The views, computed the obvious way from the log.
#[derive(Default, Debug, PartialEq)]
struct Expected {
    /// order -> (customer name, status, total, line count)
    orders: BTreeMap<String, (String, String, i64, i64)>,
    /// customer -> (name, placed, open, cancelled, shipped, lifetime value)
    customers: BTreeMap<String, (String, i64, i64, i64, i64, i64)>,
    /// product -> (price, units, revenue)
    products: BTreeMap<String, (i64, i64, i64)>,
    /// day -> (placed, cancelled, gross, cancelled cents, net)
    days: BTreeMap<String, (i64, i64, i64, i64, i64)>,
    activity: i64,
}

fn fold(events: &[twofold::domain::event::RecordedEvent]) -> Expected {
    let mut x = Expected::default();
    let mut names: HashMap<uuid::Uuid, String> = HashMap::new();
    for e in events {
        let day = e.recorded_at.format("%Y-%m-%d").to_string();
        match &e.event {
            DomainEvent::CustomerRegistered(c) => {
                names.insert(c.customer_id, c.name.clone());
                x.customers.insert(c.customer_id.to_string(), (c.name.clone(), 0, 0, 0, 0, 0));
            }
            DomainEvent::CustomerRenamed(c) => {
                names.insert(c.customer_id, c.name.clone());
                x.customers.get_mut(&c.customer_id.to_string()).expect("customer").0 = c.name.clone();
            }
            DomainEvent::ProductAdded(p) => {
                x.products.insert(p.product_id.to_string(), (p.price_cents, 0, 0));
            }
            DomainEvent::ProductPriceChanged(p) => {
                x.products.get_mut(&p.product_id.to_string()).expect("product").0 = p.price_cents;
            }
            DomainEvent::OrderPlaced(o) => {
                x.orders.insert(
                    o.order_id.to_string(),
                    (String::new(), "PLACED".into(), o.total_cents, o.lines.len() as i64),
                );
                let c = x.customers.get_mut(&o.customer_id.to_string()).expect("customer");
                c.1 += 1;
                c.2 += 1;
                c.5 += o.total_cents;
                for l in &o.lines {
                    let p = x.products.get_mut(&l.product_id.to_string()).expect("product");
                    p.1 += i64::from(l.quantity);
                    p.2 += l.line_total_cents().expect("a valid line");
                }
                let d = x.days.entry(day).or_default();
                d.0 += 1;
                d.2 += o.total_cents;
                d.4 += o.total_cents;
                x.activity += 1;
            }
            DomainEvent::OrderCancelled(o) => {
                x.orders.get_mut(&o.order_id.to_string()).expect("order").1 = "CANCELLED".into();
                let c = x.customers.get_mut(&o.customer_id.to_string()).expect("customer");
                c.2 -= 1;
                c.3 += 1;
                c.5 -= o.total_cents;
                for l in &o.lines {
                    let p = x.products.get_mut(&l.product_id.to_string()).expect("product");
                    p.1 -= i64::from(l.quantity);
                    p.2 -= l.line_total_cents;
                }
                let d = x.days.entry(day).or_default();
                d.1 += 1;
                d.3 += o.total_cents;
                d.4 -= o.total_cents;
                x.activity += 1;
            }
            DomainEvent::OrderShipped(o) => {
                x.orders.get_mut(&o.order_id.to_string()).expect("order").1 = "SHIPPED".into();
                let c = x.customers.get_mut(&o.customer_id.to_string()).expect("customer");
                c.2 -= 1;
                c.4 += 1;
                x.activity += 1;
            }
        }
    }
    for (order, row) in x.orders.iter_mut() {
        let customer = events
            .iter()
            .find_map(|e| match &e.event {
                DomainEvent::OrderPlaced(o) if o.order_id.to_string() == *order => Some(o.customer_id),
                _ => None,
            })
            .expect("placed");
        row.0 = names[&customer].clone();
    }
    x
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("integer expected, got {v}"))
}

fn actual(views: &BTreeMap<&'static str, Vec<Value>>) -> Expected {
    let mut x = Expected::default();
    for r in &views["order_summary"] {
        x.orders.insert(
            s(&r["order_id"]),
            (s(&r["customer_name"]), s(&r["status"]), i(&r["total_cents"]), i(&r["line_count"])),
        );
    }
    for r in &views["customer_view"] {
        x.customers.insert(
            s(&r["customer_id"]),
            (
                s(&r["name"]),
                i(&r["orders_placed"]),
                i(&r["orders_open"]),
                i(&r["orders_cancelled"]),
                i(&r["orders_shipped"]),
                i(&r["lifetime_value_cents"]),
            ),
        );
    }
    for r in &views["product_catalog"] {
        x.products.insert(s(&r["product_id"]), (i(&r["price_cents"]), i(&r["units_sold"]), i(&r["revenue_cents"])));
    }
    for r in &views["daily_sales"] {
        x.days.insert(
            s(&r["day"]),
            (
                i(&r["orders_placed"]),
                i(&r["orders_cancelled"]),
                i(&r["gross_cents"]),
                i(&r["cancelled_cents"]),
                i(&r["net_cents"]),
            ),
        );
    }
    x.activity = views["order_activity"].len() as i64;
    x
}

/// Asserts that the views in `db` equal the fold of `events` (the whole log).
pub(crate) async fn assert_views_fold(
    db: &sea_orm::DatabaseConnection,
    events: &[twofold::domain::event::RecordedEvent],
    what: &str,
) {
    let views = dump(db).await;
    assert_eq!(actual(&views), fold(events), "views differ from the fold of the log {what}");
}

async fn check(backend: Backend, ops: Vec<Op>) {
    check_with(backend, ops, |_| {}).await;
}

/// [`check`] on an app with adjusted settings (e.g. split views).
pub(crate) async fn check_with(backend: Backend, ops: Vec<Op>, adjust: impl FnOnce(&mut twofold::settings::Settings)) {
    let Some(app) = TestApp::spawn_with(backend, adjust).await else {
        return;
    };
    run_ops(&app, &ops).await;
    app.settle().await;
    let events = all_events(&app).await;
    let expected = fold(&events);
    assert_views_fold(&app.db, &events, &format!("after {ops:?}")).await;
    // And the write model agrees on statuses and totals.
    for (order, (_, status, total, _)) in &expected.orders {
        let id = uuid::Uuid::parse_str(order).expect("uuid");
        let row = <entity::write::customer_order::Entity as sea_orm::EntityTrait>::find_by_id(id)
            .one(&app.db)
            .await
            .expect("query")
            .expect("order row");
        assert_eq!((&row.status, row.total_cents), (status, *total));
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM customer_order").await as usize, expected.orders.len());
    app.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn views_equal_the_fold_of_the_log_on_sqlite(ops in prop::collection::vec(op(), 5..40)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(check(Backend::Sqlite, ops));
    }

    #[test]
    fn views_equal_the_fold_of_the_log_on_postgres(ops in prop::collection::vec(op(), 5..40)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(check(Backend::Postgres, ops));
    }
}
