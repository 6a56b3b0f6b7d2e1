//! Liveness after a cut link (issue 26), PostgreSQL only: a `--role
//! projector` instance reaches PostgreSQL through a TCP proxy; an `--role
//! api` instance takes orders directly. Each round cuts every proxied
//! connection and refuses new ones for a moment, places orders meanwhile (so
//! a backlog waits), restores the link, and measures from the link's return
//! to the first projected batch (its `twofold_projection` NOTIFY, heard
//! directly). Target: p99 ≤ 1 s.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::progress;
use crate::report::{lag_text, Figure, Report};
use crate::server::Server;
use crate::stats::Summary;
use crate::workload::Catalog;

/// Longest wait for the first batch after a link returns.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
const RESUME_P99_MS: f64 = 1_000.0;

pub async fn measure(
    database_url: &str,
    log_dir: &std::path::Path,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let target = database_url.rsplit_once('@').and_then(|(_, rest)| rest.split_once('/')).map(|(host, _)| host);
    let target = target.context("a host in the database URL")?.to_owned();
    let proxy = Proxy::start(&target).await?;
    let (user, rest) = database_url.split_once('@').context("user@host in the database URL")?;
    let name = rest.split_once('/').map(|(_, db)| db).unwrap_or("");
    let via = format!("{user}@127.0.0.1:{}/{name}", proxy.port);
    // The projector first: an API instance alone is not ready while a view is behind with no runner.
    let projector = Server::start_with(&via, &log_dir.join("resume-projector.log"), &["--role", "projector"])
        .await
        .context("start the projector behind the proxy")?;
    let api = Server::start_with(database_url, &log_dir.join("resume-api.log"), &["--role", "api"])
        .await
        .context("start the API instance")?;
    let gql = Gql::new(&api.base_url, 4)?;
    let mut listener = sqlx::postgres::PgListener::connect(database_url).await.context("LISTEN")?;
    listener.listen("twofold_projection").await?;
    let rounds = scale.resume_cuts;
    let mut resumed = Vec::with_capacity(rounds);
    let mut missed = 0;
    for round in 0..rounds as u64 {
        proxy.cut();
        for k in 0..3 {
            gql.place_order(catalog, &catalog.random_order(0x5E5_0000_0000 + round * 8 + k)).await?;
        }
        // The cut lasts a while with writes behind it: its length is the scenario, not a wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Forget what was announced before the cut.
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), listener.recv()).await {}
        proxy.restore().await?;
        let back = Instant::now();
        match tokio::time::timeout(RESUME_TIMEOUT, listener.recv()).await {
            Ok(Ok(_)) => resumed.push(back.elapsed()),
            _ => missed += 1,
        }
        // Let it catch up before the next cut.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let summary = Summary::of(&resumed);
    progress!("link return → first projected batch over {rounds} cuts: {} ({missed} missed)", summary.brief());
    report.add_wire(
        Figure::new(format!("link return → first projected batch ({rounds} cuts)"), lag_text(&summary))
            .num(summary.p99_ms)
            .baseline(format!("{missed} of {rounds} not resumed within {RESUME_TIMEOUT:?}"), None)
            .target("p99 ≤ 1 s", Some(summary.count > 0 && missed == 0 && summary.p99_ms <= RESUME_P99_MS)),
    );
    projector.stop().await;
    api.stop().await;
    Ok(())
}

/// A TCP proxy the phase can cut (every connection dropped, the port
/// closed so new ones are refused) and restore (the same port again).
struct Proxy {
    port: u16,
    target: String,
    state: Arc<Mutex<Tasks>>,
}

/// The proxy's acceptor, and the pipes it opened.
type Tasks = (Option<JoinHandle<()>>, Vec<JoinHandle<()>>);

impl Proxy {
    async fn start(target: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind the proxy")?;
        let proxy = Self { port: listener.local_addr()?.port(), target: target.to_owned(), state: Arc::default() };
        proxy.serve(listener);
        Ok(proxy)
    }

    fn serve(&self, listener: TcpListener) {
        let (state, target) = (self.state.clone(), self.target.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.1.retain(|p| !p.is_finished());
                state.1.push(pipe);
            }
        });
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(acceptor);
    }

    fn cut(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(acceptor) = state.0.take() {
            acceptor.abort();
        }
        for pipe in state.1.drain(..) {
            pipe.abort();
        }
    }

    async fn restore(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() >= deadline => return Err(e).context("take the proxy's port again"),
                // The kernel frees the port without telling anyone: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        self.serve(listener);
        Ok(())
    }
}
