//! Wiring: connect, migrate, start the projectors, build the schema, serve.
//! One job: the order in which a process's parts start and stop, which
//! reads best as one sequence; the checks start-up makes before anything
//! serves are in [`preflight`].
//! `start` + `serve(listener, …, shutdown)` let tests run the real server on
//! `127.0.0.1:0`.
//!
//! This is the one module that knows every layer: it hands each layer its
//! own settings, as `crate::settings` resolved them from the command line,
//! and only what it needs (HTTP gets the API and the operations service,
//! never the databases).
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::catalog::Mode;
use crate::command::CommandService;
use crate::db::reach::Outlook;
use crate::db::replica::ReplicaSet;
use crate::db::{Db, PoolOptions, PROJECTOR_APPLICATION};
use crate::export::Exporter;
use crate::graphql::api::Api;
use crate::graphql::TwofoldSchema;
use crate::inline::InlineProjections;
use crate::notice::Notices;
use crate::projection::inline_applier::InlineApplier;
use crate::projection::projector::Projector;
use crate::query::ReadModel;
use crate::settings::Settings;
use crate::token::LogPosition;

mod error;
mod preflight;
pub use error::StartError;
use preflight::{check_segments, connect_replicas, documents, migrate_db, validate_trusted};
pub use preflight::{migrate, Migrated};

/// The warning of open development mode, printed once by `serve` (the only
/// command that serves requests), before it reaches its database.
fn warn_if_open(settings: &Settings) {
    let open = crate::auth::Authenticator::from_settings(&settings.identity).is_ok_and(|auth| auth.is_open());
    if open && settings.role.serves_api() {
        tracing::warn!(
            "OPEN DEVELOPMENT MODE: no --jwt-secret or --jwks-file, so every request acts as staff; never expose this server. \
             To see what a customer sees, send `Twofold-Role: customer` and `Twofold-Customer-Id: <id>` \
             (or `Twofold-Role: anonymous`); a role can be narrowed, never widened"
        );
    }
}

/// Starts the service ([`start_patiently`]) while answering on `listener`
/// at once: `/healthz` 200, `/readyz` 503 naming the kind of database
/// start-up waits for (never its address), anything else 503
/// `UNAVAILABLE` (see `crate::http::starting`). Warns once, first, when the
/// service will run in open development mode. Returns
/// the services and the same listening socket, for [`serve`] to take over
/// (connections that arrive in between wait in its backlog).
pub async fn start_answering(
    listener: TcpListener,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<(Services, TcpListener), StartError> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let bind_error = |e| StartError::Bind { addr: addr.clone(), source: e };
    let socket = listener.into_std().map_err(bind_error)?;
    let early = TcpListener::from_std(socket.try_clone().map_err(bind_error)?).map_err(bind_error)?;
    let listener = TcpListener::from_std(socket).map_err(bind_error)?;
    warn_if_open(settings);
    let starting = crate::http::starting::Starting::new(crate::db::reach::kind(&settings.database_url));
    let handover = CancellationToken::new();
    let early_server = {
        let (router, handover) = (crate::http::starting::router(starting.clone()), handover.clone());
        tokio::spawn(async move {
            let _ = axum::serve(early.tap_io(no_delay), router.into_make_service())
                .with_graceful_shutdown(handover.cancelled_owned())
                .await;
        })
    };
    let started = start_patiently(settings, &starting, shutdown).await;
    handover.cancel();
    let _ = early_server.await;
    Ok((started?, listener))
}

