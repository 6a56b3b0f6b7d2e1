//! Traces and correlation (issue 37).
//!
//! - One `placeOrder` over HTTP, then `writeVisible` over WebSocket, against
//!   a real `twofold serve` exporting to an OTLP receiver run by the test
//!   (a small HTTP server decoding the protobuf export with the
//!   `opentelemetry-proto` types): one trace from the HTTP span down to the
//!   command's transaction, a projector batch span linked to it, the push
//!   span linked to it, and the exported CloudEvent's `traceparent` naming
//!   it. The same when the request carried its own `traceparent`.
//! - Correlation and causation ids in the log, in `orderActivity` and in the
//!   NATS message's headers, on both stores.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::export::TestStream;
use crate::helpers::*;
use crate::process::Server;
use crate::ws_client::{Protocol, WsClient};

/// What the receiver's handler shares: the spans, and a count that
/// changes with each export (the signal a test waits on).
type Received = (Arc<Mutex<Vec<Span>>>, Arc<tokio::sync::watch::Sender<usize>>);

/// An OTLP/HTTP trace receiver: every span any export sent it.
struct Receiver {
    base: String,
    spans: Arc<Mutex<Vec<Span>>>,
    received: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (count, received) = tokio::sync::watch::channel(0_usize);
        let state = (spans.clone(), Arc::new(count));
        let app =
            axum::Router::new()
                .route(
                    "/v1/traces",
                    post(
                        |axum::extract::State((spans, count)): axum::extract::State<Received>,
                         body: axum::body::Bytes| async move {
                            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                            let new: Vec<Span> = request
                                .resource_spans
                                .into_iter()
                                .flat_map(|r| r.scope_spans)
                                .flat_map(|s| s.spans)
                                .collect();
                            let total = {
                                let mut all = spans.lock().unwrap_or_else(|p| p.into_inner());
                                all.extend(new);
                                all.len()
                            };
                            count.send_replace(total);
                            (
                                [("content-type", "application/x-protobuf")],
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            )
                        },
                    ),
                )
                .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, spans, received, task }
    }

    /// Waits (on each export received) until `found` finds what it wants
    /// among the spans received so far.
    async fn until<T>(&self, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
        let mut received = self.received.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            {
                let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = found(&spans) {
                    return t;
                }
            }
            let next = tokio::time::timeout_at(deadline, received.changed()).await;
            if !matches!(next, Ok(Ok(()))) {
                let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                panic!("no {what} among the spans received within a minute: {names:?}");
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn linked_to(span: &Span, trace_id: &[u8]) -> bool {
    span.links.iter().any(|l| l.trace_id == trace_id)
}

/// The `traceparent` a browser would send: its own trace and span.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// The trace a `subscribe` payload names.
const WS_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

async fn one_trace_from_the_request_to_its_visibility(backend: Backend, client_traceparent: bool) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let receiver = Receiver::start().await;
    let stream = TestStream::new();
    let mut args: Vec<String> =
        ["--database-url", &database.url, "--otlp-endpoint", &receiver.base].iter().map(|s| s.to_string()).collect();
    args.extend(stream.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Export every 100 ms rather than the SDK's default 5 s.
    let server =
        Server::start_with_env(&args, &[("OTEL_BSP_SCHEDULE_DELAY", "100"), ("OTEL_SERVICE_NAME", "twofold-test")])
            .await;
    let client = http_client();
    let post = |query: &str, variables: Value| {
        client.post(format!("{}/graphql", server.base)).json(&json!({ "query": query, "variables": variables }))
    };
    let data = |response: reqwest::Response| async move {
        let v: Value = response.json().await.expect("JSON");
        assert!(v.get("errors").is_none(), "{v}");
        v["data"].clone()
    };
    let run = |query: &'static str, variables: Value| {
        let request = post(query, variables);
        async move { data(request.send().await.expect("send")).await }
    };
    let d = run(
        "mutation($e: String!) { registerCustomer(input: {name: \"Ada\", email: $e}) { id } }",
        json!({ "e": format!("ada-{}@example.com", short()) }),
    )
    .await;
    let customer = s(&d["registerCustomer"]["id"]);
    let d = run(
        "mutation($s: String!) { addProduct(input: {sku: $s, title: \"Tea\", priceCents: 450}) { id } }",
        json!({ "s": format!("TEA-{}", short()) }),
    )
    .await;
    let product = s(&d["addProduct"]["id"]);

    let mut request = post(
        "mutation PlaceIt($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 2}]}) { id token } }",
        json!({ "c": customer, "p": product }),
    );
    if client_traceparent {
        request = request.header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"));
    }
    let d = data(request.send().await.expect("send")).await;
    let order = s(&d["placeOrder"]["id"]);
    let token = s(&d["placeOrder"]["token"]);

    let mut ws = WsClient::connect(&server.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let mut payload = json!({
        "query": "subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 20000) { visible } }",
        "variables": { "t": token },
    });
    if client_traceparent {
        // The subscribe continues a trace of the caller's own.
        payload["traceparent"] = json!(format!("00-{WS_TRACE}-{CLIENT_SPAN}-01"));
    }
    ws.send_json(json!({ "id": "visible", "type": "subscribe", "payload": payload })).await;
    let answer = ws.next_data("visible").await;
    assert_eq!(answer["data"]["writeVisible"]["visible"], true, "{answer}");

    // The command, its transaction, and its trace.
    let command = receiver
        .until("the PlaceOrder command span", |spans| named(spans, "command PlaceOrder").first().map(|s| (*s).clone()))
        .await;
    let trace = command.trace_id.clone();
    if client_traceparent {
        assert_eq!(hex(&trace), CLIENT_TRACE, "the request's own trace continues");
    }
    // The transaction, and up from the command its operation and HTTP spans:
    // the HTTP span ends after the response is sent, so it may be exported
    // in a later batch than the others (the test once looked too soon).
    let spans = receiver
        .until("the command's transaction, operation and HTTP spans", |spans| {
            let exported = |name: &str| named(spans, name).iter().any(|s| s.trace_id == trace);
            (exported("PlaceOrder transaction") && exported("mutation PlaceIt") && exported("POST /graphql"))
                .then(|| spans.to_vec())
        })
        .await;
    let transaction = named(&spans, "PlaceOrder transaction").into_iter().find(|s| s.trace_id == trace).expect("found");
    assert_eq!(transaction.parent_span_id, command.span_id, "the transaction is the command's child");
    // Up from the command: the GraphQL span, then the HTTP server span.
    let by_id = |id: &[u8]| spans.iter().find(|s| s.trace_id == trace && s.span_id == id);
    let graphql = by_id(&command.parent_span_id).expect("the command's parent was exported");
    assert_eq!(graphql.name, "mutation PlaceIt");
    assert_eq!(attribute(graphql, "graphql.operation.type").as_deref(), Some("mutation"));
    assert_eq!(attribute(graphql, "graphql.operation.name").as_deref(), Some("PlaceIt"));
    let digest = attribute(graphql, "graphql.document.sha256").expect("the document's hash");
    assert_eq!(digest.len(), 64, "{digest}");
    for a in &graphql.attributes {
        assert!(!a.key.contains("variables") && a.key != "graphql.document", "{} is recorded", a.key);
    }
    let http = by_id(&graphql.parent_span_id).expect("the operation's parent was exported");
    assert_eq!(http.name, "POST /graphql");
    assert_eq!(http.kind, 2, "a server span");
    assert_eq!(attribute(http, "http.response.status_code").as_deref(), Some("200"));
    if client_traceparent {
        assert_eq!(hex(&http.parent_span_id), CLIENT_SPAN, "the HTTP span is the caller's child");
    } else {
        assert!(http.parent_span_id.is_empty(), "the HTTP span is the trace's root");
    }

    // A projector batch linked to it, and the push that told the client.
    receiver
        .until("a projector batch linked to the command", |spans| {
            spans.iter().find(|s| s.name.starts_with("project ") && linked_to(s, &trace)).cloned()
        })
        .await;
    let push = receiver
        .until("the writeVisible push", |spans| named(spans, "writeVisible push").first().map(|s| (*s).clone()))
        .await;
    assert!(linked_to(&push, &trace), "the push links to the command's trace: {:?}", push.links);
    if client_traceparent {
        assert_eq!(hex(&push.trace_id), WS_TRACE, "the push continues the subscribe's own trace");
    }
    assert_eq!(attribute(&push, "twofold.visible").as_deref(), Some("true"));

    // The exporter's publish, and the CloudEvent naming the trace.
    receiver
        .until("the exporter's publish", |spans| {
            spans.iter().find(|s| s.name.starts_with("publish ") && s.kind == 4).cloned()
        })
        .await;
    if let Ok(path) = std::env::var("TWOFOLD_TRACE_DUMP") {
        dump(&receiver, &trace, &path);
    }
    let placed = wait_for_message(&stream, &order, "OrderPlaced").await;
    let traceparent = header(&placed, "ce-traceparent").expect("ce-traceparent");
    assert!(traceparent.starts_with(&format!("00-{}-", hex(&trace))), "{traceparent} names another trace");
    drop(server);
}

/// Writes the spans of `trace`, and those linked to it, as JSON lines (for
/// the picture in docs/operators.md: `docs/trace.py` draws it).
fn dump(receiver: &Receiver, trace: &[u8], path: &str) {
    let spans = receiver.spans.lock().unwrap_or_else(|p| p.into_inner());
    // The trace, the spans linked to it, and their parents and children
    // (the subscription around the push, the publish inside a batch).
    let mut kept: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace || linked_to(s, trace)).collect();
    loop {
        let ids: Vec<&[u8]> = kept.iter().map(|s| s.span_id.as_slice()).collect();
        let parents: Vec<&[u8]> = kept.iter().map(|s| s.parent_span_id.as_slice()).collect();
        let more: Vec<&Span> = spans
            .iter()
            .filter(|s| !ids.contains(&s.span_id.as_slice()))
            .filter(|s| ids.contains(&s.parent_span_id.as_slice()) || parents.contains(&s.span_id.as_slice()))
            .collect();
        if more.is_empty() {
            break;
        }
        kept.extend(more);
    }
    let lines: Vec<String> = kept
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "trace": hex(&s.trace_id),
                "span": hex(&s.span_id),
                "parent": hex(&s.parent_span_id),
                "start_ns": s.start_time_unix_nano,
                "end_ns": s.end_time_unix_nano,
                "linked": linked_to(s, trace),
            })
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).expect("write the trace dump");
}

