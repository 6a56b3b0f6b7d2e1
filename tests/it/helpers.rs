//! Test helpers: spawn the real server on a fresh database, talk GraphQL over
//! HTTP, and look at the event log directly to assert what was appended.
#![allow(dead_code)]

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use twofold::app::{self, Services};
use twofold::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$body` (an async block using `app: TestApp`) once per backend:
/// `mod $name { fn sqlite(); fn postgres(); }`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let $app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                $body.await;
                $app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some($app) = $crate::helpers::TestApp::spawn_postgres().await else {
                    return;
                };
                $body.await;
                $app.stop().await;
            }
        }
    };
}

/// A database made for one test and removed after it.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A PostgreSQL database the caller made (and drops) itself.
    pub fn external(url: String) -> Self {
        Self { url, backend: Backend::Postgres, admin_url: None, name: String::new(), _dir: None }
    }

    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("twofold.db").display());
                Some(Self { url, backend, admin_url: None, name: String::new(), _dir: Some(dir) })
            }
            Backend::Postgres => {
                let base = pg_base_url()?;
                let name = format!("twofold_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(format!("{base}/postgres")).await.expect("connect to PostgreSQL");
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
                admin.close().await.ok();
                Some(Self {
                    url: format!("{base}/{name}"),
                    backend,
                    admin_url: Some(format!("{base}/postgres")),
                    name,
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(admin_url).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `TWOFOLD_TEST_PG_URL` without a trailing database name, e.g. `postgres://postgres@127.0.0.1:5432`.
pub fn pg_base_url() -> Option<String> {
    match std::env::var("TWOFOLD_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ => {
            if std::env::var("TWOFOLD_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("TWOFOLD_REQUIRE_PG=1 but TWOFOLD_TEST_PG_URL is not set");
            }
            record_skip();
            None
        }
    }
}

/// `TWOFOLD_TEST_REPLICA_URL` without a database name: a hot standby of
/// `TWOFOLD_TEST_PG_URL` (`.ci/standby.sh` makes one on 127.0.0.1:5433).
/// Required, like PostgreSQL itself, with `TWOFOLD_REQUIRE_PG=1`.
pub fn replica_base_url() -> Option<String> {
    match std::env::var("TWOFOLD_TEST_REPLICA_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ => {
            if std::env::var("TWOFOLD_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("TWOFOLD_REQUIRE_PG=1 but TWOFOLD_TEST_REPLICA_URL is not set (see .ci/standby.sh)");
            }
            record_skip_because("set TWOFOLD_TEST_REPLICA_URL to a hot standby to run it");
            None
        }
    }
}

/// Notes a skipped PostgreSQL variant: libtest would count it as passed, so
/// it is printed and appended to `target/skipped-tests.txt` (which `.ci/run`
/// requires to stay empty).
fn record_skip() {
    record_skip_because("set TWOFOLD_TEST_PG_URL to run the PostgreSQL variant");
}

fn record_skip_because(why: &str) {
    use std::io::Write;
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    eprintln!("skipped: {name} ({why})");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("skipped-tests.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{name}");
    }
}

