//! A bounded fuzz run against the real server: generated documents with
//! fragments, aliases, directives and variables of every type, mutations
//! with hostile inputs, random bytes, over HTTP (POST and GET) and as
//! WebSocket message sequences. Nothing may panic, answer 5xx, or grow
//! memory past a bound. Seeded, so a failure reproduces; set
//! `TWOFOLD_FUZZ_CASES` and `TWOFOLD_FUZZ_SEED` to run it longer (the
//! README's test section says how), and see `tests/fuzz` for the coverage-guided target.
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::{Event, Protocol, WsClient};

/// xorshift64*: small, seeded, good enough to pick shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A value for a variable of any type, often of the wrong one.
fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 9 } else { 12 }) {
        0 => Value::Null,
        1 => json!(rng.next() as i64),
        2 => json!(*rng.pick(&[0, -1, 1, i32::MAX as i64, i32::MAX as i64 + 1, i64::MAX, i64::MIN])),
        3 => json!(rng.next() as f64 / 7.0),
        4 => json!(rng.chance(50)),
        5 => json!(*rng.pick(&[
            "",
            "tea",
            "a\u{0}b",
            "🚀",
            "900000000000.1",
            "0.0",
            "2026-13-45",
            "PLACED",
            "x".repeat(300).as_str()
        ])),
        6 => json!(uuid::Uuid::new_v4().to_string()),
        7 => json!(*rng.pick(&["1.2", "-5.5", "abc", "99999999999999999999.1"])),
        8 => json!("9".repeat(rng.below(40))),
        9 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        10 => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                let key = rng
                    .pick(&[
                        "customerId",
                        "lines",
                        "productId",
                        "quantity",
                        "name",
                        "email",
                        "sku",
                        "priceCents",
                        "orderId",
                        "x",
                    ])
                    .to_string();
                map.insert(key, value(rng, depth + 1));
            }
            Value::Object(map)
        }
        _ => {
            json!({ "customerId": uuid::Uuid::new_v4(), "lines": [{ "productId": uuid::Uuid::new_v4(), "quantity": value(rng, depth + 1) }] })
        }
    }
}

const SELECTIONS: &[&str] = &[
    "__typename",
    "projections { name status lag checkpoint attempts lastError }",
    "orders(first: FIRST) { edges { cursor node { id status totalCents customer { name lifetimeValueCents } lines { title product { sku unitsSold } } } } pageInfo { hasNextPage endCursor } }",
    "products(search: $s) { edges { node { id title priceCents revenueCents } } }",
    "customers(first: FIRST, after: $s) { edges { node { id name ordersPlaced } } }",
    "order(id: $id) { id lines { lineTotalCents } }",
    "customer(id: $id, consistentWith: $t) { name }",
    "topProducts(limit: FIRST) { sku }",
    "dailySales(from: $d, to: $d) { day grossCents }",
    "orderActivity(orderId: $id) { eventType description token }",
    "__schema { types { name fields { name type { name ofType { name } } } } }",
    "__type(name: $s) { name kind }",
    "deadLetters { id }",
];

const MUTATIONS: &[&str] = &[
    "registerCustomer(input: {name: $s, email: $s, commandId: $s}) { id token }",
    "addProduct(input: {sku: $s, title: $s, priceCents: $n}) { id }",
    "placeOrder(input: $input) { id token }",
    "cancelOrder(input: {orderId: $id, reason: $s, expectedVersion: $n}) { token }",
    "shipOrder(input: {orderId: $id, carrier: $s, trackingNumber: $s}) { token }",
    "changeProductPrice(input: {productId: $id, priceCents: $n}) { token }",
    "rebuildProjection(name: $s) { accepted }",
];

fn selection(rng: &mut Rng) -> String {
    let first: &&str = rng.pick(&["1", "20", "100", "101", "-1", "0", "2147483647"]);
    let chosen = rng.pick(SELECTIONS).replace("FIRST", first);
    let alias = if rng.chance(30) { format!("a{}: ", rng.below(1000)) } else { String::new() };
    let directive = match rng.below(6) {
        0 => " @include(if: $b)",
        1 => " @skip(if: true)",
        2 => " @deprecated",
        _ => "",
    };
    format!("{alias}{chosen}{directive}")
}

