//! Configuration: the settings `serve` starts with, resolved from its
//! arguments ([`crate::args`]) into plain values.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::args::{IdentityArgs, ServeArgs};
use crate::catalog::{Mode, PoisonPolicy, Role};

/// A connection pool's size, and how long a caller waits for one of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Pool {
    pub fn new(max_connections: u32, acquire_timeout: Duration) -> Self {
        Self { max_connections: max_connections.max(1), acquire_timeout }
    }
}

/// How projections run.
#[derive(Debug, Clone)]
pub struct Projections {
    pub batch_size: u64,
    /// Safety-net poll when no wake-up arrives.
    pub poll_interval: Duration,
    /// A standby's periodic take-over try (a release notice wakes it sooner).
    pub standby_retry: Duration,
    /// Behind with no progress for this long: `stalled`.
    pub stall_after: Duration,
    pub modes: HashMap<String, Mode>,
    pub policies: HashMap<String, PoisonPolicy>,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub jwt_secret: Option<String>,
    pub jwks_file: Option<std::path::PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    /// The operators' static admin token.
    pub admin_token: Option<String>,
}

impl Identity {
    pub fn from_args(args: &IdentityArgs, admin_token: Option<String>) -> Self {
        let present = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        Self {
            jwt_secret: present(&args.jwt_secret),
            jwks_file: args.jwks_file.clone(),
            issuer: present(&args.jwt_issuer),
            audience: present(&args.jwt_audience),
            leeway: Duration::from_secs(args.jwt_leeway_secs),
            admin_token: present(&admin_token),
        }
    }
}

/// The exporter (see [`crate::args::ExportArgs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub nats_url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub source: String,
    pub duplicate_window: Duration,
    pub batch_size: u64,
    pub timeout: Duration,
}

/// How long `consistentWith` and `writeVisible` wait.
#[derive(Debug, Clone, Copy)]
pub struct Consistency {
    pub default_wait: Duration,
    pub max_wait: Duration,
}

/// Hot standbys of the read database that serve queries (see [`ServeArgs::replica_urls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    pub urls: Vec<String>,
    pub max_lag: Duration,
    /// How often each replica's health and lag are measured.
    pub check_interval: Duration,
}

/// HTTP and WebSocket limits.
#[derive(Debug, Clone)]
pub struct Http {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub ws: WebSocket,
    /// `--cors-origin` values, as given (checked at start).
    pub cors_origins: Vec<String>,
    pub catalog_max_age: Option<Duration>,
}

/// WebSocket limits.
#[derive(Debug, Clone, Copy)]
pub struct WebSocket {
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_message_bytes: usize,
    pub send_timeout: Duration,
    pub init_timeout: Duration,
    pub keepalive: Duration,
    /// Messages the operations of one connection may queue for the socket.
    pub outbox: usize,
}

/// Bounds on a GraphQL document.
#[derive(Debug, Clone)]
pub struct Documents {
    /// The trusted-documents manifest, if any.
    pub trusted_documents: Option<std::path::PathBuf>,
    pub only_trusted: bool,
    pub max_depth: u64,
    pub max_introspection_depth: u64,
    pub max_fields: u64,
    pub max_spreads: u64,
    pub max_aliases: u64,
    pub max_directives: usize,
    pub max_complexity: usize,
}

/// Everything the service needs to start, resolved from the command line:
/// plain values only. `app` turns them into each layer's own settings, so
/// this module imports no layer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    pub identity: Identity,
    pub database_url: String,
    pub read_database_url: Option<String>,
    /// The command pool (write database).
    pub commands_pool: Pool,
    /// The query pool (read database).
    pub reads_pool: Pool,
    pub metrics_bind: Option<SocketAddr>,
    /// How long start-up waits for an unreachable database (`None`: no limit).
    pub startup_timeout: Option<Duration>,
    pub runtime: Projections,
    /// The exporter; `None` without `--nats-url`.
    pub export: Option<Export>,
    pub consistency: Consistency,
    pub http: Http,
    pub schema: Documents,
    /// Read replicas (none by default).
    pub replicas: Replicas,
}

impl Settings {
    /// The defaults of `twofold serve` for a database URL (tests and tools).
    pub fn for_database(url: &str) -> Self {
        let args = ServeArgs::parse_from(["twofold", "--database-url", url]);
        Self::from(&args)
    }
}

impl From<&ServeArgs> for Settings {
    fn from(args: &ServeArgs) -> Self {
        Self {
            role: args.role,
            identity: Identity::from_args(&args.identity, args.admin_token.clone()),
            database_url: args.database.database_url.clone(),
            read_database_url: args.database.read_database_url.clone(),
            commands_pool: Pool::new(
                args.database.max_connections.max(2),
                Duration::from_millis(args.pool_timeout_ms.max(1)),
            ),
            reads_pool: Pool::new(args.database.read_max_connections, Duration::from_millis(args.read_shed_ms.max(1))),
            metrics_bind: args.metrics_bind,
            startup_timeout: args.startup_timeout_ms.map(Duration::from_millis),
            runtime: Projections {
                batch_size: args.batch_size.max(1),
                poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
                standby_retry: Duration::from_millis(args.standby_retry_ms.max(10)),
                stall_after: Duration::from_millis(args.stall_after_ms.max(10)),
                modes: args.projection_mode.iter().cloned().collect(),
                policies: args.poison_policy.iter().cloned().collect(),
            },
            export: args.export.nats_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(|url| Export {
                nats_url: url.to_owned(),
                stream: args.export.export_stream.clone(),
                subject_prefix: args.export.export_subject_prefix.clone(),
                source: args.export.export_source.clone(),
                duplicate_window: Duration::from_millis(args.export.export_duplicate_window_ms),
                batch_size: args.export.export_batch_size,
                timeout: Duration::from_millis(args.export.export_timeout_ms),
            }),
            consistency: Consistency {
                default_wait: Duration::from_millis(args.consistency_wait_ms),
                max_wait: Duration::from_millis(args.consistency_max_wait_ms.max(args.consistency_wait_ms)),
            },
            http: Http {
                max_body_bytes: args.max_body_bytes,
                request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
                cors_origins: args.cors_origins.clone(),
                catalog_max_age: args.catalog_max_age.map(Duration::from_secs),
                ws: WebSocket {
                    max_connections: args.ws_max_connections.max(1),
                    max_subscriptions_per_connection: args.ws_max_subscriptions.max(1),
                    max_message_bytes: 64 * 1024,
                    send_timeout: Duration::from_millis(args.ws_send_timeout_ms.max(1)),
                    init_timeout: Duration::from_secs(10),
                    keepalive: Duration::from_secs(15),
                    outbox: 64,
                },
            },
            schema: Documents {
                trusted_documents: args.trusted_documents.clone(),
                only_trusted: args.only_trusted,
                max_depth: args.max_depth,
                max_introspection_depth: 24,
                max_fields: args.max_fields,
                max_spreads: 1_000,
                max_aliases: args.max_aliases,
                max_directives: 8,
                max_complexity: args.max_complexity,
            },
            replicas: Replicas {
                urls: args.replica_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
                max_lag: Duration::from_millis(args.replica_max_lag_ms.max(1)),
                check_interval: Duration::from_millis(250),
            },
        }
    }
}
