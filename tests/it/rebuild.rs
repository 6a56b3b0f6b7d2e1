//! Rebuild by replay: identical rows, a fixed bug rebuilt away, time travel,
//! and events of two schema versions in one log.
use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use serde_json::json;
use twofold::catalog::Role;
use twofold::domain::event::RecordedEvent;
use twofold::projection::rebuild::{rebuild, RebuildOptions};
use twofold::projection::runtime::{Mode, PoisonPolicy};
use twofold::projection::{self, ApplyContext, ApplyError, Projection};
use twofold::token::LogPosition;

use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::{all_events, catch_up, drain, dump, history, insert_raw_event, projector, reset_read_model};

fn options(names: &[&str]) -> RebuildOptions {
    RebuildOptions {
        projections: names.iter().map(|n| n.to_string()).collect(),
        until: None,
        copy_name: None,
        batch_size: 7,
        from_snapshot: None,
    }
}

async fn rebuild_all(app: &TestApp) {
    let names = projection::names();
    rebuild(&app.services.write_db, &app.services.read_db, &options(&names), |_| {}).await.expect("rebuild");
}

on_both_backends!(a_rebuild_gives_the_rows_the_live_projectors_built, |app| async {
    let seed = history(&app).await;
    app.settle().await;
    // Commands keep arriving while the rebuild runs.
    let writer = {
        let (base, customer, tea) = (app.base.clone(), seed.customer.clone(), seed.tea.clone());
        tokio::spawn(async move {
            let client = http_client();
            for _ in 0..40 {
                let body = json!({ "query": "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }",
                                   "variables": { "c": customer, "p": tea } });
                client.post(format!("{base}/graphql")).json(&body).send().await.expect("send");
            }
        })
    };
    rebuild_all(&app).await;
    writer.await.expect("writer");
    app.settle().await;
    let rebuilt = dump(&app.db).await;
    assert_eq!(rebuilt["order_summary"].len(), 43);
    // Reference: the same log projected from scratch, one event at a time.
    let checkpoints = app.scalar_i64("SELECT min(events_applied) FROM projection_checkpoint").await;
    assert_eq!(checkpoints, app.event_count().await, "each event counted once");
    reset_read_model(&app).await;
    drain(&app).await;
    assert_eq!(dump(&app.db).await, rebuilt);
});

/// `customer_view` with a bug: it counts every shipped order twice.
struct DoubleCountsShipments;

#[async_trait::async_trait]
impl Projection for DoubleCountsShipments {
    fn name(&self) -> &'static str {
        "customer_view"
    }
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[RecordedEvent],
        ctx: ApplyContext,
    ) -> Result<(), ApplyError> {
        projection::customer_view::CustomerView.apply(txn, events, ctx).await?;
        for e in events {
            if let twofold::domain::DomainEvent::OrderShipped(s) = &e.event {
                let sql = "UPDATE customer_view SET orders_shipped = orders_shipped + 1 WHERE customer_id = $1";
                twofold::projection::sql::execute(txn, sql, vec![s.customer_id.into()]).await?;
            }
        }
        Ok(())
    }
}

on_both_backends!(a_buggy_projection_is_fixed_by_a_rebuild, |app| async {
    let app = TestApp::spawn_with(app.backend, |s| s.role = Role::Api).await.expect("api app");
    history(&app).await;
    let buggy = projector(&app, Arc::new(DoubleCountsShipments), Mode::Async, PoisonPolicy::Stop);
    catch_up(&app, &buggy).await;
    let shipped = app.scalar_i64("SELECT CAST(sum(orders_shipped) AS BIGINT) FROM customer_view").await;
    assert_eq!(shipped, 2, "the bug is live: one shipment counted twice");
    // The fix is deployed (the real projection), then the view is rebuilt.
    rebuild(&app.services.write_db, &app.services.read_db, &options(&["customer_view"]), |_| {})
        .await
        .expect("rebuild");
    assert_eq!(app.scalar_i64("SELECT CAST(sum(orders_shipped) AS BIGINT) FROM customer_view").await, 1);
    assert_eq!(app.scalar_i64("SELECT CAST(sum(orders_placed) AS BIGINT) FROM customer_view").await, 3);
    app.stop().await;
});

