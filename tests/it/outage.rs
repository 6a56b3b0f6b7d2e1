//! PostgreSQL going away under load, through a TCP proxy the test controls,
//! and the connections an instance may hold.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;
use crate::ws_client::{Protocol, WsClient};

/// A TCP proxy in front of PostgreSQL (or NATS, see `export.rs`) that the
/// test can cut and restore. Cut: every proxied connection is dropped and
/// new ones are refused (the port is closed), as when the host goes away.
/// It also counts PostgreSQL pings ([`Proxy::pings`]).
pub struct Proxy {
    pub port: u16,
    target: String,
    state: Arc<Mutex<ProxyState>>,
    pings: Arc<AtomicUsize>,
}

/// A PostgreSQL `Sync` message on its own: all a pool's ping sends (a
/// statement's `Sync` travels with its `Parse`/`Bind`/`Execute`).
const LONE_SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

#[derive(Default)]
struct ProxyState {
    acceptor: Option<JoinHandle<()>>,
    /// The acceptor being aborted: its listener closes when its task is dropped.
    closing: Option<JoinHandle<()>>,
    pipes: Vec<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Self { port, target: target.to_owned(), state: Arc::default(), pings: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    /// How many lone `Sync`s (pings) clients have sent through the proxy.
    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::Relaxed)
    }

    fn serve(&self, listener: TcpListener) {
        let (state, target, pings) = (self.state.clone(), self.target.clone(), self.pings.clone());
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (target, pings) = (target.clone(), pings.clone());
                let pipe = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Each way copied until its end, then half-closed, as
                    // `copy_bidirectional` does; the way up also counts pings.
                    let upstream = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buf).await {
                            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            if buf[..n] == LONE_SYNC {
                                pings.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
                let mut state = state.lock().expect("state");
                state.pipes.retain(|p| !p.is_finished());
                state.pipes.push(pipe);
            }
        });
        self.state.lock().expect("state").acceptor = Some(acceptor);
    }

    pub fn cut(&self) {
        let mut state = self.state.lock().expect("state");
        if let Some(acceptor) = state.acceptor.take() {
            acceptor.abort();
            state.closing = Some(acceptor);
        }
        for pipe in state.pipes.drain(..) {
            pipe.abort();
        }
    }

    pub async fn restore(&self) {
        // The port closes with the acceptor's listener, once its aborted
        // task has been dropped: the end of that task is the signal.
        let closing = self.state.lock().expect("state").closing.take();
        if let Some(closing) = closing {
            let _ = within(Duration::from_secs(10), "the cut proxy's acceptor to end", closing).await;
        }
        // Take the port again. It is free now (tokio binds with SO_REUSEADDR,
        // so the cut connections' TIME_WAIT does not hold it), unless another
        // socket on the machine took it meanwhile: then say so.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "the proxy could not take port {} back within 10 s: {e}",
                        self.port
                    );
                    // Whoever holds the port releases it without telling
                    // anyone: all there is to do is try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }
}

/// The database URL through the proxy.
pub fn via(url: &str, port: u16) -> String {
    let (scheme_and_user, rest) = url.split_once('@').expect("user@host in the test URL");
    let database = rest.split_once('/').map(|(_, db)| db).unwrap_or("");
    format!("{scheme_and_user}@127.0.0.1:{port}/{database}")
}

pub fn pg_target() -> String {
    let base = pg_base_url().expect("TWOFOLD_TEST_PG_URL");
    base.rsplit_once('@').map(|(_, host)| host.to_owned()).unwrap_or(base)
}

