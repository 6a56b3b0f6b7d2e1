//! The peer: what a team would pick instead of writing a CQRS service.
//!
//! PostGraphile 4.14 with the connection-filter plugin (`benches/peer/`), a
//! CRUD GraphQL server generated from the normalized write tables, serves
//! the same page as Twofold's `orders` query (the 50 newest PLACED orders
//! with customer name and line titles and quantities) from the same data
//! set. Both are loaded alternately (Twofold, peer, Twofold, peer) with the
//! same closed loop and 16 keep-alive connections; every response body is
//! parsed and compared with the page checked at the start. The two rounds of
//! each are pooled (requests and time summed, latencies merged).
//!
//! CPU per request is the server process's CPU time over its windows, and
//! next to it the CPU time of the PostgreSQL backends serving the bench
//! database meanwhile: PostGraphile compiles the page into one SQL query and
//! leaves the joins and the JSON to PostgreSQL, so its own process shows
//! only part of the cost.
//!
//! Then both again beside writes: the same 200 orders per second written
//! with plain SQL straight into the write tables and the log
//! ([`crate::sql::insert_order`], what `placeOrder` writes), one side at a
//! time, so each reader meets the same write load (Twofold's projector folds
//! the orders in both rounds; PostGraphile reads the tables they land in).
//! The page moves under these reads, so a response counts when it is a
//! page of orders, not when it equals the first.
//!
//! Without `node`/`npm`, or when `npm ci` fails, the row says "not measured"
//! and the run goes on.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{json, Value};
use uuid::Uuid;

use twofold::db::Db;

use crate::cli::Scale;
use crate::gql::ORDERS_PAGE;
use crate::load::closed_loop;
use crate::pace::{paced, Schedule};
use crate::progress;
use crate::report::{latency, per_s, Figure, Report};
use crate::server::{process_cpu_seconds, Server};
use crate::stats::LoopResult;
use crate::workload::Catalog;

/// The same page, asked of PostGraphile's generated schema.
pub const PEER_PAGE: &str = "query { allCustomerOrders(filter: { status: { equalTo: \"PLACED\" } }, \
     orderBy: [PLACED_AT_DESC, ID_DESC], first: 50) { nodes { id customerByCustomerId { name } \
     orderLinesByOrderId(orderBy: LINE_NO_ASC) { nodes { quantity productByProductId { title } } } } } }";

const TITLE: &str = "GraphQL page: Twofold vs PostGraphile 4.14 (CRUD over the write tables)";
const CPU_TITLE: &str = "GraphQL page: CPU per request, Twofold vs PostGraphile 4.14 (server + PostgreSQL)";
const TARGET: &str = "≥ 4× its requests/s";
const BESIDE_TITLE: &str = "GraphQL page beside 200 SQL order inserts/s: Twofold vs PostGraphile 4.14";
const BESIDE_TARGET: &str = "≥ 10× its requests/s beside the same writes";
/// Orders written per second beside the reads of the beside-writes rounds.
const WRITE_RATE: u64 = 200;
const TARGET_RATIO: f64 = 4.0;
/// Keep-alive connections of the load generator, for both servers.
const CONNECTIONS: usize = 16;
/// PostGraphile's `pg` pool.
const PEER_POOL: usize = 8;
const ROUNDS: usize = 2;
/// The longer page the check compares with (Twofold's largest page size).
const CHECK_DEPTH: usize = 100;
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);

/// One order of the page, however it was served.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageOrder {
    id: Uuid,
    customer_name: String,
    lines: Vec<(String, i64)>,
}

/// Which of the two servers a window loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Twofold,
    Peer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Twofold => "Twofold",
            Self::Peer => "PostGraphile",
        }
    }

    fn query(self) -> &'static str {
        match self {
            Self::Twofold => ORDERS_PAGE,
            Self::Peer => PEER_PAGE,
        }
    }

    fn parse(self, body: &Value) -> anyhow::Result<Vec<PageOrder>> {
        match self {
            Self::Twofold => parse_twofold(body),
            Self::Peer => parse_peer(body),
        }
    }
}

/// The pooled rounds of one server.
#[derive(Default)]
struct Pooled {
    result: LoopResult,
    /// `None` when a window's CPU could not be read.
    server_cpu_s: Option<f64>,
    db_cpu_s: Option<f64>,
}

