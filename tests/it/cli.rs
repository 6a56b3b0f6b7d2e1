//! The binary: start-up errors name their cause (`error: …`, then
//! `caused by: …`) and exit non-zero at once unless they may clear by
//! themselves (then `serve` retries, logging the cause); SIGTERM lets
//! in-flight requests finish; `schema` prints the SDL.
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::Server;

fn twofold(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twofold")).args(args).env("RUST_LOG", "off").output().expect("run twofold")
}

fn one_error_line(output: &std::process::Output) -> String {
    let stderr = error_report(output);
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    stderr
}

/// The error `main` printed: `error: …`, then a `  caused by: …` line per cause.
fn error_report(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    // Log lines (at the level the test asked for) come first; the report ends the output.
    let start = stderr.rfind("\nerror: ").map_or(0, |i| i + 1);
    let report = stderr[start..].to_owned();
    assert!(report.starts_with("error: "), "{stderr}");
    assert!(report.lines().skip(1).all(|l| l.starts_with("  caused by: ")), "{stderr}");
    report
}

/// Longer than any honest run on a loaded machine: a test that asserts a
/// command does not retry uses it only so that a regression fails instead
/// of passing slowly (`serve` is given a 30 s start-up limit there, so a
/// retrying one ends too).
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `twofold <args>` in `dir`, logging at `warn`: its output and how long it took.
fn timed(args: &[&str], dir: &std::path::Path) -> (std::process::Output, Duration) {
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .expect("run twofold");
    (output, started.elapsed())
}

/// A database that cannot come back without a person (a SQLite file that
/// does not exist without `?mode=rwc`, code 14; a directory that does not
/// exist; a PostgreSQL database that does not exist, `3D000`): `serve`
/// exits without a second try, naming the cause, instead of retrying for ever.
#[test]
fn a_database_that_cannot_clear_by_itself_ends_serve_at_once_with_its_cause() {
    let dir = tempfile::tempdir().expect("dir");
    let missing_dir = format!("sqlite://{}?mode=rwc", dir.path().join("no/such/dir/t.db").display());
    let mut cases = vec![
        ("sqlite://nonexist.db".to_owned(), "unable to open database file"),
        (missing_dir, "unable to open database file"),
    ];
    if let Ok(pg) = std::env::var("TWOFOLD_TEST_PG_URL") {
        cases.push((format!("{}/doesnotexist", pg.trim_end_matches('/')), "does not exist"));
    }
    for (url, cause) in cases {
        let (output, took) = timed(
            &["serve", "--bind", "127.0.0.1:0", "--database-url", &url, "--startup-timeout-ms", "30000"],
            dir.path(),
        );
        let report = error_report(&output);
        // "At once" is that it never tried again (a retry logs "cannot start
        // yet" at warn); the bound only keeps a regression from hanging CI.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("cannot start yet"), "{url}: it retried: {stderr}");
        assert!(took < HANG_GUARD, "{url}: took {took:?}");
        assert!(report.contains("cannot connect to"), "{report}");
        assert!(report.contains(cause), "{url}: {report}");
        assert!(!report.contains("retrying"), "{report}");
    }
    assert!(!dir.path().join("nonexist.db").exists(), "no file was created");
}

/// A refused connection may clear: `serve` keeps trying, each try's log
/// line naming the real cause (never a pool time-out); the open-mode
/// banner is printed once; `/readyz` (and every other path) tells anyone
/// the database's kind, never its host, port or name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_database_is_retried_with_its_cause_and_readyz_names_only_its_kind() {
    let url = "postgres://postgres:secret@127.0.0.1:1/hidden_name";
    let mut server = Server::start_early(&["--database-url", url]).await;
    server.wait_for_log("Connection refused", 2).await;
    let client = http_client();
    let ready = client.get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["status"], "starting", "{body}");
    assert_eq!(body["database"], "postgres", "{body}");
    assert_eq!(body["lastError"], "connection refused", "{body}");
    let other = client.get(format!("{}/graphql?query=%7Bviewer%7Brole%7D%7D", server.base)).send().await.expect("get");
    assert_eq!(other.status(), 503);
    let other = other.text().await.expect("body");
    assert!(other.contains("postgres database"), "{other}");
    for shown in [&text, &other] {
        for secret in ["127.0.0.1:1", "hidden_name", "secret", "postgres://"] {
            assert!(!shown.contains(secret), "{secret} shown to anyone: {shown}");
        }
    }
    server.terminate();
    let exit = server.exit_status(Duration::from_secs(10)).await;
    let log = server.stderr();
    assert!(!exit.success(), "cancelled before it started: {log}");
    let tries: Vec<&str> = log.lines().filter(|l| l.contains("cannot start yet")).collect();
    assert!(tries.len() >= 2, "{log}");
    assert!(tries.iter().all(|l| l.contains("Connection refused") && !l.contains("pool timed out")), "{log}");
    assert_eq!(log.matches("OPEN DEVELOPMENT MODE").count(), 1, "the banner once: {log}");
}