/// A running server on its own database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub services: Services,
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub backend: Backend,
    /// Sent as `Authorization` by [`TestApp::gql`] (an app with keys needs one).
    pub authorization: Option<String>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await.expect("backend available")
    }

    pub async fn spawn_postgres() -> Option<Self> {
        Self::spawn_with(Backend::Postgres, |_| {}).await
    }

    /// Spawns with adjusted settings; `None` when the backend is not configured.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let mut settings = Settings::for_database(&database.url);
        settings.runtime.poll_interval = Duration::from_millis(200);
        adjust(&mut settings);
        Some(Self::start(database, settings).await)
    }

    pub async fn start(database: TestDatabase, settings: Settings) -> Self {
        let services = app::start(&settings).await.expect("service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = {
            let (services, settings, shutdown) = (services.clone(), settings.clone(), shutdown.clone());
            tokio::spawn(async move {
                app::serve(listener, services, &settings, shutdown).await.expect("server runs");
            })
        };
        let db = Database::connect(&database.url).await.expect("test connection");
        Self {
            base: format!("http://{addr}"),
            client: http_client(),
            services,
            settings,
            db,
            backend: database.backend,
            authorization: None,
            shutdown,
            server: Some(server),
            database,
        }
    }

    /// Stops the server and its projectors; the databases stay usable.
    pub async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }

    /// Stops the server and hands its database back, to start another on it.
    pub async fn into_database(mut self) -> TestDatabase {
        self.halt().await;
        let _ = self.db.clone().close().await;
        self.database
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        let _ = self.db.clone().close().await;
    }

    /// POSTs a GraphQL request and returns the JSON response.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let mut request = self.client.post(format!("{}/graphql", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let response =
            request.json(&json!({ "query": query, "variables": variables })).send().await.expect("request sent");
        assert!(response.status().is_success(), "HTTP {}", response.status());
        response.json().await.expect("JSON response")
    }

    /// Runs a query expecting no errors; returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let response = self.gql(query, variables).await;
        assert!(response.get("errors").is_none(), "unexpected errors: {response}");
        response["data"].clone()
    }

    pub async fn register_customer(&self, name: &str, email: &str) -> (String, String) {
        let d = self
            .data(
                "mutation($name: String!, $email: String!) { registerCustomer(input: {name: $name, email: $email}) { id token } }",
                json!({ "name": name, "email": email }),
            )
            .await;
        (s(&d["registerCustomer"]["id"]), s(&d["registerCustomer"]["token"]))
    }

    pub async fn add_product(&self, sku: &str, title: &str, price_cents: i64) -> (String, String) {
        let d = self
            .data(
                "mutation($sku: String!, $title: String!, $price: Int!) { addProduct(input: {sku: $sku, title: $title, priceCents: $price}) { id token } }",
                json!({ "sku": sku, "title": title, "price": price_cents }),
            )
            .await;
        (s(&d["addProduct"]["id"]), s(&d["addProduct"]["token"]))
    }

    /// Places an order with `(product id, quantity)` lines.
    pub async fn place_order(&self, customer_id: &str, lines: &[(&str, i32)]) -> (String, String) {
        let response = self.place_order_raw(customer_id, lines, json!(null), json!(null)).await;
        assert!(response.get("errors").is_none(), "unexpected errors: {response}");
        (s(&response["data"]["placeOrder"]["id"]), s(&response["data"]["placeOrder"]["token"]))
    }

    pub async fn place_order_raw(
        &self,
        customer_id: &str,
        lines: &[(&str, i32)],
        order_id: Value,
        command_id: Value,
    ) -> Value {
        let lines: Vec<Value> = lines.iter().map(|(p, q)| json!({ "productId": p, "quantity": q })).collect();
        self.gql(
            "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }",
            json!({ "input": { "customerId": customer_id, "lines": lines, "orderId": order_id, "commandId": command_id } }),
        )
        .await
    }

    pub async fn cancel_order(&self, order_id: &str, reason: Option<&str>) -> Value {
        self.gql(
            "mutation($id: ID!, $reason: String) { cancelOrder(input: {orderId: $id, reason: $reason}) { token } }",
            json!({ "id": order_id, "reason": reason }),
        )
        .await
    }

    pub async fn ship_order(&self, order_id: &str) -> Value {
        self.gql(
            "mutation($id: ID!) { shipOrder(input: {orderId: $id, carrier: \"DHL\", trackingNumber: \"1Z999\"}) { token } }",
            json!({ "id": order_id }),
        )
        .await
    }

    /// A customer and two products to order.
    pub async fn seed(&self) -> Seed {
        let (customer, _) =
            self.register_customer("Ada Lovelace", &format!("ada-{}@example.com", uuid::Uuid::new_v4().simple())).await;
        let (tea, _) = self.add_product(&format!("TEA-{}", short()), "Green tea", 450).await;
        let (cake, _) = self.add_product(&format!("CAKE-{}", short()), "Lemon cake", 1200).await;
        Seed { customer, tea, cake }
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("an integer")
    }

    pub async fn scalar_text(&self, sql: &str) -> String {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<String>(0).expect("text")
    }

    pub async fn event_count(&self) -> i64 {
        self.scalar_i64("SELECT count(*) FROM event").await
    }

    /// Waits until every projection has applied the whole log, looking
    /// again at each [`TestApp::changes`] signal.
    pub async fn settle(&self) {
        let mut changes = self.changes();
        loop {
            let projections = self.data("{ projections { name lag status } }", json!({})).await["projections"].clone();
            let lagging: Vec<&Value> =
                projections.as_array().expect("list").iter().filter(|p| p["lag"] != "0").collect();
            if lagging.is_empty() {
                return;
            }
            changes.next(&format!("projections to catch up: {lagging:?}")).await;
        }
    }

    /// The signals this process gives when the system moves on: a
    /// projection batch, a status change, a command's commit. Subscribe
    /// *before* looking at the state, then [`Changes::next`] after each look.
    pub fn changes(&self) -> Changes {
        Changes {
            updates: self.services.notices.subscribe(),
            status: self.services.notices.watch_status(),
            appended: self.services.appended.subscribe(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        }
    }

    pub fn backend_name(&self) -> DbBackend {
        self.db.get_database_backend()
    }
}