/// The stream's message of `event_type` for `subject`, once exported.
async fn wait_for_message(
    stream: &TestStream,
    subject: &str,
    event_type: &str,
) -> async_nats::jetstream::message::StreamMessage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = messages_if_any(stream)
            .await
            .into_iter()
            .find(|m| header(m, "ce-subject").as_deref() == Some(subject) && m.subject.as_str().ends_with(event_type))
        {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {event_type} of {subject} exported within a minute");
        // No signal crosses from the broker to the test short of a consumer:
        // look again after a pause.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn messages_if_any(stream: &TestStream) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let js = TestStream::js().await;
    match js.get_stream_no_info(&stream.name).await {
        Ok(s) if s.get_info().await.is_ok_and(|i| i.state.messages > 0) => stream.messages().await,
        _ => Vec::new(),
    }
}

fn header(m: &async_nats::jetstream::message::StreamMessage, name: &str) -> Option<String> {
    m.headers.get(name).map(|v| v.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_from_the_request_to_its_visibility_on_sqlite() {
    one_trace_from_the_request_to_its_visibility(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_from_the_request_to_its_visibility_on_postgres() {
    one_trace_from_the_request_to_its_visibility(Backend::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_s_own_traceparent_is_continued_on_sqlite() {
    one_trace_from_the_request_to_its_visibility(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_s_own_traceparent_is_continued_on_postgres() {
    one_trace_from_the_request_to_its_visibility(Backend::Postgres, true).await;
}

/// Correlation and causation: the header's correlation id names the work
/// on every event it caused; each event's causation id is its command's id.
async fn correlation_and_causation_ids_travel_with_the_events(backend: Backend) {
    let stream = TestStream::new();
    let Some(app) = TestApp::spawn_with(backend, |s| s.export = Some(stream.export())).await else { return };
    let (customer, _) = app.register_customer("Ada", &format!("ada-{}@example.com", short())).await;
    let (product, _) = app.add_product(&format!("TEA-{}", short()), "Tea", 450).await;
    let correlation = format!("checkout-{}", short());
    let place = |command_id: &str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("Twofold-Correlation-Id", &correlation)
            .json(&json!({
                "query": "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }",
                "variables": { "input": { "customerId": customer, "lines": [{ "productId": product, "quantity": 1 }], "commandId": command_id } },
            }))
    };
    let command_id = format!("cmd-test-{}", short());
    let v: Value = place(&command_id).send().await.expect("send").json().await.expect("JSON");
    assert!(v.get("errors").is_none(), "{v}");
    let order = s(&v["data"]["placeOrder"]["id"]);
    // A cancel without the header: its own correlation (its causation).
    let cancelled = app.cancel_order(&order, Some("changed my mind")).await;
    assert!(cancelled.get("errors").is_none(), "{cancelled}");
    app.settle().await;

    // The log.
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT stream_id, event_type, CAST(metadata AS TEXT) AS metadata FROM event ORDER BY position",
        ))
        .await
        .expect("the log");
    let metas: Vec<(String, Value)> = rows
        .iter()
        .filter(|r| r.try_get::<uuid::Uuid>("", "stream_id").expect("stream id").to_string() == order)
        .map(|r| {
            let t: String = r.try_get("", "event_type").expect("type");
            let m: String = r.try_get("", "metadata").expect("metadata");
            (t, serde_json::from_str(&m).expect("JSON"))
        })
        .collect();
    assert_eq!(metas.len(), 2, "{metas:?}");
    let (placed, cancel) = (&metas[0].1, &metas[1].1);
    assert_eq!(placed["correlationId"], json!(correlation), "{placed}");
    assert_eq!(placed["causationId"], json!(command_id), "{placed}");
    let cancel_cause = cancel["causationId"].as_str().expect("a causation id").to_owned();
    assert!(cancel_cause.starts_with("cmd-"), "{cancel}");
    assert_eq!(cancel["correlationId"], json!(cancel_cause), "a root command correlates to itself: {cancel}");

    // The activity trail.
    let d = app
        .data(
            "query($id: ID!) { orderActivity(orderId: $id) { eventType correlationId causationId } }",
            json!({ "id": order }),
        )
        .await;
    let trail = d["orderActivity"].as_array().expect("a trail");
    assert_eq!(trail.len(), 2, "{d}");
    assert_eq!(trail[0]["correlationId"], json!(correlation), "{d}");
    assert_eq!(trail[0]["causationId"], json!(command_id), "{d}");
    assert_eq!(trail[1]["correlationId"], json!(cancel_cause), "{d}");
    assert_eq!(trail[1]["causationId"], json!(cancel_cause), "{d}");

    // The CloudEvents.
    let placed_message = wait_for_message(&stream, &order, "OrderPlaced").await;
    assert_eq!(header(&placed_message, "ce-correlationid"), Some(correlation.clone()));
    assert_eq!(header(&placed_message, "ce-causationid"), Some(command_id.clone()));
    let cancelled_message = wait_for_message(&stream, &order, "OrderCancelled").await;
    assert_eq!(header(&cancelled_message, "ce-correlationid"), Some(cancel_cause.clone()));
    assert_eq!(header(&cancelled_message, "ce-causationid"), Some(cancel_cause));

    // A correlation id that is not one is refused before anything runs.
    for bad in ["", &"x".repeat(129), "two words"] {
        let r = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("Twofold-Correlation-Id", bad)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "{bad:?}");
        let v: Value = r.json().await.expect("JSON");
        assert_eq!(v["errors"][0]["extensions"]["code"], "VALIDATION", "{v}");
        // The same on a WebSocket upgrade: refused, not silently dropped.
        assert_eq!(upgrade_with_correlation(&app, bad).await, 400, "upgrade with {bad:?}");
    }
    assert_eq!(upgrade_with_correlation(&app, "checkout-1").await, 101, "a good id upgrades");
    app.stop().await;
}

/// The status of a WebSocket upgrade carrying `Twofold-Correlation-Id: id`.
async fn upgrade_with_correlation(app: &TestApp, id: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/graphql/ws", app.base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("header"));
    request.headers_mut().insert("twofold-correlation-id", id.parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn correlation_and_causation_ids_travel_with_the_events_on_sqlite() {
    correlation_and_causation_ids_travel_with_the_events(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn correlation_and_causation_ids_travel_with_the_events_on_postgres() {
    correlation_and_causation_ids_travel_with_the_events(Backend::Postgres).await;
}

/// Written to a pipe (a file, a log collector), the text log carries no
/// colour codes; only a terminal gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_to_a_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("twofold.db").display());
    // An empty NO_COLOR is no request for plain text: the pipe alone decides.
    let server = Server::start_with_env(&["--database-url", &url], &[("NO_COLOR", "")]).await;
    // The address reaches the test before the line is in the kept text.
    server.wait_for_log("twofold serving GraphQL at", 1).await;
    let log = server.stderr();
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
}
