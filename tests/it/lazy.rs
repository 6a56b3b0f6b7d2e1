//! Lazy views, snapshots of them, and reads at the token (issue 36).
//!
//! The property: for random command sequences, a lazy read (the stored
//! rows of a snapshot plus the stream's events after it, folded) equals
//! the eager view after catch-up, and a read at a token equals the view
//! folded exactly to that token, with the snapshot at every position
//! (none, mid-stream, at the head). The views at a position are made by
//! the projections' own batch apply over the log's prefix, in a database
//! of their own.
use std::collections::BTreeMap;

use migration::MigratorTrait;
use proptest::prelude::*;
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::{json, Value};
use twofold::domain::event::RecordedEvent;
use twofold::lazy::{Folder, Upto};
use twofold::projection::ApplyContext;
use twofold::token::LogPosition;

use crate::helpers::*;
use crate::projections::all_events;
use crate::property::{op, run_ops, Op};
use crate::ws_client::{Protocol, WsClient};

/// A database holding the views folded to `events` (and nothing after).
async fn views_at(backend: Backend, events: &[RecordedEvent]) -> (TestDatabase, twofold::db::Db) {
    let database = TestDatabase::create(backend).await.expect("database");
    let db = twofold::db::Db::connect(&database.url, 2).await.expect("connect");
    migration::Migrator::up(&db.conn, None).await.expect("migrate");
    if !events.is_empty() {
        let txn = db.conn.begin().await.expect("begin");
        for projection in twofold::projection::all() {
            projection.apply(&txn, events, ApplyContext { position_guard: true }).await.expect("apply");
        }
        txn.commit().await.expect("commit");
    }
    (database, db)
}

fn at(e: &RecordedEvent) -> LogPosition {
    LogPosition::new(e.tx_id, e.position)
}

async fn rows<E: sea_orm::EntityTrait>(db: &DatabaseConnection) -> Vec<Value>
where
    E::Model: serde::Serialize,
{
    E::find().all(db).await.expect("rows").into_iter().map(|m| serde_json::to_value(m).expect("json")).collect()
}

/// Every order, customer and timeline of `db`, by key.
async fn views(
    db: &DatabaseConnection,
) -> (BTreeMap<String, Value>, BTreeMap<String, Value>, BTreeMap<String, Vec<Value>>) {
    use entity::read::{customer_view, order_activity, order_summary};
    let orders = rows::<order_summary::Entity>(db).await.into_iter().map(|r| (s(&r["order_id"]), r)).collect();
    let customers = rows::<customer_view::Entity>(db).await.into_iter().map(|r| (s(&r["customer_id"]), r)).collect();
    let mut activity: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in rows::<order_activity::Entity>(db).await {
        activity.entry(s(&r["order_id"])).or_default().push(r);
    }
    for list in activity.values_mut() {
        list.sort_by_key(|r| r["stream_version"].as_i64());
    }
    (orders, customers, activity)
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("json")
}

