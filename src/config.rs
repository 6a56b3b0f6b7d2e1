//! Configuration: the only place flags and environment variables are read.
//! Every flag has an environment variable of the same name in capitals with
//! a `TWOFOLD_` prefix (except `DATABASE_URL` and `READ_DATABASE_URL`).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{Mode, PoisonPolicy};

#[derive(Debug, Parser)]
#[command(
    name = "twofold",
    version,
    about = "Twofold: a CQRS order service with a GraphQL API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// How the command wants its log lines (`serve` may ask for JSON).
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Some(Command::Serve(args)) => args.log_format,
            None => self.serve.log_format,
            Some(_) => LogFormat::Text,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API and run the projections (the default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Rebuild projections by replaying the event log (blue/green, while the service runs).
    Rebuild(RebuildArgs),
    /// Print each projection's mode, status, checkpoint, lag and last error.
    Projections(DatabaseArgs),
    /// Fill the database with demo data through the real command path.
    DemoData(DemoDataArgs),
    /// List, retry or skip the events projections could not apply.
    DeadLetters(DeadLettersArgs),
    /// Mint a bearer token (HS256, with the configured secret) for GraphiQL, scripts and tests.
    Token(TokenArgs),
}

/// How bearer tokens are verified (`serve`) or minted (`token`).
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// HS256 secret (at least 32 bytes). With no secret and no JWKS file the
    /// service runs in open development mode: every request acts as staff.
    #[arg(long, env = "TWOFOLD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A JSON Web Key Set file with RS256/ES256 public keys (picked by `kid`).
    #[arg(long, env = "TWOFOLD_JWKS_FILE")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Required `iss` of tokens (minted tokens carry it).
    #[arg(long, env = "TWOFOLD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens (minted tokens carry it).
    #[arg(long, env = "TWOFOLD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp`, in seconds.
    #[arg(long, env = "TWOFOLD_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// customer, staff or admin.
    #[arg(long)]
    pub role: String,
    /// The customer a customer token acts as (required for --role customer).
    #[arg(long)]
    pub customer_id: Option<uuid::Uuid>,
    /// The token's `sub` (default: the customer id, or the role).
    #[arg(long)]
    pub sub: Option<String>,
    /// How long the token lives: e.g. 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `90s`, `30m`, `1h`, `7d` (or plain seconds), at most a year.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("'{text}' is not a duration like 90s, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("'{text}': the unit must be s, m, h or d")),
    };
    if seconds == 0 || seconds > 366 * 86_400 {
        return Err(format!("'{text}': a token lives between 1 second and a year"));
    }
    Ok(Duration::from_secs(seconds))
}

