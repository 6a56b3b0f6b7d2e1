//! Read replicas against a real hot standby (`.ci/standby.sh`: 127.0.0.1:5433,
//! replaying 300 ms behind the primary). Instance A writes on the primary;
//! instance B (`--role api`) serves its queries from the standby. A client
//! that waited for its write (`consistentWith`, `writeVisible`) reads it on
//! B: through the apply delay, a longer one, and the standby's outage.
//!
//! These tests share the one standby and some stop or reconfigure it: they
//! run one at a time (`STANDBY`).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{json, Value};
use twofold::catalog::Role;
use twofold::db::replica::ReplicaState;
use twofold::settings::Settings;

use crate::helpers::*;
use crate::process::Server;
use crate::ws_client::{Protocol, WsClient};

/// One test at a time on the shared standby.
static STANDBY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The standby's `postgres` database (its statistics, its settings).
struct Standby {
    base: String,
    admin: DatabaseConnection,
}

/// The standby's counters for one database (`pg_stat_database`).
#[derive(Debug, Clone, Copy)]
struct Stats {
    xact_commit: i64,
    xact_rollback: i64,
    tup_returned: i64,
}

impl Standby {
    async fn connect() -> Option<Self> {
        let base = replica_base_url()?;
        let admin = Database::connect(format!("{base}/postgres")).await.expect("connect to the standby");
        Some(Self { base, admin })
    }

    async fn text(&self, sql: &str) -> String {
        let row = self
            .admin
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql} on the standby: {e}"))
            .expect("a row");
        row.try_get_by_index::<String>(0).expect("text")
    }

    /// Waits (bounded: the standby offers no signal) until it has replayed
    /// the creation of `name`, its tables and the checkpoint rows.
    async fn wait_for_database(&self, name: &str) -> DatabaseConnection {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(conn) = Database::connect(format!("{}/{name}", self.base)).await {
                let rows = conn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT count(*) FROM projection_checkpoint".to_owned(),
                    ))
                    .await;
                if let Ok(Some(row)) = rows {
                    if row.try_get_by_index::<i64>(0).unwrap_or(0) > 0 {
                        return conn;
                    }
                }
                let _ = conn.close().await;
            }
            assert!(Instant::now() < deadline, "the standby did not replay database {name} within a minute");
            // WAL replay on the standby announces nothing (see the doc comment).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stats(&self, name: &str) -> Stats {
        let row = self
            .admin
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT xact_commit, xact_rollback, tup_returned FROM pg_stat_database WHERE datname = $1",
                [name.into()],
            ))
            .await
            .expect("pg_stat_database on the standby")
            .expect("the test database's row");
        Stats {
            xact_commit: row.try_get_by_index(0).expect("xact_commit"),
            xact_rollback: row.try_get_by_index(1).expect("xact_rollback"),
            tup_returned: row.try_get_by_index(2).expect("tup_returned"),
        }
    }

    /// Waits (bounded: statistics reach `pg_stat_database` within a second
    /// or so of activity, at most ~10 s after a session goes idle) until
    /// `name`'s counters pass `enough`.
    async fn wait_for_stats(&self, name: &str, enough: impl Fn(Stats) -> bool) -> Stats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.stats(name).await;
            if enough(now) {
                return now;
            }
            assert!(Instant::now() < deadline, "the standby's statistics for {name} never got there: {now:?}");
            // PostgreSQL flushes session statistics on its own schedule and
            // announces nothing: only looking again tells.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A on the primary (runs the projectors), B served by the standby.
struct Pair {
    a: Arc<TestApp>,
    b: Arc<TestApp>,
    standby: Standby,
    /// The test database on the standby.
    on_standby: DatabaseConnection,
    name: String,
}