/// [`start`], again and again while its failure may clear by itself (a
/// refused connection, a time-out, a server starting up or out of
/// connection slots: see [`StartError::outlook`]), with back-off and
/// jitter, each try logged with its whole chain of causes and recorded in
/// `starting` for `/readyz` (in a few words, with no address), until it
/// starts, `settings.startup_timeout` passes, or `shutdown` is asked for.
/// A failure that needs a person ends it at once.
pub async fn start_patiently(
    settings: &Settings,
    starting: &crate::http::starting::Starting,
    shutdown: &CancellationToken,
) -> Result<Services, StartError> {
    let began = std::time::Instant::now();
    // At most a second apart: the service is up within about that of its database.
    let mut backoff =
        crate::backoff::Backoff::new(std::time::Duration::from_millis(100), std::time::Duration::from_secs(1));
    loop {
        let e = match start(settings).await {
            Ok(services) => {
                if backoff.failures() > 0 {
                    tracing::info!(tries = backoff.failures() + 1, "the database is reachable: started");
                }
                return Ok(services);
            }
            Err(e) => e,
        };
        let Outlook::MayClear(cause) = e.outlook() else { return Err(e) };
        if settings.startup_timeout.is_some_and(|limit| began.elapsed() >= limit) {
            return Err(e);
        }
        let pause = backoff.next_pause();
        starting.failed(cause.describe());
        tracing::warn!(
            attempt = backoff.failures(),
            error = %crate::failure::Chain(&e),
            retry_in_ms = pause.as_millis() as u64,
            "cannot start yet ({}); retrying",
            cause.describe()
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Err(StartError::Cancelled),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The running parts of the service.
///
/// Pools (connections per instance on PostgreSQL, see the connection budget in docs/operators.md):
/// commands (`write_db`), queries (`read_db`), and the projectors' own
/// small pools, whose sessions are marked as projector sessions.
#[derive(Clone)]
pub struct Services {
    /// The command pool, on the write database.
    pub write_db: Db,
    /// The query pool, on the read database (never shared with commands).
    pub read_db: Db,
    /// Hot standbys of the read database that serve the queries (`--replica-url`).
    pub replicas: Option<Arc<ReplicaSet>>,
    /// The projectors' pool on the read database (views and checkpoints).
    pub projector_db: Db,
    /// The projectors' pool on the write database (reading the log); the
    /// same pool as `projector_db` when both stores are one database.
    pub log_db: Db,
    pub commands: CommandService,
    pub reads: ReadModel,
    pub notices: Notices,
    pub schema: TwofoldSchema,
    pub api: Api,
    pub appended: Arc<watch::Sender<LogPosition>>,
    pub admin: Admin,
    /// Verifies bearer tokens (open development mode without keys).
    pub auth: crate::auth::Authenticator,
    /// CORS origins and GET caching.
    pub web: crate::http::web::WebSettings,
    /// True once the search backfill found every row indexed (see
    /// `crate::projection::search_backfill`).
    pub search_backfilled: watch::Sender<bool>,
    /// What readers ask of the lazy views' snapshotter (taken by the one
    /// `serve` that runs it).
    pub snapshot_wishes:
        Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<crate::projection::snapshotter::SnapshotWish>>>>,
}

/// The exporter's runner, when one is configured.
fn exporter(settings: &Settings, log_db: &Db, views_db: &Db, notices: &Notices) -> Option<Projector> {
    let export = settings.export.as_ref()?;
    let exporter = Exporter::new(export.clone(), views_db.clone());
    let runtime = export.runtime(&settings.runtime);
    Some(Projector::new(Arc::new(exporter), log_db.clone(), views_db.clone(), notices.clone(), &runtime))
}

/// Connections in each projector pool.
const PROJECTOR_CONNECTIONS: u32 = 3;

/// Connects, migrates, registers the projections and catches inline ones up.
pub async fn start(settings: &Settings) -> Result<Services, StartError> {
    crate::metrics::install();
    let auth =
        crate::auth::Authenticator::from_settings(&settings.identity).map_err(|e| StartError::Config(e.to_string()))?;
    let web = crate::http::web::WebSettings {
        cors: crate::http::web::CorsOrigins::parse(&settings.cors_origins, auth.is_open())
            .map_err(StartError::Config)?,
        catalog_max_age: settings.catalog_max_age,
    };
    match &settings.export {
        Some(export) => export.validate().map_err(|e| StartError::Config(e.to_string()))?,
        None if settings.role == crate::catalog::Role::Exporter => {
            return Err(StartError::Config("--role exporter needs --nats-url (or TWOFOLD_NATS_URL)".into()))
        }
        None => {}
    }
    let runtime = &settings.runtime;
    let write_db = Db::open(&settings.database_url, settings.commands_pool, "twofold").await?;
    migrate_db(&write_db).await?;
    let separate_read = settings.read_database_url.as_deref().filter(|u| *u != settings.database_url);
    let read_url = separate_read.unwrap_or(&settings.database_url);
    let read_db = Db::open(read_url, settings.reads_pool, "twofold").await?;
    if separate_read.is_some() {
        migrate_db(&read_db).await?;
    }
    let inline = InlineApplier::new(runtime);
    if inline.is_some() && !write_db.same_database_as(&read_db) {
        return Err(StartError::Config(
            "inline projections need the read views in the write database; drop --read-database-url or use async mode"
                .into(),
        ));
    }
    // A projector waits at most 2 s for a connection: while the database is
    // refused, sqlx retries within that wait at most 400 ms apart, so a
    // returning link is found within that.
    // A split view's segments apply side by side, one grouped loop per
    // segment index (see `spawn_projectors`): one more connection for each
    // loop past the first.
    let projector_pool =
        PoolOptions::new(PROJECTOR_CONNECTIONS + runtime.most_segments() - 1, std::time::Duration::from_secs(2));
    let projector_db = Db::open(read_url, projector_pool, PROJECTOR_APPLICATION).await?;
    let log_db = if separate_read.is_some() {
        Db::open(&settings.database_url, projector_pool, PROJECTOR_APPLICATION).await?
    } else {
        projector_db.clone()
    };
    check_segments(settings, &projector_db).await?;
    let notices = Notices::default().with_stall_after(settings.stall_after);
    let (appended, _) = watch::channel(LogPosition::START);
    let appended = Arc::new(appended);
    for projection in crate::projection::all() {
        let segments = runtime.segments_of(projection.name());
        let projector =
            Projector::new(projection.clone(), log_db.clone(), projector_db.clone(), notices.clone(), runtime);
        projector.register().await?;
        if projector.mode == Mode::Inline {
            projector.catch_up().await?;
        }
        if segments > 1 {
            for segment in crate::projection::segment::Segment::all(segments) {
                Projector::new(projection.clone(), log_db.clone(), projector_db.clone(), notices.clone(), runtime)
                    .in_segment(segment)
                    .register()
                    .await?;
            }
        }
    }
    // The exporter's checkpoint row, so `projections` lists it from the start.
    if let Some(exporter) = exporter(settings, &log_db, &projector_db, &notices) {
        exporter.register().await?;
    }
    // The response cache keys answers by the views' checkpoints: off where
    // those do not describe what a read sees (see crate::graphql::response_cache).
    let response_cache = match (&inline, settings.replica_urls.is_empty()) {
        (None, true) => Some(settings.response_cache),
        _ => None,
    };
    let inline: Option<Arc<dyn InlineProjections>> = inline.map(|i| Arc::new(i) as Arc<dyn InlineProjections>);
    let commands = CommandService::new(write_db.clone(), inline, appended.clone());
    let replicas = connect_replicas(settings, &read_db).await?;
    let mut reads = ReadModel::new(read_db.clone(), notices.clone(), settings.consistency);
    if let Some(replicas) = &replicas {
        reads = reads.with_replicas(replicas.clone());
    }
    // Lazy views and reads at the token fold the log through the command
    // pool (the log's own database) and read rows through the query pool;
    // a long fold asks the snapshotter (see `serve`) to store its key.
    let (wishes, wished) = tokio::sync::mpsc::channel(crate::projection::snapshotter::WISHES);
    let lazy: Vec<crate::catalog::View> =
        crate::catalog::View::ALL.into_iter().filter(|v| runtime.mode_of(v.name()) == Mode::Lazy).collect();
    let threshold =
        crate::lazy::HotThreshold { events: runtime.snapshots.hot_events, elapsed: runtime.snapshots.hot_time };
    let folder = crate::lazy::Folder::new(write_db.clone(), read_db.clone())
        .with_hot_keys(wishes, threshold)
        .with_settle_wait(settings.consistency.settle_wait)
        .with_commits(appended.subscribe());
    let reads = reads.with_folding(crate::query::served::Folding { folder, lazy });
    let admin = Admin::new(write_db.clone(), read_db.clone(), log_db.clone(), projector_db.clone(), notices.clone());
    let documents = documents(settings, auth.is_open())?;
    let api = crate::graphql::build_api(
        Some(commands.clone()),
        Some(reads.clone()),
        Some(admin.clone()),
        notices.clone(),
        settings.schema,
        documents,
        response_cache,
    );
    validate_trusted(&api).await?;
    let schema = api.schema.clone();
    Ok(Services {
        write_db,
        read_db,
        replicas,
        projector_db,
        log_db,
        commands,
        reads,
        notices,
        schema,
        api,
        appended,
        admin,
        auth,
        web,
        search_backfilled: watch::Sender::new(false),
        snapshot_wishes: Arc::new(std::sync::Mutex::new(Some(wished))),
    })
}

/// The node's advisory locks (PostgreSQL): one connection for the
/// leadership of every projection and of the exporter.
///
/// The segments of split views spread over the nodes that run them (see
/// [`crate::projection::leader::spread`]).
fn leadership(services: &Services, settings: &Settings) -> Option<Arc<crate::projection::leader::Locks>> {
    let runtime = &settings.runtime;
    let segments: Vec<String> = crate::projection::all()
        .iter()
        .filter(|_| settings.role.runs_projections())
        .filter(|p| runtime.mode_of(p.name()) == Mode::Async)
        .flat_map(|p| {
            let count = runtime.segments_of(p.name());
            (0..count).filter(move |_| count > 1).map(move |k| crate::catalog::segment_name(p.name(), k, count))
        })
        .collect();
    services
        .projector_db
        .is_postgres()
        .then(|| Arc::new(crate::projection::leader::Locks::new(&services.projector_db.url).spreading(&segments)))
}

/// Starts the supervised exporter task (see
/// [`crate::projection::supervisor::supervise_one`]) when one is configured.
pub fn spawn_exporter(
    services: &Services,
    settings: &Settings,
    shutdown: &CancellationToken,
    locks: Option<Arc<crate::projection::leader::Locks>>,
) -> Option<JoinHandle<()>> {
    let export = settings.export.as_ref()?;
    let (export_settings, runtime) = (export.clone(), export.runtime(&settings.runtime));
    let (log_db, views_db, notices) =
        (services.log_db.clone(), services.projector_db.clone(), services.notices.clone());
    let make = move || {
        let exporter = Exporter::new(export_settings.clone(), views_db.clone());
        Projector::new(Arc::new(exporter), log_db.clone(), views_db.clone(), notices.clone(), &runtime)
    };
    Some(tokio::spawn(crate::projection::supervisor::supervise_one(
        make,
        services.appended.subscribe(),
        settings.runtime.poll_interval,
        shutdown.child_token(),
        locks,
    )))
}

/// Starts the projectors: every async projection in one supervised group
/// (one read of the log and one transaction per batch for all of them, see
/// [`crate::projection::group`]), each inline one in a task of its own
/// (it only moves its checkpoint). On PostgreSQL they share one connection
/// for their advisory locks (`locks`, shared with the exporter).
pub fn spawn_projectors(
    services: &Services,
    settings: &Settings,
    shutdown: &CancellationToken,
    locks: Option<Arc<crate::projection::leader::Locks>>,
) -> Vec<JoinHandle<()>> {
    let runtime = &settings.runtime;
    // Lazy views have no runner (the snapshotter moves them, see `serve`).
    let (inline, grouped): (Vec<_>, Vec<_>) = crate::projection::all()
        .into_iter()
        .filter(|p| runtime.mode_of(p.name()) != Mode::Lazy)
        .partition(|p| runtime.mode_of(p.name()) == Mode::Inline);
    let (log_db, views_db, notices) =
        (services.log_db.clone(), services.projector_db.clone(), services.notices.clone());
    let build = {
        let runtime = runtime.clone();
        move |projection: Arc<dyn crate::projection::Projection>| {
            Projector::new(projection, log_db.clone(), views_db.clone(), notices.clone(), &runtime)
        }
    };
    let mut tasks = Vec::new();
    // One grouped loop per segment index, so a node's segments apply in
    // transactions of their own, side by side: the first holds the views
    // that are not split and every split view's segment 0, the k-th the
    // k-th segments. Nothing split: one loop, as always.
    // (Views that are not async are never split: start-up refuses it.)
    for index in 0..runtime.most_segments() {
        let members: Vec<(Arc<dyn crate::projection::Projection>, crate::projection::segment::Segment)> = grouped
            .iter()
            .filter_map(|p| {
                let count = runtime.segments_of(p.name());
                (index < count).then(|| (p.clone(), crate::projection::segment::Segment { index, count }))
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let build = build.clone();
        let make = move || members.iter().map(|(p, segment)| build(p.clone()).in_segment(*segment)).collect::<Vec<_>>();
        tasks.push(tokio::spawn(crate::projection::supervisor::supervise_group(
            make,
            services.appended.subscribe(),
            settings.runtime.poll_interval,
            shutdown.child_token(),
            locks.clone(),
        )));
    }
    for projection in inline {
        let build = build.clone();
        tasks.push(tokio::spawn(crate::projection::supervisor::supervise_one(
            move || build(projection.clone()),
            services.appended.subscribe(),
            settings.runtime.poll_interval,
            shutdown.child_token(),
            locks.clone(),
        )));
    }
    tasks
}

/// Serves HTTP on `listener` and runs the projectors until `shutdown`;
/// then lets in-flight requests finish and stops the projectors between batches.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let locks = leadership(&services, settings);
    let mut background = if settings.role.runs_projections() {
        spawn_projectors(&services, settings, &shutdown, locks.clone())
    } else {
        Vec::new()
    };
    if settings.role.runs_exporter() {
        background.extend(spawn_exporter(&services, settings, &shutdown, locks));
    }
    background.extend(crate::notice::postgres::spawn(
        services.projector_db.clone(),
        services.log_db.clone(),
        services.notices.clone(),
        services.appended.clone(),
        settings.runtime.poll_interval,
        shutdown.child_token(),
    ));
    let wishes = services.snapshot_wishes.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let (true, Some(wishes)) = (settings.role.runs_projections(), wishes) {
        let lazy: Vec<Projector> = crate::projection::all()
            .into_iter()
            .filter(|p| settings.runtime.mode_of(p.name()) == Mode::Lazy)
            .map(|p| {
                Projector::new(
                    p,
                    services.log_db.clone(),
                    services.projector_db.clone(),
                    services.notices.clone(),
                    &settings.runtime,
                )
            })
            .collect();
        background.push(tokio::spawn(crate::projection::snapshotter::run(
            lazy,
            services.log_db.clone(),
            settings.runtime.snapshots,
            wishes,
            services.appended.subscribe(),
            shutdown.child_token(),
        )));
    }
    if settings.role.runs_projections() {
        background.push(crate::projection::search_backfill::spawn(
            services.projector_db.clone(),
            services.search_backfilled.clone(),
            shutdown.child_token(),
        ));
    }
    if settings.role.runs_projections() || settings.role.runs_exporter() {
        background.push(crate::projection::heartbeat::spawn(
            services.projector_db.clone(),
            services.notices.clone(),
            shutdown.child_token(),
        ));
    }
    if services.log_db.is_postgres() {
        background.push(tokio::spawn(crate::projection::reader::monitor_horizon(
            services.log_db.clone(),
            std::time::Duration::from_secs(5),
            shutdown.child_token(),
        )));
    }
    if let Some(replicas) = &services.replicas {
        background.push(tokio::spawn(replicas.clone().run(shutdown.child_token())));
    }
    let connections = tokio_util::task::TaskTracker::new();
    let endpoints = crate::http::Endpoints {
        api: services.api.clone(),
        admin: services.admin.clone(),
        auth: services.auth.clone(),
        web: services.web.clone(),
        replicas: services.replicas.clone(),
        limits: settings.http,
    };
    let router = if settings.role.serves_api() {
        crate::http::router(endpoints.clone(), shutdown.clone(), connections.clone())
    } else {
        crate::http::health_router(endpoints.clone(), shutdown.clone())
    };
    if let Some(addr) = settings.metrics_bind {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| StartError::Bind { addr: addr.to_string(), source: e })?;
        let metrics = crate::http::metrics_router(endpoints.clone(), shutdown.clone());
        let stop = shutdown.clone();
        background.push(tokio::spawn(async move {
            let _ = axum::serve(listener.tap_io(no_delay), metrics.into_make_service())
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        }));
    }
    let server_shutdown = shutdown.clone();
    let served = axum::serve(listener.tap_io(no_delay), router.into_make_service())
        .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
        .await;
    shutdown.cancel();
    // WebSocket clients were told to go (1001): let those goodbyes leave.
    connections.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), connections.wait()).await;
    for task in background {
        let _ = task.await;
    }
    served.map_err(StartError::Serve)
}

/// Every accepted socket sends small writes at once. With Nagle's algorithm
/// on, the second of two small frames (a WebSocket `next` then `complete`)
/// waited for the client's delayed ACK: about 40 ms on every `writeVisible`.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
