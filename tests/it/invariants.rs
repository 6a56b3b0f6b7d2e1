//! Every business rule: the right `extensions.code`, and a rejected command
//! appends nothing and changes nothing.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

/// Asserts that `response` failed with `expected` and that the event log did not grow.
async fn rejected(app: &TestApp, before: i64, response: serde_json::Value, expected: &str) {
    assert_eq!(code(&response), expected, "{response}");
    assert!(response["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "a human message: {response}");
    assert_eq!(app.event_count().await, before, "a rejected command appended events");
}

on_both_backends!(unknown_customer_product_or_order_is_not_found, |app| async {
    let seed = app.seed().await;
    let before = app.event_count().await;
    let missing = uuid::Uuid::new_v4().to_string();
    rejected(
        &app,
        before,
        app.place_order_raw(&missing, &[(&seed.tea, 1)], json!(null), json!(null)).await,
        "NOT_FOUND",
    )
    .await;
    rejected(
        &app,
        before,
        app.place_order_raw(&seed.customer, &[(&missing, 1)], json!(null), json!(null)).await,
        "NOT_FOUND",
    )
    .await;
    rejected(&app, before, app.cancel_order(&missing, None).await, "NOT_FOUND").await;
    rejected(&app, before, app.ship_order(&missing).await, "NOT_FOUND").await;
    let rename = app
        .gql(
            "mutation($id: ID!) { renameCustomer(input: {customerId: $id, name: \"X\"}) { token } }",
            json!({ "id": missing }),
        )
        .await;
    rejected(&app, before, rename, "NOT_FOUND").await;
    let price = app
        .gql(
            "mutation($id: ID!) { changeProductPrice(input: {productId: $id, priceCents: 5}) { token } }",
            json!({ "id": missing }),
        )
        .await;
    rejected(&app, before, price, "NOT_FOUND").await;
});

on_both_backends!(malformed_input_is_a_validation_error, |app| async {
    let seed = app.seed().await;
    let before = app.event_count().await;
    rejected(&app, before, app.place_order_raw(&seed.customer, &[], json!(null), json!(null)).await, "VALIDATION")
        .await;
    rejected(
        &app,
        before,
        app.place_order_raw(&seed.customer, &[(&seed.tea, 0)], json!(null), json!(null)).await,
        "VALIDATION",
    )
    .await;
    rejected(
        &app,
        before,
        app.place_order_raw(&seed.customer, &[(&seed.tea, -2)], json!(null), json!(null)).await,
        "VALIDATION",
    )
    .await;
    let add = |price: i64| {
        app.gql(
            "mutation($p: Int!) { addProduct(input: {sku: \"NEW-1\", title: \"New\", priceCents: $p}) { id token } }",
            json!({ "p": price }),
        )
    };
    rejected(&app, before, add(0).await, "VALIDATION").await;
    rejected(&app, before, add(-100).await, "VALIDATION").await;
    let register = |name: &'static str, email: &'static str| {
        app.gql(
            "mutation($n: String!, $e: String!) { registerCustomer(input: {name: $n, email: $e}) { id token } }",
            json!({ "n": name, "e": email }),
        )
    };
    rejected(&app, before, register("Bob", "not-an-email").await, "VALIDATION").await;
    rejected(&app, before, register("   ", "bob@example.com").await, "VALIDATION").await;
    let price = app
        .gql(
            "mutation($id: ID!) { changeProductPrice(input: {productId: $id, priceCents: 0}) { token } }",
            json!({ "id": seed.tea }),
        )
        .await;
    rejected(&app, before, price, "VALIDATION").await;
    let bad_id = app.cancel_order("not-a-uuid", None).await;
    rejected(&app, before, bad_id, "VALIDATION").await;
});

on_both_backends!(duplicates_are_invariant_violations, |app| async {
    let seed = app.seed().await;
    let (order, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let before = app.event_count().await;
    // Duplicate client-supplied order id.
    let again = app.place_order_raw(&seed.customer, &[(&seed.cake, 1)], json!(order), json!(null)).await;
    rejected(&app, before, again, "INVARIANT_VIOLATION").await;
    // Duplicate sku.
    app.add_product("UNIQUE-SKU", "One", 100).await;
    let before = app.event_count().await;
    let dup = app
        .gql(
            "mutation { addProduct(input: {sku: \"UNIQUE-SKU\", title: \"Two\", priceCents: 200}) { id token } }",
            json!({}),
        )
        .await;
    rejected(&app, before, dup, "INVARIANT_VIOLATION").await;
});

on_both_backends!(duplicate_email_is_rejected_even_before_projection, |app| async {
    app.register_customer("Grace", "grace@example.com").await;
    let before = app.event_count().await;
    let dup = app
        .gql(
            "mutation { registerCustomer(input: {name: \"Grace 2\", email: \"Grace@Example.com\"}) { id token } }",
            json!({}),
        )
        .await;
    rejected(&app, before, dup, "INVARIANT_VIOLATION").await;
});

on_both_backends!(cancelling_or_shipping_twice_is_rejected, |app| async {
    let seed = app.seed().await;
    let (shipped, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    assert!(app.ship_order(&shipped).await.get("errors").is_none());
    let (cancelled, _) = app.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    assert!(app.cancel_order(&cancelled, Some("changed my mind")).await.get("errors").is_none());
    let before = app.event_count().await;
    rejected(&app, before, app.cancel_order(&shipped, None).await, "INVARIANT_VIOLATION").await;
    rejected(&app, before, app.cancel_order(&cancelled, None).await, "INVARIANT_VIOLATION").await;
    rejected(&app, before, app.ship_order(&cancelled).await, "INVARIANT_VIOLATION").await;
    rejected(&app, before, app.ship_order(&shipped).await, "INVARIANT_VIOLATION").await;
    // And the write model did not move.
    let statuses = app.scalar_i64("SELECT count(*) FROM customer_order WHERE status = 'PLACED'").await;
    assert_eq!(statuses, 0);
});

on_both_backends!(stale_expected_version_is_a_conflict, |app| async {
    let seed = app.seed().await;
    let (order, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let before = app.event_count().await;
    let stale = app
        .gql(
            "mutation($id: ID!) { cancelOrder(input: {orderId: $id, expectedVersion: 2}) { token } }",
            json!({ "id": order }),
        )
        .await;
    rejected(&app, before, stale, "CONFLICT").await;
    let rename = app
        .gql(
            "mutation($id: ID!) { renameCustomer(input: {customerId: $id, name: \"Ada K\", expectedVersion: 5}) { token } }",
            json!({ "id": seed.customer }),
        )
        .await;
    rejected(&app, before, rename, "CONFLICT").await;
    let price = app
        .gql(
            "mutation($id: ID!) { changeProductPrice(input: {productId: $id, priceCents: 999, expectedVersion: 3}) { token } }",
            json!({ "id": seed.tea }),
        )
        .await;
    rejected(&app, before, price, "CONFLICT").await;
    // The right version is accepted.
    let ok = app
        .gql(
            "mutation($id: ID!) { cancelOrder(input: {orderId: $id, expectedVersion: 1}) { token } }",
            json!({ "id": order }),
        )
        .await;
    assert!(ok.get("errors").is_none(), "{ok}");
    assert_eq!(app.event_count().await, before + 1);
});

#[tokio::test]
async fn every_malformed_id_of_an_input_is_reported_with_its_path() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let seed = app.seed().await;
    let before = app.event_count().await;
    let refused = app
        .gql(
            "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }",
            json!({ "input": { "orderId": "o-1", "customerId": "c-2",
                    "lines": [{ "productId": seed.tea, "quantity": 1 }, { "productId": "p-3", "quantity": 1 }] } }),
        )
        .await;
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    let errors = refused["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "one error for the field: {refused}");
    let paths: Vec<&str> = errors[0]["extensions"]["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, ["orderId", "customerId", "lines[1].productId"], "{refused}");
    let message = errors[0]["message"].as_str().expect("message");
    for shown in ["'o-1'", "'c-2'", "'p-3'"] {
        assert!(message.contains(shown), "{message}");
    }
    assert_eq!(app.event_count().await, before, "nothing appended");
    app.stop().await;
}
