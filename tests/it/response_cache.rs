//! The response cache (`src/graphql/response_cache.rs`): a kept answer is
//! served while the views it was read from have not moved, never to another
//! caller, and not at all where checkpoints do not describe the views.
//!
//! A kept answer is seen by changing a view row by hand, which no
//! projection does and no checkpoint tells of: a kept answer still shows
//! the row as it was, a fresh read shows the change. (Kept answers live a
//! second at most by default; the unit tests in `response_cache.rs` show the
//! age bound. Here they live ten minutes: on a loaded machine a second could
//! pass between two requests, and an answer aged out would look like one
//! never kept.)
use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use twofold::auth::{mint, AuthSettings};
use twofold::domain::Actor;
use twofold::token::LogPosition;

use crate::helpers::{Backend, TestApp};

const PAGE: &str = "{ orders(first: 10) { edges { node { id customerName } } } }";

async fn spawn(backend: Backend, adjust: impl FnOnce(&mut twofold::settings::Settings)) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| {
        s.response_cache.max_age = Duration::from_secs(600);
        adjust(s);
    })
    .await
}

/// The customer names of the page, newest order first.
fn names(page: &Value) -> Vec<String> {
    page["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["customerName"].as_str().expect("name").to_owned())
        .collect()
}

async fn rename_by_hand(app: &TestApp) {
    app.db.execute_unprepared("UPDATE order_summary SET customer_name = 'Changed by hand'").await.expect("update");
}

/// Waits, on this process's own signal, until it knows every view holds
/// `token`. A kept answer is keyed by every view's checkpoint, so a view
/// still applying the command (a customer's dashboard, the daily sales)
/// would move the key after the page was kept: waiting for `order_summary`
/// alone made "served while no view moved" fail under load.
async fn known(app: &TestApp, token: &str) {
    let token: LogPosition = token.parse().expect("token");
    for view in twofold::catalog::View::ALL {
        let mut checkpoint = app.services.notices.watch_checkpoint(view.name());
        tokio::time::timeout(Duration::from_secs(30), checkpoint.wait_for(|at| *at >= token))
            .await
            .unwrap_or_else(|_| panic!("{} reaches the token", view.name()))
            .expect("notices live");
    }
}

async fn a_kept_page_is_served_until_its_views_move(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let seed = app.seed().await;
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    known(&app, &token).await;
    let first = app.data(PAGE, json!({})).await; // validated, remembered
    let kept = app.data(PAGE, json!({})).await; // computed, kept
    assert_eq!(first, kept);
    assert_eq!(names(&kept).len(), 1);

    rename_by_hand(&app).await;
    assert_eq!(app.data(PAGE, json!({})).await, kept, "the kept answer is served while no view moved");
    // The same document with other variables, or asked for another operation, is another answer.
    let fresh = app.data("query Page { orders(first: 10) { edges { node { id customerName } } } }", json!({})).await;
    assert_eq!(names(&fresh), vec!["Changed by hand"], "a different document is read afresh");

    // A batch moves order_summary: the page is read again.
    let (_, token) = app.place_order(&seed.customer, &[(&seed.cake, 1)]).await;
    known(&app, &token).await;
    let moved = app.data(PAGE, json!({})).await;
    assert_eq!(names(&moved).len(), 2, "{moved}");
    assert_eq!(names(&moved)[1], "Changed by hand", "read afresh once the view moved: {moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_page_is_served_until_its_views_move_on_sqlite() {
    a_kept_page_is_served_until_its_views_move(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_page_is_served_until_its_views_move_on_postgres() {
    a_kept_page_is_served_until_its_views_move(Backend::Postgres).await;
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes-for-hs256";

async fn customers_never_share_a_kept_answer(backend: Backend) {
    let Some(mut app) = spawn(backend, |s| {
        s.identity.jwt_secret = Some(SECRET.into());
        s.identity.admin_token = Some("operator-token-for-the-cache-test".into());
    })
    .await
    else {
        return;
    };
    app.authorization = Some("Bearer operator-token-for-the-cache-test".into());
    let seed = app.seed().await;
    let (other, _) = app.register_customer("Other Shopper", "other@example.com").await;
    app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let (_, token) = app.place_order(&other, &[(&seed.cake, 1)]).await;
    known(&app, &token).await;
    let minting = AuthSettings { jwt_secret: Some(SECRET.into()), ..Default::default() };
    let as_customer = |id: &str| {
        let actor = Actor::customer(format!("user-{id}"), id.parse().expect("uuid"));
        format!("Bearer {}", mint(&minting, &actor, Duration::from_secs(600)).expect("mint"))
    };
    let ask = |bearer: String| {
        let request = app.client.post(format!("{}/graphql", app.base)).header("authorization", bearer);
        async move {
            let body: Value =
                request.json(&json!({ "query": PAGE })).send().await.expect("send").json().await.expect("json");
            body["data"].clone()
        }
    };
    for _ in 0..3 {
        let staff = ask(app.authorization.clone().expect("operator")).await;
        assert_eq!(names(&staff).len(), 2, "staff see both orders: {staff}");
        let mine = ask(as_customer(&seed.customer)).await;
        assert_eq!(names(&mine).len(), 1, "a customer sees its own order only: {mine}");
        let theirs = ask(as_customer(&other)).await;
        assert_eq!(names(&theirs), vec!["Other Shopper"], "and the other customer its own: {theirs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_never_share_a_kept_answer_on_sqlite() {
    customers_never_share_a_kept_answer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_never_share_a_kept_answer_on_postgres() {
    customers_never_share_a_kept_answer(Backend::Postgres).await;
}

/// Inline projections change their views in the command's transaction,
/// before their checkpoint moves: nothing is kept for them.
async fn an_inline_view_is_never_kept(backend: Backend) {
    let Some(app) = spawn(backend, |s| {
        s.runtime.modes.insert("order_summary".into(), twofold::catalog::Mode::Inline);
    })
    .await
    else {
        return;
    };
    let seed = app.seed().await;
    app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    for _ in 0..2 {
        assert_eq!(names(&app.data(PAGE, json!({})).await).len(), 1);
    }
    rename_by_hand(&app).await;
    assert_eq!(names(&app.data(PAGE, json!({})).await), vec!["Changed by hand"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_view_is_never_kept_on_sqlite() {
    an_inline_view_is_never_kept(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_view_is_never_kept_on_postgres() {
    an_inline_view_is_never_kept(Backend::Postgres).await;
}

/// `--response-cache-entries 0` turns the cache off: every request reads
/// the view. With it on, a kept answer goes out as the same bytes, under
/// the media type each request asked for.
async fn the_cache_can_be_turned_off_and_keeps_the_media_type(backend: Backend) {
    let Some(off) = spawn(backend, |s| s.response_cache.entries = 0).await else { return };
    let seed = off.seed().await;
    let (_, token) = off.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    known(&off, &token).await;
    off.data(PAGE, json!({})).await;
    off.data(PAGE, json!({})).await;
    rename_by_hand(&off).await;
    assert_eq!(names(&off.data(PAGE, json!({})).await), vec!["Changed by hand"], "nothing was kept");
    off.stop().await;

    let Some(on) = spawn(backend, |_| {}).await else { return };
    let seed = on.seed().await;
    let (_, token) = on.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    known(&on, &token).await;
    let ask = |accept: &'static str| {
        let request = on.client.post(format!("{}/graphql", on.base)).header("accept", accept);
        async move {
            let response = request.json(&json!({ "query": PAGE })).send().await.expect("sent");
            let media = response.headers()["content-type"].to_str().expect("ascii").to_owned();
            (media, response.bytes().await.expect("body"))
        }
    };
    let (_, computed) = ask("application/json").await;
    let (_, kept_json) = ask("application/json").await;
    let (media, kept_graphql) = ask("application/graphql-response+json").await;
    rename_by_hand(&on).await;
    let (_, still_kept) = ask("application/json").await;
    assert_eq!(computed, kept_json);
    assert_eq!(kept_json, kept_graphql);
    assert_eq!(kept_json, still_kept, "the answer was kept");
    assert!(media.starts_with("application/graphql-response+json"), "{media}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cache_can_be_turned_off_and_keeps_the_media_type_on_sqlite() {
    the_cache_can_be_turned_off_and_keeps_the_media_type(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cache_can_be_turned_off_and_keeps_the_media_type_on_postgres() {
    the_cache_can_be_turned_off_and_keeps_the_media_type(Backend::Postgres).await;
}