on_both_backends!(until_builds_the_views_as_of_a_token, |app| async {
    let seed = app.seed().await;
    let (first, _) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let cancelled = app.cancel_order(&first, None).await;
    let as_of = s(&cancelled["data"]["cancelOrder"]["token"]);
    // Later history the copy must not show.
    app.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    app.ship_order(&first).await;
    app.gql(
        "mutation($id: ID!) { renameCustomer(input: {customerId: $id, name: \"Later Name\"}) { token } }",
        json!({ "id": seed.customer }),
    )
    .await;
    all_events(&app).await;
    let until: LogPosition = as_of.parse().expect("token");
    let mut opts = options(&["order_summary", "customer_view"]);
    opts.until = Some(until);
    opts.copy_name = Some("audit".into());
    let reports = rebuild(&app.services.write_db, &app.services.read_db, &opts, |_| {}).await.expect("rebuild");
    assert_eq!(reports[0].copy_tables, vec!["order_summary__audit".to_owned()]);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary__audit").await, 1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary__audit WHERE status = 'CANCELLED'").await, 1);
    // One condition per line, so a failure says which part of the row is off.
    assert_eq!(app.scalar_i64("SELECT count(*) FROM customer_view__audit").await, 1, "one customer");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM customer_view__audit WHERE name = 'Ada Lovelace'").await,
        1,
        "the name as of the token"
    );
    assert_eq!(
        app.scalar_i64("SELECT CAST(max(orders_placed) AS BIGINT) FROM customer_view__audit").await,
        1,
        "placed as of the token"
    );
    assert_eq!(
        app.scalar_i64("SELECT CAST(max(orders_cancelled) AS BIGINT) FROM customer_view__audit").await,
        1,
        "cancelled as of the token"
    );
    // The live views are untouched and current.
    app.settle().await;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary").await, 2);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM customer_view WHERE name = 'Later Name'").await, 1);
});

on_both_backends!(a_log_with_v1_and_v2_order_events_rebuilds_to_the_right_views, |app| async {
    let seed = app.seed().await;
    // A v2 event through the command path…
    let placed = app
        .gql(
            "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: MOBILE, lines: [{productId: $p, quantity: 2}]}) { id } }",
            json!({ "c": seed.customer, "p": seed.tea }),
        )
        .await;
    let v2 = s(&placed["data"]["placeOrder"]["id"]);
    // …and a v1 event as an older release wrote it (no channel).
    let v1 = uuid::Uuid::new_v4();
    let payload = json!({
        "orderId": v1, "customerId": seed.customer, "customerName": "Ada Lovelace", "customerEmail": "ada@example.com",
        "customerVersion": 1, "totalCents": 1200,
        "lines": [{ "lineNo": 1, "productId": seed.cake, "sku": "CAKE", "title": "Lemon cake", "quantity": 1, "unitPriceCents": 1200 }]
    });
    insert_raw_event(&app, v1, 1, "OrderPlaced", 1, payload).await;
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM event WHERE event_type = 'OrderPlaced' AND event_version = 2").await,
        1
    );
    app.settle().await;
    rebuild_all(&app).await;
    let d = app
        .data(
            "query($a: ID!, $b: ID!, $c: ID!) { a: order(id: $a) { channel totalCents } b: order(id: $b) { channel totalCents lines { title } }
               customer(id: $c) { ordersPlaced lifetimeValueCents } }",
            json!({ "a": v2, "b": v1.to_string(), "c": seed.customer }),
        )
        .await;
    assert_eq!(d["a"]["channel"], "MOBILE");
    assert_eq!(d["b"]["channel"], "UNKNOWN", "v1 is upcast with the default");
    assert_eq!(d["b"]["lines"][0]["title"], "Lemon cake");
    assert_eq!(big(&d["customer"]["ordersPlaced"]), 2);
    assert_eq!(big(&d["customer"]["lifetimeValueCents"]), 900 + 1200);
});

