//! GraphQL over HTTP: media types, status codes, GET rules, limits, health.
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

async fn app() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await
}

#[tokio::test]
async fn get_runs_queries_but_never_mutations() {
    let app = app().await;
    let ok = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("query", "{ projections { name } }")])
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["data"]["projections"].as_array().expect("list").len(), 5);

    let mutation = "mutation { registerCustomer(input: {name: \"Eve\", email: \"eve@example.com\"}) { id } }";
    let refused =
        app.client.get(format!("{}/graphql", app.base)).query(&[("query", mutation)]).send().await.expect("send");
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(code(&body), "VALIDATION");
    assert_eq!(app.event_count().await, 0, "the mutation did not run");
    app.stop().await;
}

#[tokio::test]
async fn graphql_response_media_type_gets_status_codes() {
    let app = app().await;
    let post = |accept: &'static str, query: &'static str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let ok = post("application/graphql-response+json", "{ projections { name } }").await.expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "application/graphql-response+json");
    let invalid = post("application/graphql-response+json", "{ nope }").await.expect("send");
    assert_eq!(invalid.status(), 400, "a request that fails validation is a 400");
    let body: Value = invalid.json().await.expect("json");
    assert_eq!(code(&body), "VALIDATION");
    let syntax = post("application/graphql-response+json", "{ projections {").await.expect("send");
    assert_eq!(syntax.status(), 400);
    let legacy = post("application/json", "{ nope }").await.expect("send");
    assert_eq!(legacy.status(), 200, "application/json keeps 200");
    assert_eq!(legacy.headers()["content-type"], "application/json");
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() {
    let app = app().await;
    let url = format!("{}/graphql", app.base);
    let not_json =
        app.client.post(&url).header("content-type", "application/json").body("{not json").send().await.expect("send");
    assert_eq!(not_json.status(), 400);
    assert_eq!(code(&not_json.json::<Value>().await.expect("json")), "VALIDATION");
    let wrong_type = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{ projections { name } }")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_type.status(), 415);
    let wrong_variable = app.gql("query($id: ID!) { order(id: $id) { id } }", json!({ "id": 5 })).await;
    assert_eq!(code(&wrong_variable), "VALIDATION");
    let missing_input = app.gql("mutation { placeOrder(input: {customerId: \"x\"}) { id } }", json!({})).await;
    assert_eq!(code(&missing_input), "VALIDATION");
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_deep_and_complex_queries_are_refused() {
    let app = app().await;
    let url = format!("{}/graphql", app.base);
    let huge = format!(
        "{{\"query\": \"{{ projections {{ name }} }}\", \"variables\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(300 * 1024)
    );
    let too_big =
        app.client.post(&url).header("content-type", "application/json").body(huge).send().await.expect("send");
    assert_eq!(too_big.status(), 413);
    let deep = format!("{{ orders {{ edges {{ node {{ lines {{ product {{ title }} }} {} }} }} }} }}", "");
    let nested = "{ orders { edges { node { customer { name } lines { product { sku } } } } } }";
    assert!(app.gql(nested, json!({})).await.get("errors").is_none(), "a sane query passes: {deep}");
    // Introspection has its own, more generous depth rule (24 levels): nest past it.
    let mut too_deep = String::from("__typename");
    for _ in 0..7 {
        too_deep = format!("__type(name: \"Query\") {{ fields {{ type {{ ofType {{ {too_deep} }} }} }} }}");
    }
    let refused = app.gql(&format!("{{ {too_deep} }}"), json!({})).await;
    assert_eq!(code(&refused), "VALIDATION");
    assert!(refused["errors"][0]["message"].as_str().expect("message").to_lowercase().contains("nested"), "{refused}");
    let aliases: String =
        (0..90).map(|i| format!("a{i}: orders(first: 100) {{ edges {{ node {{ id customerName }} }} }} ")).collect();
    let complex = app.gql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code(&complex), "VALIDATION");
    assert!(complex["errors"][0]["message"].as_str().expect("message").to_lowercase().contains("complex"), "{complex}");
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_graphiql_and_request_ids() {
    let app = app().await;
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.expect("send");
    assert_eq!(health.status(), 200);
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("send").json().await.expect("json");
    assert_eq!(ready["status"], "ready");
    let page = app.client.get(&app.base).send().await.expect("send");
    assert_eq!(page.status(), 200);
    assert!(page.headers().contains_key("x-request-id"));
    assert!(page.text().await.expect("html").to_lowercase().contains("graphiql"));
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_is_recorded_in_event_metadata() {
    let app = app().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", "req-42")
        .json(&json!({ "query": "mutation { registerCustomer(input: {name: \"Ida\", email: \"ida@example.com\", commandId: \"cmd-7\"}) { id } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let count =
        app.scalar_i64("SELECT count(*) FROM event WHERE metadata LIKE '%req-42%' AND metadata LIKE '%cmd-7%'").await;
    assert_eq!(count, 1);
    app.stop().await;
}

/// What frontends trip over: a request error has no `data` key; GET
/// /graphql without a query explains itself (and shows the playground to a
/// browser); POST / points at /graphql.
#[tokio::test]
async fn request_errors_have_no_data_and_wrong_doors_point_to_the_right_one() {
    let app = app().await;
    for accept in ["application/graphql-response+json", "application/json"] {
        let response = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("accept", accept)
            .json(&json!({ "query": "{ nope }" }))
            .send()
            .await
            .expect("send");
        let body: Value = response.json().await.expect("json");
        assert!(body.get("data").is_none(), "{accept}: {body}");
        assert_eq!(code(&body), "VALIDATION");
    }
    // An execution error keeps its `data`.
    let executed = app.gql("{ order(id: \"not-a-uuid\") { id } }", json!({})).await;
    assert!(executed.get("data").is_some(), "{executed}");

    let bare = app.client.get(format!("{}/graphql", app.base)).send().await.expect("send");
    assert_eq!(bare.status(), 400);
    let body: Value = bare.json().await.expect("json");
    assert!(body["errors"][0]["message"].as_str().expect("message").contains("needs a `query` parameter"), "{body}");
    let browser = app
        .client
        .get(format!("{}/graphql", app.base))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("send");
    assert_eq!(browser.status(), 200);
    assert!(browser.headers()["content-type"].to_str().expect("text").starts_with("text/html"));
    assert!(browser.text().await.expect("html").contains("graphiql"));

    let wrong = app
        .client
        .post(format!("{}/", app.base))
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 405);
    let body: Value = wrong.json().await.expect("json");
    assert!(body["errors"][0]["message"].as_str().expect("message").contains("/graphql"), "{body}");
    app.stop().await;
}

/// Relay's global object identification: `node(id:)` finds an order, a
/// customer or a product by the id it already has.
#[tokio::test]
async fn node_finds_any_object_by_its_id() {
    let app = app().await;
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    // (Root fields resolve concurrently: wait for the write in a request of
    // its own, with a list, which waits for the views; a single key would
    // fold the write without waiting.)
    app.data("query($t: Token) { orders(consistentWith: $t) { nodes { id } } }", json!({ "t": token })).await;
    let _ = &order;
    let d = app
        .data(
            "query($o: ID!, $c: ID!, $p: ID!) { a: node(id: $o) { __typename id ... on OrderSummary { totalCents } } \
             b: node(id: $c) { __typename id ... on Customer { name } } \
             c: node(id: $p) { __typename id ... on Product { sku } } \
             d: node(id: \"00000000-0000-7000-8000-000000000000\") { id } }",
            json!({ "o": order, "c": seed.customer, "p": seed.tea }),
        )
        .await;
    assert_eq!((d["a"]["__typename"].as_str(), d["a"]["id"].as_str()), (Some("OrderSummary"), Some(order.as_str())));
    assert_eq!(d["a"]["totalCents"], 450);
    assert_eq!(d["b"]["__typename"], "Customer");
    assert_eq!(d["c"]["__typename"], "Product");
    assert!(d["d"].is_null());
    app.stop().await;
}

/// One HTTP/1.1 exchange over a bare socket, for what reqwest cannot send
/// (a chunked body of our own making): the request is written while the
/// answer is read, so a server that answers before reading everything is
/// heard. Returns the status, the headers (lowercase names) and the body.
async fn raw_exchange(base: &str, head: &str, body: Vec<u8>) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let mut request = head.replace('\n', "\r\n").into_bytes();
    request.extend_from_slice(b"\r\n");
    request.extend(body);
    let writing = tokio::spawn(async move {
        // The server may stop reading once it has refused: a failed write is expected then.
        let _ = writer.write_all(&request).await;
        let _ = writer.flush().await;
        writer
    });
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes (Connection: close) in time")
        .expect("read");
    drop(writing.await);
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A refusal of a too-large request, as a GraphQL answer: no `data`, one
/// error with `extensions.code` and a one-line message naming the limit.
fn assert_too_large(status: u16, content_type: Option<&str>, body: &str, expected_type: &str, what: &str) {
    assert_eq!(status, 413, "{what}: {body}");
    assert_eq!(content_type, Some(expected_type), "{what}: {body}");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert!(body.get("data").is_none(), "{what}: {body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{what}: {body}");
    assert_eq!(code(&body), "VALIDATION", "{what}: {body}");
    let message = s(&body["errors"][0]["message"]);
    assert!(!message.contains('\n'), "{what}: one line: {message:?}");
    assert!(message.contains("262144 bytes"), "{what}: names the limit: {message}");
}

on_both_backends!(a_body_over_the_limit_is_a_graphql_error_however_it_arrives, |app| async {
    let url = format!("{}/graphql", app.base);
    let padded = |bytes: usize| {
        json!({ "query": "{ viewer { role } }", "variables": { "pad": "x".repeat(bytes) } }).to_string().into_bytes()
    };
    // A Content-Length over the limit, under both media types.
    for accept in ["application/graphql-response+json", "application/json"] {
        let response = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(padded(300 * 1024))
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().expect("text").to_owned());
        let body = response.text().await.expect("body");
        assert_too_large(status, content_type.as_deref(), &body, accept, &format!("Content-Length, {accept}"));
    }

    // A chunked body (no Content-Length) that runs past the limit.
    let mut chunked = Vec::new();
    for piece in padded(300 * 1024).chunks(16 * 1024) {
        chunked.extend(format!("{:x}\r\n", piece.len()).into_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /graphql HTTP/1.1\nhost: localhost\ncontent-type: application/json\n\
                accept: application/graphql-response+json\ntransfer-encoding: chunked\nconnection: close\n";
    let (status, headers, body) = raw_exchange(&app.base, head, chunked).await;
    assert_too_large(status, header(&headers, "content-type"), &body, "application/graphql-response+json", "chunked");

    // A gzip body that inflates past the limit (a few KiB on the wire).
    let bomb = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&padded(4 * 1024 * 1024)).expect("gzip");
        encoder.finish().expect("gzip")
    };
    assert!(bomb.len() < 64 * 1024, "{} bytes on the wire", bomb.len());
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("accept", "application/graphql-response+json")
        .body(bomb)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().expect("text").to_owned());
    let body = response.text().await.expect("body");
    assert_too_large(status, content_type.as_deref(), &body, "application/graphql-response+json", "gzip");
    assert!(body.contains("decompressed"), "says the decompressed size counts: {body}");

    // A body that is not gzip at all, though it says so: a GraphQL answer too.
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("accept", "application/graphql-response+json")
        .body("{\"query\": \"{ viewer { role } }\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("a GraphQL answer");
    assert_eq!(code(&body), "VALIDATION", "{body}");
    assert!(!s(&body["errors"][0]["message"]).contains('\n'), "{body}");
    assert!(s(&body["errors"][0]["message"]).starts_with("the request body could not be read: "), "{body}");

    // An encoding the server does not decode: a GraphQL error too, saying which it does.
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .header("accept", "application/graphql-response+json")
        .body("{\"query\": \"{ viewer { role } }\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["accept-encoding"], "gzip");
    assert_eq!(response.headers()["content-type"], "application/graphql-response+json");
    let body: Value = response.json().await.expect("a GraphQL answer");
    assert_eq!(code(&body), "VALIDATION", "{body}");
    assert!(s(&body["errors"][0]["message"]).contains("Content-Encoding 'br' is not supported"), "{body}");

    // GET has no body; its URL has the HTTP server's own bound (hyper's,
    // 65,534 bytes), answered before any handler runs, as the docs say.
    let padding = "%20".repeat(22_000);
    for (padding, status) in [(&padding[..60_000], 200), (&padding[..], 414)] {
        let head = format!(
            "GET /graphql?query=%7Bviewer%7Brole%7D%7D{padding} HTTP/1.1\nhost: localhost\nconnection: close\n"
        );
        let (got, _, body) = raw_exchange(&app.base, &head, Vec::new()).await;
        assert_eq!(got, status, "a GET URL of {} bytes: {body}", padding.len());
    }

    // The server still answers normally afterwards.
    assert_eq!(app.data("{ viewer { role } }", json!({})).await["viewer"]["role"], "STAFF");
});
