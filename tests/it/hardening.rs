//! One client must never take the service down: each defect found by
//! trying the service as a hostile client would, reproduced (these tests
//! failed before the fixes) and now refused cleanly.
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::ws_client::{Event, Protocol, WsClient};

const PENDING_FOREVER: &str = "900000000000.1";

/// Connections of a pool currently checked out.
fn in_use(db: &twofold::db::Db) -> u32 {
    let conn = &db.conn;
    match conn.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = conn.get_postgres_connection_pool();
            pool.size() - pool.num_idle() as u32
        }
        _ => {
            let pool = conn.get_sqlite_connection_pool();
            pool.size() - pool.num_idle() as u32
        }
    }
}

/// Waits until no connection of `db` is checked out. sqlx signals nothing
/// when a connection returns, so this looks at the pool's own counters.
async fn pool_drains(db: &twofold::db::Db) {
    for _ in 0..400 {
        if in_use(db) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} pooled connections stay checked out", in_use(db));
}

async fn burst(app: &TestApp, protocol: Protocol, subscribes: usize, query: &str, variables: Value) {
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", protocol).await;
    ws.init().await;
    for i in 0..subscribes {
        ws.subscribe(&format!("s{i}"), query, variables.clone()).await;
    }
    // The socket still answers at once: a ping gets its pong (transport-ws),
    // and a query over HTTP is served (the pool is not held by the waiters).
    if protocol == Protocol::TransportWs {
        ws.send_json(json!({ "type": "ping", "payload": { "probe": 1 } })).await;
        loop {
            match ws.next().await {
                Event::Message(m) if m["type"] == "pong" => {
                    assert_eq!(m["payload"]["probe"], 1, "the pong echoes the ping's payload");
                    break;
                }
                Event::Message(m) if m["type"] == "error" => continue, // beyond the subscription cap
                Event::Message(m) => panic!("unexpected message before the pong: {m}"),
                Event::Closed(code, reason) => panic!("closed ({code:?} {reason}) instead of answering the ping"),
            }
        }
    }
    let served = app.gql("{ projections { name } }", json!({})).await;
    assert!(served.get("errors").is_none(), "queries are served during the burst: {served}");
    // The client leaves with everything pending: nothing of it stays behind.
    drop(ws);
    pool_drains(&app.services.read_db).await;
}

