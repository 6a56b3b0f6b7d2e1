//! Documents seen before: the validated-document cache (never a way
//! around validation), trusted documents by `documentId`, `--only-trusted`,
//! and Apollo's automatic persisted queries.
use serde_json::{json, Value};
use twofold::graphql::documents::sha256_hex;

use crate::helpers::*;
use crate::ws_client::{Event, Protocol, WsClient};

/// The lookups of the validated-document cache so far: (hits, misses).
async fn cache_lookups(app: &TestApp) -> (u64, u64) {
    let text =
        app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let count = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("twofold_document_cache_lookups_total") && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (count("hit"), count("miss"))
}

const PAGE: &str = "query Page($f: Int) { orders(first: $f) { edges { node { id lines { title product { title unitsSold } } customer { name ordersPlaced } } } } }";

#[tokio::test]
async fn a_cached_document_is_still_checked_against_each_requests_variables() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.schema.max_complexity = 400).await.expect("sqlite");
    let first = app.gql(PAGE, json!({ "f": 5 })).await;
    assert!(first.get("errors").is_none(), "{first}");
    let (hits, _) = cache_lookups(&app).await;
    let again = app.gql(PAGE, json!({ "f": 5 })).await;
    assert_eq!(again, first);
    assert!(cache_lookups(&app).await.0 > hits, "the second time comes from the cache");
    // Served from the cache, the same document still obeys every request-level rule.
    for (variables, expect) in [
        (json!({ "f": "five" }), "int"),
        (json!({ "f": 3_000_000_000_i64 }), "int holds only"),
        (json!({ "f": 60 }), "too complex"),
    ] {
        let refused = app.gql(PAGE, variables.clone()).await;
        assert_eq!(code(&refused), "VALIDATION", "{variables}: {refused}");
        let message = refused["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(expect) || message.to_lowercase().contains(expect), "{variables}: {message}");
    }
    // And the page limit (a small page, so complexity is not what stops it).
    let small = "query Small($f: Int) { orders(first: $f) { edges { cursor } } }";
    assert!(app.gql(small, json!({ "f": 100 })).await.get("errors").is_none());
    let refused = app.gql(small, json!({ "f": 101 })).await;
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().expect("message").contains("100"), "{refused}");
    // A required variable left out is a request error, not an internal one.
    let lookup = "query One($id: ID!) { order(id: $id) { id } }";
    for _ in 0..2 {
        let refused = app.gql(lookup, json!({})).await;
        assert_eq!(code(&refused), "VALIDATION", "{refused}");
        assert!(refused.get("data").is_none(), "{refused}");
    }
    // An invalid document is never cached: it fails the same way every time.
    for _ in 0..2 {
        assert_eq!(code(&app.gql("{ orders { nope } }", json!({})).await), "VALIDATION");
    }
    app.stop().await;
}

/// A trusted-documents manifest in a temporary file.
fn manifest(dir: &tempfile::TempDir, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let map: serde_json::Map<String, Value> =
        entries.iter().map(|(id, text)| ((*id).to_owned(), json!(text))).collect();
    let path = dir.path().join("trusted.json");
    std::fs::write(&path, serde_json::to_vec(&map).expect("json")).expect("write");
    path
}

const VIEWER: &str = "query Me { viewer { role } }";
const PRODUCTS: &str = "{ products { edges { node { sku } } } }";

fn id(text: &str) -> String {
    format!("sha256:{}", sha256_hex(text))
}

async fn post(app: &TestApp, body: Value) -> Value {
    let response = app.client.post(format!("{}/graphql", app.base)).json(&body).send().await.expect("send");
    response.json().await.expect("json")
}

#[tokio::test]
async fn trusted_documents_are_served_by_id_and_only_they_run_when_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let path = manifest(&dir, &[(&id(VIEWER), VIEWER), (&sha256_hex(PRODUCTS), PRODUCTS)]);
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.trusted_documents = Some(path.clone());
        s.only_trusted = true;
    })
    .await
    .expect("sqlite");
    let by_id = post(&app, json!({ "documentId": id(VIEWER) })).await;
    assert_eq!(by_id["data"]["viewer"]["role"], "STAFF", "{by_id}");
    let get = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("documentId", id(PRODUCTS).as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(get.status(), 200);
    assert!(get.headers().contains_key("etag"), "a small GET is cacheable too");
    let unknown = post(&app, json!({ "documentId": id("{ customers { edges { cursor } } }") })).await;
    assert_eq!(code(&unknown), "PERSISTED_QUERY_NOT_FOUND", "{unknown}");
    let malformed = post(&app, json!({ "documentId": "sha256:xyz" })).await;
    assert_eq!(code(&malformed), "VALIDATION");
    let other = post(&app, json!({ "query": "{ customers { edges { cursor } } }" })).await;
    assert_eq!(code(&other), "PERSISTED_QUERY_NOT_ALLOWED", "{other}");
    // The text of a trusted document is that document.
    assert!(post(&app, json!({ "query": VIEWER })).await.get("errors").is_none());
    // Open development mode keeps introspection for the playground.
    let schema = post(&app, json!({ "query": "{ __schema { queryType { name } } }" })).await;
    assert_eq!(schema["data"]["__schema"]["queryType"]["name"], "Query", "{schema}");
    // Over WebSocket too.
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.send_json(json!({ "id": "1", "type": "subscribe", "payload": { "documentId": id(VIEWER) } })).await;
    assert_eq!(ws.next_data("1").await["data"]["viewer"]["role"], "STAFF");
    ws.expect_complete("1").await;
    ws.send_json(json!({ "id": "2", "type": "subscribe", "payload": { "documentId": id("{ x }") } })).await;
    match ws.next().await {
        Event::Message(m) => {
            assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("error"), Some("2")), "{m}");
            assert_eq!(m["payload"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn a_manifest_that_lies_or_does_not_validate_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    for (entries, expect) in [
        (vec![(id("{ viewer { sub } }"), VIEWER.to_owned())], "not the SHA-256"),
        (vec![(id("{ nope }"), "{ nope }".to_owned())], "is not valid"),
    ] {
        let pairs: Vec<(&str, &str)> = entries.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let path = manifest(&dir, &pairs);
        let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
        let mut settings = twofold::settings::Settings::for_database(&database.url);
        settings.trusted_documents = Some(path);
        let refused = twofold::app::start(&settings).await.err().expect("a start-up error");
        assert!(refused.to_string().contains(expect), "{refused}");
    }
}

#[tokio::test]
async fn apollo_persisted_queries_register_once_and_refuse_a_wrong_hash() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hash = sha256_hex(PRODUCTS);
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let missing = post(&app, json!({ "extensions": ext })).await;
    assert_eq!(missing["errors"][0]["message"], "PersistedQueryNotFound", "{missing}");
    assert_eq!(code(&missing), "PERSISTED_QUERY_NOT_FOUND");
    let registered = post(&app, json!({ "query": PRODUCTS, "extensions": ext })).await;
    assert!(registered.get("errors").is_none(), "{registered}");
    let by_hash = post(&app, json!({ "extensions": ext })).await;
    assert_eq!(by_hash, registered, "the hash alone now runs the document");
    let lie = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex("{ viewer { role } }") } });
    let refused = post(&app, json!({ "query": PRODUCTS, "extensions": lie })).await;
    assert_eq!(code(&refused), "VALIDATION");
    assert!(refused["errors"][0]["message"].as_str().expect("message").contains("does not match"));
    // By GET, as Apollo sends it.
    let get = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("extensions", ext.to_string().as_str())])
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(get, registered);
    app.stop().await;
}
