//! The write side end to end: acks, tokens, the event log as outbox.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(commands_return_ids_and_tokens_only, |app| async {
    let seed = app.seed().await;
    let response = app
        .gql(
            "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id token } }",
            json!({ "c": seed.customer, "p": seed.tea }),
        )
        .await;
    let payload = response["data"]["placeOrder"].as_object().expect("payload");
    assert_eq!(payload.keys().collect::<Vec<_>>(), vec!["id", "token"]);
    // Payloads expose no read view: asking for one is a validation error.
    let asks_for_view = app
        .gql(
            "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id status } }",
            json!({ "c": seed.customer, "p": seed.tea }),
        )
        .await;
    assert_eq!(code(&asks_for_view), "VALIDATION");
});

on_both_backends!(state_events_and_command_log_are_written_together, |app| async {
    let seed = app.seed().await;
    let response =
        app.place_order_raw(&seed.customer, &[(&seed.tea, 2), (&seed.cake, 1)], json!(null), json!("outbox-1")).await;
    let order = s(&response["data"]["placeOrder"]["id"]);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_line").await, 2);
    assert_eq!(app.scalar_i64("SELECT total_cents FROM customer_order").await, 2 * 450 + 1200);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM event WHERE event_type = 'OrderPlaced' AND stream_version = 1").await,
        1
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM command_log WHERE command_id = 'outbox-1'").await, 1);
    // The order's stream then grows by exactly one version per command.
    assert!(app.ship_order(&order).await.get("errors").is_none());
    assert_eq!(
        app.scalar_i64("SELECT max(stream_version) FROM event WHERE event_type IN ('OrderPlaced', 'OrderShipped')")
            .await,
        2
    );
    assert_eq!(app.scalar_i64("SELECT version FROM customer_order").await, 2);
});

on_both_backends!(the_event_log_is_append_only, |app| async {
    app.seed().await;
    let update =
        sea_orm::ConnectionTrait::execute_unprepared(&app.db, "UPDATE event SET event_type = 'Tampered'").await;
    assert!(update.is_err(), "UPDATE on the event log must fail");
    let delete = sea_orm::ConnectionTrait::execute_unprepared(&app.db, "DELETE FROM event").await;
    assert!(delete.is_err(), "DELETE on the event log must fail");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM event WHERE event_type = 'Tampered'").await, 0);
});

on_both_backends!(tokens_grow_with_each_command, |app| async {
    let (_, t1) = app.register_customer("A", "a1@example.com").await;
    let (_, t2) = app.register_customer("B", "b1@example.com").await;
    let parse = |t: &str| {
        let (a, b) = t.split_once('.').expect("tx.pos");
        (a.parse::<i64>().expect("tx"), b.parse::<i64>().expect("pos"))
    };
    assert!(parse(&t2) > parse(&t1), "{t1} < {t2}");
});

on_both_backends!(a_price_change_does_not_reprice_placed_orders, |app| async {
    let seed = app.seed().await;
    let (order, _) = app.place_order(&seed.customer, &[(&seed.tea, 2)]).await;
    let change = app
        .gql(
            "mutation($id: ID!) { changeProductPrice(input: {productId: $id, priceCents: 999}) { token } }",
            json!({ "id": seed.tea }),
        )
        .await;
    let token = s(&change["data"]["changeProductPrice"]["token"]);
    let d = app
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { totalCents lines { unitPriceCents product { priceCents } } } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(d["order"]["totalCents"], 900);
    assert_eq!(d["order"]["lines"][0]["unitPriceCents"], 450);
    assert_eq!(d["order"]["lines"][0]["product"]["priceCents"], 999);
});

/// PostgreSQL: an appending command announces its token on `twofold_log` at
/// commit (every instance's projectors wake by it), and an order's header
/// and lines go in with one statement. The notice rides on the event INSERT
/// itself, so it must carry exactly the ack's token, once, and only after
/// the commit; a rejected command announces nothing.
#[tokio::test]
async fn an_append_announces_its_token_once_at_commit_on_postgres() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    let mut listener = sqlx::postgres::PgListener::connect(&app.database.url).await.expect("listen");
    listener.listen("twofold_log").await.expect("listen");

    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 2), (&seed.cake, 1)]).await;
    let notice = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("the append is announced")
        .expect("a notification");
    assert_eq!(notice.payload(), token, "the notice carries the ack's token");
    assert_eq!(app.scalar_i64(&format!("SELECT count(*) FROM order_line WHERE order_id = '{order}'")).await, 2);
    assert_eq!(
        app.scalar_i64(&format!("SELECT total_cents FROM customer_order WHERE id = '{order}'")).await,
        2 * 450 + 1200
    );

    // A duplicate order id is refused with the write model's words; nothing is announced for it.
    let duplicate = app
        .gql(
            "mutation($o: ID!, $c: ID!, $p: ID!) { placeOrder(input: {orderId: $o, customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }",
            json!({ "o": order, "c": seed.customer, "p": seed.tea }),
        )
        .await;
    assert_eq!(code(&duplicate), "INVARIANT_VIOLATION", "{duplicate}");
    let (_, next) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    let notice = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("the next append is announced")
        .expect("a notification");
    assert_eq!(notice.payload(), next, "one notice per append, none for the refused command");
}