on_both_backends!(a_burst_of_subscriptions_neither_freezes_the_socket_nor_holds_the_pool, |app| async {
    let write_visible = "subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 10000) { visible } }";
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        burst(&app, protocol, 100, write_visible, json!({ "t": PENDING_FOREVER })).await;
        burst(&app, protocol, 200, "subscription { projectionUpdated { projection } }", json!({})).await;
    }
    // Waiters that stay get their answer when their wait ends, and complete.
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let short = "subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 300) { visible reason } }";
    for i in 0..100 {
        ws.subscribe(&format!("w{i}"), short, json!({ "t": PENDING_FOREVER })).await;
    }
    let (mut answered, mut completed) = (0, 0);
    while completed < 100 {
        match ws.next().await {
            Event::Message(m) if m["type"] == "next" => {
                assert_eq!(m["payload"]["data"]["writeVisible"], json!({ "visible": false, "reason": "TIMED_OUT" }));
                answered += 1;
            }
            Event::Message(m) if m["type"] == "complete" => completed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answered, 100);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fragment_bomb_is_refused_before_any_work() {
    // The server in a process of its own: its memory is measured alone,
    // not with the test binary's and the other tests'.
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    let server = crate::process::Server::start(&["--database-url", &database.url]).await;
    let mut bomb = String::from("{ ...F0 }");
    for i in 0..24 {
        bomb.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
    }
    bomb.push_str(" fragment F24 on Query { __typename }");
    assert!(bomb.len() < 1000, "the reproduction is under a kilobyte");
    // Warm: one ordinary request has been served, so what comes after is the bomb's.
    let warm: Value = http_client()
        .post(format!("{}/graphql", server.base))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(warm["data"]["__typename"], "Query");
    let peak_before = server.peak_resident_kib();
    let refused: Value = http_client()
        .post(format!("{}/graphql", server.base))
        .json(&json!({ "query": bomb }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(code(&refused), "VALIDATION");
    let message = refused["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("fields") || message.contains("spreads"), "{message}");
    // The same over WebSocket: an `error` message, the connection stays up.
    let mut ws = WsClient::connect(&server.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe("bomb", &bomb, json!({})).await;
    match ws.next().await {
        Event::Message(m) => {
            assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("error"), Some("bomb")), "{m}");
            assert_eq!(m["payload"][0]["extensions"]["code"], "VALIDATION");
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    // 2^24 fields expanded would take gigabytes; refused, the server's peak
    // stays where it was (give or take its allocator's next arena).
    let peak_after = server.peak_resident_kib();
    assert!(
        peak_after < peak_before + 32 * 1024,
        "the server's peak resident memory grew from {peak_before} KiB to {peak_after} KiB"
    );
}

on_both_backends!(money_beyond_32_bits_is_refused_on_input_and_exact_on_output, |app| async {
    let add = "mutation($p: Int!, $sku: String!) { addProduct(input: {sku: $sku, title: \"Gold\", priceCents: $p}) { id token } }";
    for price in [json!(2_147_483_648_i64), json!(100_000_000_000_i64), json!(100_000_001)] {
        let refused = app.gql(add, json!({ "p": price, "sku": format!("G-{}", short()) })).await;
        assert_eq!(code(&refused), "VALIDATION", "priceCents {price}: {refused}");
    }
    assert_eq!(app.event_count().await, 0, "nothing was appended");
    let seed = app.seed().await;
    let (gold, _) = app.add_product(&format!("GOLD-{}", short()), "Gold bar", 100_000_000).await;
    // Eleven units make $11M: above the order limit.
    let refused = app.place_order_raw(&seed.customer, &[(&gold, 11)], json!(null), json!(null)).await;
    assert_eq!(code(&refused), "VALIDATION");
    assert!(refused["errors"][0]["message"].as_str().expect("message").contains("at most"), "{refused}");
    // The maximum order, three times: sums pass 2^31 and stay exact.
    let mut token = String::new();
    for _ in 0..3 {
        token = app.place_order(&seed.customer, &[(&gold, 10)]).await.1;
    }
    let d = app
        .data(
            "query($c: ID!, $t: Token) { customer(id: $c, consistentWith: $t) { lifetimeValueCents ordersPlaced }
               orders(customerId: $c, consistentWith: $t) { edges { node { totalCents lines { unitPriceCents lineTotalCents } } } }
               topProducts(limit: 1, consistentWith: $t) { revenueCents unitsSold priceCents } }",
            json!({ "c": seed.customer, "t": token }),
        )
        .await;
    assert_eq!(d["customer"]["lifetimeValueCents"], "3000000000");
    assert_eq!(d["customer"]["ordersPlaced"], "3");
    assert_eq!(d["orders"]["edges"][0]["node"]["totalCents"], 1_000_000_000);
    assert_eq!(d["orders"]["edges"][0]["node"]["lines"][0]["unitPriceCents"], 100_000_000);
    assert_eq!(d["topProducts"][0]["revenueCents"], "3000000000");
    assert_eq!(d["topProducts"][0]["unitsSold"], "30");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let days = app
        .data("query($d: NaiveDate!, $t: Token) { dailySales(from: $d, to: $d, consistentWith: $t) { grossCents netCents } }", json!({ "d": today, "t": token }))
        .await;
    assert_eq!(days["dailySales"][0]["grossCents"], "3000000000");
});

/// An `OrderPlaced` (v2) for `customer` with the given total and one cheap line.
fn order_placed(customer: &str, total: i64) -> (uuid::Uuid, Value) {
    let order = uuid::Uuid::new_v4();
    let line = json!({ "lineNo": 1, "productId": uuid::Uuid::new_v4(), "sku": "X", "title": "X", "quantity": 1, "unitPriceCents": 1 });
    let payload = json!({ "orderId": order, "customerId": customer, "customerName": "Legacy", "customerEmail": "legacy@example.com",
                          "customerVersion": 1, "lines": [line], "totalCents": total, "channel": "API" });
    (order, payload)
}

/// The status row of `projection`.
async fn projection(app: &TestApp, name: &str) -> Value {
    let d = app.data("{ projections { name status lastError attempts } }", json!({})).await;
    d["projections"].as_array().expect("list").iter().find(|p| p["name"] == name).expect("projection").clone()
}

/// Waits (on the projections' own status) until `name` is `status`.
async fn projection_becomes(app: &TestApp, name: &str, status: &str) -> Value {
    let mut changes = app.changes();
    loop {
        let row = projection(app, name).await;
        if row["status"] == status {
            return row;
        }
        changes.next(&format!("{name} to become {status}: {row}")).await;
    }
}

async fn admin_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.identity.admin_token = Some("ops-secret".into())).await
}

async fn admin_gql(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth("ops-secret")
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("send");
    response.json().await.expect("json")
}

async fn overflowing_sums_are_dead_lettered_and_reported(app: TestApp) {
    let seed = app.seed().await;
    // A legacy log: an order whose total no longer passes the limits, then
    // another that pushes the customer's lifetime value past i64.
    let (first, payload) = order_placed(&seed.customer, 5_000_000_000_000_000_000);
    crate::projections::insert_raw_event(&app, first, 1, "OrderPlaced", 2, payload).await;
    app.settle().await;
    let (second, payload) = order_placed(&seed.customer, 5_000_000_000_000_000_000);
    crate::projections::insert_raw_event(&app, second, 1, "OrderPlaced", 2, payload).await;
    let stopped = projection_becomes(&app, "customer_view", "stopped").await;
    assert!(stopped["lastError"].as_str().is_some_and(|e| e.contains("range")), "{stopped}");
    projection_becomes(&app, "daily_sales", "stopped").await;
    // The views the event fits still apply it.
    assert_eq!(projection(&app, "order_summary").await["status"], "running");
    // The truth is told everywhere: /readyz, writeVisible, consistentWith.
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    // Answered at once, not at the timeout: a wait that ran out would say
    // TIMED_OUT (and blame nobody).
    ws.subscribe(
        "v",
        "subscription($t: Token!) { writeVisible(token: $t, projections: [\"customer_view\"], timeoutMs: 10000) { visible reason blockedBy } }",
        json!({ "t": token }),
    )
    .await;
    let answer = ws.next_data("v").await;
    assert_eq!(
        answer["data"]["writeVisible"],
        json!({ "visible": false, "reason": "PROJECTION_STOPPED", "blockedBy": "customer_view" })
    );
    let refused = app
        .gql(
            "query($c: ID!, $t: Token) { customer(id: $c, consistentWith: $t) { name } }",
            json!({ "c": seed.customer, "t": token }),
        )
        .await;
    assert_eq!(code(&refused), "NOT_PROJECTED");
    // An operator lists the dead letters and skips them; the projections go on.
    let listed = admin_gql(&app, "{ deadLetters { id projection eventType error } }", json!({})).await;
    let letters = listed["data"]["deadLetters"].as_array().unwrap_or_else(|| panic!("{listed}")).clone();
    let mut names: Vec<&str> = letters.iter().map(|l| l["projection"].as_str().expect("name")).collect();
    names.sort_unstable();
    assert_eq!(names, ["customer_view", "daily_sales"], "{listed}");
    let refused =
        app.gql("mutation($id: ID!) { skipDeadLetter(id: $id) { token } }", json!({ "id": letters[0]["id"] })).await;
    // Open development mode makes everyone staff, and staff are not admins.
    assert_eq!(code(&refused), "FORBIDDEN", "dead letters are the operators' business");
    for letter in &letters {
        let done =
            admin_gql(&app, "mutation($id: ID!) { skipDeadLetter(id: $id) { token } }", json!({ "id": letter["id"] }))
                .await;
        assert!(done["data"]["skipDeadLetter"]["token"].is_string(), "an ack with a token: {done}");
    }
    // The letters themselves are read with the query.
    let resolved = admin_gql(&app, "{ deadLetters(includeResolved: true) { id resolution } }", json!({})).await;
    for letter in &letters {
        let listed =
            resolved["data"]["deadLetters"].as_array().expect("a list").iter().find(|l| l["id"] == letter["id"]);
        assert_eq!(listed.map(|l| l["resolution"].clone()), Some(json!("skipped")), "{resolved}");
    }
    let visible = app
        .data("query($o: ID!, $c: ID!, $t: Token) { customer(id: $c, consistentWith: $t) { ordersPlaced } order(id: $o, consistentWith: $t) { id } }", json!({ "o": order, "c": seed.customer, "t": token }))
        .await;
    assert_eq!(visible["order"]["id"], order.as_str());
    assert_eq!(projection(&app, "customer_view").await["status"], "running");
    let again =
        admin_gql(&app, "mutation($id: ID!) { skipDeadLetter(id: $id) { token } }", json!({ "id": letters[0]["id"] }))
            .await;
    assert_eq!(code(&again), "INVARIANT_VIOLATION", "a dead letter is resolved once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overflowing_sums_are_dead_lettered_and_reported_on_sqlite() {
    overflowing_sums_are_dead_lettered_and_reported(admin_app(Backend::Sqlite).await.expect("sqlite")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overflowing_sums_are_dead_lettered_and_reported_on_postgres() {
    let Some(app) = admin_app(Backend::Postgres).await else { return };
    overflowing_sums_are_dead_lettered_and_reported(app).await;
}

on_both_backends!(a_nul_character_is_a_validation_error_wherever_it_hides, |app| async {
    let as_variable =
        app.gql("query($s: String) { products(search: $s) { edges { cursor } } }", json!({ "s": "a\u{0}" })).await;
    assert_eq!(code(&as_variable), "VALIDATION");
    let as_literal = app.gql("{ products(search: \"a\\u0000\") { edges { cursor } } }", json!({})).await;
    assert_eq!(code(&as_literal), "VALIDATION");
    let as_command_id = app
        .gql(
            "mutation($k: String) { registerCustomer(input: {name: \"Nul\", email: \"nul@example.com\", commandId: $k}) { id } }",
            json!({ "k": "key\u{0}" }),
        )
        .await;
    assert_eq!(code(&as_command_id), "VALIDATION");
    assert_eq!(app.event_count().await, 0);
});

/// graphql-js's `getIntrospectionQuery()` (v16, as GraphiQL sends it, with
/// deprecated input values): 13 levels deep.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

#[tokio::test]
async fn graphiql_introspection_passes_the_default_limits() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let d = app.data(INTROSPECTION, json!({})).await;
    assert_eq!(d["__schema"]["queryType"]["name"], "Query");
    assert!(d["__schema"]["types"].as_array().expect("types").len() > 20);
    app.stop().await;
}

#[tokio::test]
async fn execution_errors_are_not_client_errors_with_graphql_response_json() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.consistency.default_wait = Duration::from_millis(100))
        .await
        .expect("app");
    let post = |query: &'static str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query }))
            .send()
    };
    // `orders` is non-null: its NOT_VISIBLE_YET nulls `data` — still an execution error.
    let pending = post("{ orders(consistentWith: \"900000000000.1\") { edges { cursor } } }").await.expect("send");
    assert_eq!(pending.status(), 200);
    let body: Value = pending.json().await.expect("json");
    assert_eq!(code(&body), "NOT_VISIBLE_YET");
    assert!(body.get("data").is_some(), "an executed request carries data: {body}");
    let invalid = post("{ orders { nope } }").await.expect("send");
    assert_eq!(invalid.status(), 400, "validation failures stay 400");
    app.stop().await;
}

on_both_backends!(an_order_id_taken_by_another_aggregate_is_an_invariant_violation, |app| async {
    let seed = app.seed().await;
    let taken = app.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(seed.customer), json!(null)).await;
    assert_eq!(code(&taken), "INVARIANT_VIOLATION", "{taken}");
    let message = taken["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("already in use") && !message.contains("retry"), "{message}");
    let order = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await.0;
    let again = app.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(order), json!(null)).await;
    assert_eq!(code(&again), "INVARIANT_VIOLATION");
});

#[tokio::test]
async fn aliases_cannot_amplify_database_work() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let thousand: String = (0..1000).map(|i| format!("a{i}: projections {{ lag }} ")).collect();
    let refused = app.gql(&format!("{{ {thousand} }}"), json!({})).await;
    assert_eq!(code(&refused), "VALIDATION");
    assert!(refused["errors"][0]["message"].as_str().expect("message").contains("aliases"), "{refused}");
    // Within the alias limit, `projections` still costs what it costs…
    let hundred: String = (0..100).map(|i| format!("a{i}: projections {{ lag }} ")).collect();
    let refused = app.gql(&format!("{{ {hundred} }}"), json!({})).await;
    assert!(refused["errors"][0]["message"].as_str().expect("message").contains("complex"), "{refused}");
    // …and what passes reads the projections once per request.
    let ninety: String = (0..90).map(|i| format!("a{i}: projections {{ name }} ")).collect();
    let before = app.services.admin.statement_count();
    let d = app.data(&format!("{{ {ninety} }}"), json!({})).await;
    assert_eq!(d["a89"].as_array().expect("list").len(), 5);
    assert_eq!(app.services.admin.statement_count() - before, 1, "one read for ninety aliases");
    app.stop().await;
}

