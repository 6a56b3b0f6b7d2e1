//! Identity and access: bearer tokens, roles, per-customer scoping in the
//! read model's SQL, subscriptions that never show a customer another's
//! streams, WebSocket expiry and refresh-by-ping, and the audit trail.
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use twofold::auth::{mint, AuthSettings};
use twofold::domain::Actor;
use uuid::Uuid;

use crate::helpers::*;
use crate::ws_client::{Event, Protocol, WsClient};

const SECRET: &str = "identity-tests-hs256-secret-of-32-bytes+";
const ADMIN_TOKEN: &str = "ops-secret-for-tests";
const AUDIENCE: &str = "twofold-api";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// An app with keys (an HS256 secret, and the fixtures' JWKS), no leeway, a
/// required audience, and the admin token. Its own requests (`gql`, the
/// seeding helpers) go as the admin-token alias.
async fn keyed(backend: Backend) -> Option<TestApp> {
    let mut app = TestApp::spawn_with(backend, |s| {
        s.identity.jwt_secret = Some(SECRET.into());
        s.identity.jwks_file = Some(fixture("jwks.json"));
        s.identity.audience = Some(AUDIENCE.into());
        s.identity.leeway = Duration::ZERO;
        s.identity.admin_token = Some(ADMIN_TOKEN.into());
    })
    .await?;
    app.authorization = Some(format!("Bearer {ADMIN_TOKEN}"));
    Some(app)
}

macro_rules! keyed_on_both {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let $app = keyed(Backend::Sqlite).await.expect("sqlite");
                $body.await;
                $app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some($app) = keyed(Backend::Postgres).await else { return };
                $body.await;
                $app.stop().await;
            }
        }
    };
}

fn minting() -> AuthSettings {
    AuthSettings { jwt_secret: Some(SECRET.into()), audience: Some(AUDIENCE.into()), ..Default::default() }
}

fn token_for(actor: &Actor, ttl: Duration) -> String {
    mint(&minting(), actor, ttl).expect("mint")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A customer: its id and a bearer value for it.
struct Shopper {
    id: String,
    bearer: String,
}

impl Shopper {
    fn new(name: &str) -> Self {
        let id = Uuid::new_v4();
        Self { id: id.to_string(), bearer: bearer(&token_for(&Actor::customer(name, id), Duration::from_secs(600))) }
    }
}

fn staff() -> String {
    bearer(&token_for(&Actor::staff("sam-from-support"), Duration::from_secs(600)))
}

/// POSTs a request with `authorization` (or none); returns status, WWW-Authenticate and body.
async fn call(app: &TestApp, authorization: Option<&str>, query: &str, variables: Value) -> (u16, String, Value) {
    let mut request = app.client.post(format!("{}/graphql", app.base));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.json(&json!({ "query": query, "variables": variables })).send().await.expect("sent");
    let status = response.status().as_u16();
    let challenge =
        response.headers().get("www-authenticate").map(|v| v.to_str().expect("text").to_owned()).unwrap_or_default();
    (status, challenge, response.json().await.expect("JSON"))
}

/// `data` of a request that must succeed.
async fn ok(app: &TestApp, authorization: &str, query: &str, variables: Value) -> Value {
    let (status, _, body) = call(app, Some(authorization), query, variables).await;
    assert!(status == 200 && body.get("errors").is_none(), "HTTP {status}: {body}");
    body["data"].clone()
}

/// The error code of a request that must fail inside GraphQL (HTTP 200).
async fn refused(app: &TestApp, authorization: Option<&str>, query: &str, variables: Value) -> String {
    let (status, _, body) = call(app, authorization, query, variables).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_array(), "expected an error: {body}");
    code(&body)
}

const REGISTER: &str =
    "mutation($n: String!, $e: String!) { registerCustomer(input: {name: $n, email: $e}) { id token } }";
const PLACE: &str =
    "mutation($c: ID, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id token } }";
const CANCEL: &str = "mutation($o: ID!) { cancelOrder(input: {orderId: $o}) { token } }";
const SHIP: &str =
    "mutation($o: ID!) { shipOrder(input: {orderId: $o, carrier: \"DHL\", trackingNumber: \"1Z\"}) { token } }";

