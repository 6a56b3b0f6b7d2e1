//! The API on the open web: CORS and the WebSocket origin rule, compression
//! both ways, conditional GETs keyed by the read model, security headers.
//!
//! The conditional GETs read the store and run on both; the rest is the
//! HTTP layer's alone (headers, CORS, encodings, the upgrade's origin
//! check, none of which reaches a database) and runs on SQLite.
use std::io::Write;

use serde_json::{json, Value};
use twofold::auth::{mint, AuthSettings};
use twofold::domain::Actor;

use crate::helpers::*;
use crate::on_both_backends;

const ALLOWED: &str = "http://localhost:3000";

async fn with_cors() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |s| s.cors_origins = vec![ALLOWED.into()]).await.expect("sqlite")
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_and_others_are_not() {
    let app = with_cors().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, authorization")
            .send()
    };
    let allowed = preflight(ALLOWED).await.expect("send");
    assert_eq!(allowed.status(), 204);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    let methods = h["access-control-allow-methods"].to_str().expect("text").to_ascii_uppercase();
    assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
    let headers = h["access-control-allow-headers"].to_str().expect("text").to_ascii_lowercase();
    for name in ["content-type", "authorization", "accept", "x-request-id"] {
        assert!(headers.contains(name), "{headers}");
    }
    assert!(h.contains_key("access-control-max-age"));
    let refused = preflight("http://evil.example").await.expect("send");
    assert_eq!(refused.status(), 403);
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
    // Any other request from another origin is refused too, with no CORS headers.
    let other = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", "http://evil.example")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 403);
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let mine = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", ALLOWED)
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(mine.headers()["access-control-allow-origin"], ALLOWED);
    assert_eq!(
        mine.headers()["access-control-expose-headers"].to_str().expect("text").to_ascii_lowercase(),
        "x-request-id"
    );
    app.stop().await;
}

/// docs/frontend.md: "every other request from it" gets 403 — a POST from
/// an origin not listed is refused before it runs (403, `FORBIDDEN`), and
/// the customer it would have registered does not exist; the server's own
/// pages (same origin) and clients with no `Origin` are served.
#[tokio::test]
async fn a_mutation_from_an_origin_not_listed_is_refused_before_it_runs() {
    let app = with_cors().await;
    let register = |email: &str| json!({ "query": format!("mutation {{ registerCustomer(input: {{ name: \"Eve\", email: \"{email}\" }}) {{ id }} }}") });
    let refused = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", "https://evil.example")
        .json(&register("eve@evil.example"))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 403);
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("https://evil.example")), "{body}");
    let emails = app.data("{ customers(first: 100) { nodes { email } } }", json!({})).await;
    assert!(!emails.to_string().contains("eve@evil.example"), "the mutation ran: {emails}");
    // The server's own origin (GraphiQL, the board) and a client with no Origin are served.
    let own = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", app.base.as_str())
        .json(&register("own@example.com"))
        .send()
        .await
        .expect("send");
    assert_eq!(own.status(), 200);
    let own: Value = own.json().await.expect("json");
    assert!(own["data"]["registerCustomer"]["id"].is_string(), "{own}");
    let fetch_site = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", "https://proxy.example")
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(fetch_site.status(), 200, "same-origin behind a proxy that rewrites Host");
    app.stop().await;
}

/// With no origin configured (same origin only), a preflight from another
/// origin gets 403 with the GraphQL error, as documented, not 405.
#[tokio::test]
async fn with_no_origin_configured_a_preflight_is_refused_with_403() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("send");
    assert_eq!(preflight.status(), 403);
    assert!(!preflight.headers().contains_key("access-control-allow-origin"));
    let body: Value = preflight.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_wildcard_origin_is_refused_when_tokens_are_required() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    let mut settings = twofold::settings::Settings::for_database(&database.url);
    settings.cors_origins = vec!["*".into()];
    settings.identity.jwt_secret = Some("web-tests-secret-web-tests-secret!!".into());
    let refused = twofold::app::start(&settings).await.err().expect("a start-up error");
    assert!(refused.to_string().contains("--cors-origin '*'"), "{refused}");
    settings.identity.jwt_secret = None;
    assert!(twofold::app::start(&settings).await.is_ok(), "open mode may allow any origin");
}

#[tokio::test]
async fn a_websocket_from_a_foreign_page_is_refused_before_the_upgrade() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = with_cors().await;
    let upgrade = |origin: Option<&'static str>| {
        let url = format!("{}/graphql/ws", app.base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("header"));
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().expect("header"));
        }
        tokio_tungstenite::connect_async(request)
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status(upgrade(Some("http://evil.example")).await.map(|_| ())), 403);
    assert_eq!(status(upgrade(Some(ALLOWED)).await.map(|_| ())), 101);
    assert_eq!(status(upgrade(None).await.map(|_| ())), 101, "not a browser: no origin to check");
    let own: &'static str = Box::leak(app.base.clone().into_boxed_str());
    assert_eq!(status(upgrade(Some(own)).await.map(|_| ())), 101, "the page's own origin");
    app.stop().await;
}

