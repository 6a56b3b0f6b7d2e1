//! Two `twofold serve` processes on one PostgreSQL: notices cross
//! instances, one runner per projection, and take-over when it dies.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::{Protocol, WsClient};

struct Instance {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Instance {
    async fn start(database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new(env!("CARGO_BIN_EXE_twofold"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
                "--poll-interval-ms",
                "200",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start twofold");
        let instance = Self { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        for _ in 0..200 {
            if let Ok(r) = instance.client.get(format!("{}/readyz", instance.base)).send().await {
                if r.status().is_success() {
                    return instance;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance on port {port} did not become ready");
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send");
        let v: Value = r.json().await.expect("json");
        assert!(v.get("errors").is_none(), "{v}");
        v["data"].clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process id in each projection's `owner` (`pid-suffix`).
async fn owners(db: &sea_orm::DatabaseConnection) -> Vec<u32> {
    use sea_orm::EntityTrait;
    entity::read::projection_checkpoint::Entity::find()
        .all(db)
        .await
        .expect("checkpoints")
        .into_iter()
        .map(|r| r.owner.unwrap_or_default().split('-').next().unwrap_or("0").parse().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_on_one_instance_is_announced_on_the_other_and_a_dead_runner_is_replaced() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let a = Instance::start(&database.url).await;
    let b = Instance::start(&database.url).await;
    let db = sea_orm::Database::connect(&database.url).await.expect("connect");

    // Seed through A.
    let customer = s(&a
        .gql("mutation { registerCustomer(input: {name: \"Ada\", email: \"ada@example.com\"}) { id } }", json!({}))
        .await["registerCustomer"]["id"]);
    let product = s(&a
        .gql("mutation { addProduct(input: {sku: \"TEA\", title: \"Tea\", priceCents: 450}) { id } }", json!({}))
        .await["addProduct"]["id"]);

    // Subscribe on B, command on A.
    let order = uuid::Uuid::new_v4().to_string();
    let mut ws = WsClient::connect(&b.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe("p", "subscription($s: ID) { projectionUpdated(projections: [\"order_summary\"], streamId: $s) { projection token } }", json!({ "s": order })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let placed = a
        .gql(
            "mutation($o: ID!, $c: ID!, $p: ID!) { placeOrder(input: {orderId: $o, customerId: $c, lines: [{productId: $p, quantity: 1}]}) { token } }",
            json!({ "o": order, "c": customer, "p": product }),
        )
        .await;
    let token = s(&placed["placeOrder"]["token"]);
    let notice = ws.next_data("p").await;
    assert_eq!(notice["data"]["projectionUpdated"]["projection"], "order_summary", "{notice}");
    // writeVisible on B for A's token.
    ws.subscribe("v", "subscription($t: Token!) { writeVisible(token: $t) { visible } }", json!({ "t": token })).await;
    assert_eq!(ws.next_data("v").await["data"]["writeVisible"]["visible"], true);
    // And B reads it.
    let seen = b
        .gql(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(seen["order"]["id"], order);

    // One runner per projection: find it, kill it.
    let runners = owners(&db).await;
    assert!(runners.iter().all(|p| *p == runners[0]), "one process runs them all here: {runners:?}");
    let (dead, survivor) = if runners[0] == a.pid() { (a, b) } else { (b, a) };
    assert_eq!(runners[0], dead.pid());
    drop(dead); // SIGKILL
    let killed_at = Instant::now();

    // Commands keep flowing through the survivor; its projectors take over.
    let mut last = String::new();
    for _ in 0..10 {
        last = s(&survivor
            .gql("mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 2}]}) { token } }", json!({ "c": customer, "p": product }))
            .await["placeOrder"]["token"]);
    }
    let mut visible = false;
    while killed_at.elapsed() < Duration::from_secs(15) {
        let d = survivor.client.post(format!("{}/graphql", survivor.base))
            .json(&json!({ "query": "query($t: Token) { orders(first: 1, consistentWith: $t) { edges { node { id } } } }", "variables": { "t": last } }))
            .send().await.expect("send").json::<Value>().await.expect("json");
        if d.get("errors").is_none() {
            visible = true;
            break;
        }
    }
    assert!(visible, "the survivor took over the projections");
    let took_over = killed_at.elapsed();
    assert!(took_over < Duration::from_secs(10), "take-over took {took_over:?}");
    assert!(owners(&db).await.iter().all(|p| *p == survivor.pid()));

    // Nothing applied twice: every checkpoint counted each event exactly once,
    // and the counters agree with the log.
    let test = TestAppLite { db };
    let events = test.scalar("SELECT count(*) FROM event").await;
    for _ in 0..100 {
        if test.scalar("SELECT min(events_applied) FROM projection_checkpoint").await == events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(test.scalar("SELECT min(events_applied) FROM projection_checkpoint").await, events);
    assert_eq!(test.scalar("SELECT max(events_applied) FROM projection_checkpoint").await, events);
    assert_eq!(test.scalar("SELECT orders_placed FROM customer_view").await, 11);
    assert_eq!(test.scalar("SELECT units_sold FROM product_catalog").await, 21);
    assert_eq!(test.scalar("SELECT count(*) FROM order_activity").await, 11);
}

struct TestAppLite {
    db: sea_orm::DatabaseConnection,
}

impl TestAppLite {
    async fn scalar(&self, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned()))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("integer")
    }
}