/// A whole document: operations, fragments (sometimes nested, cyclic or
/// exploding), inline fragments, variables.
fn document(rng: &mut Rng) -> String {
    let mut fragments = String::new();
    let mut body = String::new();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                let name = format!("F{}", rng.below(4));
                body.push_str(&format!(" ...{name}"));
                let inner = if rng.chance(40) { format!("...F{} ", rng.below(4)) } else { String::new() };
                fragments.push_str(&format!(" fragment {name} on Query {{ {inner}{} }}", selection(rng)));
            }
            1 => body.push_str(&format!(" ... on Query {{ {} }}", selection(rng))),
            2 if rng.chance(20) => {
                // An exploding fan-out.
                let levels = 3 + rng.below(30);
                body.push_str(" ...B0");
                for i in 0..levels {
                    fragments.push_str(&format!(" fragment B{i} on Query {{ ...B{n} ...B{n} }}", n = i + 1));
                }
                fragments.push_str(&format!(" fragment B{levels} on Query {{ __typename }}"));
            }
            _ => body.push_str(&format!(" {}", selection(rng))),
        }
    }
    let variables = "($s: String, $id: ID, $t: Token, $d: NaiveDate, $b: Boolean, $n: Int, $input: PlaceOrderInput)";
    let doc = if rng.chance(25) {
        format!("mutation{variables} {{ {} }}", rng.pick(MUTATIONS))
    } else if rng.chance(10) {
        format!("subscription{variables} {{ writeVisible(token: $t, timeoutMs: $n) {{ visible }} }}")
    } else {
        format!("query{variables} {{{body} }}{fragments}")
    };
    // Sometimes break it.
    match rng.below(12) {
        0 => doc[..rng.below(doc.len())].to_owned(),
        1 => doc.replace('{', "{{"),
        2 => format!("{doc} {}", "}".repeat(rng.below(5))),
        _ => doc,
    }
}

fn variables(rng: &mut Rng) -> Value {
    let mut map = serde_json::Map::new();
    for name in ["s", "id", "t", "d", "b", "n", "input"] {
        if rng.chance(70) {
            map.insert(name.to_owned(), value(rng, 0));
        }
    }
    if rng.chance(10) {
        return value(rng, 0);
    }
    Value::Object(map)
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(300)).map(|_| rng.next() as u8).collect()
}

/// The server under fuzz: a `twofold serve` process of its own, so that its
/// memory is measured alone (the test binary runs other tests beside this one).
struct Target {
    base: String,
    client: reqwest::Client,
}

async fn http_case(app: &Target, rng: &mut Rng) {
    let url = format!("{}/graphql", app.base);
    let request = match rng.below(10) {
        0 => app.client.post(&url).header("content-type", "application/json").body(random_bytes(rng)),
        1 => app.client.get(&url).query(&[("query", document(rng)), ("variables", variables(rng).to_string())]),
        2 => app
            .client
            .post(&url)
            .header(
                "content-type",
                *rng.pick(&["text/plain", "application/jsonx", "application/graphql-response+json"]),
            )
            .body(document(rng)),
        _ => {
            let accept = *rng.pick(&["application/json", "application/graphql-response+json", "*/*"]);
            let body = json!({ "query": document(rng), "variables": variables(rng), "operationName": if rng.chance(10) { json!("x") } else { Value::Null } });
            app.client.post(&url).header("accept", accept).json(&body)
        }
    };
    let response = request.send().await.expect("the server answers every request (no dropped connection)");
    let status = response.status();
    assert!(status.as_u16() < 500, "HTTP {status}");
    let body = response.bytes().await.expect("body");
    if status.as_u16() != 405 || !body.is_empty() {
        let parsed: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", String::from_utf8_lossy(&body)));
        for error in parsed["errors"].as_array().into_iter().flatten() {
            let code =
                error["extensions"]["code"].as_str().unwrap_or_else(|| panic!("every error has a code: {parsed}"));
            assert_ne!(code, "INTERNAL", "no input is an internal error: {parsed}");
        }
    }
}