impl Pooled {
    fn add(&mut self, result: LoopResult, server_cpu_s: Option<f64>, db_cpu_s: Option<f64>, first: bool) {
        self.result.latencies.extend(result.latencies);
        self.result.errors += result.errors;
        if self.result.first_error.is_none() {
            self.result.first_error = result.first_error;
        }
        self.result.elapsed += result.elapsed;
        let sum =
            |total: Option<f64>, this: Option<f64>| if first { this } else { total.zip(this).map(|(a, b)| a + b) };
        self.server_cpu_s = sum(self.server_cpu_s, server_cpu_s);
        self.db_cpu_s = sum(self.db_cpu_s, db_cpu_s);
    }

    /// Microseconds per successful request.
    fn per_request_us(&self, cpu_s: Option<f64>) -> Option<f64> {
        let ok = self.result.ok();
        cpu_s.filter(|_| ok > 0).map(|s| s / ok as f64 * 1e6)
    }

    fn server_us(&self) -> Option<f64> {
        self.per_request_us(self.server_cpu_s)
    }

    fn db_us(&self) -> Option<f64> {
        self.per_request_us(self.db_cpu_s)
    }

    fn total_us(&self) -> Option<f64> {
        self.server_us().zip(self.db_us()).map(|(a, b)| a + b)
    }

    fn text(&self) -> String {
        let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0} µs"));
        let errors = match self.result.errors {
            0 => String::new(),
            n => format!("; {n} failed ({})", self.result.first_error.as_deref().unwrap_or("?")),
        };
        format!(
            "{}, {}; CPU per request {} server + {} PostgreSQL{errors}",
            per_s(self.result.per_second()),
            latency(&self.result.summary()),
            us(self.server_us()),
            us(self.db_us())
        )
    }
}

/// Runs the phase; only a peer that cannot be set up (no Node, no install)
/// is a row instead of an error.
pub async fn measure(
    database_url: &str,
    db: &Db,
    catalog: &Catalog,
    twofold: &Server,
    scale: &Scale,
    out_dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = peer_dir();
    let version = match prepare(&dir, out_dir).await {
        Ok(version) => version,
        Err(reason) => {
            let reason = format!("{reason:#}");
            progress!("the PostGraphile peer is not measured: {reason}");
            report.add_wire(
                Figure::new(TITLE, format!("not measured ({})", reason.replace('|', "/"))).target(TARGET, None),
            );
            return Ok(());
        }
    };
    let log_path = out_dir.join("peer-server.log");
    let peer = PeerServer::start(&dir, database_url, &log_path)
        .await
        .with_context(|| format!("start PostGraphile (log: {})", log_path.display()))?;
    progress!("PostGraphile {version} pid {} ready at {}", peer.pid, peer.base_url);

    let mut outcome = run(database_url, twofold, &peer, &version, scale, report).await;
    if outcome.is_ok() {
        outcome = beside_writes(db, catalog, twofold, &peer, &version, scale, report).await;
    }
    peer.stop().await;
    outcome
}

