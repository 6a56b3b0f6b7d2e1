//! The read side does not stall on other applications' transactions: the
//! projectors' horizon counts only transactions that can append to the
//! event log (PostgreSQL), and it still never skips a late commit.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};
use serde_json::{json, Value};
use tokio::sync::watch;
use twofold::command::{CommandPauses, Pause};

use crate::helpers::*;
use crate::ws_client::{Protocol, WsClient};

/// Waits for `token` with `writeVisible` over WebSocket; returns whether it
/// became visible and how long that took.
async fn write_visible(app: &TestApp, token: &str, timeout_ms: u64) -> (bool, Duration) {
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let started = Instant::now();
    ws.subscribe(
        "v",
        "subscription($t: Token!, $ms: Int) { writeVisible(token: $t, timeoutMs: $ms) { visible } }",
        json!({ "t": token, "ms": timeout_ms }),
    )
    .await;
    let visible = ws.next_data("v").await["data"]["writeVisible"]["visible"] == true;
    (visible, started.elapsed())
}

async fn sql(db: &impl ConnectionTrait, text: &str) {
    db.execute_unprepared(text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_held_open_in_another_database_does_not_delay_projections() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    app.settle().await;
    // Another application's transaction, in another database, with an xid,
    // left open; it even holds the appender lock there (another Twofold on
    // the same server): advisory locks are per database.
    let other = Database::connect(format!("{}/postgres", pg_base_url().expect("url"))).await.expect("connect");
    let foreign = other.begin().await.expect("begin");
    let (class, object) = twofold::db::APPENDER_LOCK;
    sql(&foreign, &format!("SELECT pg_advisory_xact_lock_shared({class}, {object})")).await;
    sql(&foreign, "SELECT pg_current_xact_id()").await;
    for _ in 0..3 {
        let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
        // Held back by the foreign transaction, it would stay invisible for
        // as long as that transaction stays open (past the whole wait).
        let (visible, took) = write_visible(&app, &token, 5000).await;
        assert!(visible, "the write became visible (after {took:?}) with a foreign transaction open");
    }
    foreign.rollback().await.expect("rollback");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_to_another_table_of_twofolds_database_does_not_delay_projections() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    sql(&app.db, "CREATE TABLE unrelated (x int)").await;
    let open = app.db.begin().await.expect("begin");
    sql(&open, "INSERT INTO unrelated VALUES (1)").await;
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (visible, took) = write_visible(&app, &token, 5000).await;
    assert!(visible, "not visible after {took:?} with a write to another table open");
    open.rollback().await.expect("rollback");
    app.stop().await;
}

/// The `order_summary` checkpoint as `(tx_id, position)`.
async fn checkpoint(app: &TestApp) -> (i64, i64) {
    let d = app.data("{ projections { name checkpoint } }", json!({})).await;
    let row =
        d["projections"].as_array().expect("list").iter().find(|p| p["name"] == "order_summary").expect("row").clone();
    parse(&s(&row["checkpoint"]))
}

fn parse(token: &str) -> (i64, i64) {
    token.split_once('.').map(|(a, b)| (a.parse().expect("tx"), b.parse().expect("pos"))).expect("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_commit_is_waited_for_with_a_foreign_transaction_open() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    app.settle().await;
    let other = Database::connect(format!("{}/postgres", pg_base_url().expect("url"))).await.expect("connect");
    let foreign = other.begin().await.expect("begin");
    sql(&foreign, "SELECT pg_current_xact_id()").await;
    // An event writer takes its xid and appends, but does not commit yet.
    let late = app.db.begin().await.expect("begin");
    let ghost = uuid::Uuid::new_v4();
    late.execute_raw(Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at) \
         VALUES ('customer', $1, 1, 'CustomerRegistered', 1, $2, '{}', now())",
        vec![ghost.into(), json!({ "customerId": ghost, "name": "Late Larry", "email": "late@example.com" }).into()],
    ))
    .await
    .expect("late insert");
    // A later command commits; projectors wait for the open writer, not the foreign transaction.
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (visible, _) = write_visible(&app, &token, 300).await;
    assert!(!visible, "the projection must not pass the open event writer");
    assert!(checkpoint(&app).await < parse(&token));
    late.commit().await.expect("commit late");
    let d = app
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(s(&d["order"]["id"]), order);
    app.settle().await;
    let larry = app.data("query($id: ID!) { customer(id: $id) { name } }", json!({ "id": ghost.to_string() })).await;
    assert_eq!(larry["customer"]["name"], "Late Larry", "the late event was applied, not skipped");
    foreign.rollback().await.expect("rollback");
    app.stop().await;
}

