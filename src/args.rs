//! The command line: every subcommand and flag, with clap, and the value
//! parsers that check them. The only place flags and environment variables
//! are read. Every flag has an environment variable of the same name in
//! capitals with a `TWOFOLD_` prefix (except `DATABASE_URL` and
//! `READ_DATABASE_URL`).
//!
//! It imports only `catalog` (the closed sets of names flag values are
//! checked against) and `defaults` (the defaults a layer's settings share,
//! each written there once): what the flags mean to a layer is not decided here but
//! in [`crate::settings`], which turns [`ServeArgs`] into each layer's own
//! settings. So adding a flag never drags a layer into the parser.
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{Mode, PoisonPolicy, Role};

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
    /// Where `serve` exports traces (no other command does).
    pub fn traces(&self) -> Option<crate::telemetry::TraceSettings> {
        let serve = match &self.command {
            Some(Command::Serve(args)) => args,
            None => &self.serve,
            Some(_) => return None,
        };
        Some(crate::telemetry::TraceSettings { endpoint: serve.otlp_endpoint.clone() })
    }

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
    /// Recovery snapshots of every view (`snapshot create FILE`; restore with `rebuild --from-snapshot FILE`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
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
    /// Start from the rows of this snapshot (`twofold snapshot create`) and replay only the events after it.
    #[arg(long, value_name = "FILE", conflicts_with = "until")]
    pub from_snapshot: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `twofold snapshot ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write every view with its checkpoint to FILE, all from one moment (SQLite: `VACUUM INTO`; PostgreSQL: one REPEATABLE READ transaction copied into the same SQLite file format).
    Create {
        /// The snapshot file to write (never overwritten).
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
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
    /// Segments per view, e.g. `order_summary=4` (PostgreSQL, async views; default 1; see docs/operators.md).
    #[arg(long, env = "TWOFOLD_PROJECTION_SEGMENTS", value_delimiter = ',', value_parser = crate::catalog::parse_segments)]
    pub projection_segments: Vec<(String, u32)>,
    #[command(flatten)]
    pub export: ExportArgs,
    /// Events per projection batch.
    #[arg(long, env = "TWOFOLD_BATCH_SIZE", default_value_t = crate::defaults::BATCH_SIZE)]
    pub batch_size: u64,
    /// Safety-net poll of the event log, in milliseconds.
    #[arg(long, env = "TWOFOLD_POLL_INTERVAL_MS", default_value_t = crate::defaults::POLL_INTERVAL_MS)]
    pub poll_interval_ms: u64,
    /// Under load, a projector begins a batch at least this long after it
    /// began the one before, so that the commits landing meanwhile share
    /// one transaction and one notice (in milliseconds; 0: at once). An idle
    /// projector never waits: its last batch is long past.
    #[arg(long, env = "TWOFOLD_PROJECTION_GATHER_MS", default_value_t = crate::defaults::PROJECTION_GATHER_MS,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub projection_gather_ms: u64,
    /// How often a standby tries to take over a projection when no
    /// release notice arrives (a leader that died without one), in milliseconds.
    #[arg(long, env = "TWOFOLD_STANDBY_RETRY_MS", default_value_t = crate::defaults::STANDBY_RETRY_MS)]
    pub standby_retry_ms: u64,
    /// Lazy views: snapshot once the log has grown this many events past one.
    #[arg(long, env = "TWOFOLD_LAZY_SNAPSHOT_EVENTS", default_value_t = crate::defaults::LAZY_SNAPSHOT_EVENTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lazy_snapshot_events: u64,
    /// Lazy views: snapshot at least this often when anything came, in milliseconds.
    #[arg(long, env = "TWOFOLD_LAZY_SNAPSHOT_MS", default_value_t = crate::defaults::LAZY_SNAPSHOT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub lazy_snapshot_ms: u64,
    /// Lazy views: store a key at once when a read of it folded more events than this…
    #[arg(long, env = "TWOFOLD_LAZY_HOT_EVENTS", default_value_t = crate::defaults::LAZY_HOT_EVENTS)]
    pub lazy_hot_events: usize,
    /// …or took longer than this, in milliseconds.
    #[arg(long, env = "TWOFOLD_LAZY_HOT_MS", default_value_t = crate::defaults::LAZY_HOT_MS)]
    pub lazy_hot_ms: u64,
    /// A projection behind the log with no progress for this long is
    /// `stalled` (and `/readyz` answers 503), in milliseconds.
    #[arg(long, env = "TWOFOLD_STALL_AFTER_MS", default_value_t = crate::defaults::STALL_AFTER_MS)]
    pub stall_after_ms: u64,
    /// How long `consistentWith` waits by default, in milliseconds.
    #[arg(long, env = "TWOFOLD_CONSISTENCY_WAIT_MS", default_value_t = crate::defaults::CONSISTENCY_WAIT_MS)]
    pub consistency_wait_ms: u64,
    /// The longest wait a client may ask for (`writeVisible.timeoutMs`), in milliseconds.
    #[arg(long, env = "TWOFOLD_CONSISTENCY_MAX_WAIT_MS", default_value_t = crate::defaults::CONSISTENCY_MAX_WAIT_MS)]
    pub consistency_max_wait_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "TWOFOLD_MAX_BODY_BYTES", default_value_t = crate::defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Longest a request may run, in milliseconds.
    #[arg(long, env = "TWOFOLD_REQUEST_TIMEOUT_MS", default_value_t = crate::defaults::REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Most WebSocket connections served at once (more get HTTP 503).
    #[arg(long, env = "TWOFOLD_WS_MAX_CONNECTIONS", default_value_t = crate::defaults::WS_MAX_CONNECTIONS)]
    pub ws_max_connections: usize,
    /// Most subscriptions on one WebSocket connection.
    #[arg(long, env = "TWOFOLD_WS_MAX_SUBSCRIPTIONS", default_value_t = crate::defaults::WS_MAX_SUBSCRIPTIONS)]
    pub ws_max_subscriptions: usize,
    /// How long a WebSocket client may take to accept one message before it is disconnected, in milliseconds.
    #[arg(long, env = "TWOFOLD_WS_SEND_TIMEOUT_MS", default_value_t = crate::defaults::WS_SEND_TIMEOUT_MS)]
    pub ws_send_timeout_ms: u64,
    /// A static token that acts as the admin role (`Authorization: Bearer <token>`), alongside JWTs.
    #[arg(long, env = "TWOFOLD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Deepest query accepted (introspection is measured by its own rule, 24 levels).
    #[arg(long, env = "TWOFOLD_MAX_DEPTH", default_value_t = crate::defaults::MAX_DEPTH)]
    pub max_depth: u64,
    /// Most fields a document may select once its fragments are expanded.
    #[arg(long, env = "TWOFOLD_MAX_FIELDS", default_value_t = crate::defaults::MAX_FIELDS)]
    pub max_fields: u64,
    /// Most aliases a document may use once its fragments are expanded.
    #[arg(long, env = "TWOFOLD_MAX_ALIASES", default_value_t = crate::defaults::MAX_ALIASES)]
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
    /// Query answers kept in memory while the read views they came from stand
    /// still (0 turns the response cache off; it is always off with an inline
    /// projection or with replicas).
    #[arg(long, env = "TWOFOLD_RESPONSE_CACHE_ENTRIES", default_value_t = crate::defaults::RESPONSE_CACHE_ENTRIES)]
    pub response_cache_entries: usize,
    /// The longest a kept answer is served, in milliseconds, however still its views stand.
    #[arg(long, env = "TWOFOLD_RESPONSE_CACHE_MAX_AGE_MS", default_value_t = crate::defaults::RESPONSE_CACHE_MAX_AGE_MS)]
    pub response_cache_max_age_ms: u64,
    /// Serve /metrics on this address as well (e.g. an internal interface).
    #[arg(long, env = "TWOFOLD_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// How long `serve` keeps trying to reach its database at start-up, in
    /// milliseconds (default: no limit; /healthz answers meanwhile and
    /// /readyz says what is missing).
    #[arg(long, env = "TWOFOLD_STARTUP_TIMEOUT_MS")]
    pub startup_timeout_ms: Option<u64>,
    /// Most complex query accepted (each field costs 1, lists multiply).
    #[arg(long, env = "TWOFOLD_MAX_COMPLEXITY", default_value_t = crate::defaults::MAX_COMPLEXITY)]
    pub max_complexity: usize,
    /// Log format.
    #[arg(long, env = "TWOFOLD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector, e.g. `http://127.0.0.1:4318`
    /// (default: `OTEL_EXPORTER_OTLP_ENDPOINT`; neither: no traces).
    #[arg(long, env = "TWOFOLD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
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
    /// The most by default: on a backlog, fewer, larger batches keep the broker busy (a million
    /// events: 41–45k/s at 1,000, 51–53k/s at 5,000); a quiet log's batches are small anyway.
    #[arg(long, env = "TWOFOLD_EXPORT_BATCH_SIZE", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub export_batch_size: u64,
    /// How long the exporter waits for the broker (connecting, an API call, a batch's acknowledgements), in milliseconds.
    #[arg(long, env = "TWOFOLD_EXPORT_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=20_000))]
    pub export_timeout_ms: u64,
}