async fn place(app: &TestApp, customer: &str, product: &str) -> Result<(String, String), (u16, String)> {
    let lines = [json!({ "productId": product, "quantity": 1 })];
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id token } }", "variables": { "i": { "customerId": customer, "lines": lines } } }))
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|e| (status, e.to_string()))?;
    match body["data"]["placeOrder"]["id"].as_str() {
        Some(id) => Ok((id.to_owned(), s(&body["data"]["placeOrder"]["token"]))),
        None => Err((status, body["errors"][0]["extensions"]["code"].as_str().unwrap_or("?").to_owned())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_fails_fast_reports_itself_and_loses_nothing() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let proxy = Proxy::start(&pg_target()).await;
    let mut settings = twofold::settings::Settings::for_database(&via(&database.url, proxy.port));
    settings.commands_pool = twofold::db::PoolOptions::new(6, Duration::from_secs(1));
    settings.reads_pool = twofold::db::PoolOptions::new(6, Duration::from_millis(500));
    settings.runtime.poll_interval = Duration::from_millis(200);
    let app = Arc::new(TestApp::start(database, settings).await);
    let seed = app.seed().await;

    // Load: orders placed one after another, every acknowledgement kept.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    // (acknowledged, refused) so far, for the test to wait on.
    let (counts, mut seen) = tokio::sync::watch::channel((0_usize, 0_usize));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (app, acked, refusals, stop, customer, product) =
            (app.clone(), acked.clone(), refusals.clone(), stop.clone(), seed.customer.clone(), seed.tea.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                match place(&app, &customer, &product).await {
                    Ok(ack) => {
                        acked.lock().expect("acked").push(ack);
                        counts.send_modify(|(a, _)| *a += 1);
                    }
                    Err(refusal) => {
                        refusals.lock().expect("refusals").push(refusal);
                        counts.send_modify(|(_, r)| *r += 1);
                    }
                }
            }
        })
    };
    within(
        Duration::from_secs(60),
        "20 orders acknowledged before the outage",
        seen.wait_for(|(acked, _)| *acked >= 20),
    )
    .await
    .expect("load runs");

    proxy.cut();
    // Requests fail fast with UNAVAILABLE and a 503.
    let started = Instant::now();
    let refused = place(&app, &seed.customer, &seed.tea).await.expect_err("no database");
    assert_eq!(refused, (503, "UNAVAILABLE".to_owned()));
    eprintln!("a command was refused after {:?}", started.elapsed());
    let started = Instant::now();
    let query = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "{ customers { edges { cursor } } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(query.status(), 503);
    assert_eq!(code(&query.json::<Value>().await.expect("json")), "UNAVAILABLE");
    eprintln!("a query was refused after {:?}", started.elapsed());
    // /readyz says so (it bounds its own checks; the figures are printed, not
    // asserted: a loaded CI machine would make a wall-clock bound flake).
    let started = Instant::now();
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    eprintln!("/readyz answered 503 after {:?}", started.elapsed());
    // The outage lasts until the load has been refused five times (each
    // refusal waits out the one-second pool timeout).
    within(Duration::from_secs(60), "5 orders refused during the outage", seen.wait_for(|(_, refused)| *refused >= 5))
        .await
        .expect("load runs");
    let acked_before = seen.borrow().0;
    proxy.restore().await;

    // Commands go through again…
    within(
        Duration::from_secs(60),
        "10 more orders acknowledged after the outage",
        seen.wait_for(|(acked, _)| *acked >= acked_before + 10),
    )
    .await
    .expect("load runs");
    stop.cancel();
    within(Duration::from_secs(60), "the load to stop", load).await.expect("load");
    let (_, last_token) = acked.lock().expect("acked").last().cloned().expect("an acknowledgement");
    // …notices resume (a fresh write is announced over WebSocket)…
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe(
        "v",
        "subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 10000) { visible } }",
        json!({ "t": last_token }),
    )
    .await;
    assert_eq!(ws.next_data("v").await["data"]["writeVisible"]["visible"], true);
    // …and every acknowledged order is in the log and in the views, once.
    let acked = acked.lock().expect("acked").clone();
    for (order, _) in &acked {
        let d = app.data("query($id: ID!) { order(id: $id) { id } }", json!({ "id": order })).await;
        assert_eq!(d["order"]["id"], order.as_str(), "acknowledged order {order} is visible");
    }
    let logged = app.scalar_i64("SELECT count(*) FROM event WHERE event_type = 'OrderPlaced'").await;
    let summaries = app.scalar_i64("SELECT count(*) FROM order_summary").await;
    assert!(logged as usize >= acked.len(), "log {logged}, acknowledged {}", acked.len());
    assert_eq!(summaries, logged, "each logged order projected exactly once");
    let refusals = refusals.lock().expect("refusals").clone();
    assert!(
        refusals.iter().all(|(status, code)| *status == 503 && code == "UNAVAILABLE"),
        "refusals during the outage: {refusals:?}"
    );
    drop(ws);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// The PostgreSQL connections an instance with default settings may hold:
