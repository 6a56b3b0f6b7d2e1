//! Liveness under a flapping database link (issue 26), with real processes:
//! two `--role projector` instances reach PostgreSQL through a TCP proxy
//! the test controls; the proxy cuts every connection and refuses new ones
//! for a while, again and again, while the projector processes are killed
//! (SIGKILL) and restarted, even while the link is down. Instance A takes
//! the writes and instance B serves the waits and the reads, both directly.
//! Safety (no stale read) and liveness (every write visible within 10 s)
//! must both hold.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use twofold::catalog::Role;

use crate::helpers::*;
use crate::outage::{pg_target, via, Proxy};
use crate::process::Server;
use crate::ws_client::{Protocol, WsClient};

/// Trials, kills and cuts the run needs at least (the floor).
const TRIALS: u64 = 5_000;
const FAULTS: u64 = 20;
/// How long a write may take to become visible.
const VISIBLE_WITHIN_MS: u64 = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// An API instance of the fault run. Its pools are small (the run shares
/// PostgreSQL's 100 connections with the tests beside it), and a query
/// waits up to 5 s for a connection instead of being shed at 500 ms: the
/// run counts a writeVisible that could not be answered as a failure.
fn api_settings(url: &str) -> twofold::settings::Settings {
    let mut settings = twofold::settings::Settings::for_database(url);
    settings.role = Role::Api;
    settings.runtime.poll_interval = Duration::from_millis(200);
    settings.commands_pool = twofold::db::PoolOptions::new(4, Duration::from_secs(5));
    settings.reads_pool = twofold::db::PoolOptions::new(4, Duration::from_secs(5));
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_started_while_the_database_is_down_comes_up_by_itself_on_postgres() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let proxy = Proxy::start(&pg_target()).await;
    proxy.cut();
    let url = via(&database.url, proxy.port);
    let server = Server::start_early(&["--database-url", &url]).await;
    let client = http_client();

    // Alive, not ready, and saying what it waits for, once it has tried.
    let health = client.get(format!("{}/healthz", server.base)).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let mut seen = server.lines_seen();
    // (The watch's guard is dropped at once: the log reader needs its lock.)
    let tried = matches!(
        tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|_| server.stderr().contains("cannot start yet")),)
            .await,
        Ok(Ok(_))
    );
    assert!(tried, "a failed try is logged with its cause: {}", server.stderr());
    let ready = client.get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "starting", "{body}");
    assert_eq!(body["database"], "postgres", "{body}");
    assert!(!body.to_string().contains(&proxy.port.to_string()), "no address for anyone: {body}");
    assert!(body["attempts"].as_u64().is_some_and(|n| n >= 1), "{body}");
    assert!(body["lastError"].is_string(), "{body}");
    let early = gql_at(&client, &server.base, "{ products { edges { cursor } } }", json!({})).await;
    assert_eq!(early["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{early}");

    // The database comes back: the server starts by itself and serves.
    proxy.restore().await;
    server.wait_for_log("twofold serving GraphQL at", 1).await;
    let ready = client.get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap_or_default());
    let registered = gql_at(
        &client,
        &server.base,
        "mutation { registerCustomer(input: { name: \"Late\", email: \"late@example.com\" }) { id token } }",
        json!({}),
    )
    .await;
    assert!(registered["data"]["registerCustomer"]["id"].is_string(), "{registered}");
}

