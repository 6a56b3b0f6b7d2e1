//! `twofold serve` as a child process, for tests that need real processes
//! (signals, several instances). It binds port 0, and the test learns the
//! port from the process's own "serving" log line: the signal that it has
//! migrated, started and bound, with no port race and no polling.
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub child: Child,
    pid: u32,
    /// Bumped on every stderr line, so a test can wait for one.
    lines_seen: tokio::sync::watch::Sender<u64>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `twofold serve --bind 127.0.0.1:0 <args>` and waits for its
    /// serving line; panics with its stderr if it exits first.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "").await
    }

    /// [`Server::start`], logging `extra` directives too (e.g.
    /// `twofold::http=debug`, which logs each GraphQL request as it starts).
    pub async fn start_logging(args: &[&str], extra: &str) -> Self {
        Self::spawn(args, extra, &[], serving_address).await
    }

    /// [`Server::start`] with `env` set in the process's environment.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(args, "", env, serving_address).await
    }

    /// Starts `twofold serve` and returns as soon as it listens, before it
    /// has reached its database (its "listening" line).
    pub async fn start_early(args: &[&str]) -> Self {
        Self::spawn(args, "", &[], listening_address).await
    }

    /// Bumped on every stderr line.
    pub fn lines_seen(&self) -> tokio::sync::watch::Receiver<u64> {
        self.lines_seen.subscribe()
    }

    async fn spawn(args: &[&str], extra: &str, env: &[(&str, &str)], address_in: fn(&str) -> Option<String>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_twofold"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", format!("warn,twofold::cli=info,{extra}"))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start twofold");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines_seen, _) = tokio::sync::watch::channel(0_u64);
        let (bound, addr) = tokio::sync::oneshot::channel::<String>();
        {
            let (pipe, stderr, lines_seen) =
                (child.stderr.take().expect("piped stderr"), stderr.clone(), lines_seen.clone());
            tokio::spawn(async move {
                let mut bound = Some(bound);
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(addr) = address_in(&line) {
                        if let Some(bound) = bound.take() {
                            let _ = bound.send(addr);
                        }
                    }
                    {
                        let mut text = stderr.lock().unwrap_or_else(|p| p.into_inner());
                        text.push_str(&line);
                        text.push('\n');
                    }
                    lines_seen.send_modify(|n| *n += 1);
                }
            });
        }
        let addr = match tokio::time::timeout(Duration::from_secs(60), addr).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let _ = child.wait().await;
                panic!("twofold exited before serving: {}", stderr.lock().unwrap_or_else(|p| p.into_inner()));
            }
            Err(_) => panic!("twofold did not start serving within a minute"),
        };
        let pid = child.id().unwrap_or(0);
        Self { child, pid, base: format!("http://{addr}"), stderr, lines_seen }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until the process has written `count` stderr lines containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        let mut seen = self.lines_seen.subscribe();
        let found = tokio::time::timeout(
            Duration::from_secs(30),
            seen.wait_for(|_| self.stderr().lines().filter(|l| l.contains(needle)).count() >= count),
        )
        .await;
        assert!(matches!(found, Ok(Ok(_))), "no {needle:?} in the log: {}", self.stderr());
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("process {} did not exit within {within:?}: {}", self.pid(), self.stderr()),
        }
    }

    pub fn terminate(&self) {
        let status =
            std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process's resident memory now (`VmRSS`), in KiB: this server
    /// alone, not the test binary and the other tests in it.
    pub fn resident_kib(&self) -> u64 {
        self.memory_kib("VmRSS")
    }

    /// The most resident memory the process has had (`VmHWM`), in KiB.
    pub fn peak_resident_kib(&self) -> u64 {
        self.memory_kib("VmHWM")
    }

    fn memory_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}: {status}"))
    }
}

/// The address in the line a process logs once it listens (before it starts).
fn listening_address(line: &str) -> Option<String> {
    if !line.contains("twofold listening at") {
        return None;
    }
    let addr: String = line.split_once("http://")?.1.chars().take_while(|c| *c != '/').collect();
    (!addr.is_empty()).then_some(addr)
}

/// The address in the serving line (API or projector role), if `line` is it.
fn serving_address(line: &str) -> Option<String> {
    if !(line.contains("twofold serving GraphQL at")
        || line.contains("twofold running projections")
        || line.contains("twofold running the exporter"))
    {
        return None;
    }
    let addr: String = line.split_once("http://")?.1.chars().take_while(|c| *c != '/').collect();
    (!addr.is_empty()).then_some(addr)
}

/// Waits on the service's own PostgreSQL notifications (every batch, status
/// change and leadership release of every instance is announced): look at
/// the state, then [`PgSignals::next`], and look again.
pub struct PgSignals {
    listener: sqlx::postgres::PgListener,
    deadline: tokio::time::Instant,
}

impl PgSignals {
    pub async fn listen(url: &str) -> Self {
        let mut listener = sqlx::postgres::PgListener::connect(url).await.expect("listen");
        listener
            .listen_all(["twofold_log", "twofold_projection", "twofold_status", "twofold_leadership"])
            .await
            .expect("listen");
        Self { listener, deadline: tokio::time::Instant::now() + Duration::from_secs(60) }
    }

    /// Waits for the next notification (after a second without one, returns
    /// anyway). Panics with `what` once a minute has passed since `listen`.
    pub async fn next(&mut self, what: &str) {
        assert!(tokio::time::Instant::now() < self.deadline, "gave up waiting: {what}");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.listener.recv()).await;
    }
}