/// Holds one command at each pause point until the test lets it go.
struct Gate {
    /// The task of the command being held (the first that arrives while armed).
    held: Mutex<Option<tokio::task::Id>>,
    armed: AtomicBool,
    /// Where the held command is.
    arrived: watch::Sender<Option<Pause>>,
    /// How far the held command may go: None (hold at the lock), Some(StateSaved) (hold there), or past it.
    release: watch::Sender<u8>,
}

#[async_trait::async_trait]
impl CommandPauses for Gate {
    async fn at(&self, point: Pause) {
        let me = tokio::task::try_id();
        {
            let mut held = self.held.lock().expect("gate");
            match *held {
                None if point == Pause::AppenderLockTaken && self.armed.swap(false, Ordering::SeqCst) => *held = me,
                Some(id) if Some(id) == me => {}
                _ => return,
            }
        }
        self.arrived.send_replace(Some(point));
        let needed = match point {
            Pause::AppenderLockTaken => 1,
            Pause::StateSaved => 2,
        };
        let mut release = self.release.subscribe();
        while *release.borrow_and_update() < needed {
            if release.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A `placeOrder` held by a [`Gate`] at its first pause point (the appender
/// lock taken, no xid yet), sent on a connection of its own: the gate, where
/// the command is, and its answer to come.
async fn hold_a_command(
    app: &TestApp,
    seed: &Seed,
) -> (Arc<Gate>, watch::Receiver<Option<Pause>>, tokio::task::JoinHandle<Value>) {
    let gate = Arc::new(Gate {
        held: Mutex::new(None),
        armed: AtomicBool::new(true),
        arrived: watch::channel(None).0,
        release: watch::channel(0).0,
    });
    app.services.commands.set_pauses(Some(gate.clone()));
    let mut arrived = gate.arrived.subscribe();
    let held = {
        let (base, variables) = (app.base.clone(), json!({ "c": seed.customer, "p": seed.tea }));
        let mutation = "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 3}]}) { id token } }";
        tokio::spawn(async move { gql_at(&http_client(), &base, mutation, variables).await })
    };
    within(
        Duration::from_secs(30),
        "the held command to take the appender lock",
        arrived.wait_for(|p| *p == Some(Pause::AppenderLockTaken)),
    )
    .await
    .expect("arrives at the lock");
    (gate, arrived, held)
}

/// Seeds `app`, settles it, and holds a command ([`hold_a_command`]) at
/// its second pause point ([`let_it_write_its_state`]).
async fn seeded_with_a_writer_held_after_its_first_write(
    app: &TestApp,
) -> (Seed, Arc<Gate>, tokio::task::JoinHandle<Value>) {
    let seed = app.seed().await;
    app.settle().await;
    let (gate, mut arrived, held) = hold_a_command(app, &seed).await;
    let_it_write_its_state(&gate, &mut arrived).await;
    (seed, gate, held)
}

/// Lets a command held at the lock ([`hold_a_command`]) go on to its second
/// pause point and waits until it is there: its state is written (it has
/// its xid) and nothing is appended yet.
async fn let_it_write_its_state(gate: &Gate, arrived: &mut watch::Receiver<Option<Pause>>) {
    gate.release.send_replace(1);
    within(
        Duration::from_secs(30),
        "the held command to save its state",
        arrived.wait_for(|p| *p == Some(Pause::StateSaved)),
    )
    .await
    .expect("arrives after its first write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_held_between_its_steps_is_waited_for_and_never_skipped() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = app.seed().await;
    app.settle().await;
    // 1. It holds the appender lock but has no xid yet: that holds nobody back.
    let (gate, mut arrived, held) = hold_a_command(&app, &seed).await;
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (visible, _) = write_visible(&app, &token, 5000).await;
    assert!(visible, "a lock holder without an xid does not hold the horizon back");
    // 2. It has its xid (its state is written) and has not appended: later writes wait for it.
    let_it_write_its_state(&gate, &mut arrived).await;
    let (later, later_token) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    let (visible, _) = write_visible(&app, &later_token, 300).await;
    assert!(!visible, "a later write must not become visible past an open appender");
    assert!(checkpoint(&app).await < parse(&later_token));
    // 3. It appends and commits: everything becomes visible, nothing skipped or doubled.
    gate.release.send_replace(2);
    let answer = held.await.expect("held command");
    let held_order = s(&answer["data"]["placeOrder"]["id"]);
    let d = app
        .data(
            "query($a: ID!, $b: ID!, $t: Token) { a: order(id: $a, consistentWith: $t) { id } b: order(id: $b, consistentWith: $t) { id } }",
            json!({ "a": held_order, "b": later, "t": later_token }),
        )
        .await;
    assert_eq!((s(&d["a"]["id"]), s(&d["b"]["id"])), (held_order.clone(), later.clone()));
    app.settle().await;
    let orders = app.scalar_i64("SELECT count(*) FROM event WHERE event_type = 'OrderPlaced'").await;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary").await, orders);
    let placed = app.data("query($c: ID!) { customer(id: $c) { ordersPlaced } }", json!({ "c": seed.customer })).await;
    assert_eq!(big(&placed["customer"]["ordersPlaced"]), orders);
    app.services.commands.set_pauses(None);
    app.stop().await;
}

/// A writer below a later write's token commits last, so nothing newer
/// comes after it: its own commit must wake the projectors it held back.
/// They used to be woken only by a token newer than any heard of, and
/// otherwise slept their back-off, doubling up to the poll interval: the
/// client of the later write waited up to half a second (the default poll
/// interval) for a write that was readable at once. The poll interval is an
/// hour here, so a timer cannot stand in for the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_commit_of_a_writer_below_a_newer_token_wakes_the_projectors_it_held_back() {
    let Some(app) =
        TestApp::spawn_with(Backend::Postgres, |s| s.runtime.poll_interval = Duration::from_secs(3600)).await
    else {
        return;
    };
    let (seed, gate, held) = seeded_with_a_writer_held_after_its_first_write(&app).await;
    // A later write commits first: its token is the newest anyone hears of.
    let (later, later_token) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    // The projectors find the held writer open below it and back off,
    // doubling from 2 ms: after 13 tries the next pause is 4 to 8 s long.
    let series = "twofold_projector_held_back_total{projection=\"order_summary\"}";
    until_counter(&app, series, 13.0, "the projector to back off for seconds").await;
    // The held writer commits: the last commit, and not the newest token.
    gate.release.send_replace(2);
    let answer = within(Duration::from_secs(30), "the held command", held).await.expect("held command");
    assert!(answer.get("errors").is_none(), "{answer}");
    let (visible, took) = write_visible(&app, &later_token, 2000).await;
    assert!(visible, "the later write was still not visible {took:?} after the writer below it committed");
    let d = app.data("query($id: ID!) { order(id: $id) { id } }", json!({ "id": later })).await;
    assert_eq!(s(&d["order"]["id"]), later, "the stored view holds the later write");
    app.services.commands.set_pauses(None);
    app.stop().await;
}

/// The value of a counter in `/metrics` (0 when it has not appeared yet).
async fn counter(app: &TestApp, series: &str) -> f64 {
    crate::metrics::value(&crate::metrics::scrape(app).await, series).unwrap_or(0.0)
}

/// Until a counter in `/metrics` reaches `at_least` (it moves in another
/// task's hands: looked at again until it does, within a deadline).
async fn until_counter(app: &TestApp, series: &str, at_least: f64, what: &str) {
    within(Duration::from_secs(60), what, async {
        while counter(app, series).await < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A read at the token that meets an event writer below its token still
/// open waits for that writer to end and then folds. It used to give up at
/// once and wait for the view, which waits for the same writer and then
/// for a projector batch (the reads at the token that "waited" in the
/// benchmark). The settle wait is long here so that the test does not race
/// the held command's commit; the default is 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_at_the_token_waits_for_a_writer_below_it_and_then_folds() {
    let Some(app) =
        TestApp::spawn_with(Backend::Postgres, |s| s.consistency.settle_wait = Duration::from_secs(60)).await
    else {
        return;
    };
    let (seed, gate, held) = seeded_with_a_writer_held_after_its_first_write(&app).await;
    // A later write: its token lies above the held command's transaction.
    let (order, token) = app.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    let series = "twofold_fold_settle_waits_total";
    let looked_before = counter(&app, series).await;
    let read = {
        let (base, variables) = (app.base.clone(), json!({ "o": order, "t": token }));
        let query = "query($o: ID!, $t: Token) { order(id: $o, consistentWith: $t) { id totalCents status } }";
        tokio::spawn(async move { gql_at(&http_client(), &base, query, variables).await })
    };
    // The read found the writer open and is waiting for it.
    until_counter(&app, series, looked_before + 1.0, "the read to look at the open writer").await;
    assert!(!read.is_finished(), "the read answers only once the writer below its token has ended");
    gate.release.send_replace(2);
    let answer = within(Duration::from_secs(30), "the read at the token", read).await.expect("read task");
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["order"]["id"], order.as_str());
    assert_eq!(answer["data"]["order"]["totalCents"], 2 * 1200);
    assert_eq!(answer["extensions"]["served"]["order"], "folded", "{answer}");
    let held = held.await.expect("held command");
    assert!(held.get("errors").is_none(), "{held}");
    app.services.commands.set_pauses(None);
    app.stop().await;
}

/// A role that may not see other roles' transaction ids (no pg_read_all_stats).
struct LimitedRole {
    admin: DatabaseConnection,
    role: String,
    database: String,
}

impl LimitedRole {
    async fn create() -> Option<Self> {
        let base = pg_base_url()?;
        let admin = Database::connect(format!("{base}/postgres")).await.expect("connect");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (role, database) = (format!("twofold_limited_{}", &suffix[..12]), format!("twofold_test_{suffix}"));
        sql(&admin, &format!("CREATE ROLE {role} LOGIN")).await;
        sql(&admin, &format!("CREATE DATABASE {database} OWNER {role}")).await;
        Some(Self { admin, role, database })
    }

    fn url(&self, user: &str) -> String {
        let base = pg_base_url().expect("url");
        let (scheme, rest) = base.split_once("://").expect("scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        format!("{scheme}://{user}@{host}/{}", self.database)
    }

    async fn drop(self) {
        let _ = self.admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database)).await;
        let _ = self.admin.execute_unprepared(&format!("DROP ROLE IF EXISTS {}", self.role)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_privilege_to_see_appenders_it_falls_back_to_the_global_horizon_and_says_so() {
    let Some(limited) = LimitedRole::create().await else { return };
    let database = TestDatabase::external(limited.url(&limited.role));
    let settings = twofold::settings::Settings::for_database(&database.url);
    let app = TestApp::start(database, settings).await;
    let seed = app.seed().await;
    app.settle().await;
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["horizon"]["mode"], "appenders", "{ready}");
    // An event writer of another role (here the superuser), whose xid this role may not see.
    let superuser = Database::connect(limited.url("postgres")).await.expect("connect as postgres");
    let hidden = superuser.begin().await.expect("begin");
    let ghost = uuid::Uuid::new_v4();
    hidden
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at) \
             VALUES ('customer', $1, 1, 'CustomerRegistered', 1, $2, '{}', now())",
            vec![ghost.into(), json!({ "customerId": ghost, "name": "Hidden Hal", "email": "hal@example.com" }).into()],
        ))
        .await
        .expect("insert");
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["horizon"]["mode"], "global", "{ready}");
    assert_eq!(ready["status"], "degraded");
    // The global horizon is cautious: a later write waits for the hidden writer…
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (visible, _) = write_visible(&app, &token, 300).await;
    assert!(!visible, "the fallback must not pass a writer it cannot see");
    // …and everything arrives once it commits.
    hidden.commit().await.expect("commit");
    let (visible, _) = write_visible(&app, &token, 5000).await;
    assert!(visible);
    app.settle().await;
    let hal = app.data("query($id: ID!) { customer(id: $id) { name } }", json!({ "id": ghost.to_string() })).await;
    assert_eq!(hal["customer"]["name"], "Hidden Hal");
    let ready: Value =
        app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["horizon"]["mode"], "appenders", "back once the hidden writer is gone: {ready}");
    app.stop().await;
    let _ = superuser.close().await;
    limited.drop().await;
}

/// A transaction that wrote something else before it appended got its xid
/// before the appender lock, so projectors could not tell it was an event
/// writer: they read past it and its events were lost when it committed
/// (a plain-SQL script that inserts the order row, then its event). The
/// trigger now refuses such an append and the transaction rolls back whole;
/// one that begins with the appender lock (`Db::begin_append`) goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_after_other_writes_is_refused_unless_the_lock_came_first() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    sql(&app.db, "CREATE TABLE side_effect (x int)").await;
    let insert_event = |stream: uuid::Uuid| {
        Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at) \
             VALUES ('customer', $1, 1, 'CustomerRegistered', 1, $2, '{}', now())",
            vec![stream.into(), json!({ "customerId": stream, "name": "Eve", "email": "eve@example.com" }).into()],
        )
    };
    let refused = uuid::Uuid::new_v4();
    let careless = app.db.begin().await.expect("begin");
    sql(&careless, "INSERT INTO side_effect VALUES (1)").await;
    let err = careless.execute_raw(insert_event(refused)).await.expect_err("the late append is refused");
    assert!(err.to_string().contains("wrote before it appended"), "{err}");
    careless.rollback().await.expect("rollback");

    let accepted = uuid::Uuid::new_v4();
    let db = twofold::db::Db::connect(&app.database.url, 1).await.expect("connect");
    let careful = db.begin_append().await.expect("begin_append");
    sql(&*careful, "INSERT INTO side_effect VALUES (2)").await;
    careful.execute_raw(insert_event(accepted)).await.expect("an append under the lock");
    careful.commit().await.expect("commit");

    // An event INSERT as the transaction's first write still takes the lock itself.
    let first = uuid::Uuid::new_v4();
    let plain = app.db.begin().await.expect("begin");
    plain.execute_raw(insert_event(first)).await.expect("first write");
    plain.commit().await.expect("commit");

    app.settle().await;
    for (id, present) in [(refused, false), (accepted, true), (first, true)] {
        let d = app.data("query($id: ID!) { customer(id: $id) { id } }", json!({ "id": id.to_string() })).await;
        assert_eq!(!d["customer"].is_null(), present, "customer {id}");
    }
    app.stop().await;
}