// A rebuild's switch bumps the fence, so a live runner's next batch is
// fenced out. The runner, still the lock holder, must take the projection
// over again and go on (it used to retry its fenced batch forever).
on_both_backends!(the_live_runner_goes_on_after_a_rebuild_switched_its_projection, |app| async {
    let seed = app.seed().await;
    app.settle().await;
    rebuild_all(&app).await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let d = app
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(d["order"]["id"], order.as_str());
});

// A rebuild fills every shadow in parallel on PostgreSQL (one worker per
// projection): a poison event in one of them must still fail the whole
// rebuild, name the event, and leave every live view and status as it was.
on_both_backends!(a_poison_event_fails_a_rebuild_of_every_view_and_leaves_the_live_ones, |app| async {
    let seed = app.seed().await;
    app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    app.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    app.settle().await;
    // A shipment for an order the log never placed: order_summary cannot apply it.
    let ghost = uuid::Uuid::new_v4();
    let payload = json!({ "orderId": ghost, "customerId": seed.customer, "carrier": "DHL", "trackingNumber": "X" });
    insert_raw_event(&app, ghost, 2, "OrderShipped", 1, payload).await;
    let poison_at = app.scalar_i64("SELECT max(position) FROM event").await;
    let names = projection::names();
    let result = rebuild(&app.services.write_db, &app.services.read_db, &options(&names), |_| {}).await;
    match result {
        Err(twofold::projection::rebuild::RebuildError::Poison { position, reason }) => {
            assert_eq!(position, poison_at, "{reason}");
            assert!(reason.contains(&ghost.to_string()), "{reason}");
        }
        other => panic!("expected the poison event to fail the rebuild, got {other:?}"),
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM order_summary").await, 2);
    assert_eq!(app.scalar_i64("SELECT CAST(sum(orders_placed) AS BIGINT) FROM customer_view").await, 2);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM projection_checkpoint WHERE status = 'rebuilding'").await, 0);
    if app.backend == Backend::Postgres {
        let shadows = "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'twofold_rebuild_%'";
        assert_eq!(app.scalar_i64(shadows).await, 0, "the shadows are dropped");
    }
});

// `rebuilding` is believed only while its rebuild reports (issue 33: a
// status that outlives its cause). A rebuild whose process was killed
// leaves the stored label behind: past `SILENT_AFTER` without a report the
// projection shows what its runner says, and a rebuild that reports is
// shown as one.
on_both_backends!(a_rebuild_that_stopped_reporting_is_not_believed, |app| async {
    use sea_orm::ConnectionTrait;
    app.seed().await;
    app.settle().await;
    let backend = app.db.get_database_backend();
    let mark = |reported: chrono::DateTime<chrono::Utc>| {
        sea_orm::Statement::from_sql_and_values(
            backend,
            if backend == sea_orm::DbBackend::Postgres {
                "UPDATE projection_checkpoint SET status = 'rebuilding', rebuild_reported_at = $1 WHERE name = 'order_summary'"
            } else {
                "UPDATE projection_checkpoint SET status = 'rebuilding', rebuild_reported_at = ?1 WHERE name = 'order_summary'"
            },
            [reported.into()],
        )
    };
    let status = || async {
        let list = app.data("{ projections { name status lastError } }", json!({})).await["projections"].clone();
        list.as_array().expect("list").iter().find(|p| p["name"] == "order_summary").expect("order_summary").clone()
    };
    app.db.execute_raw(mark(chrono::Utc::now())).await.expect("a reporting rebuild");
    assert_eq!(status().await["status"], "rebuilding");
    let silent = chrono::Duration::from_std(twofold::projection::rebuild::SILENT_AFTER).expect("bound");
    let long_ago = chrono::Utc::now() - silent - chrono::Duration::seconds(1);
    app.db.execute_raw(mark(long_ago)).await.expect("a rebuild that died");
    let shown = status().await;
    assert_eq!(shown["status"], "running", "{shown}");
    assert!(shown["lastError"].is_null(), "{shown}");
    let (code, body) = {
        let response = app.client.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
        (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("json"))
    };
    assert_eq!((code, body["status"].as_str()), (200, Some("ready")), "{body}");
});