async fn reads_are_shed_and_never_starve_commands(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, |s| s.reads_pool = twofold::db::PoolOptions::new(1, Duration::from_millis(200)))
            .await
    else {
        return;
    };
    let seed = app.seed().await;
    // Every read connection is busy (here: held by a transaction).
    let held = sea_orm::TransactionTrait::begin(&app.services.read_db.conn).await.expect("hold the read pool");
    let shed = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "{ customers { edges { cursor } } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    let body: Value = shed.json().await.expect("json");
    assert_eq!(code(&body), "UNAVAILABLE");
    // Commands have their own pool and go through.
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    drop(held);
    let d = app
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(d["order"]["id"], order.as_str());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_are_shed_and_never_starve_commands_on_sqlite() {
    reads_are_shed_and_never_starve_commands(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_are_shed_and_never_starve_commands_on_postgres() {
    reads_are_shed_and_never_starve_commands(Backend::Postgres).await;
}

#[tokio::test]
async fn media_types_match_exactly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("{}/graphql", app.base);
    let body = json!({ "query": "{ projections { name } }" }).to_string();
    for (content_type, status) in
        [("application/jsonxyz", 415), ("application/json; charset=utf-8", 200), ("Application/JSON", 200)]
    {
        let r =
            app.client.post(&url).header("content-type", content_type).body(body.clone()).send().await.expect("send");
        assert_eq!(r.status(), status, "{content_type}");
    }
    app.stop().await;
}

#[tokio::test]
async fn frame_level_websocket_errors_get_their_close_codes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // A raw client: handshake, then a hand-made masked frame.
    async fn raw(addr: &str, frame: &[u8]) -> Option<u16> {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let handshake = format!(
            "GET /graphql/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        );
        tcp.write_all(handshake.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "handshake answered");
            head.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(frame).await.expect("write frame");
        // Read frames (after the handshake's blank line) until a close frame (opcode 8) arrives.
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
        let mut data = head[end..].to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(code) = close_code(&data) {
                return Some(code);
            }
            let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            };
            data.extend_from_slice(&buf[..n]);
        }
    }
    fn close_code(data: &[u8]) -> Option<u16> {
        let mut at = 0;
        while at + 2 <= data.len() {
            let opcode = data[at] & 0x0f;
            let len = (data[at + 1] & 0x7f) as usize;
            let (header, len) = match len {
                126 if at + 4 <= data.len() => (4, u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize),
                126 => return None,
                127 => return None,
                n => (2, n),
            };
            if at + header + len > data.len() {
                return None;
            }
            if opcode == 8 && len >= 2 {
                return Some(u16::from_be_bytes([data[at + header], data[at + header + 1]]));
            }
            at += header + len;
        }
        None
    }
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![first, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }
    assert_eq!(raw(&addr, &masked(0x81, &[0xff, 0xfe, 0xfd])).await, Some(1007), "invalid UTF-8 in a text frame");
    assert_eq!(raw(&addr, &masked(0x83, b"x")).await, Some(1002), "a reserved opcode");
    app.stop().await;
}