/// Two customers who registered themselves, a product, and an order each.
struct World {
    alice: Shopper,
    bob: Shopper,
    product: String,
    alice_order: String,
    bob_order: String,
    /// The token of the last write.
    token: String,
}

async fn world(app: &TestApp) -> World {
    let (alice, bob) = (Shopper::new("alice"), Shopper::new("bob"));
    for (who, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        let email = format!("{}-{}@example.com", name.to_lowercase(), short());
        let d = ok(app, &who.bearer, REGISTER, json!({ "n": name, "e": email })).await;
        assert_eq!(d["registerCustomer"]["id"], who.id.as_str(), "a customer registers itself under its own id");
    }
    let (product, _) = app.add_product(&format!("TEA-{}", short()), "Green tea", 450).await;
    // A customer may leave customerId out: the order is its own.
    let a = ok(app, &alice.bearer, PLACE, json!({ "p": product })).await;
    let b = ok(app, &bob.bearer, PLACE, json!({ "c": bob.id, "p": product })).await;
    World {
        alice_order: s(&a["placeOrder"]["id"]),
        bob_order: s(&b["placeOrder"]["id"]),
        token: s(&b["placeOrder"]["token"]),
        alice,
        bob,
        product,
    }
}

keyed_on_both!(a_customer_reads_only_its_own_orders_and_records, |app| async {
    let w = world(&app).await;
    let t = json!(w.token);
    // Another's order reads exactly like a missing one.
    let theirs = ok(
        &app,
        &w.alice.bearer,
        "query($o: ID!, $t: Token) { order(id: $o, consistentWith: $t) { id } }",
        json!({ "o": w.bob_order, "t": t }),
    )
    .await;
    assert!(theirs["order"].is_null(), "{theirs}");
    let node = ok(&app, &w.alice.bearer, "query($o: ID!) { node(id: $o) { id } }", json!({ "o": w.bob_order })).await;
    assert!(node["node"].is_null(), "node(id:) is scoped too: {node}");
    // With the token: a read at the token may be folded without the view
    // catching up, so a read without one may still miss the order.
    let mine = ok(
        &app,
        &w.alice.bearer,
        "query($o: ID!, $t: Token) { order(id: $o, consistentWith: $t) { id customerId } }",
        json!({ "o": w.alice_order, "t": t }),
    )
    .await;
    assert_eq!(mine["order"]["customerId"], w.alice.id.as_str());
    // Lists hold only its own, even when asked for another's.
    for variables in [json!({}), json!({ "c": w.bob.id })] {
        let listed = ok(
            &app,
            &w.alice.bearer,
            "query($c: ID) { orders(customerId: $c) { edges { node { id customerId } } } }",
            variables,
        )
        .await;
        let ids: Vec<String> =
            listed["orders"]["edges"].as_array().expect("list").iter().map(|e| s(&e["node"]["customerId"])).collect();
        assert!(ids.iter().all(|c| *c == w.alice.id), "{listed}");
    }
    let activity = ok(
        &app,
        &w.alice.bearer,
        "query($o: ID!) { orderActivity(orderId: $o) { eventType } }",
        json!({ "o": w.bob_order }),
    )
    .await;
    assert_eq!(activity["orderActivity"], json!([]));
    let other = ok(&app, &w.alice.bearer, "query($c: ID!) { customer(id: $c) { id } }", json!({ "c": w.bob.id })).await;
    assert!(other["customer"].is_null());
    let everyone = ok(
        &app,
        &w.alice.bearer,
        "query($t: Token) { customers(consistentWith: $t) { edges { node { id } } } }",
        json!({ "t": t }),
    )
    .await;
    assert_eq!(everyone["customers"]["edges"], json!([{ "node": { "id": w.alice.id } }]));
    // Aggregates over everyone and operations are staff business.
    for query in ["{ dailySales(from: \"2026-01-01\", to: \"2026-12-31\") { day } }", "{ projections { name } }"] {
        assert_eq!(refused(&app, Some(&w.alice.bearer), query, json!({})).await, "FORBIDDEN", "{query}");
    }
    // Staff read everyone's.
    let seen = ok(
        &app,
        &staff(),
        "query($o: ID!, $t: Token) { order(id: $o, consistentWith: $t) { id } }",
        json!({ "o": w.bob_order, "t": t }),
    )
    .await;
    assert_eq!(seen["order"]["id"], w.bob_order.as_str());
});