#[derive(Debug, Clone, Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: DeadLetterAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadLetterAction {
    /// Open dead letters, newest first.
    List {
        /// Only this projection's.
        #[arg(long)]
        projection: Option<String>,
        /// Include retried and skipped ones.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The projection, stopped at this dead letter, tries the event again.
    Retry {
        id: i64,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The projection, stopped at this dead letter, moves past the event.
    Skip {
        id: i64,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

impl DeadLetterAction {
    pub fn database(&self) -> &DatabaseArgs {
        match self {
            Self::List { database, .. } | Self::Retry { database, .. } | Self::Skip { database, .. } => database,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// Projections to rebuild (see `twofold projections`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub projections: Vec<String>,
    /// Rebuild every projection (in one pass over the log).
    #[arg(long)]
    pub all: bool,
    /// Replay only up to this token (inclusive), into a named copy `<table>__<as>` (time travel, for audits).
    #[arg(long, requires = "copy_name")]
    pub until: Option<String>,
    /// The copy's name with `--until` (a-z, 0-9, _).
    #[arg(long = "as", value_name = "NAME")]
    pub copy_name: Option<String>,
    /// Events per replay transaction.
    #[arg(long, default_value_t = crate::catalog::REPLAY_BATCH)]
    pub batch_size: u64,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoDataArgs {
    #[arg(long, default_value_t = 100)]
    pub customers: usize,
    #[arg(long, default_value_t = 50)]
    pub products: usize,
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Write database (write model, event log, command log): sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB.
    /// (Its value is never printed: a URL may hold a password.)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://twofold.db?mode=rwc",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: String,
    /// Read database (read views and checkpoints); defaults to the write database.
    #[arg(long, env = "READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// Connections for commands (the write pool).
    #[arg(long, env = "TWOFOLD_MAX_CONNECTIONS", default_value_t = 6)]
    pub max_connections: u32,
    /// Connections for queries (the read pool, separate so reads never starve commands).
    #[arg(long, env = "TWOFOLD_READ_MAX_CONNECTIONS", default_value_t = 6)]
    pub read_max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub use crate::catalog::Role;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TWOFOLD_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// What this process does: all, api, projector or exporter.
    #[arg(long, env = "TWOFOLD_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Projection modes, e.g. `order_summary=inline,daily_sales=async` (default: all async).
    #[arg(long, env = "TWOFOLD_PROJECTION_MODES", value_delimiter = ',', value_parser = parse_mode)]
    pub projection_mode: Vec<(String, Mode)>,
    /// Poison-event policies, e.g. `order_activity=skip` or `event_export=skip` (default: all stop).
    #[arg(long, env = "TWOFOLD_POISON_POLICIES", value_delimiter = ',', value_parser = parse_policy)]
    pub poison_policy: Vec<(String, PoisonPolicy)>,
    #[command(flatten)]
    pub export: ExportArgs,
    /// Events per projection batch.
    #[arg(long, env = "TWOFOLD_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: u64,
    /// Safety-net poll of the event log, in milliseconds.
    #[arg(long, env = "TWOFOLD_POLL_INTERVAL_MS", default_value_t = 500)]
    pub poll_interval_ms: u64,
    /// How often a standby tries to take over a projection when no
    /// release notice arrives (a leader that died without one), in milliseconds.
    #[arg(long, env = "TWOFOLD_STANDBY_RETRY_MS", default_value_t = 1000)]
    pub standby_retry_ms: u64,
    /// A projection behind the log with no progress for this long is
    /// `stalled` (and `/readyz` answers 503), in milliseconds.
    #[arg(long, env = "TWOFOLD_STALL_AFTER_MS", default_value_t = 2000)]
    pub stall_after_ms: u64,
    /// How long `consistentWith` waits by default, in milliseconds.
    #[arg(long, env = "TWOFOLD_CONSISTENCY_WAIT_MS", default_value_t = 2000)]
    pub consistency_wait_ms: u64,
    /// The longest wait a client may ask for (`writeVisible.timeoutMs`), in milliseconds.
    #[arg(long, env = "TWOFOLD_CONSISTENCY_MAX_WAIT_MS", default_value_t = 10_000)]
    pub consistency_max_wait_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "TWOFOLD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Longest a request may run, in milliseconds.
    #[arg(long, env = "TWOFOLD_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// Most WebSocket connections served at once (more get HTTP 503).
    #[arg(long, env = "TWOFOLD_WS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub ws_max_connections: usize,
    /// Most subscriptions on one WebSocket connection.
    #[arg(long, env = "TWOFOLD_WS_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub ws_max_subscriptions: usize,
    /// How long a WebSocket client may take to accept one message before it is disconnected, in milliseconds.
    #[arg(long, env = "TWOFOLD_WS_SEND_TIMEOUT_MS", default_value_t = 10_000)]
    pub ws_send_timeout_ms: u64,
    /// A static token that acts as the admin role (`Authorization: Bearer <token>`), alongside JWTs.
    #[arg(long, env = "TWOFOLD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Deepest query accepted (introspection is measured by its own rule, 24 levels).
    #[arg(long, env = "TWOFOLD_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: u64,
    /// Most fields a document may select once its fragments are expanded.
    #[arg(long, env = "TWOFOLD_MAX_FIELDS", default_value_t = 2_000)]
    pub max_fields: u64,
    /// Most aliases a document may use once its fragments are expanded.
    #[arg(long, env = "TWOFOLD_MAX_ALIASES", default_value_t = 100)]
    pub max_aliases: u64,
    /// How long a command waits for a database connection before failing with UNAVAILABLE, in milliseconds.
    #[arg(long, env = "TWOFOLD_POOL_TIMEOUT_MS", default_value_t = 2_000)]
    pub pool_timeout_ms: u64,
    /// How long a query waits for a read connection before it is shed (HTTP 503, UNAVAILABLE), in milliseconds.
    #[arg(long, env = "TWOFOLD_READ_SHED_MS", default_value_t = 500)]
    pub read_shed_ms: u64,
    /// An origin whose pages may call the API from a browser (repeatable;
    /// exact, like https://app.example.com; `*` only in open development mode).
    #[arg(long = "cors-origin", env = "TWOFOLD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// A JSON map from document id (`sha256:<hex>`) to document: the trusted
    /// documents clients may send by `documentId` (validated at start).
    #[arg(long, env = "TWOFOLD_TRUSTED_DOCUMENTS")]
    pub trusted_documents: Option<std::path::PathBuf>,
    /// Run only the trusted documents (introspection stays open in open development mode).
    #[arg(long, env = "TWOFOLD_ONLY_TRUSTED", requires = "trusted_documents")]
    pub only_trusted: bool,
    /// Lets caches keep anonymous catalog reads by GET (`products`, `topProducts`) this many seconds.
    #[arg(long, env = "TWOFOLD_CATALOG_MAX_AGE")]
    pub catalog_max_age: Option<u64>,
    /// Serve /metrics on this address as well (e.g. an internal interface).
    #[arg(long, env = "TWOFOLD_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// How long `serve` keeps trying to reach its database at start-up, in
    /// milliseconds (default: no limit; /healthz answers meanwhile and
    /// /readyz says what is missing).
    #[arg(long, env = "TWOFOLD_STARTUP_TIMEOUT_MS")]
    pub startup_timeout_ms: Option<u64>,
    /// Most complex query accepted (each field costs 1, lists multiply).
    #[arg(long, env = "TWOFOLD_MAX_COMPLEXITY", default_value_t = 5000)]
    pub max_complexity: usize,
    /// Log format.
    #[arg(long, env = "TWOFOLD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A hot standby of the read database that serves queries (repeatable; `TWOFOLD_REPLICA_URLS`
    /// comma-separated). Commands, projectors and LISTEN stay on the primary.
    /// (Its value is never printed: a URL may hold a password.)
    #[arg(long = "replica-url", env = "TWOFOLD_REPLICA_URLS", value_delimiter = ',', hide_env_values = true)]
    pub replica_urls: Vec<String>,
    /// A replica further behind than this leaves rotation until it has caught up, in milliseconds.
    #[arg(long, env = "TWOFOLD_REPLICA_MAX_LAG_MS", default_value_t = 5_000)]
    pub replica_max_lag_ms: u64,
}

/// The exporter: the event log published to NATS JetStream (off without `--nats-url`).
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Export the event log to this NATS server (JetStream), e.g. `nats://127.0.0.1:4222`. Off when unset.
    /// (Its value is never printed: a URL may hold credentials.)
    #[arg(long, env = "TWOFOLD_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// The JetStream stream the events go to (created at start if missing).
    #[arg(long, env = "TWOFOLD_EXPORT_STREAM", default_value = "TWOFOLD_EVENTS", value_parser = parse_stream_name)]
    pub export_stream: String,
    /// Subjects are `<prefix>.<stream type>.<event type>`; the stream captures `<prefix>.>`.
    #[arg(long, env = "TWOFOLD_EXPORT_SUBJECT_PREFIX", default_value = "twofold.events", value_parser = parse_subject_prefix)]
    pub export_subject_prefix: String,
    /// The CloudEvents `source` of every exported event (a URI reference).
    #[arg(long, env = "TWOFOLD_EXPORT_SOURCE", default_value = "urn:twofold", value_parser = parse_source)]
    pub export_source: String,
    /// The stream's duplicate window (inside it JetStream drops a re-sent event by its `Nats-Msg-Id`), in milliseconds (at least 100).
    #[arg(long, env = "TWOFOLD_EXPORT_DUPLICATE_WINDOW_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(100..=7 * 24 * 3_600_000))]
    pub export_duplicate_window_ms: u64,
    /// Events per exported batch (published together; the checkpoint moves once all are acknowledged).
    #[arg(long, env = "TWOFOLD_EXPORT_BATCH_SIZE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub export_batch_size: u64,
    /// How long the exporter waits for the broker (connecting, an API call, a batch's acknowledgements), in milliseconds.
    #[arg(long, env = "TWOFOLD_EXPORT_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=20_000))]
    pub export_timeout_ms: u64,
}

fn parse_mode(s: &str) -> Result<(String, Mode), String> {
    parse_pair(s, &crate::catalog::View::names(), "projection")
}

fn parse_policy(s: &str) -> Result<(String, PoisonPolicy), String> {
    parse_pair(s, &crate::catalog::consumer_names(), "projection or exporter")
}

fn parse_pair<T: ValueEnum + Clone + Send + Sync + 'static>(
    s: &str,
    known: &[&str],
    what: &str,
) -> Result<(String, T), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let name = name.trim();
    if !known.contains(&name) {
        return Err(format!("unknown {what} '{name}'; known: {}", known.join(", ")));
    }
    let value = T::from_str(value.trim(), true).map_err(|e| format!("'{}': {e}", value.trim()))?;
    Ok((name.to_owned(), value))
}

/// A JetStream stream name: 1-64 characters of A-Z, a-z, 0-9, `_` and `-`.
fn parse_stream_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not a stream name: use 1-64 characters of A-Z, a-z, 0-9, _ and -"))
    }
}

/// A subject prefix: dot-separated tokens of A-Z, a-z, 0-9, `_` and `-` (no wildcards), at most 128 characters.
fn parse_subject_prefix(s: &str) -> Result<String, String> {
    let token_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if s.len() <= 128 && s.split('.').all(token_ok) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a subject prefix: use dot-separated tokens of A-Z, a-z, 0-9, _ and - (no wildcards), at most 128 characters"
        ))
    }
}

/// A CloudEvents source: 1-256 printable ASCII characters without spaces.
fn parse_source(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 256 && s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not a CloudEvents source: use a URI reference of 1-256 printable ASCII characters"))
    }
}

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

/// The exporter (see [`ExportArgs`]).
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

/// Every flag of `serve` as a standalone parser (for [`Settings::for_database`]).
#[derive(Debug, Parser)]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    fn parse_from<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ServeOnly::parse_from(args).serve
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