/// Sends a command to A, again with the same `commandId` while A sheds it
/// (503 `UNAVAILABLE` on a loaded machine is a refusal, not a failure: the
/// retry cannot act twice); returns the payload.
async fn command(client: &reqwest::Client, a: &str, field: &str, mutation: &str, input: Value) -> Value {
    let command_id = uuid::Uuid::new_v4().to_string();
    let mut input = input;
    input["commandId"] = json!(command_id);
    for _ in 0..50 {
        let response = client
            .post(format!("{a}/graphql"))
            .json(&json!({ "query": mutation, "variables": { "i": input } }))
            .send()
            .await;
        let Ok(response) = response else { continue };
        if response.status() == 503 {
            // What a client does with 503 (the instance lost its database
            // link, and says so): back off and try again. The test acts as
            // that client, so a pause is the behaviour, not a wait for a state.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let body: Value = response.json().await.expect("json");
        assert!(body.get("errors").is_none(), "{field}: {body}");
        return body["data"][field].clone();
    }
    panic!("{field}: A refused the command 50 times");
}

/// One worker's trials: place an order on A, wait on B until it is
/// visible, read it on B; then cancel it the same way.
#[allow(clippy::too_many_arguments)]
async fn trials(
    a: Arc<TestApp>,
    b_base: String,
    customer: String,
    product: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    problems: Arc<Mutex<Vec<String>>>,
    waits: Arc<Mutex<Vec<Duration>>>,
) {
    let client = http_client();
    let mut ws = WsClient::connect(&b_base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let placed = command(
            &client,
            &a.base,
            "placeOrder",
            "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id token } }",
            json!({ "customerId": customer, "lines": [{ "productId": product, "quantity": 1 }] }),
        )
        .await;
        let (order, token) = (s(&placed["id"]), s(&placed["token"]));
        for (step, token, expected) in [("placed", token, "PLACED"), ("cancelled", String::new(), "CANCELLED")] {
            let token = if step == "cancelled" {
                let cancelled = command(
                    &client,
                    &a.base,
                    "cancelOrder",
                    "mutation($i: CancelOrderInput!) { cancelOrder(input: $i) { token } }",
                    json!({ "orderId": order }),
                )
                .await;
                s(&cancelled["token"])
            } else {
                token
            };
            let id = format!("{step}-{n}");
            let started = Instant::now();
            ws.subscribe(
                &id,
                "subscription($t: Token!, $ms: Int) { writeVisible(token: $t, timeoutMs: $ms) { visible reason blockedBy } }",
                json!({ "t": token, "ms": VISIBLE_WITHIN_MS }),
            )
            .await;
            let answer = ws.next_data(&id).await;
            let waited = started.elapsed();
            waits.lock().expect("waits").push(waited);
            if answer["data"]["writeVisible"]["visible"] != true {
                problems.lock().expect("problems").push(format!("not visible within 10 s: {step} {order}: {answer}"));
            } else {
                let read =
                    gql_at(&client, &b_base, "query($id: ID!) { order(id: $id) { status } }", json!({ "id": order }))
                        .await;
                if read["data"]["order"]["status"] != expected {
                    problems.lock().expect("problems").push(format!("stale read after {step} {order}: {read}"));
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_become_visible_while_projectors_are_killed_and_their_link_flaps_on_postgres() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url.clone();
    let a = Arc::new(TestApp::start(TestDatabase::external(url.clone()), api_settings(&url)).await);
    let b = TestApp::start(TestDatabase::external(url.clone()), api_settings(&url)).await;
    let seed = a.seed().await;
    let proxy = Arc::new(Proxy::start(&pg_target()).await);
    let via_url = via(&url, proxy.port);
    // Projector processes serve no commands or queries: the smallest pools.
    let args: Vec<String> = [
        "--database-url",
        &via_url,
        "--role",
        "projector",
        "--poll-interval-ms",
        "200",
        "--max-connections",
        "2",
        "--read-max-connections",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let start = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_early(&refs).await
    };
    let projectors = Arc::new(tokio::sync::Mutex::new(vec![start(args.clone()).await, start(args.clone()).await]));

    let stop = Arc::new(AtomicBool::new(false));
    let (done, kills, cuts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let resumed: Arc<Mutex<Vec<Duration>>> = Arc::default();

    // Kills: a projector process, chosen at random, every 1–3 s, started again at once.
    let killer = {
        let (projectors, stop, kills, args) = (projectors.clone(), stop.clone(), kills.clone(), args.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // The chaos schedule itself (random moments are the point), not a wait.
                tokio::time::sleep(Duration::from_millis(1_000 + fastrand::u64(0..2_000))).await;
                let mut list = projectors.lock().await;
                let i = fastrand::usize(0..list.len());
                let _ = list[i].child.kill().await;
                list[i] = start(args.clone()).await;
                kills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Cuts: every 2–4 s, every connection through the proxy is cut and new
    // ones are refused for 0.3–1.5 s. Then: how long from the link's return
    // to the first batch projected (B hears of it by LISTEN/NOTIFY).
    let cutter = {
        let (proxy, stop, cuts, resumed, notices) =
            (proxy.clone(), stop.clone(), cuts.clone(), resumed.clone(), b.services.notices.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // The chaos schedule: a cut at a random moment, for a random while.
                tokio::time::sleep(Duration::from_millis(2_000 + fastrand::u64(0..2_000))).await;
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..1_200))).await;
                let mut updates = notices.subscribe();
                proxy.restore().await;
                let back = Instant::now();
                cuts.fetch_add(1, Ordering::Relaxed);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), updates.recv()).await {
                    resumed.lock().expect("resumed").push(back.elapsed());
                }
            }
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(trials(
                a.clone(),
                b.base.clone(),
                seed.customer.clone(),
                seed.tea.clone(),
                stop.clone(),
                done.clone(),
                problems.clone(),
                waits.clone(),
            ))
        })
        .collect();

    let began = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut reported = Instant::now();
    let mut workers = workers;
    loop {
        tick.tick().await;
        if reported.elapsed() >= Duration::from_secs(10) {
            reported = Instant::now();
            eprintln!(
                "{:?}: {} trials, {} kills, {} cuts",
                began.elapsed(),
                done.load(Ordering::Relaxed),
                kills.load(Ordering::Relaxed),
                cuts.load(Ordering::Relaxed)
            );
        }
        // A worker that ended early panicked: say why at once.
        if let Some(i) = workers.iter().position(|w| w.is_finished()) {
            if !stop.load(Ordering::Relaxed) {
                let ended = workers.remove(i).await;
                panic!("a trial worker ended: {ended:?}; problems: {:?}", problems.lock().expect("problems"));
            }
        }
        let enough = done.load(Ordering::Relaxed) >= TRIALS
            && kills.load(Ordering::Relaxed) >= FAULTS
            && cuts.load(Ordering::Relaxed) >= FAULTS;
        if enough || !problems.lock().expect("problems").is_empty() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(600),
            "the run did not reach its trials and faults in 10 minutes"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    killer.await.expect("killer");
    cutter.await.expect("cutter");
    let mut waits = waits.lock().expect("waits").clone();
    waits.sort();
    let mut resumed = resumed.lock().expect("resumed").clone();
    resumed.sort();
    eprintln!(
        "{} trials, {} kills, {} cuts in {:?}: writeVisible wait p50 {:?}, p99 {:?}, max {:?}; link return → first batch p50 {:?}, p99 {:?} over {} cuts",
        done.load(Ordering::Relaxed),
        kills.load(Ordering::Relaxed),
        cuts.load(Ordering::Relaxed),
        began.elapsed(),
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or_default(),
        percentile(&resumed, 0.5),
        percentile(&resumed, 0.99),
        resumed.len(),
    );
    let problems = problems.lock().expect("problems").clone();
    assert!(problems.is_empty(), "{} problems, the first: {:?}", problems.len(), &problems[..problems.len().min(5)]);
    for server in projectors.lock().await.iter_mut() {
        let _ = server.child.kill().await;
    }
    drop(b);
    if let Ok(a) = Arc::try_unwrap(a) {
        a.stop().await;
    }
    drop(database);
}