#[tokio::test]
async fn large_answers_are_compressed_and_compressed_bodies_are_bounded() {
    let app = with_cors().await;
    let seed = app.seed().await;
    for _ in 0..30 {
        app.place_order(&seed.customer, &[(&seed.tea, 1), (&seed.cake, 2)]).await;
    }
    app.settle().await;
    let page =
        json!({ "query": "{ orders(first: 50) { edges { node { id customerName lines { title quantity } } } } }" });
    // reqwest here does not decode: the bytes are what went over the wire.
    let raw = |encoding: &'static str| {
        app.client.post(format!("{}/graphql", app.base)).header("accept-encoding", encoding).json(&page).send()
    };
    let plain = raw("identity").await.expect("send");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_body: Value = serde_json::from_slice(&plain.bytes().await.expect("body")).expect("json");
    for (encoding, decode) in [("gzip", decode_gzip as fn(&[u8]) -> Vec<u8>), ("br", decode_br)] {
        let response = raw(encoding).await.expect("send");
        assert_eq!(response.headers()["content-encoding"], encoding);
        let bytes = response.bytes().await.expect("body");
        let decoded: Value = serde_json::from_slice(&decode(&bytes)).expect("json");
        assert_eq!(decoded, plain_body, "{encoding} decodes to the same answer");
    }
    // A gzipped mutation is accepted…
    let mutation = json!({ "query": "mutation($n: String!, $e: String!) { registerCustomer(input: {name: $n, email: $e}) { id } }", "variables": { "n": "Zip", "e": "zip@example.com" } });
    let ok = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(mutation.to_string().as_bytes()))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    assert!(ok.json::<Value>().await.expect("json")["data"]["registerCustomer"]["id"].is_string());
    // …a bomb (a few KiB that inflate past the body limit) is a 413.
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024, "{} bytes on the wire", bomb.len());
    let refused = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 413);
    app.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn decode_gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gunzip");
    out
}

fn decode_br(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).expect("unbrotli");
    out
}

/// GET `query` with `authorization` and `if_none_match`: status, ETag, Cache-Control, body.
async fn get(
    app: &TestApp,
    query: &str,
    authorization: Option<&str>,
    if_none_match: Option<&str>,
) -> (u16, String, String, String) {
    let mut request = app.client.get(format!("{}/graphql", app.base)).query(&[("query", query)]);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.expect("send");
    let header =
        |name: &str| response.headers().get(name).map(|v| v.to_str().expect("text").to_owned()).unwrap_or_default();
    let (status, etag, cache) = (response.status().as_u16(), header("etag"), header("cache-control"));
    (status, etag, cache, response.text().await.expect("body"))
}

on_both_backends!(a_get_query_is_tagged_by_the_checkpoints_it_reads, |app| async {
    let seed = app.seed().await;
    app.settle().await;
    let orders = "{ orders(first: 5) { edges { node { id status } } } }";
    let (status, tag, cache, body) = get(&app, orders, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(tag.starts_with("W/\""), "{tag}");
    assert_eq!(cache, "private, no-cache");
    let (status, again, _, body) = get(&app, orders, None, Some(&tag)).await;
    assert_eq!((status, body.as_str()), (304, ""), "unchanged views: not modified, not executed");
    assert_eq!(again, tag);
    // A write to a view it reads changes the tag.
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    app.data("query($t: Token) { orders(consistentWith: $t) { edges { cursor } } }", json!({ "t": token })).await;
    let (status, newer, _, body) = get(&app, orders, None, Some(&tag)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(newer, tag);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["data"]["orders"]["edges"].as_array().map(Vec::len),
        Some(1)
    );
    // Operational reads and POSTs are never cacheable.
    let (status, none, cache, _) = get(&app, "{ projections { name } }", None, None).await;
    assert_eq!((status, none.as_str(), cache.as_str()), (200, "", "no-store"));
    let post =
        app.client.post(format!("{}/graphql", app.base)).json(&json!({ "query": orders })).send().await.expect("send");
    assert_eq!(post.headers()["cache-control"], "no-store");
});

/// Tags are keyed by the read model's checkpoints: on both stores.
async fn a_tag_never_matches_for_another_customer(backend: Backend) {
    let secret = "web-tests-secret-web-tests-secret!!";
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.identity.jwt_secret = Some(secret.into());
        s.catalog_max_age = Some(std::time::Duration::from_secs(60));
    })
    .await
    else {
        return;
    };
    let settings = AuthSettings { jwt_secret: Some(secret.into()), ..Default::default() };
    let token = |actor: Actor| {
        format!("Bearer {}", mint(&settings, &actor, std::time::Duration::from_secs(600)).expect("mint"))
    };
    let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (alice, bob) = (token(Actor::customer("alice", alice)), token(Actor::customer("bob", bob)));
    let mine = "{ orders { edges { cursor } } }";
    let (status, tag, _, body) = get(&app, mine, Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&app, mine, Some(&alice), Some(&tag)).await.0, 304);
    assert_eq!(get(&app, mine, Some(&bob), Some(&tag)).await.0, 200, "bob never gets alice's 304");
    // The anonymous catalog may be cached publicly.
    let (status, _, cache, _) = get(&app, "{ topProducts { sku } }", None, None).await;
    assert_eq!((status, cache.as_str()), (200, "public, max-age=60"));
    let (_, _, cache, _) = get(&app, "{ topProducts { sku } }", Some(&alice), None).await;
    assert_eq!(cache, "private, no-cache");
    app.stop().await;
}

#[tokio::test]
async fn a_tag_never_matches_for_another_customer_on_sqlite() {
    a_tag_never_matches_for_another_customer(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_tag_never_matches_for_another_customer_on_postgres() {
    a_tag_never_matches_for_another_customer(Backend::Postgres).await;
}

#[tokio::test]
async fn pages_and_api_answers_carry_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/", "/board"] {
        let page = app.client.get(format!("{}{path}", app.base)).send().await.expect("send");
        let h = page.headers();
        let csp = h["content-security-policy"].to_str().expect("text");
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let api = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}