impl Pair {
    async fn start() -> Option<Self> {
        let standby = Standby::connect().await?;
        let a = TestApp::spawn_postgres().await?;
        let name = a.database.url.rsplit('/').next().expect("a database name").to_owned();
        let on_standby = standby.wait_for_database(&name).await;
        let mut settings = Settings::for_database(&a.database.url);
        settings.role = Role::Api;
        settings.runtime.poll_interval = Duration::from_millis(200);
        settings.replica_urls = vec![format!("{}/{name}", standby.base)];
        settings.reads_pool.max_connections = 8;
        // B sends no commands: a small write pool leaves the shared server's connections to others.
        settings.commands_pool.max_connections = 2;
        // The trials' waits are the contract's subject, not their speed: a
        // `consistentWith` that ran out of the default 2 s while the standby
        // left or rejoined rotation on a loaded machine failed a trial
        // (NOT_VISIBLE_YET) though nothing stale was shown. They get the
        // longest wait a client may ask for.
        settings.consistency.default_wait = settings.consistency.max_wait;
        let b = TestApp::start(TestDatabase::external(a.database.url.clone()), settings).await;
        let pair = Self { a: Arc::new(a), b: Arc::new(b), standby, on_standby, name };
        pair.until_replica(ReplicaState::InRotation, Duration::from_secs(30)).await;
        Some(pair)
    }

    fn replica_state(&self) -> ReplicaState {
        self.b.services.replicas.as_ref().expect("B has replicas").report()[0].state
    }

    /// Waits (bounded) for B's measure of its replica to reach `state`.
    async fn until_replica(&self, state: ReplicaState, within: Duration) {
        let replicas = self.b.services.replicas.as_ref().expect("B reads from a replica");
        let mut changes = replicas.changes();
        let deadline = tokio::time::Instant::now() + within;
        while self.replica_state() != state {
            let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
            assert!(
                matches!(changed, Ok(Ok(()))),
                "B's replica is {:?}, not {state:?}: {:?}",
                self.replica_state(),
                replicas.report()
            );
        }
    }

    /// 200 reads of a page of 50 orders on B show up in the standby's own
    /// statistics for the test database (≥ 10,000 rows returned: more than
    /// its health checks read in minutes).
    async fn assert_queries_run_on_the_standby(&self) {
        let before = self.standby.stats(&self.name).await;
        for _ in 0..200 {
            let page = self.b.data("{ orders(first: 50) { edges { node { id } } } }", json!({})).await;
            assert_eq!(page["orders"]["edges"].as_array().map(Vec::len), Some(50), "{page}");
        }
        let after = self.standby.wait_for_stats(&self.name, |s| s.tup_returned - before.tup_returned >= 10_000).await;
        assert!(
            after.xact_commit - before.xact_commit >= 200,
            "B's reads committed on the standby: {before:?} → {after:?}"
        );
    }

    async fn stop(self) {
        let Self { a, b, on_standby, .. } = self;
        let _ = on_standby.close().await;
        Arc::try_unwrap(b).ok().expect("B is no longer shared").stop().await;
        Arc::try_unwrap(a).ok().expect("A is no longer shared").stop().await;
    }
}

/// What the trials saw.
#[derive(Default)]
struct Tally {
    trials: AtomicUsize,
    /// Signalled as each trial starts (what [`Tally::until_trials`] waits on).
    trial_started: tokio::sync::Notify,
    /// Reads on B, after a wait said the write was visible, that missed it.
    stale: AtomicUsize,
    /// Anything else that went wrong (a GraphQL error, a wait that ended "not visible").
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn trials(&self) -> usize {
        self.trials.load(Ordering::Relaxed)
    }

    async fn until_trials(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // Registered before the count is read, so a trial starting in
            // between still wakes this wait.
            let started = self.trial_started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            if self.trials() >= n {
                return;
            }
            let woke = tokio::time::timeout_at(deadline, started).await;
            assert!(woke.is_ok(), "only {} of {n} trials in a minute", self.trials());
        }
    }
}