fn parse_mode(s: &str) -> Result<(String, Mode), String> {
    let (name, mode) = parse_pair(s, &crate::catalog::View::names(), "projection")?;
    if mode == Mode::Lazy && !crate::catalog::View::parse(&name).is_some_and(crate::catalog::View::can_be_lazy) {
        let lazy: Vec<&str> = crate::catalog::View::ALL.iter().filter(|v| v.can_be_lazy()).map(|v| v.name()).collect();
        return Err(format!(
            "{name} cannot be lazy: its rows fold from the events of many streams, which no index finds; lazy views: {}",
            lazy.join(", ")
        ));
    }
    Ok((name, mode))
}

fn parse_policy(s: &str) -> Result<(String, PoisonPolicy), String> {
    parse_pair(s, &crate::catalog::consumer_names(), "projection or exporter")
}

fn parse_pair<T: ValueEnum + Clone + Send + Sync + 'static>(
    s: &str,
    known: &[&str],
    what: &str,
) -> Result<(String, T), String> {
    let values: Vec<String> =
        T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|v| v.get_name().to_owned()).collect();
    let (name, value) = s.split_once('=').ok_or_else(|| {
        format!("expected NAME=VALUE, got '{s}' (names: {}; values: {})", known.join(", "), values.join(", "))
    })?;
    let (name, value) = (name.trim(), value.trim());
    // Both halves are checked, so one message names everything that is wrong.
    let mut wrong = Vec::new();
    if !known.contains(&name) {
        wrong.push(format!("unknown {what} '{name}'; known: {}", known.join(", ")));
    }
    let parsed = T::from_str(value, true);
    if parsed.is_err() {
        wrong.push(format!("'{value}' is not one of {}", values.join(", ")));
    }
    match parsed {
        Ok(value) if wrong.is_empty() => Ok((name.to_owned(), value)),
        _ => Err(wrong.join("; ")),
    }
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

/// Every flag of `serve` as a standalone parser (for [`ServeArgs::parse_from`]).
#[derive(Debug, Parser)]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    /// The flags of `twofold serve` from `args` (the program name first), as
    /// the command line would give them, environment variables included:
    /// how `crate::settings::Settings::for_database` gets the very defaults
    /// `serve` runs with, rather than a second copy of them.
    pub fn parse_from<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ServeOnly::parse_from(args).serve
    }
}