/// See [`TestApp::changes`].
pub struct Changes {
    updates: tokio::sync::broadcast::Receiver<twofold::notice::ProjectionUpdated>,
    status: tokio::sync::watch::Receiver<u64>,
    appended: tokio::sync::watch::Receiver<twofold::token::LogPosition>,
    deadline: tokio::time::Instant,
}

impl Changes {
    /// Waits for the next signal. What another instance (or a raw SQL
    /// write) does may not pass through this process, so after a second
    /// without a signal it returns anyway and the caller looks again.
    /// Panics with `what` once a minute has passed since [`TestApp::changes`].
    pub async fn next(&mut self, what: &str) {
        assert!(tokio::time::Instant::now() < self.deadline, "gave up waiting: {what}");
        tokio::select! {
            _ = self.updates.recv() => {}
            _ = self.status.changed() => {}
            _ = self.appended.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

pub struct Seed {
    pub customer: String,
    pub tea: String,
    pub cake: String,
}

/// An HTTP client whose every request has a deadline: a server that
/// stopped answering fails the test within a minute instead of hanging it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client")
}

/// POSTs a GraphQL request with `client` to the server at `base` (a child
/// process or another instance; no authorization) and returns the JSON
/// response.
pub async fn gql_at(client: &reqwest::Client, base: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables });
    client.post(format!("{base}/graphql")).json(&body).send().await.expect("send").json().await.expect("json")
}

/// [`gql_at`] expecting no errors; returns `data`.
pub async fn data_at(client: &reqwest::Client, base: &str, query: &str, variables: Value) -> Value {
    let response = gql_at(client, base, query, variables).await;
    assert!(response.get("errors").is_none(), "{response}");
    response["data"].clone()
}

/// Waits for `future`, at most `limit`; past it, panics saying what it
/// waited for. Every wait in these tests has a deadline: a hang is a
/// failure with a message, never a stuck run.
pub async fn within<T>(limit: Duration, what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("gave up after {limit:?} waiting for {what}"),
    }
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

pub fn short() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A `BigInt` (a decimal string on the wire) as a number.
pub fn big(v: &Value) -> i64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("expected a BigInt string, got {v}"))
}

/// The `extensions.code` of the first error.
pub fn code(response: &Value) -> String {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error code in {response}"))
        .to_owned()
}

/// A PostgreSQL session holding one row `FOR UPDATE` in an open
/// transaction (`hold` selects it, `$1` bound to `id`), as a concurrent
/// command or runner would; `release` rolls it back.
pub struct HeldRow {
    pub connection: sqlx::PgConnection,
    pub pid: i32,
}

impl HeldRow {
    pub async fn hold(url: &str, hold: &'static str, id: &str) -> HeldRow {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut connection).await.expect("pid");
        sqlx::query("BEGIN").execute(&mut connection).await.expect("begin");
        sqlx::query(hold).bind(id).execute(&mut connection).await.expect("hold the row");
        HeldRow { connection, pid }
    }

    /// Returns once another session of the database waits on a lock with a
    /// statement matching `like` (an `ILIKE` pattern); panics naming `what`
    /// after 10 s.
    pub async fn wait_for_a_waiter(&self, url: &str, like: &str, what: &str) {
        use sqlx::Connection;
        // PostgreSQL announces no lock wait: look at its sessions.
        let mut probe = sqlx::PgConnection::connect(url).await.expect("connect");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.waiters(&mut probe, like).await > 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what} within 10 s");
            // No signal for a lock wait (see above): look again shortly.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How many other sessions of the database wait on a lock now, with a
    /// statement matching `like` (an `ILIKE` pattern), asked through `probe`.
    pub async fn waiters<'e>(&self, probe: impl sqlx::PgExecutor<'e>, like: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1 \
             AND wait_event_type = 'Lock' AND query ILIKE $2",
        )
        .bind(self.pid)
        .bind(like)
        .fetch_one(probe)
        .await
        .expect("sessions")
    }

    pub async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.connection).await.expect("release");
    }
}