#[tokio::test]
async fn the_client_close_frame_is_echoed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    assert_eq!(ws.close_with(4321).await, Some(4321), "the server answers the close handshake with the client's code");
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address() {
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr");
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.metrics_bind = Some(metrics_addr)).await.expect("app");
    // The server binds the metrics address before it serves its main
    // listener: once that answers, the metrics address is bound.
    let health = http_client().get(format!("{}/healthz", app.base)).send().await.expect("healthz");
    assert!(health.status().is_success(), "{}", health.status());
    let text = http_client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("twofold_requests_shed_total"), "{text}");
    let not_there =
        http_client().get(format!("http://{metrics_addr}/graphql?query={{__typename}}")).send().await.expect("send");
    assert_eq!(not_there.status(), 404, "only /metrics is served there");
    app.stop().await;
}

/// An `Int` outside 32 bits is a bad request, wherever it hides (a literal,
/// a variable, a field of an input-object variable, a list item), answered
/// before anything executes: HTTP 400, `VALIDATION`, the path named, and
/// nothing written. async-graphql alone let such values through validation
/// and failed at execution with an uncoded error.
#[tokio::test]
async fn an_int_beyond_32_bits_is_a_request_error_wherever_it_hides() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let seed = app.seed().await;
    let events = app.event_count().await;
    let cases = [
        ("mutation { addProduct(input: {sku: \"BIG-1\", title: \"Big\", priceCents: 3000000000}) { id } }", json!({}), "input.priceCents"),
        ("mutation($p: Int!) { addProduct(input: {sku: \"BIG-2\", title: \"Big\", priceCents: $p}) { id } }", json!({ "p": 3_000_000_000_i64 }), "input.priceCents"),
        (
            "mutation($i: AddProductInput!) { addProduct(input: $i) { id } }",
            json!({ "i": { "sku": "BIG-3", "title": "Big", "priceCents": -3_000_000_000_i64 } }),
            "input.priceCents",
        ),
        (
            "mutation($c: ID!, $p: ID!, $q: Int!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: $q}]}) { id } }",
            json!({ "c": seed.customer, "p": seed.tea, "q": 4_294_967_297_i64 }),
            "input.lines[0].quantity",
        ),
        ("{ orders(first: 2147483648) { edges { cursor } } }", json!({}), "first"),
    ];
    for (query, variables, path) in cases {
        let response = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(code(&body), "VALIDATION", "{body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(path), "{path} not named in {message:?}");
        assert!(body.get("data").is_none() || body["data"].is_null(), "{body}");
    }
    assert_eq!(app.event_count().await, events, "nothing was written");
    app.stop().await;
}

