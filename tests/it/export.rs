//! The exporter (issue 14) against the machine's real NATS JetStream
//! (`TWOFOLD_TEST_NATS_URL`, default `nats://127.0.0.1:4222`): every event
//! exactly once, in log order, with its CloudEvents headers, across crashes,
//! broker outages and a change of leader; the poison policy for a message the
//! broker refuses; and the example consumer's totals.
//!
//! Each test has its own stream and subject prefix (JetStream refuses two
//! streams with overlapping subjects) and deletes the stream at the end.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{json, Value};
use twofold::catalog::Role;
use twofold::command::order::{CancelOrder, LineRequest, OrderLines, PlaceOrder};
use twofold::command::{customer::RegisterCustomer, product::AddProduct, CommandMeta};
use twofold::domain::event::SalesChannel;
use twofold::export::ExportSettings;

use crate::helpers::*;
use crate::outage::Proxy;
use crate::process::{PgSignals, Server};
use crate::ws_client::{Protocol, WsClient};

pub fn nats_url() -> String {
    std::env::var("TWOFOLD_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or("nats://127.0.0.1:4222".into())
}

/// The `host:port` of the test NATS server (for a proxy in front of it).
fn nats_target() -> String {
    let url = nats_url();
    let hostport = url.rsplit_once("://").map_or(url.as_str(), |(_, rest)| rest);
    hostport.rsplit_once('@').map_or(hostport, |(_, h)| h).to_owned()
}

/// One test's stream and subject prefix; the stream is deleted on drop.
pub struct TestStream {
    pub name: String,
    pub prefix: String,
}

impl TestStream {
    pub fn new() -> Self {
        let id = short();
        Self { name: format!("TWOFOLD_TEST_{id}"), prefix: format!("twofold.test.{id}") }
    }

    /// Exporter settings for this stream.
    pub fn export(&self) -> ExportSettings {
        ExportSettings {
            nats_url: nats_url(),
            stream: self.name.clone(),
            subject_prefix: self.prefix.clone(),
            source: "urn:twofold:test".into(),
            duplicate_window: Duration::from_secs(120),
            batch_size: 200,
            timeout: Duration::from_secs(2),
        }
    }

    /// The same as `twofold serve` flags.
    pub fn args(&self) -> Vec<String> {
        [
            "--nats-url",
            &nats_url(),
            "--export-stream",
            &self.name,
            "--export-subject-prefix",
            &self.prefix,
            "--export-source",
            "urn:twofold:test",
            "--export-timeout-ms",
            "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub async fn js() -> jetstream::Context {
        let client = async_nats::connect(nats_url()).await.unwrap_or_else(|e| {
            panic!("NATS with JetStream must run at {} (e.g. nats-server -js -p 4222): {e}", nats_url())
        });
        jetstream::new(client)
    }

    /// Every message of the stream, in stream order.
    pub async fn messages(&self) -> Vec<jetstream::message::StreamMessage> {
        let js = Self::js().await;
        let stream = js.get_stream_no_info(&self.name).await.expect("stream");
        let info = stream.get_info().await.expect("stream info");
        let mut out = Vec::with_capacity(info.state.messages as usize);
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            if sequence == 0 {
                continue;
            }
            out.push(stream.get_raw_message(sequence).await.expect("message"));
        }
        out
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(client) = async_nats::connect(nats_url()).await {
                    let _ = jetstream::new(client).delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

/// An event row, as the stream must show it.
#[derive(Debug, Clone)]
struct LogRow {
    position: i64,
    tx_id: i64,
    stream_type: String,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    event_version: i32,
    payload: Value,
    actor: Option<Value>,
    recorded_micros: i64,
}

/// The whole log in export order.
async fn log_rows(db: &DatabaseConnection) -> Vec<LogRow> {
    let backend = db.get_database_backend();
    let order = if backend == DbBackend::Postgres { "tx_id, position" } else { "position" };
    let sql = format!(
        "SELECT position, tx_id, stream_type, stream_id, stream_version, event_type, event_version, \
         CAST(payload AS TEXT) AS payload, CAST(metadata AS TEXT) AS metadata, recorded_at FROM event ORDER BY {order}"
    );
    let rows = db.query_all_raw(Statement::from_string(backend, sql)).await.expect("log");
    rows.into_iter()
        .map(|r| {
            let payload: String = r.try_get("", "payload").expect("payload");
            let metadata: String = r.try_get("", "metadata").expect("metadata");
            let metadata: Value = serde_json::from_str(&metadata).expect("metadata JSON");
            let recorded: chrono::DateTime<chrono::Utc> = r.try_get("", "recorded_at").expect("recorded_at");
            LogRow {
                position: r.try_get("", "position").expect("position"),
                tx_id: r.try_get("", "tx_id").expect("tx_id"),
                stream_type: r.try_get("", "stream_type").expect("stream_type"),
                stream_id: r.try_get::<uuid::Uuid>("", "stream_id").expect("stream_id").to_string(),
                stream_version: r.try_get("", "stream_version").expect("stream_version"),
                event_type: r.try_get("", "event_type").expect("event_type"),
                event_version: r.try_get("", "event_version").expect("event_version"),
                payload: serde_json::from_str(&payload).expect("payload JSON"),
                actor: metadata.get("actor").filter(|a| !a.is_null()).cloned(),
                recorded_micros: recorded.timestamp_micros(),
            }
        })
        .collect()
}

fn header(m: &jetstream::message::StreamMessage, name: &str) -> Option<String> {
    m.headers.get(name).map(|v| v.as_str().to_owned())
}

/// The stream holds exactly the log (minus `skipped` positions), in log
/// order, each message with its headers: no gap, no duplicate.
async fn assert_stream_is_the_log(db: &DatabaseConnection, stream: &TestStream, skipped: &HashSet<i64>) -> usize {
    let log: Vec<LogRow> = log_rows(db).await.into_iter().filter(|r| !skipped.contains(&r.position)).collect();
    let messages = stream.messages().await;
    let ids: Vec<String> = messages.iter().map(|m| header(m, "ce-id").unwrap_or_default()).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a duplicate in the stream");
    let expected: Vec<String> = log.iter().map(|r| r.position.to_string()).collect();
    if ids != expected {
        let missing: Vec<&String> = expected.iter().filter(|p| !unique.contains(p)).take(10).collect();
        panic!(
            "the stream ({} messages) is not the log ({} events) in order; first missing: {missing:?}; first difference at {:?}",
            ids.len(),
            expected.len(),
            ids.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    for (m, row) in messages.iter().zip(&log) {
        let position = row.position.to_string();
        assert_eq!(m.subject.as_str(), format!("{}.{}.{}", stream.prefix, row.stream_type, row.event_type));
        assert_eq!(header(m, "Nats-Msg-Id").as_deref(), Some(position.as_str()));
        assert_eq!(header(m, "ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(header(m, "ce-source").as_deref(), Some("urn:twofold:test"));
        assert_eq!(header(m, "ce-type"), Some(format!("twofold.{}.v{}", row.event_type, row.event_version)));
        assert_eq!(header(m, "ce-subject").as_deref(), Some(row.stream_id.as_str()));
        assert_eq!(header(m, "content-type").as_deref(), Some("application/json"));
        assert_eq!(header(m, "twofold-token"), Some(format!("{}.{}", row.tx_id, row.position)));
        assert_eq!(header(m, "twofold-stream-version"), Some(row.stream_version.to_string()));
        let time = header(m, "ce-time").expect("ce-time");
        let time = chrono::DateTime::parse_from_rfc3339(&time).expect("ce-time is RFC 3339");
        assert_eq!(time.timestamp_micros(), row.recorded_micros, "ce-time of {position}");
        let actor = header(m, "twofold-actor");
        assert_eq!(actor, row.actor.as_ref().map(|a| a.as_str().map(str::to_owned).unwrap_or(a.to_string())));
        let body: Value = serde_json::from_slice(&m.payload).expect("JSON body");
        assert_eq!(body, row.payload, "body of {position}");
    }
    messages.len()
}

/// Commands through the command service: customers, products, orders
/// (some cancelled), `count` commands in all, `concurrency` at a time,
/// every one with an actor.
async fn run_commands(app: &TestApp, count: usize, concurrency: usize) {
    use futures_util::StreamExt;
    let commands = app.services.commands.clone();
    let meta = || CommandMeta::by(twofold::domain::Actor::staff("tester@example.com"));
    let customer = commands
        .register_customer(
            RegisterCustomer { name: "Ada Lovelace".into(), email: format!("ada-{}@example.com", short()) },
            meta(),
        )
        .await
        .expect("customer")
        .id
        .expect("id");
    let mut products = Vec::new();
    for i in 0..5 {
        let cmd = AddProduct { sku: format!("SKU-{}-{i}", short()), title: format!("Tea {i}"), price_cents: 100 + i };
        products.push(commands.add_product(cmd, meta()).await.expect("product").id.expect("id"));
    }
    let products = Arc::new(products);
    futures_util::stream::iter(0..count.saturating_sub(6))
        .map(|i| {
            let (commands, products) = (commands.clone(), products.clone());
            async move {
                let lines = OrderLines::parse(vec![
                    LineRequest { product_id: products[i % 5], quantity: 1 + (i % 3) as i32 },
                    LineRequest { product_id: products[(i + 2) % 5], quantity: 1 },
                ])
                .expect("lines");
                let cmd = PlaceOrder { order_id: None, customer_id: Some(customer), lines, channel: SalesChannel::Web };
                let ack = commands.place_order(cmd, meta()).await.expect("order");
                if i % 4 == 1 {
                    let cancel = CancelOrder {
                        order_id: ack.id.expect("id"),
                        reason: Some("test".into()),
                        expected_version: None,
                    };
                    commands.cancel_order(cancel, meta()).await.expect("cancel");
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

async fn spawn_exporting(
    backend: Backend,
    stream: &TestStream,
    adjust: impl FnOnce(&mut ExportSettings),
) -> Option<TestApp> {
    let mut export = stream.export();
    adjust(&mut export);
    TestApp::spawn_with(backend, |s| s.export = Some(export)).await
}

async fn exporter_state(app: &TestApp) -> Value {
    let d = app.data("{ projections { name status lag lastError attempts } }", json!({})).await;
    d["projections"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "event_export")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn every_event_arrives_once_in_order_with_its_headers(backend: Backend) {
    let stream = TestStream::new();
    let Some(app) = spawn_exporting(backend, &stream, |_| {}).await else { return };
    // Listed with the projections from the start, but not a view.
    assert_eq!(exporter_state(&app).await["status"], "running");
    run_commands(&app, 2_500, 16).await;
    app.settle().await;
    let exported = assert_stream_is_the_log(&app.db, &stream, &HashSet::new()).await;
    assert!(exported >= 2_500, "{exported} events exported");
    // Its lag shows in /metrics; it cannot be rebuilt.
    let metrics =
        app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("twofold_export_lag_events 0"), "{metrics}");
    assert!(metrics.contains("twofold_export_events_total"), "{metrics}");
    assert!(metrics.contains("twofold_projection_lag_events{projection=\"event_export\"} 0"), "{metrics}");
    let refused = app.services.admin.start_rebuild("event_export").expect_err("the exporter cannot be rebuilt");
    assert!(
        matches!(&refused, twofold::admin::StartRebuildError::NotRebuildable(m) if m.contains("cannot be rebuilt")),
        "{refused}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_once_in_log_order_with_its_headers_on_postgres() {
    every_event_arrives_once_in_order_with_its_headers(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_once_in_log_order_with_its_headers_on_sqlite() {
    every_event_arrives_once_in_order_with_its_headers(Backend::Sqlite).await;
}

/// A batch published but never committed (a crash between the acks and the
/// checkpoint) is published again: inside the duplicate window the broker
/// drops the copies; after it, the expected sequence refuses them and the
/// exporter reconciles from the stream's last message. No duplicate either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_published_but_not_committed_is_neither_lost_nor_duplicated() {
    use twofold::export::Exporter;
    use twofold::projection::projector::Projector;
    use twofold::projection::runtime::{RuntimeSettings, StepOutcome};
    use twofold::projection::{ApplyContext, Projection};
    for window in [Duration::from_secs(120), Duration::from_millis(100)] {
        let stream = TestStream::new();
        // No exporter runs in the app: this test drives one by hand.
        let Some(app) = TestApp::spawn_with(Backend::Postgres, |_| {}).await else { return };
        run_commands(&app, 60, 4).await;
        let export = ExportSettings { duplicate_window: window, ..stream.export() };
        let exporter = Arc::new(Exporter::new(export, app.services.projector_db.clone()));
        let events: Vec<_> =
            twofold::projection::reader::read_after(&app.services.log_db.conn, twofold::token::LogPosition::START, 25)
                .await
                .expect("read")
                .into_iter()
                .map(|e| e.expect("decodable"))
                .collect();
        // Publish, then roll back instead of committing: the crash.
        let txn = app.services.projector_db.begin_write().await.expect("txn");
        exporter.apply(&txn, &events, ApplyContext { position_guard: true }).await.expect("published");
        drop(txn);
        assert_eq!(stream.messages().await.len(), 25, "the batch reached the stream");
        if window < Duration::from_secs(1) {
            // The condition under test is the broker forgetting the ids:
            // there is no signal for it, only its duration.
            tokio::time::sleep(window * 6).await;
        }
        let runtime = RuntimeSettings { batch_size: 40, ..Default::default() };
        let projector = Projector::new(
            exporter.clone(),
            app.services.log_db.clone(),
            app.services.projector_db.clone(),
            app.services.notices.clone(),
            &runtime,
        );
        projector.register().await.expect("register");
        let (refused, duplicates) = (
            metric(&app, "twofold_export_publish_errors_total{kind=\"wrong_last_sequence\"}").await,
            metric(&app, "twofold_export_duplicates_total").await,
        );
        loop {
            match projector.step().await.expect("step") {
                StepOutcome::Applied { .. } => continue,
                StepOutcome::Idle => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_stream_is_the_log(&app.db, &stream, &HashSet::new()).await;
        // Which way the copies were recognized.
        assert!(metric(&app, "twofold_export_duplicates_total").await >= duplicates + 25.0);
        if window < Duration::from_secs(1) {
            assert!(
                metric(&app, "twofold_export_publish_errors_total{kind=\"wrong_last_sequence\"}").await > refused,
                "after the window the expected sequence refused the copies"
            );
        }
        app.stop().await;
    }
}

/// A counter or gauge of `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text =
        app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// The broker refuses a message for good (larger than the stream allows):
/// under `skip` it is dead-lettered and the export goes on without it; under
/// the default `stop` the exporter stops at it, and `dead-letters skip`
/// moves it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_broker_refuses_follows_the_poison_policy() {
    use twofold::projection::runtime::PoisonPolicy;
    for policy in [PoisonPolicy::Skip, PoisonPolicy::Stop] {
        let stream = TestStream::new();
        // The operator made the stream with a small message limit: orders of many lines do not fit.
        let js = TestStream::js().await;
        js.create_stream(jetstream::stream::Config {
            name: stream.name.clone(),
            subjects: vec![format!("{}.>", stream.prefix)],
            // Headers count: an ordinary order's message (its CloudEvents
            // headers with correlation and causation ids) is about 1 KB.
            max_message_size: 2_000,
            ..Default::default()
        })
        .await
        .expect("create the stream");
        // The events are written first, with no exporter running, so that
        // the refused one lands in the middle of the exporter's first batch.
        let Some(mut writer) = TestApp::spawn_with(Backend::Postgres, |_| {}).await else { return };
        let seed = writer.seed().await;
        writer.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
        // Twenty lines: well over 2,000 bytes.
        let mut products = Vec::new();
        for i in 0..20 {
            products.push(writer.add_product(&format!("BIG-{}-{i}", short()), &"a long title ".repeat(4), 100).await.0);
        }
        let lines: Vec<(&str, i32)> = products.iter().map(|p| (p.as_str(), 1)).collect();
        let (big, _) = writer.place_order(&seed.customer, &lines).await;
        writer.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
        let big_position = writer
            .scalar_i64(&format!("SELECT position FROM event WHERE stream_id = '{big}' AND event_type = 'OrderPlaced'"))
            .await;
        writer.halt().await;
        let mut settings = twofold::settings::Settings::for_database(&writer.database.url);
        settings.runtime.poll_interval = Duration::from_millis(200);
        settings.export = Some(stream.export());
        settings.runtime.policies.insert("event_export".into(), policy);
        let app = TestApp::start(TestDatabase::external(writer.database.url.clone()), settings).await;
        let mut changes = app.changes();
        match policy {
            PoisonPolicy::Skip => app.settle().await,
            PoisonPolicy::Stop => {
                while exporter_state(&app).await["status"] != "stopped" {
                    changes.next("the exporter to stop at the refused message").await;
                }
                let ready: Value = app
                    .client
                    .get(format!("{}/readyz", app.base))
                    .send()
                    .await
                    .expect("readyz")
                    .json()
                    .await
                    .expect("json");
                assert_eq!(ready["status"], "degraded", "{ready}");
                assert_eq!(ready["stoppedProjections"][0]["name"], "event_export", "{ready}");
                // A stopped exporter holds no write back: writeVisible waits for the views only.
                let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
                let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
                ws.init().await;
                ws.subscribe(
                    "v",
                    "subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 10000) { visible projections } }",
                    json!({ "t": token }),
                )
                .await;
                let d = ws.next_data("v").await;
                assert_eq!(d["data"]["writeVisible"]["visible"], true, "{d}");
                assert!(!d["data"]["writeVisible"]["projections"].to_string().contains("event_export"), "{d}");
                let letters = app.services.admin.dead_letters(Some("event_export"), false, 10).await.expect("list");
                assert_eq!(letters.len(), 1);
                app.services.admin.skip_dead_letter(letters[0].id()).await.expect("skip");
                app.settle().await;
            }
        }
        let letters = app.services.admin.dead_letters(Some("event_export"), true, 10).await.expect("list");
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0].event().position, big_position);
        assert!(letters[0].error().contains("refused"), "{}", letters[0].error());
        let skipped = HashSet::from([big_position]);
        assert_stream_is_the_log(&app.db, &stream, &skipped).await;
        assert_eq!(exporter_state(&app).await["status"], "running");
        app.stop().await;
        writer.stop().await;
    }
}

/// Simulated broker outage: the exporter talks to NATS through a proxy the
/// test cuts. Commands go on; the exporter backs off and reports itself
/// `retrying` (and `/readyz` degraded); restored, it catches up with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_backs_off_reports_degraded_and_catches_up() {
    let stream = TestStream::new();
    let proxy = Proxy::start(&nats_target()).await;
    let via_proxy = format!("nats://127.0.0.1:{}", proxy.port);
    let Some(app) = spawn_exporting(Backend::Postgres, &stream, |e| {
        e.nats_url = via_proxy;
        e.timeout = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    run_commands(&app, 100, 4).await;
    app.settle().await;

    proxy.cut();
    // Even with nothing to export, the exporter notices.
    let mut changes = app.changes();
    while exporter_state(&app).await["status"] != "retrying" {
        changes.next("the exporter to report the outage").await;
    }
    run_commands(&app, 100, 4).await;
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["exporter"]["status"], "retrying", "{ready}");
    assert!(ready["projections"].as_array().expect("list").iter().any(|p| p["name"] == "event_export"), "{ready}");
    let state = exporter_state(&app).await;
    assert!(state["lastError"].as_str().unwrap_or("").contains("NATS"), "{state}");
    assert_ne!(state["lag"], "0", "the outage holds the export back: {state}");
    // The views are not held back by the broker.
    let mut changes = app.changes();
    loop {
        let d = app.data("{ projections { name lag } }", json!({})).await;
        let list = d["projections"].as_array().cloned().unwrap_or_default();
        if list.iter().filter(|p| p["name"] != "event_export").all(|p| p["lag"] == "0") {
            break;
        }
        changes.next("the views to catch up during the outage").await;
    }
    // The failed publishes are counted.
    let mut changes = app.changes();
    loop {
        let metrics =
            app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
        if !metrics.contains("twofold_export_publish_errors_total{kind=\"unavailable\"} 0\n") {
            break;
        }
        changes.next("a failed publish to be counted").await;
    }

    proxy.restore().await;
    app.settle().await;
    let mut changes = app.changes();
    while exporter_state(&app).await["status"] != "running" {
        changes.next("the exporter to recover").await;
    }
    assert_stream_is_the_log(&app.db, &stream, &HashSet::new()).await;
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["exporter"]["status"], "running", "{ready}");
    app.stop().await;
}

/// A database of its own and an API process, for the tests with real processes.
struct Fleet {
    database: TestDatabase,
    db: DatabaseConnection,
    api: Server,
    client: reqwest::Client,
}

impl Fleet {
    async fn start() -> Option<Self> {
        let database = TestDatabase::create(Backend::Postgres).await?;
        let api = Server::start(&["--database-url", &database.url, "--role", "api"]).await;
        let db = sea_orm::Database::connect(&database.url).await.expect("connect");
        Some(Self { database, db, api, client: http_client() })
    }

    /// An exporter process (`--role exporter`).
    async fn exporter(&self, stream: &TestStream, extra: &[&str]) -> Server {
        let mut args: Vec<String> =
            ["--database-url", &self.database.url, "--role", "exporter"].iter().map(|s| s.to_string()).collect();
        args.extend(stream.args());
        args.extend(["--standby-retry-ms", "100", "--poll-interval-ms", "200"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_logging(&args, "twofold::export=info").await
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/graphql", self.api.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send");
        let v: Value = r.json().await.expect("json");
        assert!(v.get("errors").is_none(), "{v}");
        v["data"].clone()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("integer")
    }

    /// Events the exporter's checkpoint has passed.
    async fn exported(&self) -> i64 {
        self.scalar(
            "SELECT count(*) FROM event e, projection_checkpoint c WHERE c.name = 'event_export' \
             AND (e.tx_id, e.position) <= (c.last_tx_id, c.last_position)",
        )
        .await
    }

    /// Waits, on the instances' notifications, until the exporter has passed `events` events.
    async fn until_exported(&self, events: i64) {
        let mut signals = PgSignals::listen(&self.database.url).await;
        while self.exported().await < events {
            signals.next(&format!("the exporter to pass {events} events")).await;
        }
    }

    /// A customer and products, then orders placed one after another until `stop`.
    async fn load(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<u64> {
        let d = self
            .gql(
                "mutation($e: String!) { registerCustomer(input: {name: \"Grace\", email: $e}) { id } }",
                json!({ "e": format!("grace-{}@example.com", short()) }),
            )
            .await;
        let customer = s(&d["registerCustomer"]["id"]);
        let mut products = Vec::new();
        for i in 0..3 {
            let d = self
                .gql(
                    "mutation($s: String!) { addProduct(input: {sku: $s, title: \"Tea\", priceCents: 450}) { id } }",
                    json!({ "s": format!("TEA-{}-{i}", short()) }),
                )
                .await;
            products.push(s(&d["addProduct"]["id"]));
        }
        let fleet = self.clone();
        tokio::spawn(async move {
            let mut placed = 0u64;
            // Bounded: at most 20,000 orders, however long the test takes.
            while !stop.is_cancelled() && placed < 20_000 {
                let product = &products[placed as usize % products.len()];
                fleet
                    .gql(
                        "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }",
                        json!({ "c": customer, "p": product }),
                    )
                    .await;
                placed += 1;
            }
            placed
        })
    }
}

/// A moment in `0..bound` ms, different each time.
fn random_ms(bound: u64) -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % u128::from(bound)) as u64)
}

/// kill -9 the exporter process at random moments during a load, a dozen
/// times, restarting it each time. The duplicate window is short, so most
/// restarts meet a batch published before the crash but not committed after
/// the window: the expected sequence refuses it and the exporter reconciles.
/// At the end the stream is the log: no gap, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_load_loses_and_duplicates_nothing() {
    let stream = TestStream::new();
    let Some(fleet) = Fleet::start().await else { return };
    let fleet = Arc::new(fleet);
    let stop = tokio_util::sync::CancellationToken::new();
    let load = fleet.load(stop.clone()).await;
    let extra = ["--export-batch-size", "20", "--export-duplicate-window-ms", "100"];
    let rounds = 12;
    let mut reconciled = 0;
    for round in 0..rounds {
        let mut exporter = fleet.exporter(&stream, &extra).await;
        let before = fleet.exported().await;
        // Kill it while it exports: once it has moved, after a random moment.
        fleet.until_exported(before + 1).await;
        // A random moment inside the export is the point of the kill.
        tokio::time::sleep(random_ms(40)).await;
        exporter.child.start_kill().expect("kill -9");
        let status = exporter.exit_status(Duration::from_secs(10)).await;
        assert!(!status.success(), "round {round}: killed, not exited");
        if exporter.stderr().contains("reconciled") {
            reconciled += 1;
        }
    }
    stop.cancel();
    let placed = load.await.expect("load");
    let exporter = fleet.exporter(&stream, &extra).await;
    let events = fleet.scalar("SELECT count(*) FROM event").await;
    fleet.until_exported(events).await;
    let exported = assert_stream_is_the_log(&fleet.db, &stream, &HashSet::new()).await;
    if exporter.stderr().contains("reconciled") {
        reconciled += 1;
    }
    eprintln!("{rounds} kill -9 rounds, {placed} orders, {exported} events exported once each; {reconciled} restarts reconciled");
}

/// Two exporter instances on one database: only the leader connects to
/// the broker; kill it and the other takes over, with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_exporters_one_exports_and_the_other_takes_over() {
    let stream = TestStream::new();
    let Some(fleet) = Fleet::start().await else { return };
    let fleet = Arc::new(fleet);
    let stop = tokio_util::sync::CancellationToken::new();
    let load = fleet.load(stop.clone()).await;
    let mut first = fleet.exporter(&stream, &[]).await;
    first.wait_for_log("exporter connected to NATS JetStream", 1).await;
    let second = fleet.exporter(&stream, &[]).await;
    let events = fleet.scalar("SELECT count(*) FROM event").await;
    fleet.until_exported(events + 20).await;
    assert!(!second.stderr().contains("exporter connected"), "the standby exported too: {}", second.stderr());
    let owner = fleet
        .scalar("SELECT split_part(owner, '-', 1)::bigint FROM projection_checkpoint WHERE name = 'event_export'")
        .await;
    assert_eq!(owner, i64::from(first.pid()), "the first exporter leads");

    first.child.start_kill().expect("kill -9");
    first.exit_status(Duration::from_secs(10)).await;
    second.wait_for_log("exporter connected to NATS JetStream", 1).await;
    let events = fleet.scalar("SELECT count(*) FROM event").await;
    fleet.until_exported(events + 20).await;
    stop.cancel();
    load.await.expect("load");
    let events = fleet.scalar("SELECT count(*) FROM event").await;
    fleet.until_exported(events).await;
    let owner = fleet
        .scalar("SELECT split_part(owner, '-', 1)::bigint FROM projection_checkpoint WHERE name = 'event_export'")
        .await;
    assert_eq!(owner, i64::from(second.pid()), "the second exporter took over");
    assert_stream_is_the_log(&fleet.db, &stream, &HashSet::new()).await;
}

/// The example consumer (`examples/low_stock.rs`): its totals equal the
/// `product_catalog` view's units sold, across a restart, and a full
/// redelivery (its durable consumer deleted) counts nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_consumer_agrees_with_product_catalog() {
    let stream = TestStream::new();
    let Some(app) = spawn_exporting(Backend::Postgres, &stream, |_| {}).await else { return };
    run_commands(&app, 400, 8).await;
    app.settle().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("low_stock.json");
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_twofold")).with_file_name("examples").join("low_stock");
    assert!(example.exists(), "build the example first (cargo test builds it): {}", example.display());
    let run = |extra: &[&str]| {
        let mut command = std::process::Command::new(&example);
        command.args([
            "--nats-url",
            &nats_url(),
            "--stream",
            &stream.name,
            "--subject-prefix",
            &stream.prefix,
            "--durable",
            "low-stock-test",
            "--batch",
            "50",
            "--threshold",
            "100",
            "--state",
            state.to_str().expect("path"),
        ]);
        command.args(extra);
        let out = command.output().expect("run the example");
        assert!(out.status.success(), "low_stock failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Part of the stream, then a restart that goes on from where it stopped.
    run(&["--stop-after", "100"]);
    let stdout = run(&["--exit-when-caught-up"]);
    assert!(stdout.contains("ALERT: product"), "an alert past the threshold: {stdout}");
    let totals = || -> BTreeMap<String, i64> {
        let saved: Value = serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
        serde_json::from_value(saved["totals"].clone()).expect("totals")
    };
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT product_id, units_sold FROM product_catalog".to_owned(),
        ))
        .await
        .expect("catalog");
    let catalog: BTreeMap<String, i64> = rows
        .into_iter()
        .map(|r| {
            (
                r.try_get::<uuid::Uuid>("", "product_id").expect("id").to_string(),
                r.try_get("", "units_sold").expect("units"),
            )
        })
        .filter(|(_, units)| *units != 0)
        .collect();
    let counted: BTreeMap<String, i64> = totals().into_iter().filter(|(_, units)| *units != 0).collect();
    assert_eq!(counted, catalog, "the consumer's totals and product_catalog's units sold");
    // Everything delivered again (the broker forgot the consumer): nothing counted twice.
    let js = TestStream::js().await;
    js.delete_consumer_from_stream("low-stock-test", &stream.name).await.expect("delete the consumer");
    run(&["--exit-when-caught-up"]);
    let again: BTreeMap<String, i64> = totals().into_iter().filter(|(_, units)| *units != 0).collect();
    assert_eq!(again, catalog, "a redelivery counts nothing twice");
    app.stop().await;
}

/// `--role exporter` without `--nats-url` is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exporter_role_without_a_broker_is_refused() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
    let mut settings = twofold::settings::Settings::for_database(&database.url);
    settings.role = Role::Exporter;
    let Err(e) = twofold::app::start(&settings).await else { panic!("started without --nats-url") };
    assert!(e.to_string().contains("--nats-url"), "{e}");
    let mut settings = twofold::settings::Settings::for_database(&database.url);
    settings.export = Some(ExportSettings { nats_url: "nats://no port:x".into(), ..TestStream::new().export() });
    let Err(e) = twofold::app::start(&settings).await else { panic!("started with a bad URL") };
    assert!(e.to_string().contains("--nats-url"), "{e}");
    // `twofold rebuild event_export` is refused, with the reason.
    let db = twofold::db::Db::connect(&database.url, 2).await.expect("connect");
    twofold::app::migrate(&database.url, None).await.expect("migrate");
    let options = twofold::projection::rebuild::RebuildOptions {
        projections: vec!["event_export".into()],
        until: None,
        copy_name: None,
        batch_size: 100,
        from_snapshot: None,
    };
    let refused = twofold::projection::rebuild::rebuild(&db, &db, &options, |_| {}).await.expect_err("refused");
    assert!(refused.to_string().contains("cannot be rebuilt"), "{refused}");
}
