//! The system under test: a fresh database and the `twofold` server as a
//! child process (so its peak RSS and CPU time can be read from /proc).
//!
//! Both are guards: the database is dropped and the process killed on every
//! exit path, panics included.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, Database};

use crate::cli::{Backend, Options};
use crate::progress;

/// The path of the `twofold` binary built with the same profile as the bench.
pub const TWOFOLD_BIN: &str = env!("CARGO_BIN_EXE_twofold");

/// A database created for this run only.
pub struct BenchDatabase {
    pub url: String,
    /// `(admin URL, database name)` on PostgreSQL.
    postgres: Option<(String, String)>,
    _sqlite_dir: Option<tempfile::TempDir>,
    dropped: bool,
}

impl BenchDatabase {
    pub async fn create(options: &Options) -> anyhow::Result<Self> {
        match options.backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new().prefix("twofold-bench-").tempdir().context("create a temp dir")?;
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("twofold.db").display());
                progress!("database: SQLite file {}", dir.path().join("twofold.db").display());
                Ok(Self { url, postgres: None, _sqlite_dir: Some(dir), dropped: false })
            }
            Backend::Postgres => {
                let unix =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
                let name = format!("twofold_bench_{unix}_{}", std::process::id());
                let admin_url = format!("{}/postgres", options.pg_url);
                let admin = Database::connect(&admin_url).await.with_context(|| format!("connect to {admin_url}"))?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await.ok();
                progress!("database: PostgreSQL {name}");
                Ok(Self {
                    url: format!("{}/{name}", options.pg_url),
                    postgres: Some((admin_url, name)),
                    _sqlite_dir: None,
                    dropped: false,
                })
            }
        }
    }

    /// Leaves the database in place (`--keep-database`), to run a server or
    /// a profiler against what the phases wrote: the PostgreSQL database, or
    /// the SQLite file's directory (not removed).
    pub fn keep(mut self) {
        if let Some((_, name)) = &self.postgres {
            progress!("kept database {name} (drop it with: DROP DATABASE {name})");
        }
        if let Some(dir) = self._sqlite_dir.take() {
            let dir = dir.keep();
            progress!(
                "kept SQLite file {} (remove it with: rm -r {})",
                dir.join("twofold.db").display(),
                dir.display()
            );
        }
        self.dropped = true;
    }

    /// Drops the PostgreSQL database (the SQLite temp dir goes with `Drop`).
    pub async fn drop_now(mut self) {
        if let Some((admin_url, name)) = self.postgres.clone() {
            match drop_postgres(&admin_url, &name).await {
                Ok(()) => progress!("dropped database {name}"),
                Err(e) => progress!("could not drop database {name}: {e:#}"),
            }
        }
        self.dropped = true;
    }
}

async fn drop_postgres(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = Database::connect(admin_url).await?;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    admin.close().await.ok();
    Ok(())
}

impl Drop for BenchDatabase {
    /// The error and panic path: drop the database on a thread with its own
    /// runtime (we may be inside, or outside, the main one).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let Some((admin_url, name)) = self.postgres.clone() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            if rt.block_on(drop_postgres(&admin_url, &name)).is_ok() {
                eprintln!("twofold_bench: dropped database {name}");
            }
        })
        .join();
    }
}

/// The running server.
pub struct Server {
    child: Child,
    pub base_url: String,
    pid: u32,
}

impl Server {
    /// Spawns `twofold serve` on a free port and waits for `/readyz`. Its log
    /// goes to `log_path`, not the terminal.
    pub async fn start(database_url: &str, log_path: &Path) -> anyhow::Result<Self> {
        Self::start_with(database_url, log_path, &[]).await
    }

    /// [`Server::start`] with more flags (a role, say).
    pub async fn start_with(database_url: &str, log_path: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_env(database_url, log_path, extra, &[]).await
    }

    /// [`Server::start_with`] with `env` set in the process's environment.
    pub async fn start_env(
        database_url: &str,
        log_path: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let log = std::fs::File::create(log_path).with_context(|| format!("create {}", log_path.display()))?;
        let port = free_port()?;
        let child = Command::new(TWOFOLD_BIN)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
                "--max-connections",
                "32",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {TWOFOLD_BIN}"))?;
        let pid = child.id();
        let mut server = Self { child, base_url: format!("http://127.0.0.1:{port}"), pid };
        server
            .wait_ready(Duration::from_secs(60))
            .await
            .with_context(|| format!("server log: {}", log_path.display()))?;
        progress!("server pid {pid} ready at {}", server.base_url);
        Ok(server)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.base_url);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("check the server process")? {
                bail!("the server exited during start-up ({status})");
            }
            if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            // The process tells this one nothing when it is ready: ask /readyz again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server was not ready within {timeout:?}")
    }

    /// Peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid)
    }

    /// Asks the server to shut down (SIGTERM through `kill`, std has no
    /// signals), and kills it if it has not exited within 5 s.
    pub async fn stop(mut self) {
        terminate(&mut self.child, "server").await;
        // Drop kills and reaps it if it is still there.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// SIGTERM (through `kill`: std has no signals), then waits up to 5 s for
/// the child to exit; says which happened.
pub async fn terminate(child: &mut Child, what: &str) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            progress!("{what} stopped");
            return;
        }
        // A child's exit signals nothing to an async loop here: look again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress!("{what} did not stop within 5 s; killing it");
}

/// Kills the child if it still runs, and reaps it (for `Drop`).
pub fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// utime + stime of a process from /proc/PID/stat, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (no libc here); 100 on every mainstream Linux.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The soft limit on open files of this process (inherited by the server).
pub fn open_file_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}