/// Each server's page beside [`WRITE_RATE`] plain-SQL order inserts per
/// second, one server at a time (see the module docs).
async fn beside_writes(
    db: &Db,
    catalog: &Catalog,
    twofold: &Server,
    peer: &PeerServer,
    version: &str,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let http = http_client()?;
    let catalog = Arc::new(catalog.clone());
    let mut measured = Vec::new();
    for (n, (side, base)) in [(Side::Twofold, &twofold.base_url), (Side::Peer, &peer.base_url)].into_iter().enumerate()
    {
        let url = format!("{base}/graphql");
        let schedule = Schedule::new(WRITE_RATE, scale.read_time, Instant::now());
        let writer = {
            let (db, catalog, schedule) = (db.clone(), catalog.clone(), schedule.clone());
            tokio::spawn(async move {
                let salt = 0x38_2000_0000 + n as u64 * 1_000_000;
                // `paced` starts each insert at its send time (no lead).
                let paced = paced(&schedule, Duration::ZERO, 64, |i, _| {
                    let (db, catalog) = (db.clone(), catalog.clone());
                    async move { crate::sql::insert_order(&db, &catalog, &catalog.random_order(salt + i)).await }
                })
                .await;
                let failed = paced.outcomes.iter().filter(|o| o.is_err()).count() as u64;
                let ok = paced.outcomes.len() as u64 - failed;
                (ok, failed, paced.skipped, schedule.start.elapsed())
            })
        };
        let reads = load_moving(&http, &url, side, scale.read_time).await;
        let (ok, failed, skipped, took) = writer.await.context("the SQL writer panicked")?;
        let achieved = ok as f64 / took.as_secs_f64().max(1e-9);
        progress!(
            "{} beside {WRITE_RATE} SQL order inserts/s: {}; writes {ok} ok ({achieved:.0}/s), {failed} failed, {skipped} skipped",
            side.name(),
            reads.brief()
        );
        if ok == 0 || failed > 0 {
            bail!("the SQL writer beside {} failed ({ok} ok, {failed} failed)", side.name());
        }
        measured.push((reads, achieved));
    }
    let [(t, t_writes), (p, p_writes)] = <[_; 2]>::try_from(measured).map_err(|_| anyhow!("two sides measured"))?;
    let (tr, pr) = (t.per_second(), p.per_second());
    let ratio = (tr > 0.0 && pr > 0.0).then(|| tr / pr);
    let clean = t.errors == 0 && p.errors == 0;
    report.add_wire(
        Figure::new(BESIDE_TITLE, format!("Twofold {}, {} (writes {t_writes:.0}/s)", per_s(tr), latency(&t.summary())))
            .num(tr)
            .baseline(
                format!(
                    "PostGraphile {version} {}, {} (writes {p_writes:.0}/s); {CONNECTIONS} connections, {} s each, kept answers on",
                    per_s(pr),
                    latency(&p.summary()),
                    scale.read_time.as_secs_f64()
                ),
                Some(pr),
            )
            .ratio(ratio, |r| format!("{r:.2}×"))
            .target(BESIDE_TARGET, ratio.map(|r| r >= 10.0 && clean)),
    );
    Ok(())
}

/// The closed loop on one server while the page moves: a response counts
/// when it parses as a page of orders (no GraphQL error, at least one order).
async fn load_moving(http: &reqwest::Client, url: &str, side: Side, duration: Duration) -> LoopResult {
    let (http, url) = (http.clone(), url.to_owned());
    let label = format!("page from {} beside writes", side.name());
    closed_loop(&label, CONNECTIONS, duration, u64::MAX, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (page, _) = fetch_page(&http, &url, side).await?;
            if page.is_empty() {
                bail!("{} answered an empty page", side.name());
            }
            Ok(())
        }
    })
    .await
}