/// commands + queries + projectors + one for all advisory locks + one listener.
const BUDGET: i64 = 6 + 6 + 3 + 1 + 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_keeps_within_its_connection_budget() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    // Load on every path at once: commands, queries, subscriptions.
    let mut work = Vec::new();
    for _ in 0..16 {
        let (base, client, customer, tea) =
            (app.base.clone(), app.client.clone(), seed.customer.clone(), seed.tea.clone());
        work.push(tokio::spawn(async move {
            for _ in 0..10 {
                let _ = client
                    .post(format!("{base}/graphql"))
                    .json(&json!({ "query": "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }", "variables": { "c": customer, "p": tea } }))
                    .send()
                    .await;
                let _ = client.post(format!("{base}/graphql")).json(&json!({ "query": "{ orders(first: 50) { edges { node { id customer { name } } } } projections { lag } }" })).send().await;
            }
        }));
    }
    for w in work {
        w.await.expect("load");
    }
    app.settle().await;
    let held = app
        .scalar_i64("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'twofold%'")
        .await;
    assert!(held <= BUDGET, "{held} connections, budget {BUDGET}");
    let locks = app.scalar_i64("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'twofold-locks'").await;
    assert_eq!(locks, 1, "one connection holds every advisory lock of the instance");
    app.stop().await;
}

/// A pooled connection in steady use goes back to work without a ping
/// (sqlx pinged every connection on every acquire, a round trip per
/// statement on top of the statement's own); one left idle past
/// [`twofold::db::PING_IF_IDLE_FOR`] is pinged first, so a connection the
/// database dropped meanwhile is replaced and the statement still runs.
///
/// The pool reaches PostgreSQL through the test's [`Proxy`], which counts
/// the pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_steady_use_is_not_pinged_and_an_idle_one_that_died_is_replaced() {
    use sea_orm::ConnectionTrait;
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let proxy = Proxy::start(&pg_target()).await;
    let db = twofold::db::Db::open(
        &via(&database.url, proxy.port),
        twofold::db::PoolOptions::new(1, Duration::from_secs(10)),
        "twofold",
    )
    .await
    .expect("open");
    let select = || sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT pg_backend_pid()::bigint");
    // One connection: each statement waits for the last one's release (and
    // its ping, which runs in a task of its own) to finish. So when the
    // count starts, at most one release ping is still on its way: the
    // previous statement's (`open` pings too).
    db.conn.query_one_raw(select()).await.expect("select").expect("a row");
    let before = proxy.pings();
    const STATEMENTS: usize = 20;
    for _ in 0..STATEMENTS {
        db.conn.query_one_raw(select()).await.expect("select").expect("a row");
    }
    let steady = proxy.pings() - before;
    assert!(
        steady <= STATEMENTS + 1,
        "{steady} pings for {STATEMENTS} statements on a connection in steady use: only releases may ping \
         (these {STATEMENTS} and the one before them)"
    );

    // The database drops the connection while it sits idle.
    let backend: i64 =
        db.conn.query_one_raw(select()).await.expect("select").expect("a row").try_get_by_index(0).expect("pid");
    let admin = sea_orm::Database::connect(&database.url).await.expect("connect");
    admin
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend($1::int)",
            [backend.into()],
        ))
        .await
        .expect("terminate");
    // Idle past the window: what is under test is the idle time itself.
    tokio::time::sleep(twofold::db::PING_IF_IDLE_FOR + Duration::from_millis(100)).await;
    let replaced: i64 = db
        .conn
        .query_one_raw(select())
        .await
        .expect("the pool replaced the dropped connection")
        .expect("a row")
        .try_get_by_index(0)
        .expect("pid");
    assert_ne!(replaced, backend, "a new session answers");
    proxy.cut();
}
