//! Racing commands: exactly one wins, the log stays consistent.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(twenty_concurrent_cancels_and_ships_have_exactly_one_winner, |app| async {
    let seed = app.seed().await;
    let (order, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let attempts = (0..20).map(|i| {
        let app = &app;
        let order = order.clone();
        async move {
            if i % 2 == 0 {
                app.cancel_order(&order, Some("race")).await
            } else {
                app.ship_order(&order).await
            }
        }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let winners = responses.iter().filter(|r| r.get("errors").is_none()).count();
    assert_eq!(winners, 1, "exactly one command wins: {responses:?}");
    for loser in responses.iter().filter(|r| r.get("errors").is_some()) {
        let c = code(loser);
        assert!(c == "INVARIANT_VIOLATION" || c == "CONFLICT", "a loser is rejected cleanly, got {loser}");
    }
    // The order's stream: versions 1 and 2, nothing else, no duplicate version.
    let versions = app.scalar_i64("SELECT count(*) FROM event WHERE stream_type = 'order'").await;
    assert_eq!(versions, 2);
    assert_eq!(app.scalar_i64("SELECT count(DISTINCT stream_version) FROM event WHERE stream_type = 'order'").await, 2);
    assert_eq!(app.scalar_i64("SELECT version FROM customer_order").await, 2);
});

on_both_backends!(concurrent_orders_for_one_customer_all_land, |app| async {
    let seed = app.seed().await;
    let lines = [(seed.cake.as_str(), 1)];
    let attempts = (0..16).map(|_| app.place_order_raw(&seed.customer, &lines, json!(null), json!(null)));
    let responses = futures_util::future::join_all(attempts).await;
    assert!(responses.iter().all(|r| r.get("errors").is_none()), "{responses:?}");
    app.settle().await;
    let d = app
        .data(
            "query($id: ID!) { customer(id: $id) { ordersPlaced lifetimeValueCents } }",
            json!({ "id": seed.customer }),
        )
        .await;
    assert_eq!(big(&d["customer"]["ordersPlaced"]), 16);
    assert_eq!(big(&d["customer"]["lifetimeValueCents"]), 16 * 1200);
});

on_both_backends!(concurrent_renames_keep_every_version_once, |app| async {
    let seed = app.seed().await;
    let attempts = (0..10).map(|i| {
        app.gql(
            "mutation($id: ID!, $n: String!) { renameCustomer(input: {customerId: $id, name: $n}) { token } }",
            json!({ "id": seed.customer, "n": format!("Name {i}") }),
        )
    });
    let responses = futures_util::future::join_all(attempts).await;
    assert!(responses.iter().all(|r| r.get("errors").is_none()), "renames serialize on the row lock: {responses:?}");
    assert_eq!(app.scalar_i64("SELECT count(DISTINCT stream_version) FROM event WHERE stream_type = 'customer' AND event_type = 'CustomerRenamed'").await, 10);
    assert_eq!(app.scalar_i64("SELECT max(version) FROM customer").await, 11);
});

/// `placeOrder` share-locks what it depends on (PostgreSQL reads the
/// customer and the products in one statement): while another session
/// holds the customer's row, or a product's, for update (as a rename or a
/// price change does), the order waits for it, then lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn place_order_waits_for_a_locked_customer_or_product_on_postgres() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |_| {}).await else { return };
    let seed = app.seed().await;
    let url = &app.database.url;
    let held = [
        ("customer", "SELECT 1 FROM customer WHERE id = $1::uuid FOR UPDATE", &seed.customer),
        ("product", "SELECT 1 FROM product WHERE id = $1::uuid FOR UPDATE", &seed.cake),
    ];
    for (table, hold, id) in held {
        let holder = HeldRow::hold(url, hold, id).await;
        let lines = [(seed.tea.as_str(), 1), (seed.cake.as_str(), 2)];
        let order = app.place_order_raw(&seed.customer, &lines, json!(null), json!(null));
        let release = async {
            holder
                .wait_for_a_waiter(url, "%FOR SHARE%", &format!("placeOrder waited for the locked {table} row"))
                .await;
            holder.release().await;
        };
        let (answer, ()) = tokio::join!(order, release);
        assert!(answer.get("errors").is_none(), "the order lands once the {table} is free: {answer}");
    }
    app.stop().await;
}
