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
        let instance = Self::spawn(database_url);
        instance.ready().await;
        instance
    }

    /// Starts the process without waiting for it.
    fn spawn(database_url: &str) -> Self {
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
            .stderr(Stdio::piped())
            .spawn()
            .expect("start twofold");
        Self { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() }
    }

    /// Waits until `/readyz` answers 200; panics with the process's stderr if it exits.
    async fn ready(&self) {
        for _ in 0..400 {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance at {} did not become ready", self.base);
    }

    /// Whether the process has exited (and, if so, its stderr).
    fn exited(&mut self) -> Option<String> {
        use std::io::Read;
        match self.child.try_wait() {
            Ok(Some(_)) => {
                let mut err = String::new();
                if let Some(stderr) = self.child.stderr.as_mut() {
                    let _ = stderr.read_to_string(&mut err);
                }
                Some(err)
            }
            _ => None,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_instances_started_together_on_a_fresh_database_all_come_up() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    // Within the same second, on a database with no schema yet.
    let mut fleet: Vec<Instance> = (0..5).map(|_| Instance::spawn(&database.url)).collect();
    for instance in &mut fleet {
        for _ in 0..400 {
            if let Some(stderr) = instance.exited() {
                panic!("an instance died at start-up: {stderr}");
            }
            if let Ok(r) = instance.client.get(format!("{}/readyz", instance.base)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = instance.client.get(format!("{}/readyz", instance.base)).send().await.expect("readyz");
        assert!(r.status().is_success(), "every instance comes up");
    }
    // And they work on one schema.
    let id = s(&fleet[4]
        .gql("mutation { registerCustomer(input: {name: \"Ada\", email: \"ada@example.com\"}) { id } }", json!({}))
        .await["registerCustomer"]["id"]);
    let seen = fleet[0].gql("query($id: ID!) { customer(id: $id) { name } }", json!({ "id": id })).await;
    assert!(seen["customer"].is_null() || seen["customer"]["name"] == "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_hands_leadership_over_at_once_and_tells_websocket_clients_to_go() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let db = sea_orm::Database::connect(&database.url).await.expect("connect");
    let mut a = Instance::start(&database.url).await;
    // A leads every projection before B exists.
    for _ in 0..200 {
        if owners(&db).await.iter().all(|p| *p == a.pid()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(owners(&db).await.iter().all(|p| *p == a.pid()), "A runs the projections");
    let b = Instance::start(&database.url).await;
    let customer = s(&b
        .gql("mutation { registerCustomer(input: {name: \"Ada\", email: \"ada@example.com\"}) { id } }", json!({}))
        .await["registerCustomer"]["id"]);
    let product = s(&b
        .gql("mutation { addProduct(input: {sku: \"TEA\", title: \"Tea\", priceCents: 450}) { id } }", json!({}))
        .await["addProduct"]["id"]);
    let mut on_a = WsClient::connect(&a.base, "/graphql/ws", Protocol::TransportWs).await;
    on_a.init().await;

    // Load through B while A leads.
    let stop = tokio_util::sync::CancellationToken::new();
    let placed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (client, base, stop, placed, customer, product) =
            (b.client.clone(), b.base.clone(), stop.clone(), placed.clone(), customer.clone(), product.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let body = json!({ "query": "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }", "variables": { "c": customer, "p": product } });
                let r: Value = client
                    .post(format!("{base}/graphql"))
                    .json(&body)
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                assert!(r.get("errors").is_none(), "{r}");
                placed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    while placed.load(std::sync::atomic::Ordering::Relaxed) < 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.terminate();
    assert_eq!(on_a.expect_close().await, Some(1001), "WebSocket clients are told the server is going away");
    while a.exited().is_none() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let exited_at = Instant::now();
    let position_at_exit = TestAppLite { db: db.clone() }
        .scalar("SELECT last_position FROM projection_checkpoint WHERE name = 'order_summary'")
        .await;
    // The standby's first batch: the checkpoint moves under B's ownership.
    let hand_over = loop {
        let rows = owners(&db).await;
        let position = TestAppLite { db: db.clone() }
            .scalar("SELECT last_position FROM projection_checkpoint WHERE name = 'order_summary'")
            .await;
        if rows.iter().all(|p| *p == b.pid()) && position > position_at_exit {
            break exited_at.elapsed();
        }
        assert!(exited_at.elapsed() < Duration::from_secs(10), "no take-over");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!(
        "hand-over: {:.1} ms from the leader's exit to the standby's first batch",
        hand_over.as_secs_f64() * 1000.0
    );
    assert!(hand_over < Duration::from_millis(900), "the standby did not wait for its periodic try: {hand_over:?}");
    stop.cancel();
    load.await.expect("load");

    // Nothing lost, nothing applied twice.
    let test = TestAppLite { db };
    let events = test.scalar("SELECT count(*) FROM event").await;
    for _ in 0..200 {
        if test.scalar("SELECT min(events_applied) FROM projection_checkpoint").await == events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(test.scalar("SELECT min(events_applied) FROM projection_checkpoint").await, events);
    assert_eq!(test.scalar("SELECT max(events_applied) FROM projection_checkpoint").await, events);
    let orders = test.scalar("SELECT count(*) FROM event WHERE event_type = 'OrderPlaced'").await;
    assert_eq!(test.scalar("SELECT count(*) FROM order_summary").await, orders);
    assert_eq!(test.scalar("SELECT orders_placed FROM customer_view").await, orders);
    assert_eq!(test.scalar("SELECT count(*) FROM order_activity").await, orders);
}
