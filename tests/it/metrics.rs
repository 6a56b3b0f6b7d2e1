//! `/metrics` in Prometheus text format.
use twofold::catalog::Role;

use crate::helpers::*;
use crate::projections::drain;

pub(crate) async fn scrape(app: &TestApp) -> String {
    let r = app.client.get(format!("{}/metrics", app.base)).send().await.expect("scrape");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("type").starts_with("text/plain"));
    r.text().await.expect("text")
}

pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_expose_the_named_series_and_the_lag_gauge_moves() {
    // No projectors running: the views fall behind on purpose.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.role = Role::Api).await.expect("app");
    let seed = app.seed().await;
    app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let rejected = app.cancel_order(&uuid::Uuid::new_v4().to_string(), None).await;
    assert_eq!(code(&rejected), "NOT_FOUND");

    let text = scrape(&app).await;
    for series in [
        "twofold_commands_total{command=\"PlaceOrder\",outcome=\"ok\"}",
        "twofold_commands_total{command=\"CancelOrder\",outcome=\"not_found\"}",
        "twofold_command_duration_seconds_bucket{command=\"PlaceOrder\"",
        "twofold_events_appended_total",
        "twofold_projection_checkpoint_position{projection=\"order_summary\"}",
        "twofold_projection_lag_events{projection=\"order_summary\"}",
        "twofold_dead_letters_total{projection=\"order_summary\"}",
        "twofold_rebuild_progress_ratio{projection=\"order_summary\"}",
        "twofold_ws_connections",
        "twofold_subscriptions_active",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    let lag = value(&text, "twofold_projection_lag_events{projection=\"order_summary\"}").expect("lag");
    assert_eq!(lag, app.event_count().await as f64, "paused projector: the whole log is pending");

    drain(&app).await;
    let text = scrape(&app).await;
    assert_eq!(value(&text, "twofold_projection_lag_events{projection=\"order_summary\"}"), Some(0.0));
    assert!(text.contains("twofold_projection_batch_size_bucket{projection=\"order_summary\""), "{text}");
    assert!(text.contains("twofold_projection_batch_duration_seconds_bucket"));
    assert!(text.contains("twofold_notice_latency_seconds_bucket"));
    app.stop().await;
}
