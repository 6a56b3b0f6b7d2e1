//! Wiring: connect, migrate, start the projectors, build the schema, serve.
//! `start` + `serve(listener, …, shutdown)` let tests run the real server on
//! `127.0.0.1:0`.
use std::sync::Arc;

use migration::{Migrator, MigratorTrait};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::command::CommandService;
use crate::config::Settings;
use crate::db::{ConnectError, Db};
use crate::graphql::TwofoldSchema;
use crate::inline::InlineProjections;
use crate::notice::Notices;
use crate::projection::runtime::{InlineApplier, Mode, Projector};
use crate::query::ReadModel;
use crate::token::LogPosition;

/// Why the service could not start (printed as one line).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot apply migrations to {url}: {source}")]
    Migrate { url: String, source: sea_orm::DbErr },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("start-up failed: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// The running parts of the service.
#[derive(Clone)]
pub struct Services {
    pub write_db: Db,
    pub read_db: Db,
    /// The read database, through sessions marked as projectors (PostgreSQL).
    pub projector_db: Db,
    pub commands: CommandService,
    pub reads: ReadModel,
    pub notices: Notices,
    pub schema: TwofoldSchema,
    pub appended: Arc<watch::Sender<LogPosition>>,
    pub admin: crate::ops::AdminService,
}

/// Applies migrations to the write database and, when separate, the read database.
pub async fn migrate(database_url: &str, read_database_url: Option<&str>) -> Result<(), StartError> {
    let write = Db::connect(database_url, 2).await?;
    migrate_db(&write).await?;
    if let Some(read_url) = read_database_url.filter(|u| *u != database_url) {
        migrate_db(&Db::connect(read_url, 2).await?).await?;
    }
    Ok(())
}

async fn migrate_db(db: &Db) -> Result<(), StartError> {
    Migrator::up(&db.conn, None).await.map_err(|source| StartError::Migrate { url: crate::db::redact(&db.url), source })
}

/// Connects, migrates, registers the projections and catches inline ones up.
pub async fn start(settings: &Settings) -> Result<Services, StartError> {
    crate::metrics::install();
    let write_db = Db::connect(&settings.database_url, settings.max_connections).await?;
    migrate_db(&write_db).await?;
    let read_db = match settings.read_database_url.as_deref().filter(|u| *u != settings.database_url) {
        Some(url) => {
            let db = Db::connect(url, settings.max_connections).await?;
            migrate_db(&db).await?;
            db
        }
        None => write_db.clone(),
    };
    let inline = InlineApplier::new(&settings.runtime);
    if inline.is_some() && !write_db.same_database_as(&read_db) {
        return Err(StartError::Config(
            "inline projections need the read views in the write database; drop --read-database-url or use async mode"
                .into(),
        ));
    }
    let projector_db = read_db.for_projectors(8).await?;
    let notices = Notices::default();
    let (appended, _) = watch::channel(LogPosition::START);
    let appended = Arc::new(appended);
    for projection in crate::projection::all() {
        let projector =
            Projector::new(projection, write_db.clone(), projector_db.clone(), notices.clone(), &settings.runtime);
        projector.register().await?;
        if projector.mode == Mode::Inline {
            projector.catch_up().await?;
        }
    }
    let inline: Option<Arc<dyn InlineProjections>> = inline.map(|i| Arc::new(i) as Arc<dyn InlineProjections>);
    let commands = CommandService::new(write_db.clone(), inline, appended.clone());
    let reads = ReadModel::new(read_db.clone(), write_db.clone(), notices.clone(), settings.consistency);
    let admin =
        crate::ops::AdminService::new(write_db.clone(), read_db.clone(), notices.clone(), settings.admin_token.clone());
    let schema = crate::graphql::build(Some(commands.clone()), Some(reads.clone()), notices.clone(), settings.schema);
    Ok(Services { write_db, read_db, projector_db, commands, reads, notices, schema, appended, admin })
}

/// Starts one projector task per projection.
pub fn spawn_projectors(services: &Services, settings: &Settings, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    crate::projection::all()
        .into_iter()
        .map(|projection| {
            let projector = Projector::new(
                projection,
                services.write_db.clone(),
                services.projector_db.clone(),
                services.notices.clone(),
                &settings.runtime,
            );
            tokio::spawn(projector.run(
                services.appended.subscribe(),
                settings.runtime.poll_interval,
                shutdown.child_token(),
            ))
        })
        .collect()
}

/// Serves HTTP on `listener` and runs the projectors until `shutdown`;
/// then lets in-flight requests finish and stops the projectors between batches.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let mut background =
        if settings.role.runs_projections() { spawn_projectors(&services, settings, &shutdown) } else { Vec::new() };
    background.extend(crate::notice::postgres::spawn(
        services.read_db.clone(),
        services.write_db.clone(),
        services.notices.clone(),
        services.appended.clone(),
        settings.runtime.poll_interval,
        shutdown.child_token(),
    ));
    let router = if settings.role.serves_api() {
        crate::http::router(services.clone(), settings.http)
    } else {
        crate::http::health_router(services.clone(), settings.http)
    };
    let server_shutdown = shutdown.clone();
    let served = axum::serve(listener, router.into_make_service())
        .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
        .await;
    shutdown.cancel();
    for task in background {
        let _ = task.await;
    }
    served.map_err(StartError::Serve)
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