async fn ws_case(app: &Target, rng: &mut Rng) {
    let protocol = if rng.chance(50) { Protocol::TransportWs } else { Protocol::LegacyWs };
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", protocol).await;
    for step in 0..1 + rng.below(12) {
        let message = match rng.below(10) {
            0 => json!({ "type": "connection_init", "payload": value(rng, 0) }).to_string(),
            1 => String::from_utf8_lossy(&random_bytes(rng)).into_owned(),
            2 => json!({ "type": *rng.pick(&["ping", "pong", "complete", "stop", "connection_terminate", "nope"]), "id": format!("{}", rng.below(5)) }).to_string(),
            _ if step == 0 => json!({ "type": "connection_init" }).to_string(),
            _ => json!({ "id": format!("{}", rng.below(5)), "type": if protocol == Protocol::TransportWs { "subscribe" } else { "start" },
                         "payload": { "query": document(rng), "variables": variables(rng) } })
            .to_string(),
        };
        if !ws.try_send_text(&message).await {
            break;
        }
    }
    // Read what comes within a moment; a close must carry a documented code.
    while let Some(event) = ws.next_within(Duration::from_millis(300)).await {
        match event {
            Event::Message(m) => {
                if m["type"] == "error" {
                    let errors = if m["payload"].is_array() { m["payload"].clone() } else { json!([m["payload"]]) };
                    for e in errors.as_array().into_iter().flatten() {
                        assert_ne!(e["extensions"]["code"], "INTERNAL", "{m}");
                    }
                }
            }
            Event::Closed(code, reason) => {
                let documented = [
                    Some(1000),
                    Some(1002),
                    Some(1007),
                    Some(1009),
                    Some(4400),
                    Some(4401),
                    Some(4408),
                    Some(4409),
                    Some(4429),
                    None,
                ];
                assert!(documented.contains(&code), "close {code:?} {reason}");
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzzed_requests_never_crash_or_5xx_and_memory_stays_bounded() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    let server = crate::process::Server::start(&["--database-url", &database.url]).await;
    let app = Target { base: server.base.clone(), client: http_client() };
    for seed in [
        "mutation { registerCustomer(input: {name: \"Ada Lovelace\", email: \"ada@example.com\"}) { id } }",
        "mutation { addProduct(input: {sku: \"TEA\", title: \"Green tea\", priceCents: 450}) { id } }",
        "mutation { addProduct(input: {sku: \"CAKE\", title: \"Lemon cake\", priceCents: 1200}) { id } }",
    ] {
        let r: Value = app
            .client
            .post(format!("{}/graphql", app.base))
            .json(&json!({ "query": seed }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(r.get("errors").is_none(), "{r}");
    }
    let cases: usize = std::env::var("TWOFOLD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let seed: u64 = std::env::var("TWOFOLD_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x7f4a_7c15);
    eprintln!("fuzz: {cases} cases, seed {seed} (TWOFOLD_FUZZ_SEED to reproduce)");
    let mut rng = Rng(seed | 1);
    // A first tenth warms the server (its caches, its allocator's arenas);
    // what the rest adds is what a leak would.
    let warm_up = cases / 10;
    let mut warm = 0;
    for case in 0..cases {
        if case == warm_up {
            warm = server.resident_kib();
        }
        if rng.chance(80) {
            http_case(&app, &mut rng).await;
        } else {
            ws_case(&app, &mut rng).await;
        }
    }
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.expect("alive");
    assert_eq!(health.status(), 200);
    let (after, peak) = (server.resident_kib(), server.peak_resident_kib());
    eprintln!(
        "fuzz: the server's resident memory {warm} KiB after the warm-up, {after} KiB at the end, peak {peak} KiB"
    );
    assert!(peak < 1024 * 1024, "the server's resident memory peaked at {peak} KiB");
    assert!(
        after < warm + 32 * 1024,
        "the server's resident memory grew from {warm} KiB to {after} KiB over {} cases",
        cases - warm_up
    );
}