/// A batch read walks the `(tx_id, position)` index and stops after its
/// limit, even when the log has grown far past its statistics (a bulk
/// import, a restore, the benchmark's top-up): with the horizon joined
/// instead of used as a scalar, the planner sorted every event after the
/// checkpoint for each batch (5 s and 540 MB of temporary files per batch
/// on a million-event log, which made a rebuild 25 times slower).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_read_walks_the_index_even_when_the_log_outgrew_its_statistics() {
    // No projectors: the events below are raw rows for the planner only.
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |s| s.role = twofold::catalog::Role::Api).await else {
        return;
    };
    let append = |transactions: usize| {
        let db = app.db.clone();
        async move {
            for _ in 0..transactions {
                sql(
                    &db,
                    "INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at) \
                     SELECT 'order', gen_random_uuid(), 1, 'OrderPlaced', 1, jsonb_build_object('k', repeat('x', 300)), '{}', now() \
                     FROM generate_series(1, 1000)",
                )
                .await;
            }
        }
    };
    append(23).await;
    sql(&app.db, "ANALYZE event").await;
    append(77).await;
    // Read from early in the grown part: 80,000 events lie after the checkpoint.
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT tx_id FROM event ORDER BY tx_id, position OFFSET 25000 LIMIT 1",
        ))
        .await
        .expect("query")
        .expect("a row");
    // The start of that event's transaction.
    let after = twofold::token::LogPosition::new(row.try_get::<i64>("", "tx_id").expect("tx_id"), 0);
    let read = twofold::projection::reader::range_statement(sea_orm::DbBackend::Postgres, after, None, 5_000);
    let explain = Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        format!("EXPLAIN (ANALYZE, FORMAT TEXT) {}", read.sql),
        read.values.map(|v| v.0).unwrap_or_default(),
    );
    let plan: Vec<String> = app
        .db
        .query_all_raw(explain)
        .await
        .expect("explain")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("plan line"))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using event_tx_position_idx on event"), "{plan}");
    assert!(!plan.contains("Sort"), "the batch read sorts instead of walking the index:\n{plan}");
    // The horizon bounds the index scan itself (a parameter of it), so no
    // join order the planner may pick can undo the index's order.
    let scan_condition = plan.lines().find(|l| l.trim_start().starts_with("Index Cond:")).unwrap_or_default();
    assert!(scan_condition.contains("(tx_id < $"), "the horizon is not a bound of the index scan:\n{plan}");
    assert!(!plan.contains("Nested Loop"), "the horizon is joined:\n{plan}");
}