keyed_on_both!(a_customer_cannot_act_for_another_and_nothing_is_appended, |app| async {
    let w = world(&app).await;
    let events = app.event_count().await;
    let missing = Uuid::new_v4().to_string();
    let attempts = [
        (CANCEL, json!({ "o": w.bob_order })),
        (CANCEL, json!({ "o": missing })),
        (SHIP, json!({ "o": w.alice_order })),
        (PLACE, json!({ "c": w.bob.id, "p": w.product })),
        (
            "mutation($p: ID!) { changeProductPrice(input: {productId: $p, priceCents: 1}) { token } }",
            json!({ "p": w.product }),
        ),
        ("mutation { addProduct(input: {sku: \"FREE\", title: \"Free\", priceCents: 1}) { id } }", json!({})),
        (
            "mutation($c: ID!) { renameCustomer(input: {customerId: $c, name: \"Mallory\"}) { token } }",
            json!({ "c": w.bob.id }),
        ),
        ("mutation { rebuildProjection(name: \"order_summary\") { accepted } }", json!({})),
    ];
    let mut messages = Vec::new();
    for (query, variables) in attempts {
        let (status, _, body) = call(&app, Some(&w.alice.bearer), query, variables).await;
        assert_eq!((status, code(&body).as_str()), (200, "FORBIDDEN"), "{query}: {body}");
        messages.push(body["errors"][0]["message"].as_str().expect("message").to_owned());
    }
    // Someone else's order and no order at all give the same answer.
    assert_eq!(messages[0].replace(&w.bob_order, "ID"), messages[1].replace(&missing, "ID"));
    assert_eq!(app.event_count().await, events, "no event appended");
    // Its own order it may cancel; itself it may rename.
    ok(&app, &w.alice.bearer, CANCEL, json!({ "o": w.alice_order })).await;
    ok(
        &app,
        &w.alice.bearer,
        "mutation($c: ID!) { renameCustomer(input: {customerId: $c, name: \"Alice B.\"}) { token } }",
        json!({ "c": w.alice.id }),
    )
    .await;
    assert_eq!(app.event_count().await, events + 2);
});

keyed_on_both!(staff_run_the_shop_and_only_admins_operate_projections, |app| async {
    let w = world(&app).await;
    let sam = staff();
    ok(&app, &sam, SHIP, json!({ "o": w.bob_order })).await;
    ok(
        &app,
        &sam,
        "mutation($p: ID!) { changeProductPrice(input: {productId: $p, priceCents: 500}) { token } }",
        json!({ "p": w.product }),
    )
    .await;
    ok(
        &app,
        &sam,
        "mutation { addProduct(input: {sku: \"CAKE-X\", title: \"Cake\", priceCents: 900}) { id } }",
        json!({}),
    )
    .await;
    ok(&app, &sam, PLACE, json!({ "c": w.alice.id, "p": w.product })).await;
    assert_eq!(
        refused(&app, Some(&sam), PLACE, json!({ "p": w.product })).await,
        "VALIDATION",
        "staff name the customer"
    );
    let rebuild = "mutation { rebuildProjection(name: \"daily_sales\") { accepted } }";
    assert_eq!(refused(&app, Some(&sam), rebuild, json!({})).await, "FORBIDDEN");
    let admin = bearer(&token_for(&Actor::admin("ada-the-admin"), Duration::from_secs(600)));
    assert_eq!(ok(&app, &admin, rebuild, json!({})).await["rebuildProjection"]["accepted"], true);
    // The static admin token is an alias for the admin role.
    let dead = ok(&app, &bearer(ADMIN_TOKEN), "{ deadLetters { id } }", json!({})).await;
    assert!(dead["deadLetters"].is_array());
});