async fn run(
    database_url: &str,
    twofold: &Server,
    peer: &PeerServer,
    version: &str,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let http = http_client()?;
    let twofold_url = format!("{}/graphql", twofold.base_url);
    let peer_url = format!("{}/graphql", peer.base_url);

    let (twofold_page, twofold_bytes) =
        fetch_page(&http, &twofold_url, Side::Twofold).await.context("Twofold's page")?;
    let (peer_page, peer_bytes) = fetch_page(&http, &peer_url, Side::Peer).await.context("PostGraphile's page")?;
    let (twofold_deep, _) = fetch(&http, &twofold_url, Side::Twofold, &deeper(Side::Twofold)?)
        .await
        .with_context(|| format!("Twofold's {CHECK_DEPTH} newest"))?;
    let (peer_deep, _) = fetch(&http, &peer_url, Side::Peer, &deeper(Side::Peer)?)
        .await
        .with_context(|| format!("PostGraphile's {CHECK_DEPTH} newest"))?;
    let agreement = compare_pages(&twofold_page, &peer_page, &twofold_deep, &peer_deep)
        .context("Twofold and PostGraphile do not serve the same page")?;
    progress!(
        "peer page check: {agreement} (Twofold {twofold_bytes} bytes, PostGraphile {peer_bytes} bytes per response)"
    );

    let db = small_connection(database_url).await?;
    let warm_up = (scale.read_time / 2).clamp(Duration::from_millis(500), Duration::from_secs(2));
    let twofold_expected = Arc::new(twofold_page);
    let peer_expected = Arc::new(peer_page);
    for (side, url, expected) in
        [(Side::Twofold, &twofold_url, &twofold_expected), (Side::Peer, &peer_url, &peer_expected)]
    {
        let result = load(&http, url, side, expected, warm_up).await;
        progress!("warm-up {}: {}", side.name(), result.brief());
    }

    let (mut twofold_total, mut peer_total) = (Pooled::default(), Pooled::default());
    for round in 0..ROUNDS {
        for side in [Side::Twofold, Side::Peer] {
            let (url, expected, total) = match side {
                Side::Twofold => (&twofold_url, &twofold_expected, &mut twofold_total),
                Side::Peer => (&peer_url, &peer_expected, &mut peer_total),
            };
            let cpu_now = || match side {
                Side::Twofold => twofold.cpu_seconds(),
                Side::Peer => process_cpu_seconds(peer.pid),
            };
            let (cpu_before, db_before) = (cpu_now(), backend_cpu(&db).await);
            let result = load(&http, url, side, expected, scale.read_time).await;
            let server_cpu = cpu_before.zip(cpu_now()).map(|(before, after)| after - before);
            let db_cpu = db_before.zip(backend_cpu(&db).await).map(|(before, after)| backend_delta(&before, &after));
            let us = |cpu: Option<f64>| cpu.map(|s| s / result.ok().max(1) as f64 * 1e6);
            progress!(
                "round {} {}: {}; {:?} µs server + {:?} µs PostgreSQL CPU per request",
                round + 1,
                side.name(),
                result.brief(),
                us(server_cpu).map(f64::round),
                us(db_cpu).map(f64::round)
            );
            total.add(result, server_cpu, db_cpu, round == 0);
        }
    }
    db.close().await.ok();

    let (t, p) = (twofold_total.result.per_second(), peer_total.result.per_second());
    let ratio = (t > 0.0 && p > 0.0).then(|| t / p);
    let clean = twofold_total.result.errors == 0 && peer_total.result.errors == 0;
    report.add_wire(
        Figure::new(TITLE, format!("Twofold {}", twofold_total.text()))
            .num(t)
            .baseline(
                format!(
                    "PostGraphile {version} (1 Node process, pg pool {PEER_POOL}) {}; {}; \
                     {CONNECTIONS} connections, {ROUNDS} alternating rounds of {} s each, pooled",
                    peer_total.text(),
                    agreement.short(),
                    scale.read_time.as_secs_f64()
                ),
                Some(p),
            )
            .ratio(ratio, |r| format!("{r:.2}×"))
            .target(TARGET, ratio.map(|r| r >= TARGET_RATIO && clean)),
    );
    let (t_cpu, p_cpu) = (twofold_total.total_us(), peer_total.total_us());
    let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0} µs"));
    let mut cpu_row = Figure::new(
        CPU_TITLE,
        format!(
            "Twofold {} ({} server + {} PostgreSQL)",
            us(t_cpu),
            us(twofold_total.server_us()),
            us(twofold_total.db_us())
        ),
    );
    if let Some(t_cpu) = t_cpu {
        cpu_row = cpu_row.num(t_cpu);
    }
    report.add_wire(
        cpu_row
            .baseline(
                format!(
                    "PostGraphile {} ({} server + {} PostgreSQL)",
                    us(p_cpu),
                    us(peer_total.server_us()),
                    us(peer_total.db_us())
                ),
                p_cpu,
            )
            .ratio(t_cpu.zip(p_cpu).filter(|(_, p)| *p > 0.0).map(|(t, p)| t / p), |r| {
                format!("{:.0}% of the CPU", r * 100.0)
            }),
    );
    Ok(())
}

/// `benches/peer` of this checkout.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("peer")
}