async fn check(backend: Backend, ops: Vec<Op>) {
    let Some(app) = TestApp::spawn_with(backend, |_| {}).await else { return };
    run_ops(&app, &ops).await;
    app.settle().await;
    let events = all_events(&app).await;
    let (eager_orders, _, eager_activity) = views(&app.db).await;
    let log = app.services.write_db.clone();
    let mid = events.len() / 2;
    // The views at none, mid-stream and the head, as snapshots and as the answers at those tokens.
    let mut at_cut = Vec::new();
    for cut in [0, mid, events.len()] {
        at_cut.push((cut, views_at(backend, &events[..cut]).await));
    }
    for (cut, (_, snapshot)) in &at_cut {
        let folder = Folder::new(log.clone(), snapshot.clone());
        // Lazy: equals the eager view after catch-up.
        for (id, eager) in &eager_orders {
            let id = uuid::Uuid::parse_str(id).expect("uuid");
            let folded = folder.order(id, Upto::Head).await.expect("fold");
            assert_eq!(json(&folded.value), *eager, "lazy order {id} from a snapshot at {cut}/{}", events.len());
            let activity = folder.activity(id, Upto::Head).await.expect("fold");
            let expected = eager_activity.get(&id.to_string()).cloned().unwrap_or_default();
            assert_eq!(json(&activity.value), json(&expected), "lazy timeline {id} from a snapshot at {cut}");
        }
        // At the token: equals the view folded exactly to it (a later snapshot only).
        for (k, (_, target)) in at_cut.iter().filter(|(k, _)| *k >= *cut && *k > 0) {
            let token = at(&events[k - 1]);
            let (orders, customers, activity) = views(&target.conn).await;
            for (id, expected) in &orders {
                let id = uuid::Uuid::parse_str(id).expect("uuid");
                let folded = folder.order(id, Upto::Token(token)).await.expect("fold");
                assert_eq!(json(&folded.value), *expected, "order {id} at token {k} from a snapshot at {cut}");
                let timeline = folder.activity(id, Upto::Token(token)).await.expect("fold");
                let expected = activity.get(&id.to_string()).cloned().unwrap_or_default();
                assert_eq!(json(&timeline.value), json(&expected), "timeline {id} at token {k} from {cut}");
            }
            let checkpoint = if *cut == 0 { LogPosition::START } else { at(&events[cut - 1]) };
            for (id, expected) in &customers {
                let id = uuid::Uuid::parse_str(id).expect("uuid");
                let folded = folder.customer(id, token, checkpoint).await.expect("fold");
                assert_eq!(json(&folded.value), *expected, "customer {id} at token {k} from a snapshot at {cut}");
            }
        }
    }
    app.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, max_shrink_iters: 10, ..ProptestConfig::default() })]

    #[test]
    fn lazy_reads_and_reads_at_the_token_equal_the_eager_views_on_sqlite(ops in prop::collection::vec(op(), 5..30)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(check(Backend::Sqlite, ops));
    }

    #[test]
    fn lazy_reads_and_reads_at_the_token_equal_the_eager_views_on_postgres(ops in prop::collection::vec(op(), 5..30)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(check(Backend::Postgres, ops));
    }
}

fn lazy_settings(settings: &mut twofold::settings::Settings) {
    use twofold::catalog::Mode;
    settings.runtime.modes.insert("order_summary".into(), Mode::Lazy);
    settings.runtime.modes.insert("order_activity".into(), Mode::Lazy);
    // No snapshot but the ones readers ask for.
    settings.runtime.snapshots.every_events = 1_000_000;
    settings.runtime.snapshots.every = std::time::Duration::from_secs(3_600);
    // A key is hot by its events only (a slow machine must not make one hot by time).
    settings.runtime.snapshots.hot_time = std::time::Duration::from_secs(3_600);
}