/// A token with `header` and `claims`, signed by `key`.
fn signed(alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: Value, key: &jsonwebtoken::EncodingKey) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn claims(role: &str, exp_from_now: i64, aud: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    json!({ "sub": format!("{role}-1"), "role": role, "exp": now + exp_from_now, "aud": aud })
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

keyed_on_both!(bad_tokens_are_refused_with_401_and_a_bearer_challenge, |app| async {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&pem("ec-private.pem")).expect("ec");
    let stranger = EncodingKey::from_rsa_pem(&pem("rsa-other-private.pem")).expect("rsa");
    let ours = EncodingKey::from_secret(SECRET.as_bytes());
    // Keys from the JWKS file verify RS256 and ES256 tokens.
    for token in [
        signed(Algorithm::RS256, Some("rsa-1"), claims("staff", 600, AUDIENCE), &rsa),
        signed(Algorithm::ES256, Some("ec-1"), claims("staff", 600, AUDIENCE), &ec),
    ] {
        let viewer = ok(&app, &bearer(&token), "{ viewer { sub role } }", json!({})).await;
        assert_eq!(viewer["viewer"], json!({ "sub": "staff-1", "role": "STAFF" }));
    }
    let none = {
        let part = |v: Value| base64url(v.to_string().as_bytes());
        format!("{}.{}.", part(json!({ "alg": "none", "typ": "JWT" })), part(claims("admin", 600, AUDIENCE)))
    };
    let bad = [
        ("expired", signed(Algorithm::HS256, None, claims("staff", -5, AUDIENCE), &ours)),
        (
            "another secret",
            signed(
                Algorithm::HS256,
                None,
                claims("staff", 600, AUDIENCE),
                &EncodingKey::from_secret(b"another-secret-another-secret-32b"),
            ),
        ),
        ("an unknown RSA key", signed(Algorithm::RS256, Some("rsa-1"), claims("staff", 600, AUDIENCE), &stranger)),
        ("alg none", none),
        ("the wrong audience", signed(Algorithm::HS256, None, claims("staff", 600, "somebody-else"), &ours)),
        ("an unknown role", signed(Algorithm::HS256, None, claims("root", 600, AUDIENCE), &ours)),
        ("a customer without customer_id", signed(Algorithm::HS256, None, claims("customer", 600, AUDIENCE), &ours)),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, token) in bad {
        let (status, challenge, body) =
            call(&app, Some(&bearer(&token)), "{ products { edges { cursor } } }", json!({})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{what}: {challenge}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{what}: {body}");
    }
});

/// base64url without padding (for hand-made tokens).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

keyed_on_both!(without_a_token_only_the_catalog_is_open, |app| async {
    let w = world(&app).await;
    let catalog =
        call(&app, None, "{ products { edges { node { id } } } topProducts { id } viewer { role } }", json!({})).await;
    assert_eq!(catalog.0, 200);
    assert!(catalog.2.get("errors").is_none(), "{}", catalog.2);
    assert_eq!(catalog.2["data"]["viewer"]["role"], "ANONYMOUS");
    for (query, variables) in [
        ("{ orders { edges { cursor } } }", json!({})),
        ("query($o: ID!) { order(id: $o) { id } }", json!({ "o": w.alice_order })),
        (PLACE, json!({ "c": w.alice.id, "p": w.product })),
    ] {
        assert_eq!(refused(&app, None, query, variables).await, "UNAUTHENTICATED", "{query}");
    }
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["auth"], "jwt");
});

keyed_on_both!(every_step_records_who_did_it, |app| async {
    let w = world(&app).await;
    ok(&app, &staff(), SHIP, json!({ "o": w.alice_order })).await;
    app.settle().await;
    let activity = ok(
        &app,
        &w.alice.bearer,
        "query($o: ID!) { orderActivity(orderId: $o) { eventType actor { sub role } } }",
        json!({ "o": w.alice_order }),
    )
    .await;
    assert_eq!(
        activity["orderActivity"],
        json!([
            { "eventType": "OrderPlaced", "actor": { "sub": "alice", "role": "CUSTOMER" } },
            { "eventType": "OrderShipped", "actor": { "sub": "sam-from-support", "role": "STAFF" } },
        ])
    );
    // A command id is its sender's: another customer reusing it gets a conflict, not the first answer.
    let keyed_place = "mutation($p: ID!, $k: String) { placeOrder(input: {lines: [{productId: $p, quantity: 1}], commandId: $k}) { id } }";
    let first = ok(&app, &w.alice.bearer, keyed_place, json!({ "p": w.product, "k": "checkout-1" })).await;
    let again = ok(&app, &w.alice.bearer, keyed_place, json!({ "p": w.product, "k": "checkout-1" })).await;
    assert_eq!(first, again, "a retry by the same customer is answered from the command log");
    assert_eq!(
        refused(&app, Some(&w.bob.bearer), keyed_place, json!({ "p": w.product, "k": "checkout-1" })).await,
        "CONFLICT"
    );
    let logged = app
        .scalar_i64(
            "SELECT count(*) FROM command_log WHERE command_id = 'checkout-1' AND actor LIKE '%\"sub\":\"alice\"%'",
        )
        .await;
    assert_eq!(logged, 1, "the command log records the actor");
});