/// Checks for `node` and `npm`, runs `npm ci` if `node_modules` is missing,
/// and returns the installed PostGraphile version.
async fn prepare(dir: &Path, out_dir: &Path) -> anyhow::Result<String> {
    let node = tool_version("node").await?;
    let npm = tool_version("npm").await?;
    let installed = dir.join("node_modules").join("postgraphile").join("package.json");
    if !installed.exists() || !dir.join("node_modules").join("postgraphile-plugin-connection-filter").exists() {
        std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
        let log_path = out_dir.join("peer-npm-ci.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        progress!("installing the PostGraphile peer: npm ci in {} (node {node}, npm {npm})", dir.display());
        let mut child = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the log file handle")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn npm ci")?;
        match tokio::time::timeout(NPM_CI_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => bail!("npm ci failed ({status}; log: {})", log_path.display()),
            Ok(Err(e)) => bail!("npm ci: {e}"),
            Err(_) => bail!("npm ci did not finish within {NPM_CI_TIMEOUT:?} (log: {})", log_path.display()),
        }
    }
    let text = std::fs::read_to_string(&installed).with_context(|| format!("read {}", installed.display()))?;
    let manifest: Value = serde_json::from_str(&text).with_context(|| format!("parse {}", installed.display()))?;
    let version = manifest["version"].as_str().unwrap_or("?").to_owned();
    if !version.starts_with("4.14.") {
        bail!("benches/peer holds PostGraphile {version}, not 4.14.x (run npm ci there)");
    }
    progress!("PostGraphile peer: PostGraphile {version}, node {node}, npm {npm}");
    Ok(version)
}