async fn lazy_views_fold_and_lists_wait_for_a_snapshot(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, lazy_settings).await else { return };
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 2)]).await;
    // At once, with no token: a lazy read folds the order's events.
    let answer = app
        .gql(
            "query($id: ID!) { order(id: $id) { totalCents status } orderActivity(orderId: $id) { eventType } }",
            json!({ "id": order }),
        )
        .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["order"]["totalCents"], 900);
    assert_eq!(answer["data"]["orderActivity"][0]["eventType"], "OrderPlaced");
    assert_eq!(answer["extensions"]["served"]["order"], "folded", "{answer}");
    assert_eq!(answer["extensions"]["served"]["orderActivity"], "folded", "{answer}");
    // The stored rows hold nothing yet (no snapshot): the fold did it all.
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary").await, 0);
    // A list cannot fold: with the token it asks for a snapshot and waits for it.
    let list = app.gql("query($t: Token) { orders(consistentWith: $t) { nodes { id } } }", json!({ "t": token })).await;
    assert!(list.get("errors").is_none(), "{list}");
    assert_eq!(list["data"]["orders"]["nodes"][0]["id"], json!(order));
    assert!(list["extensions"]["served"].is_null(), "only single keys say how they were served: {list}");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary").await, 1, "the snapshot stored it");
    // A cancel is seen by the next read at once.
    app.cancel_order(&order, None).await;
    let cancelled = app.data("query($id: ID!) { order(id: $id) { status } }", json!({ "id": order })).await;
    assert_eq!(cancelled["order"]["status"], "CANCELLED");
    // writeVisible on the lazy views: visible at once (a read folds it).
    let mut ws = WsClient::connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    ws.subscribe(
        "v",
        "subscription($t: Token!) { writeVisible(token: $t, projections: [\"order_summary\", \"order_activity\"], timeoutMs: 2000) { visible } }",
        json!({ "t": token }),
    )
    .await;
    let answer = ws.next_data("v").await;
    assert_eq!(answer["data"]["writeVisible"]["visible"], true, "{answer}");
    // A key whose fold is long is stored by the snapshotter: 25 renames
    // of the customer make the order's fold read 25 events.
    for n in 0..25 {
        app.data(
            "mutation($id: ID!, $n: String!) { renameCustomer(input: {customerId: $id, name: $n}) { token } }",
            json!({ "id": seed.customer, "n": format!("Ada {n}") }),
        )
        .await;
    }
    let renamed = app.data("query($id: ID!) { order(id: $id) { customerName } }", json!({ "id": order })).await;
    assert_eq!(renamed["order"]["customerName"], "Ada 24");
    let mut stored = app.changes();
    loop {
        let name = app.scalar_text("SELECT customer_name FROM order_summary").await;
        if name == "Ada 24" {
            break;
        }
        stored.next("the snapshotter to store the hot key").await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_views_fold_and_lists_wait_for_a_snapshot_on_sqlite() {
    lazy_views_fold_and_lists_wait_for_a_snapshot(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_views_fold_and_lists_wait_for_a_snapshot_on_postgres() {
    lazy_views_fold_and_lists_wait_for_a_snapshot(Backend::Postgres).await;
}

/// An eager view held back by a lock still answers a single key at the
/// token without waiting (folded), while a list waits (and, with the lock
/// held, is not visible yet).
async fn a_view_behind_the_token_folds_single_keys(backend: Backend) {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let read_url = format!("sqlite://{}?mode=rwc", dir.path().join("read.db").display());
    let Some(app) = TestApp::spawn_with(backend, |s| {
        if backend == Backend::Sqlite {
            s.read_database_url = Some(read_url.clone());
        }
    })
    .await
    else {
        return;
    };
    let seed = app.seed().await;
    app.settle().await;
    // Hold the views back.
    let mut sqlite_lock = None;
    let mut pg_lock = None;
    if backend == Backend::Sqlite {
        let mut lock = sqlx::SqliteConnection::connect(&read_url).await.expect("connect");
        sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.expect("lock");
        sqlite_lock = Some(lock);
    } else {
        let mut lock = sqlx::PgConnection::connect(&app.database.url).await.expect("connect");
        sqlx::query("BEGIN").execute(&mut lock).await.expect("begin");
        sqlx::query("LOCK TABLE order_summary, customer_view, order_activity IN EXCLUSIVE MODE")
            .execute(&mut lock)
            .await
            .expect("lock");
        pg_lock = Some(lock);
    }
    let (order, token) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    let answer = app
        .gql(
            "query($o: ID!, $c: ID!, $t: Token) { order(id: $o, consistentWith: $t) { totalCents status } \
             customer(id: $c, consistentWith: $t) { ordersPlaced lifetimeValueCents } \
             orderActivity(orderId: $o, consistentWith: $t) { eventType } }",
            json!({ "o": order, "c": seed.customer, "t": token }),
        )
        .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["order"]["totalCents"], 1200);
    assert_eq!(answer["data"]["customer"]["ordersPlaced"], "1");
    assert_eq!(answer["data"]["customer"]["lifetimeValueCents"], "1200");
    assert_eq!(answer["data"]["orderActivity"][0]["eventType"], "OrderPlaced");
    for field in ["order", "customer", "orderActivity"] {
        assert_eq!(answer["extensions"]["served"][field], "folded", "{field}: {answer}");
    }
    // The customer renamed after the order: the order's fold reads the
    // rename too (on PostgreSQL in the same statement as the order's events).
    let renamed = app
        .data(
            "mutation($id: ID!) { renameCustomer(input: {customerId: $id, name: \"Ada Lovelace-Byron\"}) { token } }",
            json!({ "id": seed.customer }),
        )
        .await;
    let rename_token = renamed["renameCustomer"]["token"].clone();
    // The order's fields at a token.
    let order_at = |fields: &'static str, token: Value| {
        let (app, order) = (&app, &order);
        async move {
            let query = format!("query($o: ID!, $t: Token) {{ order(id: $o, consistentWith: $t) {{ {fields} }} }}");
            app.gql(&query, json!({ "o": order, "t": token })).await
        }
    };
    let answer = order_at("customerName totalCents", rename_token).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["order"]["customerName"], "Ada Lovelace-Byron", "{answer}");
    assert_eq!(answer["extensions"]["served"]["order"], "folded", "{answer}");
    // At the order's own token the name is still the one it was placed with.
    let before = order_at("customerName", json!(token)).await;
    assert_ne!(before["data"]["order"]["customerName"], "Ada Lovelace-Byron", "{before}");
    // A list cannot fold: it waits, and the lock holds it back.
    let list = app.gql("query($t: Token) { orders(consistentWith: $t) { nodes { id } } }", json!({ "t": token })).await;
    assert_eq!(code(&list), "NOT_VISIBLE_YET", "{list}");
    // The lock goes: the views catch up, and the same reads are stored.
    if let Some(mut lock) = sqlite_lock {
        sqlx::query("ROLLBACK").execute(&mut lock).await.expect("release");
    }
    if let Some(mut lock) = pg_lock {
        sqlx::query("COMMIT").execute(&mut lock).await.expect("release");
    }
    let list = app.gql("query($t: Token) { orders(consistentWith: $t) { nodes { id } } }", json!({ "t": token })).await;
    assert!(list.get("errors").is_none(), "{list}");
    let again = order_at("totalCents", json!(token)).await;
    assert_eq!(again["extensions"]["served"]["order"], "stored", "{again}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_behind_the_token_folds_single_keys_on_sqlite() {
    a_view_behind_the_token_folds_single_keys(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_behind_the_token_folds_single_keys_on_postgres() {
    a_view_behind_the_token_folds_single_keys(Backend::Postgres).await;
}

/// On PostgreSQL the read at a token of an order's stream brings its
/// placing customer's events since the order read it, in the same
/// statement: the renames after the order, not the one before it, and
/// nothing past the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_read_at_the_token_brings_its_customers_later_renames_on_postgres() {
    use twofold::projection::reader::{read_stream_at, Beside};
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |_| {}).await else { return };
    let seed = app.seed().await;
    let rename = |name: &'static str| {
        let app = &app;
        let customer = seed.customer.clone();
        async move {
            let data = app
                .data(
                    "mutation($id: ID!, $n: String!) { renameCustomer(input: {customerId: $id, name: $n}) { token } }",
                    json!({ "id": customer, "n": name }),
                )
                .await;
            data["renameCustomer"]["token"].as_str().expect("token").parse::<LogPosition>().expect("token")
        }
    };
    let before = rename("Before").await;
    let (order, placed) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    let order = uuid::Uuid::parse_str(&order).expect("uuid");
    let placed: LogPosition = placed.parse().expect("token");
    let first = rename("After one").await;
    let second = rename("After two").await;
    let log = &app.services.write_db.conn;
    let names = |read: &twofold::projection::reader::StreamAt| -> Option<Vec<String>> {
        read.beside.as_ref().map(|events| {
            events
                .iter()
                .map(|e| match &e.as_ref().expect("decodes").event {
                    twofold::domain::DomainEvent::CustomerRenamed(r) => r.name.clone(),
                    other => panic!("not a rename: {other:?}"),
                })
                .collect()
        })
    };
    let at_first = read_stream_at(log, order, Beside::PlacingCustomer, first, 100).await.expect("read");
    assert!(at_first.exists && at_first.settled);
    assert_eq!(at_first.events.len(), 1, "the order's OrderPlaced");
    assert_eq!(names(&at_first), Some(vec!["After one".to_owned()]), "the rename after the order, to the token");
    let at_second = read_stream_at(log, order, Beside::PlacingCustomer, second, 100).await.expect("read");
    assert_eq!(names(&at_second), Some(vec!["After one".to_owned(), "After two".to_owned()]));
    let at_placed = read_stream_at(log, order, Beside::PlacingCustomer, placed, 100).await.expect("read");
    assert_eq!(names(&at_placed), Some(Vec::new()), "nothing after the order at its own token");
    let without = read_stream_at(log, order, Beside::Nothing, second, 100).await.expect("read");
    assert!(without.beside.is_none());
    // Before the order was placed there is no order to name its customer.
    let early = read_stream_at(log, order, Beside::PlacingCustomer, before, 100).await.expect("read");
    assert!(early.events.is_empty() && early.beside.is_none(), "no OrderPlaced, so no customer read beside it");
    app.stop().await;
}

