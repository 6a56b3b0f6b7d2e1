//! The request-level consistency token: `"extensions": {"consistentWith": token}`
//! makes every root query field of the operation wait for the write, as the
//! field's own `consistentWith` argument does, over POST, GET and WebSocket,
//! beside APQ's `extensions.persistedQuery`.
//!
//! A token from far in the future is one no projection will reach: a field
//! that waits for it answers NOT_VISIBLE_YET after the (short) wait, which
//! shows the token was applied without guessing at timing.
use std::time::Duration;

use serde_json::{json, Value};
use twofold::graphql::documents::sha256_hex;

use crate::helpers::{code, Backend, TestApp};
use crate::ws_client::{Event, Protocol, WsClient};

/// No projection reaches this position in a test.
const FUTURE: &str = "900000000000.1";
const READ: &str = "query($id: ID!) { order(id: $id) { id } orders(first: 5) { edges { node { id } } } }";

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.consistency.default_wait = Duration::from_millis(150)).await
}

async fn post(app: &TestApp, body: Value) -> Value {
    let response = app.client.post(format!("{}/graphql", app.base)).json(&body).send().await.expect("send");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// The codes of every error, by the root field it names.
fn codes_by_field(response: &Value) -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["path"][0].as_str().unwrap_or("").to_owned(),
                        e["extensions"]["code"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    codes.sort();
    codes
}

async fn post_applies_to_every_root_field(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let vars = json!({ "id": order });

    // With the write's token, both root fields show the write.
    let read = post(&app, json!({ "query": READ, "variables": vars, "extensions": { "consistentWith": token } })).await;
    assert!(read.get("errors").is_none(), "{read}");
    assert_eq!(read["data"]["order"]["id"], order.as_str());
    assert_eq!(read["data"]["orders"]["edges"][0]["node"]["id"], order.as_str());

    // The same document again (now served by the validated-document cache)
    // with a token no view has reached: every root field waits, and says so.
    let pending =
        post(&app, json!({ "query": READ, "variables": vars, "extensions": { "consistentWith": FUTURE } })).await;
    assert_eq!(
        codes_by_field(&pending),
        vec![("order".to_owned(), "NOT_VISIBLE_YET".to_owned()), ("orders".to_owned(), "NOT_VISIBLE_YET".to_owned())],
        "{pending}"
    );

    // `node` has no argument of its own: the request's token applies to it too.
    let node = post(
        &app,
        json!({ "query": "query($id: ID!) { node(id: $id) { id } }", "variables": vars, "extensions": { "consistentWith": FUTURE } }),
    )
    .await;
    assert_eq!(code(&node), "NOT_VISIBLE_YET", "{node}");

    // A field's own argument and the request's token: the later one wins, whichever carries it.
    let field = "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }";
    for (argument, extension) in [(token.as_str(), FUTURE), (FUTURE, token.as_str())] {
        let both = post(
            &app,
            json!({ "query": field, "variables": { "id": order, "t": argument }, "extensions": { "consistentWith": extension } }),
        )
        .await;
        assert_eq!(code(&both), "NOT_VISIBLE_YET", "argument {argument}, extension {extension}: {both}");
    }
    let both = post(
        &app,
        json!({ "query": field, "variables": { "id": order, "t": token }, "extensions": { "consistentWith": token } }),
    )
    .await;
    assert_eq!(both["data"]["order"]["id"], order.as_str(), "{both}");

    // Mutations are not held back by it.
    let placed = post(
        &app,
        json!({
            "query": "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }",
            "variables": { "input": { "customerId": seed.customer, "lines": [{ "productId": seed.tea, "quantity": 1 }] } },
            "extensions": { "consistentWith": FUTURE }
        }),
    )
    .await;
    assert!(placed.get("errors").is_none(), "{placed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_applies_to_every_root_field_sqlite() {
    post_applies_to_every_root_field(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_applies_to_every_root_field_postgres() {
    post_applies_to_every_root_field(Backend::Postgres).await;
}

#[tokio::test]
async fn a_value_that_is_not_a_token_is_a_validation_error() {
    let app = spawn(Backend::Sqlite).await.expect("app");
    for bad in [json!("yesterday"), json!(42), json!({ "token": "1.2" })] {
        let refused = post(
            &app,
            json!({ "query": "{ products { edges { cursor } } }", "extensions": { "consistentWith": bad } }),
        )
        .await;
        assert_eq!(code(&refused), "VALIDATION", "{refused}");
        assert!(refused.get("data").is_none(), "nothing ran: {refused}");
        let message = refused["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("extensions.consistentWith") && message.contains("token"), "{message}");
    }
    // Under the GraphQL-over-HTTP media type it is a request error: 400.
    let strict = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": "{ products { edges { cursor } } }", "extensions": { "consistentWith": "1.x" } }))
        .send()
        .await
        .expect("send");
    assert_eq!(strict.status(), 400);
    // `null` is no token at all.
    let none =
        post(&app, json!({ "query": "{ products { edges { cursor } } }", "extensions": { "consistentWith": null } }))
            .await;
    assert!(none.get("errors").is_none(), "{none}");
    app.stop().await;
}

#[tokio::test]
async fn get_carries_it_in_the_extensions_parameter_and_never_confirms_an_older_answer() {
    let app = spawn(Backend::Sqlite).await.expect("app");
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let query = "{ orders(first: 5) { edges { node { id } } } }";
    let get = |extensions: Option<Value>, etag: Option<String>| {
        let mut params = vec![("query", query.to_owned())];
        if let Some(extensions) = extensions {
            params.push(("extensions", extensions.to_string()));
        }
        let mut request = app.client.get(format!("{}/graphql", app.base)).query(&params);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let fresh = get(Some(json!({ "consistentWith": token })), None).await.expect("send");
    assert_eq!(fresh.status(), 200);
    let body: Value = fresh.json().await.expect("json");
    assert_eq!(body["data"]["orders"]["edges"][0]["node"]["id"], order.as_str(), "{body}");
    // Tagged with the checkpoints it started from; once they hold still, the tag does too.
    let settled = get(Some(json!({ "consistentWith": token })), None).await.expect("send");
    let etag = settled.headers().get("etag").map(|v| v.to_str().expect("text").to_owned());
    assert!(etag.is_some(), "a GET query is tagged");

    let plain = get(None, None).await.expect("send");
    let plain_tag = plain.headers().get("etag").map(|v| v.to_str().expect("text").to_owned());
    assert!(plain_tag.is_some(), "a GET query is tagged");
    // Asked to wait for a write no view shows yet, the server must not
    // confirm the caller's copy (304): it waits, and says it could not.
    let pending = get(Some(json!({ "consistentWith": FUTURE })), plain_tag.clone()).await.expect("send");
    assert_eq!(pending.status(), 200);
    let body: Value = pending.json().await.expect("json");
    assert_eq!(code(&body), "NOT_VISIBLE_YET", "{body}");
    // The same tag still confirms a copy for the request it was made for.
    let again = get(Some(json!({ "consistentWith": token })), etag).await.expect("send");
    assert_eq!(again.status(), 304);
    let refused = get(Some(json!({ "consistentWith": "nope" })), None).await.expect("send");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(code(&body), "VALIDATION", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn apq_and_the_token_share_extensions() {
    let app = spawn(Backend::Sqlite).await.expect("app");
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let query = "{ orders(first: 5) { edges { node { id } } } }";
    let persisted = json!({ "version": 1, "sha256Hash": sha256_hex(query) });
    let registered =
        post(&app, json!({ "query": query, "extensions": { "persistedQuery": persisted, "consistentWith": token } }))
            .await;
    assert_eq!(registered["data"]["orders"]["edges"][0]["node"]["id"], order.as_str(), "{registered}");
    let by_hash = post(&app, json!({ "extensions": { "persistedQuery": persisted, "consistentWith": token } })).await;
    assert_eq!(by_hash, registered, "the hash alone runs the document, with the token");
    let pending = post(&app, json!({ "extensions": { "persistedQuery": persisted, "consistentWith": FUTURE } })).await;
    assert_eq!(code(&pending), "NOT_VISIBLE_YET", "{pending}");
    app.stop().await;
}

async fn websocket_subscribe_payloads_carry_it(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let subscribe = |id: &str, consistent_with: Value| {
        json!({ "id": id, "type": "subscribe", "payload": {
            "query": READ, "variables": { "id": order }, "extensions": { "consistentWith": consistent_with } } })
    };
    ws.send_json(subscribe("seen", json!(token))).await;
    let seen = ws.next_data("seen").await;
    assert!(seen.get("errors").is_none(), "{seen}");
    assert_eq!(seen["data"]["order"]["id"], order.as_str());
    assert_eq!(seen["data"]["orders"]["edges"][0]["node"]["id"], order.as_str());
    ws.expect_complete("seen").await;

    ws.send_json(subscribe("future", json!(FUTURE))).await;
    let pending = ws.next_data("future").await;
    assert_eq!(
        codes_by_field(&pending),
        vec![("order".to_owned(), "NOT_VISIBLE_YET".to_owned()), ("orders".to_owned(), "NOT_VISIBLE_YET".to_owned())],
        "{pending}"
    );
    ws.expect_complete("future").await;

    // Not a token: the operation is refused with `error`, the connection stays.
    ws.send_json(subscribe("bad", json!("0.x"))).await;
    match ws.next().await {
        Event::Message(m) if m["type"] == "error" && m["id"] == "bad" => {
            assert_eq!(m["payload"][0]["extensions"]["code"], "VALIDATION", "{m}");
        }
        other => panic!("expected an error for the bad token, got {other:?}"),
    }
    ws.send_json(subscribe("after", json!(token))).await;
    assert_eq!(ws.next_data("after").await["data"]["order"]["id"], order.as_str());
    ws.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_subscribe_payloads_carry_it_sqlite() {
    websocket_subscribe_payloads_carry_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_subscribe_payloads_carry_it_postgres() {
    websocket_subscribe_payloads_carry_it(Backend::Postgres).await;
}
