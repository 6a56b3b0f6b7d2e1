//! Recovery snapshots, on both stores: a rebuild from a snapshot taken
//! mid-stream gives the rows a rebuild from event zero gives; a snapshot
//! taken on PostgreSQL while commands run holds every view as of one
//! moment; a file written by one store restores on the other; snapshots of
//! another projection version, damaged or missing files are refused with
//! one clear line.
use sea_orm::ConnectionTrait;
use twofold::db::Db;
use twofold::projection::portable::Table;
use twofold::projection::rebuild::{rebuild, RebuildOptions};
use twofold::projection::recovery::{self, SnapshotError};

use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::{dump, history};

fn all_views() -> Vec<String> {
    twofold::catalog::View::names().into_iter().map(str::to_owned).collect()
}

/// The snapshot file, opened read-only.
async fn open(file: &std::path::Path) -> Db {
    Db::connect_dedicated(&format!("sqlite://{}?mode=ro", file.display())).await.expect("open the snapshot")
}

/// Each view's checkpoint, `(name, tx_id, position)`, views only, by name.
async fn checkpoints(db: &impl ConnectionTrait) -> Vec<(String, i64, i64)> {
    let views = all_views().iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT name, last_tx_id, last_position FROM projection_checkpoint WHERE name IN ({views}) ORDER BY name"
            ),
        ))
        .await
        .expect("checkpoints");
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "name").expect("name"),
                r.try_get("", "last_tx_id").expect("tx"),
                r.try_get("", "last_position").expect("position"),
            )
        })
        .collect()
}

/// PostgreSQL's search documents (the trigger-kept tsvectors) of the three
/// searchable views, as text, by key; nothing on SQLite (its FTS5 tables
/// are contentless and follow the view through their triggers).
async fn search_documents(app: &TestApp) -> Vec<String> {
    if app.backend != Backend::Postgres {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (table, key) in
        [("order_summary", "order_id"), ("customer_view", "customer_id"), ("product_catalog", "product_id")]
    {
        let rows = app
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT {key}::text || ' ' || coalesce(search::text, 'NULL') AS doc FROM {table} ORDER BY {key}"
                ),
            ))
            .await
            .expect("search documents");
        out.extend(rows.iter().map(|r| r.try_get::<String>("", "doc").expect("doc")));
    }
    out
}

/// What the views' tables are besides their rows: each one's indexes,
/// constraints and triggers with their definitions, and (PostgreSQL)
/// whether it is logged. A rebuild must leave this as the migrations made it.
async fn table_definitions(app: &TestApp) -> Vec<String> {
    let views = all_views().iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
    let sql = match app.backend {
        Backend::Postgres => format!(
            "SELECT tablename || ' index ' || indexname || ': ' || indexdef AS d FROM pg_indexes \
             WHERE schemaname = 'public' AND tablename IN ({views}) \
             UNION ALL SELECT c.relname || ' trigger ' || t.tgname || ': ' || pg_get_triggerdef(t.oid) \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace AND c.relname IN ({views}) \
             UNION ALL SELECT c.relname || ' constraint ' || k.conname || ': ' || pg_get_constraintdef(k.oid) \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({views}) \
             UNION ALL SELECT c.relname || ' persistence ' || c.relpersistence::text FROM pg_class c \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({views}) ORDER BY 1"
        ),
        Backend::Sqlite => format!(
            "SELECT tbl_name || ' ' || type || ' ' || name || ': ' || coalesce(sql, '') AS d FROM sqlite_master \
             WHERE tbl_name IN ({views}) ORDER BY 1"
        ),
    };
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .expect("table definitions");
    rows.iter().map(|r| r.try_get::<String>("", "d").expect("definition")).collect()
}

on_both_backends!(a_rebuild_from_a_mid_stream_snapshot_equals_one_from_zero, |app| async {
    let seed = history(&app).await;
    app.settle().await;
    let migrated = table_definitions(&app).await;
    assert!(
        migrated
            .iter()
            .any(|d| d.starts_with("order_summary index") && !d.contains("_pkey") && !d.contains("autoindex")),
        "secondary indexes are compared too: {migrated:#?}"
    );
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
    assert!(from_snapshot["order_summary"].len() > 6, "the rows came back");
    let documents = search_documents(&app).await;
    assert_eq!(table_definitions(&app).await, migrated, "a restore leaves each view's indexes as they were");
    let options =
        RebuildOptions { projections: all_views(), until: None, copy_name: None, batch_size: 7, from_snapshot: None };
    rebuild(&app.services.write_db, &app.services.read_db, &options, |_| {}).await.expect("rebuild from zero");
    app.settle().await;
    assert_eq!(dump(&app.db).await, from_snapshot, "every view, every row, every column");
    assert_eq!(search_documents(&app).await, documents, "the search documents too");
    assert_eq!(table_definitions(&app).await, migrated, "and so does a rebuild from zero");
});

on_both_backends!(a_snapshot_of_another_projection_version_is_refused, |app| async {
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
});