/// A connection initialised with `authorization` (or closed at once, with its code).
async fn connect(app: &TestApp, authorization: &str) -> Result<WsClient, Option<u16>> {
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.send_json(json!({ "type": "connection_init", "payload": { "Authorization": authorization } })).await;
    match ws.next().await {
        Event::Message(m) if m["type"] == "connection_ack" => Ok(ws),
        Event::Closed(code, _) => Err(code),
        other => panic!("unexpected {other:?}"),
    }
}

const UPDATES: &str =
    "subscription { projectionUpdated(projections: [\"order_summary\"], includeCurrent: true) { streamIds } }";

keyed_on_both!(a_websocket_lives_as_long_as_its_token_and_a_ping_extends_it, |app| async {
    let w = world(&app).await;
    assert_eq!(connect(&app, "Bearer not-a-token").await.err(), Some(Some(4403)), "a bad token is refused");
    let alice = Uuid::parse_str(&w.alice.id).expect("uuid");
    let short_lived = bearer(&token_for(&Actor::customer("alice", alice), Duration::from_secs(3)));
    let long_lived = bearer(&token_for(&Actor::customer("alice", alice), Duration::from_secs(600)));
    let (mut refreshed, mut control) = match (connect(&app, &short_lived).await, connect(&app, &short_lived).await) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("a valid token is accepted"),
    };
    refreshed.subscribe("u", UPDATES, json!({})).await;
    refreshed.next_data("u").await; // live
    refreshed.send_json(json!({ "type": "ping", "payload": { "authorization": long_lived } })).await;
    loop {
        match refreshed.next().await {
            Event::Message(m) if m["type"] == "pong" => {
                assert!(m["payload"]["expiresAt"].as_u64().is_some(), "{m}");
                break;
            }
            // Notices of the world's own writes may still be arriving.
            Event::Message(m) if m["type"] == "next" => continue,
            other => panic!("expected pong, got {other:?}"),
        }
    }
    // The first token runs out: the connection that kept it is closed…
    assert_eq!(control.expect_close().await, Some(4403));
    // …the refreshed one lives on, subscription and all.
    let placed = ok(&app, &w.alice.bearer, PLACE, json!({ "p": w.product })).await;
    let order = s(&placed["placeOrder"]["id"]);
    loop {
        let update = refreshed.next_data("u").await;
        if update["data"]["projectionUpdated"]["streamIds"].as_array().expect("ids").contains(&json!(order)) {
            break;
        }
    }
    // A refresh must be the same sub and role.
    let bob = bearer(&token_for(
        &Actor::customer("bob", Uuid::parse_str(&w.bob.id).expect("uuid")),
        Duration::from_secs(600),
    ));
    refreshed.send_json(json!({ "type": "ping", "payload": { "authorization": bob } })).await;
    assert_eq!(refreshed.expect_close().await, Some(4403));
});

