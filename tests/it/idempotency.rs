//! Idempotent retries by `commandId`.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(a_retried_command_returns_the_first_result_and_appends_nothing, |app| async {
    let seed = app.seed().await;
    let first = app.place_order_raw(&seed.customer, &[(&seed.tea, 2)], json!(null), json!("retry-1")).await;
    let before = app.event_count().await;
    let second = app.place_order_raw(&seed.customer, &[(&seed.tea, 2)], json!(null), json!("retry-1")).await;
    assert_eq!(first["data"], second["data"], "the retry returns the first ack");
    assert_eq!(app.event_count().await, before);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM customer_order").await, 1);
});

on_both_backends!(the_same_command_id_for_another_command_is_a_conflict, |app| async {
    let seed = app.seed().await;
    let first = app.place_order_raw(&seed.customer, &[(&seed.tea, 2)], json!(null), json!("key-1")).await;
    assert!(first.get("errors").is_none());
    let before = app.event_count().await;
    let other = app.place_order_raw(&seed.customer, &[(&seed.tea, 3)], json!(null), json!("key-1")).await;
    assert_eq!(code(&other), "CONFLICT");
    let other_type = app
        .gql(
            "mutation($id: ID!) { cancelOrder(input: {orderId: $id, commandId: \"key-1\"}) { token } }",
            json!({ "id": first["data"]["placeOrder"]["id"] }),
        )
        .await;
    assert_eq!(code(&other_type), "CONFLICT");
    assert_eq!(app.event_count().await, before);
});

on_both_backends!(five_concurrent_copies_of_a_command_append_one_set_of_events, |app| async {
    let seed = app.seed().await;
    let before = app.event_count().await;
    let lines = [(seed.cake.as_str(), 1)];
    let attempts = (0..5).map(|_| app.place_order_raw(&seed.customer, &lines, json!(null), json!("burst-1")));
    let responses = futures_util::future::join_all(attempts).await;
    for r in &responses {
        assert!(r.get("errors").is_none(), "every copy succeeds with the same ack: {r}");
        assert_eq!(r["data"], responses[0]["data"]);
    }
    assert_eq!(app.event_count().await, before + 1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM customer_order").await, 1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM command_log").await, 1);
});

on_both_backends!(a_rejected_command_does_not_burn_its_command_id, |app| async {
    let seed = app.seed().await;
    let bad = app.place_order_raw(&seed.customer, &[(&seed.tea, 0)], json!(null), json!("fix-and-retry")).await;
    assert_eq!(code(&bad), "VALIDATION");
    let good = app.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(null), json!("fix-and-retry")).await;
    assert!(good.get("errors").is_none(), "{good}");
});

// A retry that changed its input is told so, not that it was another
// command: the command type matches, only the input differs.
on_both_backends!(a_command_id_reused_with_other_input_says_the_input_differs, |app| async {
    let register = "mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id } }";
    let input = |email: &str| json!({ "input": { "name": "Ada", "email": email, "commandId": "same-key" } });
    let first = app.gql(register, input("ada@example.com")).await;
    assert!(first.get("errors").is_none(), "{first}");
    let before = app.event_count().await;

    let changed = app.gql(register, input("ada.lovelace@example.com")).await;
    assert_eq!(code(&changed), "CONFLICT", "{changed}");
    assert_eq!(
        s(&changed["errors"][0]["message"]),
        "commandId 'same-key' was already used for a RegisterCustomer with different input; \
         a retry must send the same input, a new command needs a new commandId",
        "{changed}"
    );

    // Another command type keeps its own message.
    let other = app
        .gql(
            "mutation { addProduct(input: {sku: \"SK-1\", title: \"Tea\", priceCents: 100, commandId: \"same-key\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&other), "CONFLICT", "{other}");
    let message = s(&other["errors"][0]["message"]);
    assert!(message.contains("was already used for a different command (RegisterCustomer)"), "{other}");
    assert!(!message.contains('\n'), "{other}");
    assert_eq!(app.event_count().await, before, "neither appended anything");
});