/// Trials until `limit` (or `tally.stop`): an order placed on A, then on B
/// either a query with `consistentWith` its token, or `writeVisible` and a
/// plain query. Each must show the order.
async fn worker(a: Arc<TestApp>, b: Arc<TestApp>, tally: Arc<Tally>, limit: usize) {
    let (customer, _) = a.register_customer("Grace", &format!("grace-{}@example.com", short())).await;
    let (product, _) = a.add_product(&format!("TEA-{}", short()), "Tea", 450).await;
    let mut ws = WsClient::connect(&b.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    loop {
        if tally.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = tally.trials.fetch_add(1, Ordering::Relaxed);
        tally.trial_started.notify_waiters();
        if n >= limit {
            break;
        }
        let (order, token) = a.place_order(&customer, &[(&product, 1)]).await;
        let shown = if n.is_multiple_of(2) {
            let r = b
                .gql(
                    "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
                    json!({ "id": order, "t": token }),
                )
                .await;
            if r.get("errors").is_some() {
                tally.fail(format!("consistentWith {token}: {r}"));
                continue;
            }
            r["data"]["order"]["id"] == order.as_str()
        } else {
            let id = format!("v{n}");
            ws.subscribe(
                &id,
                "subscription($t: Token!) { writeVisible(token: $t, projections: [\"order_summary\"], timeoutMs: 10000) { visible reason } }",
                json!({ "t": token }),
            )
            .await;
            let answer = ws.next_data(&id).await;
            if answer["data"]["writeVisible"]["visible"] != true {
                tally.fail(format!("writeVisible {token}: {answer}"));
                continue;
            }
            let r = b.gql("query($id: ID!) { order(id: $id) { id } }", json!({ "id": order })).await;
            if r.get("errors").is_some() {
                tally.fail(format!("read after writeVisible {token}: {r}"));
                continue;
            }
            r["data"]["order"]["id"] == order.as_str()
        };
        if !shown {
            tally.stale.fetch_add(1, Ordering::Relaxed);
        }
    }
    ws.close().await;
}

fn spawn_workers(pair: &Pair, tally: &Arc<Tally>, workers: usize, limit: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers).map(|_| tokio::spawn(worker(pair.a.clone(), pair.b.clone(), tally.clone(), limit))).collect()
}

/// Joins the workers; a panic in one (an HTTP 5xx: `TestApp::gql` asserts success) fails the test.
async fn join(workers: Vec<tokio::task::JoinHandle<()>>) {
    for w in workers {
        w.await.expect("a worker panicked (see above)");
    }
}

fn assert_contract_held(tally: &Tally, at_least: usize) {
    let failures = tally.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(tally.stale.load(Ordering::Relaxed), 0, "stale reads on B");
    assert!(tally.trials() >= at_least, "only {} trials", tally.trials());
}