keyed_on_both!(two_customers_never_see_each_others_streams, |app| async {
    let w = world(&app).await;
    let (mut alice_ws, mut bob_ws, mut staff_ws) =
        match (connect(&app, &w.alice.bearer).await, connect(&app, &w.bob.bearer).await, connect(&app, &staff()).await)
        {
            (Ok(a), Ok(b), Ok(s)) => (a, b, s),
            _ => panic!("connections"),
        };
    for ws in [&mut alice_ws, &mut bob_ws, &mut staff_ws] {
        ws.subscribe("u", UPDATES, json!({})).await;
        ws.next_data("u").await; // live
    }
    let (mut alice_orders, mut bob_orders) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let a = ok(&app, &w.alice.bearer, PLACE, json!({ "p": w.product })).await;
        alice_orders.push(s(&a["placeOrder"]["id"]));
        let b = ok(&app, &w.bob.bearer, PLACE, json!({ "p": w.product })).await;
        bob_orders.push(s(&b["placeOrder"]["id"]));
    }
    /// Every stream id the subscription shows until all of `expected` have appeared.
    async fn seen_until(ws: &mut WsClient, expected: &[String]) -> (Vec<String>, usize) {
        let (mut seen, mut notices) = (Vec::new(), 0);
        while !expected.iter().all(|id| seen.contains(id)) {
            let update = ws.next_data("u").await;
            notices += 1;
            seen.extend(update["data"]["projectionUpdated"]["streamIds"].as_array().expect("ids").iter().map(s));
        }
        (seen, notices)
    }
    let (alice_saw, alice_notices) = seen_until(&mut alice_ws, &alice_orders).await;
    let (bob_saw, bob_notices) = seen_until(&mut bob_ws, &bob_orders).await;
    let everything: Vec<String> = alice_orders.iter().chain(&bob_orders).cloned().collect();
    let (staff_saw, _) = seen_until(&mut staff_ws, &everything).await;
    assert!(alice_notices >= 1 && bob_notices >= 1);
    assert!(bob_orders.iter().all(|id| staff_saw.contains(id)), "staff see everyone's streams");
    for (who, saw, others) in [("alice", &alice_saw, &bob_orders), ("bob", &bob_saw, &alice_orders)] {
        let leaked: Vec<&String> = saw.iter().filter(|id| others.contains(id)).collect();
        assert!(leaked.is_empty(), "{who} saw {leaked:?} over {} notices", saw.len());
    }
    assert!(!alice_saw.contains(&w.bob.id) && !bob_saw.contains(&w.alice.id));
});

#[tokio::test]
async fn open_mode_runs_the_readme_walk_through_unchanged() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let customer = app
        .data(
            "mutation { registerCustomer(input: {name: \"Ada Lovelace\", email: \"ada@example.com\"}) { id token } }",
            json!({}),
        )
        .await;
    let product = app
        .data(
            "mutation { addProduct(input: {sku: \"TEA-1\", title: \"Green tea\", priceCents: 450}) { id token } }",
            json!({}),
        )
        .await;
    let place = "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 2}], commandId: \"my-first-order\"}) { id token } }";
    let ids = json!({ "c": customer["registerCustomer"]["id"], "p": product["addProduct"]["id"] });
    let placed = app.data(place, ids.clone()).await;
    let order = app
        .data(
            "query($o: ID!, $t: Token) { order(id: $o, consistentWith: $t) { status totalCents customerName lines { title quantity unitPriceCents product { unitsSold } } customer { ordersPlaced lifetimeValueCents } } }",
            json!({ "o": placed["placeOrder"]["id"], "t": placed["placeOrder"]["token"] }),
        )
        .await;
    assert_eq!(order["order"]["status"], "PLACED");
    assert_eq!(order["order"]["totalCents"], 900);
    assert_eq!(app.data(place, ids).await, placed, "the same commandId returns the same answer");
    let shipped = app.data(SHIP, json!({ "o": placed["placeOrder"]["id"] })).await;
    let refused = app.gql(CANCEL, json!({ "o": placed["placeOrder"]["id"] })).await;
    assert_eq!(code(&refused), "INVARIANT_VIOLATION");
    let rest = app
        .data(
            "query($o: ID!, $t: Token) { orderActivity(orderId: $o, consistentWith: $t) { eventType actor { sub role } } products(search: \"tea\") { edges { node { sku } } } topProducts { sku } dailySales(from: \"2026-01-01\", to: \"2026-12-31\") { day } projections { name status checkpoint lag } viewer { sub role } }",
            json!({ "o": placed["placeOrder"]["id"], "t": shipped["shipOrder"]["token"] }),
        )
        .await;
    assert_eq!(
        rest["orderActivity"][1],
        json!({ "eventType": "OrderShipped", "actor": { "sub": "open", "role": "STAFF" } })
    );
    assert_eq!(rest["viewer"], json!({ "sub": "open", "role": "STAFF" }));
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["auth"], "open");
    app.stop().await;
}
