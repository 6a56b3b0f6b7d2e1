//! Subscriptions over real WebSocket connections: `writeVisible` and
//! `projectionUpdated` on both protocols, caps, and protocol abuse.
//!
//! What reads the store (`writeVisible`, `projectionUpdated`, the notice
//! fan-out) runs on both; the protocol's abuse and its caps are the socket
//! loop's alone (refused before any database work) and run on SQLite. The
//! connection's timers are in `ws_timers`.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::ws_client::{Event, Protocol, WsClient};

const WRITE_VISIBLE: &str =
    "subscription($t: Token!, $ms: Int) { writeVisible(token: $t, timeoutMs: $ms) { token projections visible } }";

async fn write_visible_flow(app: &TestApp, protocol: Protocol, path: &str) {
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let mut ws = WsClient::connect(&app.base, path, protocol).await;
    ws.init().await;
    ws.subscribe("1", WRITE_VISIBLE, json!({ "t": token })).await;
    let payload = ws.next_data("1").await;
    assert_eq!(payload["data"]["writeVisible"]["visible"], true, "{payload}");
    assert_eq!(payload["data"]["writeVisible"]["token"], token);
    assert_eq!(payload["data"]["writeVisible"]["projections"].as_array().expect("names").len(), 5);
    ws.expect_complete("1").await;
    // Read your write: it is there, without consistentWith.
    let d = app.data("query($id: ID!) { order(id: $id) { id customerName } }", json!({ "id": order })).await;
    assert_eq!(d["order"]["id"], order);
    ws.close().await;
}

on_both_backends!(write_visible_announces_a_placed_order_once, |app| async {
    write_visible_flow(&app, Protocol::TransportWs, "/graphql/ws").await;
    write_visible_flow(&app, Protocol::LegacyWs, "/graphql/ws").await;
});

on_both_backends!(subscriptions_are_also_served_by_upgrading_graphql, |app| async {
    write_visible_flow(&app, Protocol::TransportWs, "/graphql").await;
    write_visible_flow(&app, Protocol::LegacyWs, "/graphql").await;
});

on_both_backends!(an_already_visible_write_completes_at_once, |app| async {
    let (_, token) = app.register_customer("Vis", "vis@example.com").await;
    app.settle().await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    // A zero wait: only the durable checkpoint, read before any waiting,
    // can answer `visible: true`.
    ws.subscribe("v", WRITE_VISIBLE, json!({ "t": token, "ms": 0 })).await;
    let payload = ws.next_data("v").await;
    assert_eq!(payload["data"]["writeVisible"]["visible"], true, "answered from the durable checkpoint");
    ws.expect_complete("v").await;
});

on_both_backends!(a_token_that_never_arrives_times_out_as_not_visible, |app| async {
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let started = Instant::now();
    ws.subscribe("f", WRITE_VISIBLE, json!({ "t": "999999999.999999999", "ms": 300 })).await;
    let payload = ws.next_data("f").await;
    assert_eq!(payload["data"]["writeVisible"]["visible"], false, "a pending projection is not an error: {payload}");
    assert!(payload.get("errors").is_none());
    assert!(started.elapsed() >= Duration::from_millis(300));
    ws.expect_complete("f").await;
});

on_both_backends!(projection_updated_streams_batches_for_a_stream, |app| async {
    let seed = app.seed().await;
    let order = uuid::Uuid::new_v4().to_string();
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe(
        "p",
        "subscription($s: ID) { projectionUpdated(projections: [\"order_summary\"], streamId: $s, includeCurrent: true) { projection token streamIds eventTypes } }",
        json!({ "s": order }),
    )
    .await;
    // The current checkpoint comes first: from here on the subscription is live.
    let current = ws.next_data("p").await["data"]["projectionUpdated"].clone();
    assert_eq!(
        (current["projection"].as_str(), current["streamIds"].as_array().map(Vec::len)),
        (Some("order_summary"), Some(0))
    );
    let placed = app.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(order), json!(null)).await;
    let token = s(&placed["data"]["placeOrder"]["token"]);
    let update = ws.next_data("p").await["data"]["projectionUpdated"].clone();
    assert_eq!(update["projection"], "order_summary");
    assert!(update["streamIds"].as_array().expect("ids").contains(&json!(order)), "{update}");
    assert!(update["eventTypes"].as_array().expect("types").contains(&json!("OrderPlaced")));
    // The notice comes after the commit: the view already shows the order.
    let d = app.data("query($id: ID!) { order(id: $id) { id } }", json!({ "id": order })).await;
    assert_eq!(d["order"]["id"], order);
    let _ = token;
});