/// `migrate` against a port where nothing listens fails at once, saying so.
#[test]
fn migrate_against_a_refused_port_fails_at_once_saying_connection_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, took) = timed(&["migrate", "--database-url", "postgres://postgres@127.0.0.1:1/none"], dir.path());
    let report = error_report(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("cannot start yet"), "it retried: {stderr}");
    assert!(took < HANG_GUARD, "took {took:?}");
    assert!(report.to_lowercase().contains("connection refused"), "{report}");
}

/// `migrate` says what it did; the open-mode banner is `serve`'s alone;
/// a bad projection or mode names the valid ones.
#[test]
fn operator_commands_say_what_they_did_and_name_valid_values_and_never_print_the_banner() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let (first, _) = timed(&["migrate", "--database-url", &url], dir.path());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied"), "{first:?}");
    let (again, _) = timed(&["migrate", "--database-url", &url], dir.path());
    assert!(String::from_utf8_lossy(&again.stdout).contains("the schema is current"), "{again:?}");
    let demo = ["demo-data", "--customers", "1", "--products", "1", "--orders", "1", "--database-url", &url];
    for args in [&["migrate", "--database-url", &url][..], &["rebuild", "--all", "--database-url", &url], &demo] {
        let (out, _) = timed(args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("OPEN DEVELOPMENT MODE"), "{args:?}");
    }
    let (nosuch, _) = timed(&["rebuild", "nosuch", "--database-url", &url], dir.path());
    let report = error_report(&nosuch);
    assert!(report.contains("unknown projection 'nosuch'") && report.contains("order_summary"), "{report}");
    let (mode, _) = timed(&["serve", "--projection-mode", "order_summary=eager"], dir.path());
    let stderr = String::from_utf8_lossy(&mode.stderr);
    assert!(stderr.contains("'eager' is not one of async, inline, lazy"), "{stderr}");
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let line = one_error_line(&twofold(&["serve", "--bind", "127.0.0.1:0", "--database-url", "mysql://nope"]));
    assert!(line.contains("unsupported database URL"), "{line}");
}

/// `serve` waits for a refused database (no limit by default, see above);
/// with `--startup-timeout-ms` it gives up after that, naming the cause.
#[test]
fn an_unreachable_database_names_its_cause_once_the_startup_timeout_passes() {
    let report = error_report(&twofold(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        "postgres://postgres:secret@127.0.0.1:1/none",
        "--startup-timeout-ms",
        "300",
    ]));
    assert!(
        report.contains("cannot connect to postgres://postgres:***@127.0.0.1:1/none"),
        "the password is redacted: {report}"
    );
    assert!(report.contains("Connection refused"), "{report}");
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let report = error_report(&twofold(&["serve", "--bind", &addr, "--database-url", &url]));
    assert!(report.contains(&format!("cannot listen on {addr}")), "{report}");
    assert!(report.contains("caused by: Address already in use"), "{report}");
}

