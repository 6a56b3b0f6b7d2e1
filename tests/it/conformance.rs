//! What a typed client trips on, held to the GraphQL spec: response keys in
//! document order, a failed field present as `null` with its null
//! propagated through non-null types, open development mode narrowing a
//! role per request (never widening it) and refusing what could never be a
//! token, and validation errors a newcomer can act on.
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::ws_client::{Event, Protocol, WsClient};

/// POSTs `query` with `headers`; the HTTP status and the body as sent (the
/// text, since key order is what is under test: `serde_json::Value` sorts).
async fn post(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = app.client.post(format!("{}/graphql", app.base)).json(&json!({ "query": query }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The top-level keys of the JSON object `text` at `pointer`, in the order sent.
fn keys_in_order(text: &str, pointer: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(text).expect("JSON");
    let object = value.pointer(pointer).and_then(Value::as_object).unwrap_or_else(|| panic!("no object at {pointer}"));
    let mut keys: Vec<(usize, String)> = object
        .keys()
        .map(|k| {
            let needle = format!("\"{k}\":");
            // Keys are found after the object's own opening: good enough for
            // these documents, whose keys are distinct words.
            (text.find(&needle).unwrap_or_else(|| panic!("{k} not in {text}")), k.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

on_both_backends!(response_keys_follow_the_document_even_when_a_later_field_answers_first, |app| async {
    let seed = app.seed().await;
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let query = format!(
        r#"{{ orders(first: 1, consistentWith: "{token}") {{ edges {{ node {{ customer {{ name }} status }} }} }}
              viewer {{ sub role }}
              products(first: 1) {{ edges {{ cursor }} }} }}"#
    );
    // The database fields await; `viewer` answers at once. Several runs, so
    // a lucky scheduling cannot pass it.
    for _ in 0..5 {
        let (status, body) = post(&app, &query, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(keys_in_order(&body, "/data"), ["orders", "viewer", "products"], "{body}");
        assert_eq!(keys_in_order(&body, "/data/viewer"), ["sub", "role"], "{body}");
        // `customer` is loaded through a DataLoader, `status` is at hand.
        assert_eq!(keys_in_order(&body, "/data/orders/edges/0/node"), ["customer", "status"], "{body}");
    }
    // Aliases and fragments: the order of the document, fragments expanded in place.
    let query = r#"{ b: viewer { role } ...Catalog a: viewer { sub } } fragment Catalog on Query { products(first: 1) { edges { cursor } } }"#;
    let (_, body) = post(&app, query, &[]).await;
    assert_eq!(keys_in_order(&body, "/data"), ["b", "products", "a"], "{body}");
});

/// A server with a key: requests without a token are anonymous.
async fn keyed(backend: Backend) -> Option<TestApp> {
    let mut app = TestApp::spawn_with(backend, |s| {
        s.identity.jwt_secret = Some("conformance-tests-hs256-secret-32bytes+".into());
        s.identity.admin_token = Some("conformance-admin".into());
    })
    .await?;
    app.authorization = Some("Bearer conformance-admin".into());
    Some(app)
}

async fn failed_fields_are_null_and_propagate(app: TestApp) {
    app.seed().await;
    // Anonymous: the catalog answers, the orders may not be read. The key is
    // there, null, and the error says why.
    let (status, body) =
        post(&app, "{ products(first: 1) { edges { cursor } } orders(first: 1) { edges { cursor } } }", &[]).await;
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).expect("JSON");
    assert!(response["data"]["products"]["edges"].is_array(), "{body}");
    assert_eq!(response["data"].get("orders"), Some(&Value::Null), "the key must be present: {body}");
    assert_eq!(response["errors"][0]["path"], json!(["orders"]), "{body}");
    assert_eq!(code(&response), "UNAUTHENTICATED", "{body}");
    assert_eq!(keys_in_order(&body, "/data"), ["products", "orders"], "{body}");

    // Every permission-failing root field is nullable, so each answers null
    // beside the rest.
    for field in [
        "customers(first: 1) { edges { cursor } }",
        "dailySales(from: \"2026-01-01\", to: \"2026-01-02\") { day }",
        "orderActivity(orderId: \"00000000-0000-0000-0000-000000000000\") { version }",
        "deadLetters { id }",
        "projections { name }",
    ] {
        let (_, body) = post(&app, &format!("{{ products(first: 1) {{ edges {{ cursor }} }} {field} }}"), &[]).await;
        let response: Value = serde_json::from_str(&body).expect("JSON");
        let name = field.split(['(', ' ']).next().expect("a name");
        assert_eq!(response["data"].get(name), Some(&Value::Null), "{field}: {body}");
        assert!(response["data"]["products"].is_object(), "{field}: {body}");
    }

    // A non-null field that fails takes its nearest nullable parent with it:
    // here `products` is non-null, so the whole `data` is null (and
    // `viewer`, which answered, goes with it), as the spec has it.
    let (_, body) = post(&app, "{ viewer { role } products(first: 1000) { edges { cursor } } }", &[]).await;
    let response: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(response.get("data"), Some(&Value::Null), "{body}");
    assert_eq!(response["errors"][0]["path"], json!(["products"]), "{body}");
    assert_eq!(code(&response), "VALIDATION", "{body}");
}

mod failed_fields_are_null_and_their_null_propagates {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        failed_fields_are_null_and_propagate(keyed(Backend::Sqlite).await.expect("sqlite")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some(app) = keyed(Backend::Postgres).await else { return };
        failed_fields_are_null_and_propagate(app).await;
    }
}

on_both_backends!(open_mode_narrows_a_role_per_request_and_never_widens_it, |app| async {
    let seed = app.seed().await;
    let (other, _) = app.register_customer("Other", &format!("{}@example.com", short())).await;
    let (mine, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (_, token) = app.place_order(&other, &[(&seed.cake, 1)]).await;
    let orders = format!(
        r#"{{ viewer {{ role customerId }} orders(consistentWith: "{token}") {{ edges {{ node {{ id }} }} }} }}"#
    );

    // Open mode: staff, every order.
    let (_, body) = post(&app, &orders, &[]).await;
    let staff: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(staff["data"]["viewer"]["role"], "STAFF", "{body}");
    assert_eq!(staff["data"]["orders"]["edges"].as_array().map(Vec::len), Some(2), "{body}");

    // Narrowed to a customer: exactly what that customer sees.
    let as_customer = [("twofold-role", "customer"), ("twofold-customer-id", seed.customer.as_str())];
    let (status, body) = post(&app, &orders, &as_customer).await;
    assert_eq!(status, 200, "{body}");
    let customer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(customer["data"]["viewer"], json!({ "role": "CUSTOMER", "customerId": seed.customer }), "{body}");
    assert_eq!(customer["data"]["orders"]["edges"], json!([{ "node": { "id": mine } }]), "{body}");

    // Narrowed to anonymous: the orders are not readable.
    let (_, body) = post(&app, &orders, &[("twofold-role", "anonymous")]).await;
    let anonymous: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(anonymous["data"]["orders"], Value::Null, "{body}");
    assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{body}");

    // Never widened; malformed narrowing is the client's mistake.
    let (status, body) = post(&app, &orders, &[("twofold-role", "admin")]).await;
    assert_eq!(status, 403, "{body}");
    let refused: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(code(&refused), "FORBIDDEN", "{body}");
    assert!(s(&refused["errors"][0]["message"]).contains("never widened"), "{body}");
    for headers in [
        vec![("twofold-role", "customer")],
        vec![("twofold-role", "customer"), ("twofold-customer-id", "not-a-uuid")],
        vec![("twofold-role", "superuser")],
    ] {
        let (status, body) = post(&app, &orders, &headers).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        let refused: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(code(&refused), "VALIDATION", "{headers:?}: {body}");
    }

    // A bearer value that could never be a token: 401 with keyed mode's words.
    let (status, body) = post(&app, &orders, &[("authorization", "Bearer not-a-jwt")]).await;
    assert_eq!(status, 401, "{body}");
    let refused: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(code(&refused), "UNAUTHENTICATED", "{body}");
    assert!(s(&refused["errors"][0]["message"]).contains("not a well-formed JWT"), "{body}");

    // Over a WebSocket, `connection_init` narrows the same way.
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init_with(json!({ "Twofold-Role": "customer", "Twofold-Customer-Id": seed.customer })).await;
    ws.subscribe("1", "{ viewer { role customerId } }", json!({})).await;
    let payload = ws.next_data("1").await;
    assert_eq!(payload["data"]["viewer"], json!({ "role": "CUSTOMER", "customerId": seed.customer }), "{payload}");
    ws.close().await;
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.send_json(json!({ "type": "connection_init", "payload": { "twofold-role": "admin" } })).await;
    assert_eq!(ws.expect_close().await, Some(4403), "widening over a WebSocket closes with Forbidden");
});

on_both_backends!(validation_errors_say_what_a_value_looks_like_and_suggest_a_field, |app| async {
    let query = r#"{ order(id: "00000000-0000-0000-0000-000000000000", consistentWith: "soon") { id } }"#;
    let (_, body) = post(&app, query, &[]).await;
    let response: Value = serde_json::from_str(&body).expect("JSON");
    let message = s(&response["errors"][0]["message"]);
    assert!(message.contains("expected type \"Token\""), "{message}");
    assert!(message.contains("two whole numbers joined by a dot"), "a token's shape is told: {message}");

    let (_, body) = post(&app, "{ ordrs { edges { cursor } } }", &[]).await;
    let response: Value = serde_json::from_str(&body).expect("JSON");
    let message = s(&response["errors"][0]["message"]);
    assert!(message.contains("Did you mean \"orders\""), "{message}");
});

/// POSTs a whole GraphQL-over-HTTP body asking for
/// `application/graphql-response+json`: the status and the answer.
async fn post_body(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Every error in `answer` has a code and a one-line message, and every
/// location of it counts lines and columns from 1, as GraphQL does.
fn assert_locations_count_from_one(answer: &Value, what: &str) {
    for error in answer["errors"].as_array().unwrap_or_else(|| panic!("{what}: no errors in {answer}")) {
        assert!(!s(&error["message"]).contains('\n'), "{what}: a one-line message: {error}");
        assert!(error["extensions"]["code"].is_string(), "{what}: a code: {error}");
        let Some(locations) = error.get("locations") else { continue };
        let locations = locations.as_array().unwrap_or_else(|| panic!("{what}: locations is a list: {error}"));
        assert!(!locations.is_empty(), "{what}: an empty locations list is left out: {error}");
        for location in locations {
            let (line, column) = (location["line"].as_u64(), location["column"].as_u64());
            assert!(line.is_some_and(|l| l >= 1) && column.is_some_and(|c| c >= 1), "{what}: {error}");
        }
    }
}

on_both_backends!(no_error_points_at_line_or_column_zero, |app| async {
    // A request-level error has no place in the document: no `locations` at all.
    for token in [json!("0.x"), json!(42), json!({ "a": 1 })] {
        let request = json!({ "query": "{ viewer { role } }", "extensions": { "consistentWith": token } });
        // Twice: the second run is served from the validated-document cache.
        for run in ["first", "cached"] {
            let (status, answer) = post_body(&app, request.clone()).await;
            assert_eq!(status, 400, "{token} ({run}): {answer}");
            assert_eq!(code(&answer), "VALIDATION", "{token} ({run}): {answer}");
            assert!(s(&answer["errors"][0]["message"]).starts_with("extensions.consistentWith: "), "{answer}");
            assert!(answer["errors"][0].get("locations").is_none(), "{token} ({run}): {answer}");
            assert_locations_count_from_one(&answer, &format!("consistentWith {token}"));
        }
    }
    let get = app
        .client
        .get(format!("{}/graphql", app.base))
        .header("accept", "application/graphql-response+json")
        .query(&[("query", "{ viewer { role } }"), ("extensions", r#"{"consistentWith":"soon"}"#)])
        .send()
        .await
        .expect("send");
    assert_eq!(get.status(), 400);
    let answer: Value = get.json().await.expect("JSON");
    assert!(answer["errors"][0].get("locations").is_none(), "GET: {answer}");

    // Bad requests of every kind: wherever a location is given, it is a place.
    let nul = "a\u{0}b";
    let too_deep = format!("{{ {}__typename{} }}", "orders { edges { node { ".repeat(5), " } } }".repeat(5));
    let bad: Vec<(&str, Value)> = vec![
        ("syntax", json!({ "query": "{ projections {" })),
        ("syntax, later line", json!({ "query": "query {\n  viewer {\n    role(\n  }\n}" })),
        ("empty document", json!({ "query": "" })),
        ("two anonymous operations", json!({ "query": "{ viewer { role } } { viewer { sub } }" })),
        ("an operation defined twice", json!({ "query": "query A { viewer { role } } query A { viewer { sub } }" })),
        ("no operation", json!({ "query": "fragment F on Query { viewer { role } }" })),
        ("unknown field", json!({ "query": "{ ordrs { edges { cursor } } }" })),
        ("missing argument", json!({ "query": "{ order { id } }" })),
        ("unknown operation", json!({ "query": "query A { viewer { role } }", "operationName": "B" })),
        ("missing variable", json!({ "query": "query($id: ID!) { order(id: $id) { id } }" })),
        (
            "variable of the wrong type",
            json!({ "query": "query($id: ID!) { order(id: $id) { id } }", "variables": { "id": 5 } }),
        ),
        ("Int out of range", json!({ "query": "{ orders(first: 3000000000) { edges { cursor } } }" })),
        (
            "NUL",
            json!({ "query": "query($s: String) { products(search: $s) { edges { cursor } } }", "variables": { "s": nul } }),
        ),
        ("too deep", json!({ "query": too_deep })),
        (
            "a token literal that is not one",
            json!({ "query": r#"{ order(id: "00000000-0000-0000-0000-000000000000", consistentWith: "soon") { id } }"# }),
        ),
        (
            "unknown input field",
            json!({ "query": r#"mutation { registerCustomer(input: {nme: "A", email: "a@example.com"}) { id } }"# }),
        ),
        (
            "unknown variable field",
            json!({ "query": "mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id } }", "variables": { "input": { "nme": "A", "email": "a@example.com" } } }),
        ),
        ("an execution error", json!({ "query": r#"{ order(id: "not-a-uuid") { id } }"# })),
        (
            "a rule the command refuses",
            json!({ "query": r#"mutation { registerCustomer(input: {name: "", email: "a@example.com"}) { id } }"# }),
        ),
    ];
    for (what, request) in bad {
        // Twice, for the cached path of the documents that pass validation.
        for _ in 0..2 {
            let (_, answer) = post_body(&app, request.clone()).await;
            assert_locations_count_from_one(&answer, what);
        }
    }

    // Over a WebSocket the same errors come in `error` messages.
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    for (id, payload) in [
        ("token", json!({ "query": "{ viewer { role } }", "extensions": { "consistentWith": "0.x" } })),
        ("syntax", json!({ "query": "subscription { writeVisible(token: " })),
    ] {
        ws.send_json(json!({ "id": id, "type": "subscribe", "payload": payload })).await;
        match ws.next().await {
            Event::Message(m) if m["type"] == "error" && m["id"] == id => {
                let answer = json!({ "errors": m["payload"] });
                assert_locations_count_from_one(&answer, id);
                if id == "token" {
                    assert!(m["payload"][0].get("locations").is_none(), "{m}");
                }
            }
            other => panic!("{id}: expected an error message, got {other:?}"),
        }
    }
    ws.close().await;
});

on_both_backends!(a_syntax_error_is_one_line_that_says_where_and_what_was_expected, |app| async {
    let query = "mutation Register($input: RegisterCustomerInput!) { registerCustomer(input: $) { id } }";
    let column = query.find("$)").expect("the slip") as u64 + 2;
    let expected = format!("Syntax error at line 1, column {column}: expected a name, found \")\"");
    let (status, answer) = post_body(&app, json!({ "query": query })).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.get("data").is_none(), "{answer}");
    assert_eq!(code(&answer), "VALIDATION", "{answer}");
    assert_eq!(s(&answer["errors"][0]["message"]), expected, "{answer}");
    assert_eq!(answer["errors"][0]["locations"], json!([{ "line": 1, "column": column }]), "{answer}");
    assert_eq!(answer["errors"].as_array().map(Vec::len), Some(1), "{answer}");

    // Lines count from the document's own line breaks; the end of the text is named.
    let (_, answer) = post_body(&app, json!({ "query": "query {\n  viewer {\n    role(\n  }\n}" })).await;
    assert_eq!(s(&answer["errors"][0]["message"]), "Syntax error at line 4, column 3: expected a name, found \"}\"");
    assert_eq!(answer["errors"][0]["locations"], json!([{ "line": 4, "column": 3 }]), "{answer}");
    let (_, answer) = post_body(&app, json!({ "query": "{ viewer { role }" })).await;
    let message = s(&answer["errors"][0]["message"]);
    assert_eq!(message, "Syntax error at line 1, column 18: expected a field, found the end of the document");

    // The same over a WebSocket subscribe, on both protocols.
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let mut ws = WsClient::connect(&app.base, "/graphql/ws", protocol).await;
        ws.init().await;
        ws.subscribe("s", query, json!({})).await;
        match ws.next().await {
            Event::Message(m) if m["type"] == "error" && m["id"] == "s" => {
                // graphql-transport-ws sends a list of errors, the legacy protocol one.
                let error = if m["payload"].is_array() { m["payload"][0].clone() } else { m["payload"].clone() };
                assert_eq!(s(&error["message"]), expected, "{m}");
                assert_eq!(error["locations"], json!([{ "line": 1, "column": column }]), "{m}");
                assert_eq!(error["extensions"]["code"], "VALIDATION", "{m}");
            }
            other => panic!("expected an error message, got {other:?}"),
        }
        ws.close().await;
    }
});

on_both_backends!(a_misspelt_input_field_is_named_with_a_suggestion, |app| async {
    let (status, answer) = post_body(
        &app,
        json!({ "query": r#"mutation { registerCustomer(input: {nme: "Ada", email: "ada@example.com"}) { id } }"# }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(code(&answer), "VALIDATION", "{answer}");
    assert_eq!(
        s(&answer["errors"][0]["message"]),
        r#"Unknown field "nme" in input RegisterCustomerInput; did you mean "name"?"#,
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["locations"], json!([{ "line": 1, "column": 36 }]), "{answer}");

    // In a variable's JSON, the variable is named too.
    let register = "mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id } }";
    let (status, answer) = post_body(
        &app,
        json!({ "query": register, "variables": { "input": { "nme": "Ada", "email": "ada@example.com" } } }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(code(&answer), "VALIDATION", "{answer}");
    assert_eq!(
        s(&answer["errors"][0]["message"]),
        r#"Unknown field "nme" in input RegisterCustomerInput (variable $input); did you mean "name"?"#,
        "{answer}"
    );

    // Nested inputs, and a name that resembles none: the fields are listed.
    let (_, answer) = post_body(
        &app,
        json!({ "query": r#"mutation { placeOrder(input: {customerId: "00000000-0000-0000-0000-000000000000", lines: [{productId: "00000000-0000-0000-0000-000000000000", quantty: 1}]}) { id } }"# }),
    )
    .await;
    assert_eq!(
        s(&answer["errors"][0]["message"]),
        r#"Unknown field "quantty" in input OrderLineInput; did you mean "quantity"?"#,
        "{answer}"
    );
    let place = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }";
    let lines = json!([{ "productId": "00000000-0000-0000-0000-000000000000", "quantty": 1 }]);
    let (_, answer) = post_body(&app, json!({ "query": place, "variables": { "input": { "lines": lines } } })).await;
    assert_eq!(
        s(&answer["errors"][0]["message"]),
        r#"Unknown field "quantty" in input OrderLineInput (variable $input.lines[0]); did you mean "quantity"?"#,
        "{answer}"
    );
    let (_, answer) = post_body(
        &app,
        json!({ "query": register, "variables": { "input": { "name": "Ada", "email": "ada@example.com", "zzz": 1 } } }),
    )
    .await;
    let message = s(&answer["errors"][0]["message"]);
    assert!(
        message.starts_with(r#"Unknown field "zzz" in input RegisterCustomerInput (variable $input); its fields are "#),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(app.event_count().await, 0, "nothing ran");
});