/// A `kill -9` while the snapshotter writes leaves the previous snapshot
/// (rows and checkpoint commit together), and the next read is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_during_a_snapshot_leaves_reads_exact_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("twofold.db").display());
    let args = [
        "--database-url",
        url.as_str(),
        "--projection-mode",
        "order_summary=lazy,order_activity=lazy",
        "--lazy-snapshot-events",
        "1",
        "--lazy-snapshot-ms",
        "10",
    ];
    let client = reqwest::Client::new();
    let gql = |base: String, query: &'static str, variables: Value| {
        let client = client.clone();
        async move { crate::helpers::gql_at(&client, &base, query, variables).await }
    };
    let mut server = crate::process::Server::start(&args).await;
    let customer = s(&gql(
        server.base.clone(),
        "mutation { registerCustomer(input: {name: \"Kill Me\", email: \"k@example.com\"}) { id } }",
        json!({}),
    )
    .await["data"]["registerCustomer"]["id"]);
    let product = s(&gql(
        server.base.clone(),
        "mutation { addProduct(input: {sku: \"K-1\", title: \"Knife\", priceCents: 100}) { id } }",
        json!({}),
    )
    .await["data"]["addProduct"]["id"]);
    let mut placed: Vec<(String, i64)> = Vec::new();
    for round in 0..6_i64 {
        // Orders while the snapshotter writes after every event; the kill
        // lands between or inside its transactions.
        for quantity in 1..=(2 + round % 3) {
            let answer = gql(
                server.base.clone(),
                "mutation($c: ID!, $p: ID!, $q: Int!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: $q}]}) { id } }",
                json!({ "c": customer, "p": product, "q": quantity }),
            )
            .await;
            placed.push((s(&answer["data"]["placeOrder"]["id"]), quantity * 100));
        }
        server.child.kill().await.expect("kill -9");
        server = crate::process::Server::start(&args).await;
        for (id, total) in &placed {
            let answer = gql(
                server.base.clone(),
                "query($id: ID!) { order(id: $id) { totalCents } orderActivity(orderId: $id) { eventType } }",
                json!({ "id": id }),
            )
            .await;
            assert_eq!(answer["data"]["order"]["totalCents"], *total, "round {round}: {answer}");
            assert_eq!(answer["data"]["orderActivity"].as_array().map(Vec::len), Some(1), "round {round}: {answer}");
        }
    }
}
