//! The binary: start-up errors are one clear line and a non-zero exit;
//! SIGTERM lets in-flight requests finish; `schema` prints the SDL.
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::Server;

fn twofold(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twofold")).args(args).env("RUST_LOG", "off").output().expect("run twofold")
}

fn one_error_line(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(stderr.starts_with("twofold: "), "{stderr}");
    stderr
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let line = one_error_line(&twofold(&["serve", "--bind", "127.0.0.1:0", "--database-url", "mysql://nope"]));
    assert!(line.contains("unsupported database URL"), "{line}");
}

/// `serve` waits for its database (no limit by default, see `faults.rs`);
/// with `--startup-timeout-ms` it gives up after that, in one clear line.
#[test]
fn an_unreachable_database_is_one_clear_line_once_the_startup_timeout_passes() {
    let line = one_error_line(&twofold(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        "postgres://postgres:secret@127.0.0.1:1/none",
        "--startup-timeout-ms",
        "300",
    ]));
    assert!(
        line.contains("cannot connect to postgres://postgres:***@127.0.0.1:1/none"),
        "the password is redacted: {line}"
    );
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let line = one_error_line(&twofold(&["serve", "--bind", &addr, "--database-url", &url]));
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
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
