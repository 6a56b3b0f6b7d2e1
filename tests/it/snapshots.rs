//! Recovery snapshots: a rebuild from a snapshot taken mid-stream gives the
//! rows a rebuild from event zero gives; snapshots of another projection
//! version, damaged or missing files are refused with one clear line.
//! SQLite only: on PostgreSQL both commands are refused for now (tested
//! below), so there is nothing else to test there yet.
use sea_orm::ConnectionTrait;
use twofold::projection::rebuild::{rebuild, RebuildOptions};
use twofold::projection::recovery::{self, SnapshotError};

use crate::helpers::*;
use crate::projections::{dump, history};

fn all_views() -> Vec<String> {
    twofold::catalog::View::names().into_iter().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_from_a_mid_stream_snapshot_equals_one_from_zero() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let seed = history(&app).await;
    app.settle().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("views.snapshot");
    recovery::create(&app.services.read_db, &file).await.expect("snapshot");
    // Events keep arriving after the snapshot.
    for _ in 0..5 {
        app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    }
    let (late, _) = app.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    app.ship_order(&late).await;
    app.settle().await;
    let events = u64::try_from(app.event_count().await).expect("count");
    let reports = recovery::rebuild_from(&app.services.write_db, &app.services.read_db, &file, &all_views(), 7, |_| {})
        .await
        .expect("rebuild from the snapshot");
    assert!(reports.iter().all(|r| r.events < events), "only the events after the snapshot are replayed: {reports:?}");
    app.settle().await;
    let from_snapshot = dump(&app.db).await;
    let options =
        RebuildOptions { projections: all_views(), until: None, copy_name: None, batch_size: 7, from_snapshot: None };
    rebuild(&app.services.write_db, &app.services.read_db, &options, |_| {}).await.expect("rebuild from zero");
    app.settle().await;
    assert_eq!(dump(&app.db).await, from_snapshot, "every view, every row, every column");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_of_another_projection_version_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    history(&app).await;
    app.settle().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("views.snapshot");
    recovery::create(&app.services.read_db, &file).await.expect("snapshot");
    assert!(matches!(recovery::create(&app.services.read_db, &file).await, Err(SnapshotError::Exists(_))));
    // Plant another version of one view in the file.
    let planted =
        twofold::db::Db::connect_dedicated(&format!("sqlite://{}?mode=rw", file.display())).await.expect("open");
    planted
        .conn
        .execute_unprepared("UPDATE twofold_snapshot SET projection_version = 99 WHERE view = 'daily_sales'")
        .await
        .expect("plant");
    planted.conn.close().await.expect("close");
    let before = dump(&app.db).await;
    let refused = recovery::rebuild_from(&app.services.write_db, &app.services.read_db, &file, &all_views(), 7, |_| {})
        .await
        .expect_err("another version is refused");
    let message = refused.to_string();
    assert!(matches!(refused, SnapshotError::OtherVersion { .. }), "{message}");
    assert!(
        message.contains("daily_sales") && message.contains("version 99") && message.contains("expects version 1"),
        "{message}"
    );
    // The views it would not touch can still come from it.
    recovery::rebuild_from(
        &app.services.write_db,
        &app.services.read_db,
        &file,
        &["order_summary".to_owned()],
        7,
        |_| {},
    )
    .await
    .expect("a view whose version matches");
    app.settle().await;
    assert_eq!(dump(&app.db).await, before);
    // Missing, not a snapshot, truncated: one clear line each.
    let missing = recovery::check(&dir.path().join("nope"), &twofold::catalog::View::ALL).await.expect_err("missing");
    assert!(missing.to_string().starts_with("no snapshot at"), "{missing}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a database at all, just words").expect("write");
    let junk = recovery::check(&junk, &twofold::catalog::View::ALL).await.expect_err("junk");
    assert!(junk.to_string().contains("is not a Twofold snapshot"), "{junk}");
    let bytes = std::fs::read(&file).expect("read");
    let cut = dir.path().join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let cut = recovery::check(&cut, &twofold::catalog::View::ALL).await.expect_err("truncated");
    assert!(cut.to_string().contains("is not a Twofold snapshot"), "{cut}");
    assert!(!cut.to_string().contains('\n'));
    app.stop().await;
}

/// On PostgreSQL, where snapshots are not built yet, the refusal is clear
/// and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_on_postgres_is_refused_clearly() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("views.snapshot");
    let refused = recovery::create(&app.services.read_db, &file).await.expect_err("refused");
    assert!(matches!(refused, SnapshotError::Unsupported), "{refused}");
    assert!(refused.to_string().contains("PostgreSQL is not supported yet"), "{refused}");
    assert!(!file.exists(), "nothing written");
    app.stop().await;
}