on_both_backends!(two_hundred_subscribers_each_get_the_notice, |app| async {
    let seed = app.seed().await;
    let order = uuid::Uuid::new_v4().to_string();
    let mut clients = Vec::new();
    for i in 0..200 {
        let protocol = if i % 2 == 0 { Protocol::TransportWs } else { Protocol::LegacyWs };
        let mut ws = WsClient::connect(&app.base, "/graphql/ws", protocol).await;
        ws.init().await;
        ws.subscribe(
            "n",
            "subscription($s: ID) { projectionUpdated(projections: [\"order_summary\"], streamId: $s, includeCurrent: true) { token } }",
            json!({ "s": order }),
        )
        .await;
        // Live from the first item on (the current checkpoint).
        ws.next_data("n").await;
        clients.push(ws);
    }
    app.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(order), json!(null)).await;
    let received = futures_util::future::join_all(clients.iter_mut().map(|ws| async move {
        matches!(ws.next_within(Duration::from_secs(10)).await, Some(Event::Message(m)) if m["type"] == "next" || m["type"] == "data")
    }))
    .await;
    let missed = received.iter().filter(|r| !**r).count();
    assert_eq!(missed, 0, "{missed} of 200 subscribers missed the notice");
});

async fn abuse_app() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |s| {
        s.http.ws.max_subscriptions_per_connection = 2;
        s.http.ws.max_connections = 50;
    })
    .await
    .expect("sqlite")
}

#[tokio::test]
async fn protocol_abuse_gets_the_documented_close_codes() {
    let app = abuse_app().await;
    let url = &app.base;
    // Subscribe before connection_init: 4401.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.subscribe("1", WRITE_VISIBLE, json!({ "t": "1.1" })).await;
    assert_eq!(ws.expect_close().await, Some(4401));
    // Malformed JSON: 4400.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.send_text("{this is not json").await;
    assert_eq!(ws.expect_close().await, Some(4400));
    // Unknown message type: 4400.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.send_json(json!({ "type": "launch_missiles" })).await;
    assert_eq!(ws.expect_close().await, Some(4400));
    // Duplicate subscription id: 4409.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe("dup", WRITE_VISIBLE, json!({ "t": "999999999.1", "ms": 5000 })).await;
    ws.subscribe("dup", WRITE_VISIBLE, json!({ "t": "999999999.1", "ms": 5000 })).await;
    assert_eq!(ws.expect_close().await, Some(4409));
    // A second connection_init: 4429.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.send_json(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.expect_close().await, Some(4429));
    // No connection_init in time (4408): see `ws_timers`, on a paused clock.
    // An oversized message: 1009.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.send_text(&format!("{{\"type\":\"ping\",\"payload\":\"{}\"}}", "x".repeat(100 * 1024))).await;
    let code = ws.expect_close().await;
    assert!(code == Some(1009) || code.is_none(), "oversized message closes the connection, got {code:?}");
    // The server is unharmed.
    let mut ws = WsClient::connect(url, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe("ok", WRITE_VISIBLE, json!({ "t": "0.0" })).await;
    assert_eq!(ws.next_data("ok").await["data"]["writeVisible"]["visible"], true);
    assert!(app.data("{ projections { name } }", json!({})).await["projections"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn subscriptions_and_connections_are_capped() {
    let app = abuse_app().await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    for id in ["a", "b", "c"] {
        ws.subscribe(id, WRITE_VISIBLE, json!({ "t": "999999999.1", "ms": 5000 })).await;
    }
    match ws.next().await {
        Event::Message(m) => {
            assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("error"), Some("c")), "{m}");
            assert!(m["payload"][0]["message"].as_str().expect("message").contains("at most 2"));
        }
        other => panic!("expected an error for the third subscription, got {other:?}"),
    }
    // Connections: 50 allowed, the 51st is refused before the upgrade.
    let mut open = Vec::new();
    for _ in 0..49 {
        open.push(WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await);
    }
    let refused = http_client()
        .get(format!("{}/graphql/ws", app.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "graphql-transport-ws")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert!(body["errors"][0]["message"].as_str().expect("message").contains("too many"));
    drop(open);
    app.stop().await;
}