/// `TOOL --version`, or why it could not be run.
async fn tool_version(tool: &str) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("{tool} is not available"))?;
    if !output.status.success() {
        bail!("`{tool} --version` failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The PostGraphile process; killed on drop.
struct PeerServer {
    child: Child,
    base_url: String,
    pid: u32,
}

impl PeerServer {
    async fn start(dir: &Path, database_url: &str, log_path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        let log = std::fs::File::create(log_path).with_context(|| format!("create {}", log_path.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?.local_addr()?.port();
        let child = Command::new("node")
            .args([
                "server.js",
                "--port",
                &port.to_string(),
                "--database-url",
                database_url,
                "--pool",
                &PEER_POOL.to_string(),
            ])
            .current_dir(dir)
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the log file handle")?)
            .stderr(log)
            .spawn()
            .context("spawn node server.js")?;
        let pid = child.id();
        let mut server = Self { child, base_url: format!("http://127.0.0.1:{port}"), pid };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    /// Ready once `{ __typename }` is answered (the schema is built then).
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let url = format!("{}/graphql", self.base_url);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("check the PostGraphile process")? {
                bail!("PostGraphile exited during start-up ({status})");
            }
            let answer = http.post(&url).json(&json!({ "query": "{ __typename }" })).send().await;
            if let Ok(response) = answer {
                if response.status().is_success() {
                    if let Ok(body) = response.json::<Value>().await {
                        if body["data"]["__typename"] == "Query" {
                            return Ok(());
                        }
                    }
                }
            }
            // PostGraphile announces nothing when it is ready: ask again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("PostGraphile did not answer within {timeout:?}")
    }

    /// SIGTERM, then the kill of `Drop` after 5 s.
    async fn stop(mut self) {
        crate::server::terminate(&mut self.child, "PostGraphile").await;
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        crate::server::kill_and_reap(&mut self.child);
    }
}

/// The load generator's client: the same for both servers.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .context("build the HTTP client")
}

/// POSTs the side's page query; returns the page and the body's size.
async fn fetch_page(http: &reqwest::Client, url: &str, side: Side) -> anyhow::Result<(Vec<PageOrder>, usize)> {
    fetch(http, url, side, side.query()).await
}

/// The side's page query asking for [`CHECK_DEPTH`] orders instead of 50.
fn deeper(side: Side) -> anyhow::Result<String> {
    let query = side.query();
    if !query.contains("first: 50)") {
        bail!("the {} page query no longer asks for `first: 50`: {query}", side.name());
    }
    Ok(query.replace("first: 50)", &format!("first: {CHECK_DEPTH})")))
}

async fn fetch(http: &reqwest::Client, url: &str, side: Side, query: &str) -> anyhow::Result<(Vec<PageOrder>, usize)> {
    let response = http.post(url).json(&json!({ "query": query })).send().await.context("POST /graphql")?;
    let status = response.status();
    let body = response.bytes().await.context("read the body")?;
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    }
    let value: Value = serde_json::from_slice(&body).with_context(|| format!("HTTP {status}: body is not JSON"))?;
    Ok((side.parse(&value)?, body.len()))
}

/// The closed loop on one server; a response counts only if it is exactly
/// the page checked at the start.
async fn load(
    http: &reqwest::Client,
    url: &str,
    side: Side,
    expected: &Arc<Vec<PageOrder>>,
    duration: Duration,
) -> LoopResult {
    let (http, url, expected) = (http.clone(), url.to_owned(), expected.clone());
    let label = format!("page from {}", side.name());
    closed_loop(&label, CONNECTIONS, duration, u64::MAX, move |_| {
        let (http, url, expected) = (http.clone(), url.clone(), expected.clone());
        async move {
            let (page, _) = fetch_page(&http, &url, side).await?;
            if *page != *expected {
                bail!("{} answered a different page ({} orders) than at the start", side.name(), page.len());
            }
            Ok(())
        }
    })
    .await
}

fn graphql_errors(body: &Value) -> anyhow::Result<()> {
    if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        bail!("GraphQL error: {}", errors[0].get("message").and_then(Value::as_str).unwrap_or("?"));
    }
    Ok(())
}

fn order_id(value: &Value) -> anyhow::Result<Uuid> {
    let text = value.as_str().ok_or_else(|| anyhow!("an order without id"))?;
    Uuid::parse_str(text).with_context(|| format!("order id '{text}' is not a UUID"))
}

fn text(value: &Value, what: &str) -> anyhow::Result<String> {
    value.as_str().map(str::to_owned).ok_or_else(|| anyhow!("an order without {what}"))
}

fn quantity(value: &Value) -> anyhow::Result<i64> {
    value.as_i64().ok_or_else(|| anyhow!("a line without quantity"))
}

/// `data.orders.edges[].node { id customerName lines { title quantity } }`.
fn parse_twofold(body: &Value) -> anyhow::Result<Vec<PageOrder>> {
    graphql_errors(body)?;
    let edges = body["data"]["orders"]["edges"].as_array().ok_or_else(|| anyhow!("no data.orders.edges"))?;
    edges
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            let lines = node["lines"].as_array().ok_or_else(|| anyhow!("an order without lines"))?;
            Ok(PageOrder {
                id: order_id(&node["id"])?,
                customer_name: text(&node["customerName"], "customerName")?,
                lines: lines
                    .iter()
                    .map(|l| Ok((text(&l["title"], "title")?, quantity(&l["quantity"])?)))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

/// `data.allCustomerOrders.nodes[] { id customerByCustomerId { name }
/// orderLinesByOrderId { nodes { quantity productByProductId { title } } } }`.
fn parse_peer(body: &Value) -> anyhow::Result<Vec<PageOrder>> {
    graphql_errors(body)?;
    let nodes = body["data"]["allCustomerOrders"]["nodes"]
        .as_array()
        .ok_or_else(|| anyhow!("no data.allCustomerOrders.nodes"))?;
    nodes
        .iter()
        .map(|node| {
            let lines =
                node["orderLinesByOrderId"]["nodes"].as_array().ok_or_else(|| anyhow!("an order without lines"))?;
            Ok(PageOrder {
                id: order_id(&node["id"])?,
                customer_name: text(&node["customerByCustomerId"]["name"], "customer name")?,
                lines: lines
                    .iter()
                    .map(|l| Ok((text(&l["productByProductId"]["title"], "title")?, quantity(&l["quantity"])?)))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

/// Whether Twofold and PostGraphile serve the same page, given each one's
/// 50-order page and its [`CHECK_DEPTH`] newest. Identical pages pass.
/// Otherwise the ids may be in a somewhat different order, for a reason
/// that is no error: Twofold's view orders by the event's log position,
/// the write table by `placed_at`, a clock reading taken before the
/// transaction inserted it, so orders placed concurrently may rank one way
/// by one key and the other way by the other, and one may sit on either
/// side of the 50th place. So: both pages as long; each longer list begins
/// with its own page; and every order on either page is among the other
/// server's newest [`CHECK_DEPTH`] with the same customer name and the same
/// line titles and quantities in line order. Returns what was found.
fn compare_pages(
    twofold: &[PageOrder],
    peer: &[PageOrder],
    twofold_deep: &[PageOrder],
    peer_deep: &[PageOrder],
) -> anyhow::Result<Agreement> {
    if twofold.is_empty() {
        bail!("Twofold's page holds no orders");
    }
    if twofold.len() != peer.len() {
        bail!("Twofold's page holds {} orders, PostGraphile's {}", twofold.len(), peer.len());
    }
    if twofold == peer {
        return Ok(Agreement::Identical(twofold.len()));
    }
    for (side, page, deep) in [(Side::Twofold, twofold, twofold_deep), (Side::Peer, peer, peer_deep)] {
        if !deep.starts_with(page) {
            bail!("{}'s {CHECK_DEPTH} newest do not begin with its own page", side.name());
        }
    }
    for (side, page, other, other_deep) in
        [(Side::Twofold, twofold, Side::Peer, peer_deep), (Side::Peer, peer, Side::Twofold, twofold_deep)]
    {
        let by_id: HashMap<Uuid, &PageOrder> = other_deep.iter().map(|o| (o.id, o)).collect();
        for (place, order) in page.iter().enumerate() {
            match by_id.get(&order.id) {
                Some(found) if *found == order => {}
                Some(found) => {
                    bail!("order {} differs: {} has {order:?}, {} has {found:?}", order.id, side.name(), other.name())
                }
                None => bail!(
                    "order {} (place {} on {}'s page) is not among {}'s {} newest PLACED orders",
                    order.id,
                    place + 1,
                    side.name(),
                    other.name(),
                    other_deep.len()
                ),
            }
        }
    }
    let peer_ids: std::collections::HashSet<Uuid> = peer.iter().map(|o| o.id).collect();
    let on_both: Vec<Uuid> = twofold.iter().map(|o| o.id).filter(|id| peer_ids.contains(id)).collect();
    let in_order = longest_common_subsequence(
        &on_both,
        &peer.iter().map(|o| o.id).filter(|id| on_both.contains(id)).collect::<Vec<_>>(),
    );
    Ok(Agreement::Reranked {
        orders: twofold.len(),
        one_page_only: twofold.len() - on_both.len(),
        moved: on_both.len() - in_order,
        on_both: on_both.len(),
    })
}

/// What [`compare_pages`] found.
enum Agreement {
    Identical(usize),
    Reranked { orders: usize, one_page_only: usize, moved: usize, on_both: usize },
}

impl Agreement {
    /// For the table cell.
    fn short(&self) -> String {
        match self {
            Self::Identical(n) => format!("pages identical ({n} orders)"),
            Self::Reranked { orders, one_page_only, moved, .. } => format!(
                "pages equal in content, ranked by event position vs placed_at: {one_page_only} of {orders} \
                 orders on one page only, {moved} reordered"
            ),
        }
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Identical(n) => write!(f, "identical ({n} orders)"),
            Self::Reranked { orders, one_page_only, moved, on_both } => write!(
                f,
                "equal content, ranked differently: {one_page_only} of {orders} orders on one page only (and among \
                 the other's {CHECK_DEPTH} newest), {moved} of the {on_both} on both in another order (the view \
                 ranks by event position, the write table by placed_at)"
            ),
        }
    }
}

/// The length of the longest common subsequence of two id lists.
fn longest_common_subsequence(a: &[Uuid], b: &[Uuid]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { above.max(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One connection to the bench database, to find its backends.
pub async fn small_connection(database_url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    Database::connect(options).await.context("connect to the bench database for its backends' CPU")
}

/// CPU seconds so far of every client backend of the bench database but
/// this one, by pid; `None` if PostgreSQL's processes cannot be read here.
pub async fn backend_cpu(db: &DatabaseConnection) -> Option<HashMap<u32, f64>> {
    let sql = "SELECT pid FROM pg_stat_activity \
               WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.ok()?;
    let mut cpu = HashMap::with_capacity(rows.len());
    for row in rows {
        let pid: i32 = row.try_get_by_index(0).ok()?;
        let pid = u32::try_from(pid).ok()?;
        if let Some(seconds) = process_cpu_seconds(pid) {
            cpu.insert(pid, seconds);
        }
    }
    (!cpu.is_empty()).then_some(cpu)
}

/// CPU spent between two snapshots; a backend that started meanwhile counts whole.
pub fn backend_delta(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after.iter().map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0)).filter(|d| *d > 0.0).sum()
}