/// On PostgreSQL the copy takes many statements: commands land (and the
/// projectors apply them) between its batches, and the file still holds
/// every view as of the moment it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_on_postgres_holds_one_moment_while_commands_run() {
    let Some(app) = TestApp::spawn_postgres().await else { return };
    let seed = history(&app).await;
    for _ in 0..4 {
        app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    }
    app.settle().await;
    // Settled: every view stands at the head of the log, and these rows are its fold.
    let before = dump(&app.db).await;
    let head = checkpoints(&app.db).await;
    let first = &head[0];
    assert!(head.iter().all(|(_, tx, position)| (*tx, *position) == (first.1, first.2)), "{head:?}");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("views.snapshot");
    let mut batches = Vec::new();
    recovery::create_with(&app.services.read_db, &file, 2, |table, rows| {
        let changing = batches.is_empty();
        batches.push((table, rows));
        let (app, seed) = (&app, &seed);
        async move {
            if changing {
                // After the first two rows of the first view: change every view.
                let (late, _) = app.place_order(&seed.customer, &[(&seed.cake, 3)]).await;
                assert!(app.ship_order(&late).await.get("errors").is_none());
                app.settle().await;
            }
        }
    })
    .await
    .expect("snapshot");
    assert_eq!(batches[0], (Table::View(twofold::catalog::View::OrderSummary), 2), "{batches:?}");
    assert!(batches.len() > Table::all().count() + 1, "copied in batches: {batches:?}");
    let after = dump(&app.db).await;
    assert_ne!(after, before, "the views moved while the snapshot ran");
    assert_ne!(checkpoints(&app.db).await, head);
    let snapshot = open(&file).await;
    assert_eq!(checkpoints(&snapshot.conn).await, head, "every view's checkpoint, as of one moment");
    assert_eq!(dump(&snapshot.conn).await, before, "every view's rows, as of that same moment");
    snapshot.conn.close().await.expect("close");
    app.stop().await;
}

/// `rows` as PostgreSQL holds them: its timestamps keep microseconds
/// (SQLite keeps the nanoseconds it was given; the encoder truncates).
fn to_microseconds(rows: &std::collections::BTreeMap<&'static str, Vec<serde_json::Value>>) -> serde_json::Value {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
                    let at = at.with_timezone(&chrono::Utc);
                    let micros = chrono::Duration::microseconds(at.timestamp_micros());
                    let truncated = chrono::DateTime::UNIX_EPOCH + micros;
                    *value = serde_json::to_value(truncated).expect("a timestamp");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(rows).expect("rows");
    walk(&mut value);
    value
}

/// The file is the same on both stores: one written from PostgreSQL
/// restores on SQLite and one written from SQLite restores on PostgreSQL,
/// row for row (into fresh databases, whose empty logs add nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_restores_on_the_other_store() {
    let Some(postgres) = TestApp::spawn_postgres().await else { return };
    let sqlite = TestApp::spawn(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut files = Vec::new();
    for app in [&postgres, &sqlite] {
        history(app).await;
        app.settle().await;
        let file = dir.path().join(format!("{:?}.snapshot", app.backend));
        recovery::create(&app.services.read_db, &file).await.expect("snapshot");
        files.push((file, dump(&app.db).await));
    }
    let fresh_postgres = TestApp::spawn_postgres().await.expect("postgres");
    let fresh_sqlite = TestApp::spawn(Backend::Sqlite).await;
    // PostgreSQL's file on SQLite (exactly: SQLite keeps what PostgreSQL
    // held), SQLite's on PostgreSQL (to the microsecond, all it keeps).
    assert_eq!(to_microseconds(&files[0].1), serde_json::to_value(&files[0].1).expect("rows"));
    assert_ne!(
        to_microseconds(&files[1].1),
        serde_json::to_value(&files[1].1).expect("rows"),
        "SQLite kept nanoseconds"
    );
    for (target, (file, rows)) in [(&fresh_sqlite, &files[0]), (&fresh_postgres, &files[1])] {
        let held = |rows| match target.backend {
            Backend::Sqlite => serde_json::to_value(rows).expect("rows"),
            Backend::Postgres => to_microseconds(rows),
        };
        assert_eq!(target.event_count().await, 0, "a fresh log");
        recovery::rebuild_from(&target.services.write_db, &target.services.read_db, file, &all_views(), 7, |_| {})
            .await
            .expect("a restore from the other store's file");
        assert_eq!(rows["order_summary"].len(), 3, "{rows:?}");
        assert_eq!(held(&dump(&target.db).await), held(rows), "{:?} from {}", target.backend, file.display());
    }
    let orders_found = fresh_postgres
        .scalar_i64("SELECT count(*) FROM order_summary WHERE search @@ to_tsquery('simple', 'ada')")
        .await;
    assert_eq!(orders_found, 2, "the search documents are computed on the way in");
    for app in [postgres, sqlite, fresh_postgres, fresh_sqlite] {
        app.stop().await;
    }
}