/// A rebuild that is already running is a state of the service (CONFLICT),
/// not a malformed request; an unknown name is the caller's mistake
/// (VALIDATION). Both mutations of one document run in order, so the
/// second finds the first's rebuild still running (a rebuild reads the
/// whole log before it can finish).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_already_running_is_a_conflict_and_an_unknown_one_a_validation_error() {
    let app = admin_app(Backend::Sqlite).await.expect("sqlite");
    app.seed().await;
    let twice = admin_gql(
        &app,
        r#"mutation { a: rebuildProjection(name: "daily_sales") { accepted } b: rebuildProjection(name: "daily_sales") { accepted } }"#,
        json!({}),
    )
    .await;
    // `b` is non-null, so its error nulls `data` (the spec's propagation);
    // that `b` found a rebuild running shows `a` started one.
    assert_eq!(twice["errors"][0]["path"], json!(["b"]), "{twice}");
    assert_eq!(code(&twice), "CONFLICT", "{twice}");
    assert!(s(&twice["errors"][0]["message"]).contains("already being rebuilt"), "{twice}");
    let unknown = admin_gql(&app, r#"mutation { rebuildProjection(name: "nope") { accepted } }"#, json!({})).await;
    assert_eq!(code(&unknown), "VALIDATION", "{unknown}");
    assert!(s(&unknown["errors"][0]["message"]).contains("known: "), "{unknown}");
    app.stop().await;
}