#[test]
fn bad_flags_are_refused_with_usage() {
    let out = twofold(&["serve", "--projection-mode", "nonsense=inline"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown projection 'nonsense'"));
}

#[test]
fn schema_prints_the_sdl() {
    let out = twofold(&["schema"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), twofold::graphql::sdl());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut server =
        Server::start_logging(&["--database-url", &url, "--consistency-wait-ms", "1500"], "twofold::http=debug").await;
    let client = http_client();
    // A request that takes 1.5 s (waiting for a token that never comes)…
    let slow = {
        let (client, base) = (client.clone(), server.base.clone());
        tokio::spawn(async move {
            let body = json!({ "query": "{ orders(consistentWith: \"999999999.1\") { edges { node { id } } } }" });
            client
                .post(format!("{base}/graphql"))
                .json(&body)
                .send()
                .await
                .expect("answered")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    server.wait_for_log("executing a GraphQL request", 1).await;
    // …is still answered after SIGTERM, and then the process exits cleanly.
    server.terminate();
    let answer = slow.await.expect("task");
    assert_eq!(code(&answer), "NOT_VISIBLE_YET");
    let exit = server.exit_status(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}: {}", server.stderr());
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_a_timeout_error() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.http.request_timeout = Duration::from_millis(200))
        .await
        .expect("app");
    let r = app.gql("{ orders(consistentWith: \"999999999.1\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(code(&r), "TIMEOUT");
    app.stop().await;
}

#[test]
fn help_never_prints_secrets_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["serve", "--help"])
        .env("DATABASE_URL", "postgres://app:hunter2@db.internal/twofold")
        .env("READ_DATABASE_URL", "postgres://app:hunter3@replica/twofold")
        .env(
            "TWOFOLD_REPLICA_URLS",
            "postgres://app:hunter4@standby-1/twofold,postgres://app:hunter5@standby-2/twofold",
        )
        .env("TWOFOLD_ADMIN_TOKEN", "s3cret-token")
        .env("TWOFOLD_JWT_SECRET", "jwt-s3cret-jwt-s3cret-jwt-s3cret!!")
        .output()
        .expect("run twofold");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--database-url"), "{help}");
    assert!(help.contains("--replica-url"), "{help}");
    for secret in ["hunter2", "hunter3", "hunter4", "hunter5", "s3cret-token", "jwt-s3cret"] {
        assert!(!help.contains(secret), "--help printed {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_retried_and_skipped_from_the_command_line() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = app.database.url.clone();
    let seed = app.seed().await;
    // A shipment for an order the log never placed: order_summary stops on it.
    let ghost = uuid::Uuid::new_v4();
    let payload = json!({ "orderId": ghost, "customerId": seed.customer, "carrier": "DHL", "trackingNumber": "X" });
    crate::projections::insert_raw_event(&app, ghost, 2, "OrderShipped", 1, payload).await;
    let stopped = || async {
        app.data("{ projections { name status } }", json!({})).await["projections"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "order_summary" && p["status"] == "stopped")
    };
    let wait_stopped = || async {
        let mut changes = app.changes();
        while !stopped().await {
            changes.next("order_summary to stop").await;
        }
    };
    wait_stopped().await;
    let list = twofold(&["dead-letters", "list", "--database-url", &url]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    let row = listed.lines().find(|l| l.contains("OrderShipped")).unwrap_or_else(|| panic!("listed: {listed}"));
    let id = row.split_whitespace().next().expect("id").to_owned();
    // Retry: the projection tries again, fails again, and stops again.
    let retry = twofold(&["dead-letters", "retry", &id, "--database-url", &url]);
    assert!(retry.status.success(), "{}", String::from_utf8_lossy(&retry.stderr));
    assert!(String::from_utf8_lossy(&retry.stdout).contains("retried"));
    wait_stopped().await;
    // Skip: the projection moves past the event and serves the next write.
    let skip = twofold(&["dead-letters", "skip", &id, "--database-url", &url]);
    assert!(skip.status.success(), "{}", String::from_utf8_lossy(&skip.stderr));
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let d = app
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(d["order"]["id"], order.as_str());
    let again = twofold(&["dead-letters", "skip", &id, "--database-url", &url]);
    assert!(one_error_line(&again).contains("already skipped"));
    let all = twofold(&["dead-letters", "list", "--all", "--database-url", &url]);
    assert!(String::from_utf8_lossy(&all.stdout).contains("skipped"));
    app.stop().await;
}

#[test]
fn token_mints_a_token_the_server_accepts_and_refuses_a_customer_without_an_id() {
    let secret = "cli-test-secret-cli-test-secret-32b";
    let id = uuid::Uuid::new_v4();
    let out = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["token", "--role", "customer", "--customer-id", &id.to_string(), "--ttl", "5m"])
        .env("TWOFOLD_JWT_SECRET", secret)
        .env("RUST_LOG", "off")
        .output()
        .expect("run twofold");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let settings = twofold::auth::AuthSettings { jwt_secret: Some(secret.into()), ..Default::default() };
    let auth = twofold::auth::Authenticator::from_settings(&settings).expect("keys");
    let actor = auth.authenticate(Some(&format!("Bearer {token}"))).expect("a valid token").actor;
    assert_eq!(actor, twofold::domain::Actor::customer(id.to_string(), id));
    let refused = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["token", "--role", "customer"])
        .env("TWOFOLD_JWT_SECRET", secret)
        .output()
        .expect("run twofold");
    assert!(one_error_line(&refused).contains("--customer-id"));
    let no_secret = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["token", "--role", "staff"])
        .env_remove("TWOFOLD_JWT_SECRET")
        .output()
        .expect("run twofold");
    assert!(one_error_line(&no_secret).contains("TWOFOLD_JWT_SECRET"));
}