async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let r = http_client().get(format!("{base}{path}")).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_served_by_a_lagging_standby_show_every_write_the_client_waited_for() {
    let _alone = STANDBY.lock().await;
    let Some(pair) = Pair::start().await else {
        return;
    };
    let started = Instant::now();
    const TRIALS: usize = 2_000;
    let tally = Arc::new(Tally::default());
    join(spawn_workers(&pair, &tally, 40, TRIALS)).await;
    let took = started.elapsed();
    eprintln!("{TRIALS} trials through the standby in {took:?}");
    assert_contract_held(&tally, TRIALS);
    assert_eq!(pair.replica_state(), ReplicaState::InRotation, "the standby served throughout");
    pair.assert_queries_run_on_the_standby().await;

    // /readyz and /metrics show the replica, its state and lag.
    let (status, ready) = get_json(&pair.b.base, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let replica = &ready["replicas"][0];
    assert_eq!(replica["state"], "in_rotation", "{ready}");
    assert_eq!(replica["replica"], format!("{}/{}", pair.standby.base, pair.name));
    assert!(replica["lagSeconds"].as_f64().is_some_and(|lag| lag < 5.0), "{ready}");
    let metrics =
        http_client().get(format!("{}/metrics", pair.b.base)).send().await.expect("GET").text().await.expect("text");
    let gauge = format!("twofold_replica_lag_seconds{{replica=\"{}/{}\"}}", pair.standby.base, pair.name);
    assert!(metrics.contains(&gauge), "no {gauge} in /metrics");
    assert!(
        metrics.contains(&format!("twofold_replica_in_rotation{{replica=\"{}/{}\"}} 1", pair.standby.base, pair.name)),
        "the replica is in rotation in /metrics"
    );
    pair.stop().await;
}

/// `recovery_min_apply_delay` of the running standby, set by editing its
/// `postgresql.conf` and reloading (a standby takes no `ALTER SYSTEM`);
/// put back to 300 ms when dropped, even when the test fails.
struct ApplyDelay {
    config_file: String,
    port: String,
}

impl ApplyDelay {
    async fn set(standby: &Standby, delay: &str) -> Self {
        let guard = Self { config_file: standby.text("SHOW config_file").await, port: standby.text("SHOW port").await };
        guard.write(delay);
        let deadline = Instant::now() + Duration::from_secs(10);
        while standby.text("SHOW recovery_min_apply_delay").await != delay {
            assert!(Instant::now() < deadline, "the standby did not take recovery_min_apply_delay = {delay}");
            // The standby reloads its configuration on SIGHUP and says
            // nothing when done: SHOW is the only way to know.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        guard
    }

    fn write(&self, delay: &str) {
        let text = std::fs::read_to_string(&self.config_file).expect("read the standby's postgresql.conf");
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("recovery_min_apply_delay"))
            .map(str::to_owned)
            .collect();
        lines.push(format!("recovery_min_apply_delay = '{delay}'"));
        std::fs::write(&self.config_file, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("cannot write {} (run as root or postgres): {e}", self.config_file));
        let reloaded = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atc",
                "SELECT pg_reload_conf()",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run psql");
        assert!(reloaded.success(), "pg_reload_conf() on the standby");
    }
}

impl Drop for ApplyDelay {
    fn drop(&mut self) {
        self.write("300ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_three_second_apply_delay_write_visible_waits_for_the_standby() {
    let _alone = STANDBY.lock().await;
    let Some(pair) = Pair::start().await else {
        return;
    };
    let delay = ApplyDelay::set(&pair.standby, "3s").await;
    let seed = pair.a.seed().await;
    let mut ws = WsClient::connect(&pair.b.base, "/graphql/ws", Protocol::TransportWs).await;
    ws.init().await;
    let visible = "subscription($t: Token!, $ms: Int) { writeVisible(token: $t, projections: [\"order_summary\"], timeoutMs: $ms) { visible reason } }";
    // The seed's own waits: the standby is behind by its delay, and stays in rotation (< 5 s).
    let (_, seeded) = pair.a.add_product(&format!("CAKE-{}", short()), "Cake", 900).await;
    ws.subscribe("seed", visible, json!({ "t": seeded, "ms": 10_000 })).await;
    assert_eq!(ws.next_data("seed").await["data"]["writeVisible"]["visible"], true);
    assert_eq!(pair.replica_state(), ReplicaState::InRotation);

    // projectionUpdated on B for the order to come, on a connection of its own.
    let order = uuid::Uuid::new_v4().to_string();
    let count = format!("SELECT count(*) FROM order_summary WHERE order_id = '{order}'");
    let mut updates = WsClient::connect(&pair.b.base, "/graphql/ws", Protocol::TransportWs).await;
    updates.init().await;
    updates
        .subscribe(
            "upd",
            "subscription($s: ID) { projectionUpdated(projections: [\"order_summary\"], streamId: $s, includeCurrent: true) { token } }",
            json!({ "s": order }),
        )
        .await;
    updates.next_data("upd").await; // the current checkpoint: the subscription is live
    let placed = pair.a.place_order_raw(&seed.customer, &[(&seed.tea, 1)], json!(order), json!(null)).await;
    let token = s(&placed["data"]["placeOrder"]["token"]);
    let written = Instant::now();
    let announced = {
        let (conn, count) = (pair.on_standby.clone(), count.clone());
        tokio::spawn(async move {
            updates.next_data("upd").await;
            let at = written.elapsed();
            let row = conn
                .query_one_raw(Statement::from_string(DbBackend::Postgres, count))
                .await
                .expect("query the standby")
                .expect("a row")
                .try_get_by_index::<i64>(0)
                .expect("a count");
            updates.close().await;
            (at, row)
        })
    };
    // On the primary the order is there at once (A waits on the primary)…
    let on_a = pair
        .a
        .data(
            "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id } }",
            json!({ "id": order, "t": token }),
        )
        .await;
    assert_eq!(on_a["order"]["id"], order.as_str());
    // …but a wait shorter than the delay ends "not yet" on B,
    ws.subscribe("short", visible, json!({ "t": token, "ms": 1_000 })).await;
    let short_wait = ws.next_data("short").await;
    assert_eq!(short_wait["data"]["writeVisible"], json!({ "visible": false, "reason": "TIMED_OUT" }), "{short_wait}");
    // because the standby does not have it yet.
    let on_standby = |sql: String| {
        let conn = pair.on_standby.clone();
        async move {
            conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .expect("query the standby")
                .expect("a row")
                .try_get_by_index::<i64>(0)
                .expect("a count")
        }
    };
    assert_eq!(on_standby(count.clone()).await, 0, "the standby is still behind");
    // A wait longer than the delay fires, once the standby has the write
    // (the order, not the speed, is the contract: a wait that ran out would
    // say TIMED_OUT; how soon it fires is the benchmark's replica figure).
    ws.subscribe("long", visible, json!({ "t": token, "ms": 8_000 })).await;
    assert_eq!(ws.next_data("long").await["data"]["writeVisible"], json!({ "visible": true, "reason": null }));
    let waited = written.elapsed();
    assert_eq!(
        on_standby(count).await,
        1,
        "the standby has the write when writeVisible fires (after {:?}; {:?})",
        written.elapsed(),
        pair.b.services.replicas.as_ref().map(|r| r.report())
    );
    assert!(waited >= Duration::from_millis(2_500), "writeVisible fired after {waited:?}, before the 3 s delay");
    let r = pair.b.data("query($id: ID!) { order(id: $id) { id } }", json!({ "id": order })).await;
    assert_eq!(r["order"]["id"], order.as_str());
    // projectionUpdated on B, too, announced the batch only once the standby had it.
    let (announced_after, row_then) = announced.await.expect("the projectionUpdated reader");
    assert_eq!(row_then, 1, "projectionUpdated came {announced_after:?} after the write, before the standby had it");
    assert!(announced_after >= Duration::from_millis(2_500), "projectionUpdated after {announced_after:?}");
    assert_eq!(pair.replica_state(), ReplicaState::InRotation, "3 s behind is within --replica-max-lag-ms");
    eprintln!("writeVisible through a 3 s apply delay fired after {waited:?}");

    drop(delay);
    ws.close().await;
    // Back to 300 ms before the next test takes the standby.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pair.standby.text("SHOW recovery_min_apply_delay").await != "300ms" {
        assert!(Instant::now() < deadline, "the standby's apply delay was not restored");
        // As in ApplyDelay::set: a reload announces nothing.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pair.stop().await;
}

/// `pg_ctl` of the running standby, as the `postgres` user; started again
/// when dropped, even when the test fails.
struct StandbyCtl {
    pg_ctl: String,
    data_dir: String,
}

impl StandbyCtl {
    async fn of(standby: &Standby) -> Self {
        let version: i64 = standby.text("SHOW server_version_num").await.parse().expect("a version number");
        Self {
            pg_ctl: format!("/usr/lib/postgresql/{}/bin/pg_ctl", version / 10_000),
            data_dir: standby.text("SHOW data_directory").await,
        }
    }

    async fn stop(&self) {
        assert!(self.act("stop -m fast").await, "pg_ctl stop -m fast (the tests run as root, to act as postgres)");
    }

    async fn start(&self) {
        assert!(self.act("start").await, "pg_ctl start");
    }

    async fn act(&self, action: &str) -> bool {
        let (pg_ctl, data_dir, action) = (self.pg_ctl.clone(), self.data_dir.clone(), action.to_owned());
        tokio::task::spawn_blocking(move || pg_ctl_as_postgres(&pg_ctl, &data_dir, &action)).await.expect("pg_ctl")
    }
}

fn pg_ctl_as_postgres(pg_ctl: &str, data_dir: &str, action: &str) -> bool {
    let command = format!("{pg_ctl} -D '{data_dir}' -w -t 60 -l '{data_dir}/log' {action}");
    std::process::Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", &command])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for StandbyCtl {
    fn drop(&mut self) {
        if !pg_ctl_as_postgres(&self.pg_ctl, &self.data_dir, "status") {
            pg_ctl_as_postgres(&self.pg_ctl, &self.data_dir, "start");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_standby_stops_queries_fail_over_to_the_primary_and_it_rejoins_after_a_restart() {
    let _alone = STANDBY.lock().await;
    let Some(pair) = Pair::start().await else {
        return;
    };
    let ctl = StandbyCtl::of(&pair.standby).await;
    let tally = Arc::new(Tally::default());
    let workers = spawn_workers(&pair, &tally, 16, usize::MAX);
    tally.until_trials(100).await;

    ctl.stop().await;
    pair.until_replica(ReplicaState::Unreachable, Duration::from_secs(30)).await;
    let (status, ready) = get_json(&pair.b.base, "/readyz").await;
    assert_eq!(status, 200, "B still serves, from the primary: {ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["replicas"][0]["state"], "unreachable", "{ready}");
    let at_stop = tally.trials();
    tally.until_trials(at_stop + 200).await;

    ctl.start().await;
    pair.until_replica(ReplicaState::InRotation, Duration::from_secs(60)).await;
    let at_rejoin = tally.trials();
    tally.until_trials(at_rejoin + 200).await;
    tally.stop.store(true, Ordering::Relaxed);
    join(workers).await;
    eprintln!(
        "{} trials: {at_stop} before the stop, {} while down, {} after the rejoin",
        tally.trials(),
        at_rejoin - at_stop,
        tally.trials() - at_rejoin
    );
    assert_contract_held(&tally, 500);
    // After its restart the standby serves B's queries again.
    pair.assert_queries_run_on_the_standby().await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_instance_whose_only_read_database_is_a_standby_starts_serves_and_writes_nothing_there() {
    let _alone = STANDBY.lock().await;
    let Some(standby) = Standby::connect().await else {
        return;
    };
    let Some(a) = TestApp::spawn_postgres().await else {
        return;
    };
    let name = a.database.url.rsplit('/').next().expect("a database name").to_owned();
    let on_standby = standby.wait_for_database(&name).await;
    let before = standby.stats(&name).await;
    let replica_url = format!("{}/{name}", standby.base);
    let api = Server::start(&[
        "--role",
        "api",
        "--database-url",
        &a.database.url,
        "--replica-url",
        &replica_url,
        "--poll-interval-ms",
        "200",
    ])
    .await;
    // It measures its replica and puts it in rotation.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, ready) = get_json(&api.base, "/readyz").await;
        if ready["replicas"][0]["state"] == "in_rotation" {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never entered rotation: {ready}");
        // Another process: /readyz is what it shows of its rotation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It serves: a write on A, read on the api instance once visible.
    let seed = a.seed().await;
    let (order, token) = a.place_order(&seed.customer, &[(&seed.cake, 2)]).await;
    let client = http_client();
    let response: Value = client
        .post(format!("{}/graphql", api.base))
        .json(&json!({ "query": "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id totalCents } }", "variables": { "id": order, "t": token } }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert!(response.get("errors").is_none(), "{response}");
    assert_eq!(response["data"]["order"]["id"], order.as_str());
    for _ in 0..50 {
        let response: Value = client
            .post(format!("{}/graphql", api.base))
            .json(&json!({ "query": "{ orders(first: 10) { edges { node { id } } } products(first: 10) { edges { node { id } } } }" }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("JSON");
        assert!(response.get("errors").is_none(), "{response}");
    }
    // It read there, and wrote nothing: on a standby any write fails (and counts as a rollback).
    let after = standby.wait_for_stats(&name, |s| s.xact_commit - before.xact_commit >= 100).await;
    assert_eq!(after.xact_rollback, before.xact_rollback, "no statement failed on the standby: {before:?} → {after:?}");
    let log = api.stderr();
    assert!(!log.contains("read-only"), "nothing tried to write to the standby: {log}");
    drop(api);
    let _ = on_standby.close().await;
    a.stop().await;
}
