//! What `serve` needs to start, resolved once from its arguments
//! ([`crate::args::ServeArgs`]): each value already in the settings type of
//! the layer that uses it (`http`'s [`HttpLimits`], `auth`'s
//! [`AuthSettings`], `db`'s [`PoolOptions`], …), so each idea has one
//! definition, owned by its layer, and `app` hands each layer its part as
//! is, with no conversion between look-alike structs. What no layer type
//! holds as given (URLs, the manifest's path, the raw CORS origins, the
//! stall bound) is a plain field, which `app` turns into what the layer
//! takes at start, when it knows the rest (open mode, the manifest's text).
//!
//! The clamps that keep a flag's value workable (`.max(1)` and the like)
//! live here. What no flag sets is the layer's own default
//! (`WsLimits::default()`, `ShapeLimits::default()`), or is set here when
//! the layer has none (the replicas' check interval).
//!
//! It may use `args` and the layers whose settings it holds; only `app` and
//! `cli` use it (`main` needs only `args`).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{IdentityArgs, ServeArgs};
use crate::auth::AuthSettings;
use crate::catalog::Role;
use crate::db::replica::ReplicaSettings;
use crate::db::PoolOptions;
use crate::export::ExportSettings;
use crate::graphql::response_cache::ResponseCacheSettings;
use crate::graphql::shape::ShapeLimits;
use crate::graphql::SchemaLimits;
use crate::http::ws::WsLimits;
use crate::http::HttpLimits;
use crate::projection::runtime::RuntimeSettings;
use crate::query::ConsistencySettings;

/// Everything the service needs to start (see the module docs).
#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    /// How bearer tokens are verified, and the operators' admin token.
    pub identity: AuthSettings,
    pub database_url: String,
    pub read_database_url: Option<String>,
    /// The command pool (write database).
    pub commands_pool: PoolOptions,
    /// The query pool (read database).
    pub reads_pool: PoolOptions,
    pub metrics_bind: Option<SocketAddr>,
    /// How long start-up waits for an unreachable database (`None`: no limit).
    pub startup_timeout: Option<Duration>,
    /// How every projector runs (the exporter's runner too, with its own
    /// batch size: [`ExportSettings::runtime`]).
    pub runtime: RuntimeSettings,
    /// Behind the log with no progress for this long: `stalled`. The stall
    /// rule belongs to `notice` (`Notices::with_stall_after`), which has no
    /// settings type of its own for one duration.
    pub stall_after: Duration,
    /// The exporter; `None` without `--nats-url`.
    pub export: Option<ExportSettings>,
    pub consistency: ConsistencySettings,
    /// Request and WebSocket limits.
    pub http: HttpLimits,
    /// `--cors-origin` values, as given: checked at start, against the
    /// authenticator (`*` only in open development mode), into `http`'s
    /// `CorsOrigins`.
    pub cors_origins: Vec<String>,
    /// How long caches may keep anonymous catalog reads by GET (into
    /// `http`'s `WebSettings` beside the checked origins).
    pub catalog_max_age: Option<Duration>,
    /// Bounds on a GraphQL document.
    pub schema: SchemaLimits,
    /// The kept query answers (used only where no projection is inline and
    /// there is no replica: see `graphql::response_cache`).
    pub response_cache: ResponseCacheSettings,
    /// The trusted-documents manifest, read and checked at start (into
    /// `graphql`'s `DocumentSettings`, which holds the documents themselves).
    pub trusted_documents: Option<PathBuf>,
    /// Run only the trusted documents.
    pub only_trusted: bool,
    /// Hot standbys of the read database that serve queries (none by
    /// default); connected at start with [`Settings::replicas`].
    pub replica_urls: Vec<String>,
    /// How the replicas are judged.
    pub replicas: ReplicaSettings,
}

impl Settings {
    /// The defaults of `twofold serve` for a database URL (tests and tools):
    /// parsed from the flags, so they are the very defaults `serve` has.
    pub fn for_database(url: &str) -> Self {
        Self::from(&ServeArgs::parse_from(["twofold", "--database-url", url]))
    }
}

/// How bearer tokens are verified (`serve`) or minted (`token`, without an
/// admin token): blank values count as absent, so an empty environment
/// variable does not turn on a check.
pub fn identity(args: &IdentityArgs, admin_token: Option<String>) -> AuthSettings {
    let present = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    AuthSettings {
        jwt_secret: present(&args.jwt_secret),
        jwks_file: args.jwks_file.clone(),
        issuer: present(&args.jwt_issuer),
        audience: present(&args.jwt_audience),
        leeway: Duration::from_secs(args.jwt_leeway_secs),
        admin_token: present(&admin_token),
    }
}

impl From<&ServeArgs> for Settings {
    fn from(args: &ServeArgs) -> Self {
        Self {
            role: args.role,
            identity: identity(&args.identity, args.admin_token.clone()),
            database_url: args.database.database_url.clone(),
            read_database_url: args.database.read_database_url.clone(),
            // A zero that would stall or spin the service (and a command
            // pool under two connections) is raised to the least workable
            // value rather than refused, as `serve` always has.
            commands_pool: PoolOptions::new(
                args.database.max_connections.max(2),
                Duration::from_millis(args.pool_timeout_ms.max(1)),
            ),
            reads_pool: PoolOptions::new(
                args.database.read_max_connections,
                Duration::from_millis(args.read_shed_ms.max(1)),
            ),
            metrics_bind: args.metrics_bind,
            startup_timeout: args.startup_timeout_ms.map(Duration::from_millis),
            runtime: RuntimeSettings {
                batch_size: args.batch_size.max(1),
                poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
                gather: Duration::from_millis(args.projection_gather_ms),
                standby_retry: Duration::from_millis(args.standby_retry_ms.max(10)),
                modes: args.projection_mode.iter().cloned().collect(),
                policies: args.poison_policy.iter().cloned().collect(),
                segments: args.projection_segments.iter().cloned().collect(),
                snapshots: crate::projection::snapshotter::SnapshotSettings {
                    every_events: args.lazy_snapshot_events,
                    every: Duration::from_millis(args.lazy_snapshot_ms),
                    hot_events: args.lazy_hot_events,
                    hot_time: Duration::from_millis(args.lazy_hot_ms),
                },
            },
            stall_after: Duration::from_millis(args.stall_after_ms.max(10)),
            export: args.export.nats_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(|url| {
                ExportSettings {
                    nats_url: url.to_owned(),
                    stream: args.export.export_stream.clone(),
                    subject_prefix: args.export.export_subject_prefix.clone(),
                    source: args.export.export_source.clone(),
                    duplicate_window: Duration::from_millis(args.export.export_duplicate_window_ms),
                    batch_size: args.export.export_batch_size,
                    timeout: Duration::from_millis(args.export.export_timeout_ms),
                }
            }),
            // The longest wait a client may ask for is never below the
            // default one, which every client gets without asking.
            consistency: ConsistencySettings {
                default_wait: Duration::from_millis(args.consistency_wait_ms),
                max_wait: Duration::from_millis(args.consistency_max_wait_ms.max(args.consistency_wait_ms)),
                ..Default::default()
            },
            http: HttpLimits {
                max_body_bytes: args.max_body_bytes,
                request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
                // What no flag sets (message size, init timeout, keep-alive,
                // outbox) is the layer's own default.
                ws: WsLimits {
                    max_connections: args.ws_max_connections.max(1),
                    max_subscriptions_per_connection: args.ws_max_subscriptions.max(1),
                    send_timeout: Duration::from_millis(args.ws_send_timeout_ms.max(1)),
                    ..WsLimits::default()
                },
            },
            cors_origins: args.cors_origins.clone(),
            catalog_max_age: args.catalog_max_age.map(Duration::from_secs),
            response_cache: ResponseCacheSettings {
                entries: args.response_cache_entries,
                max_age: Duration::from_millis(args.response_cache_max_age_ms),
            },
            // Likewise the introspection depth, spreads and directives.
            schema: SchemaLimits {
                shape: ShapeLimits {
                    max_depth: args.max_depth,
                    max_fields: args.max_fields,
                    max_aliases: args.max_aliases,
                    ..ShapeLimits::default()
                },
                max_complexity: args.max_complexity,
            },
            trusted_documents: args.trusted_documents.clone(),
            only_trusted: args.only_trusted,
            replica_urls: args.replica_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            replicas: ReplicaSettings {
                max_lag: Duration::from_millis(args.replica_max_lag_ms.max(1)),
                // No flag sets it, and `ReplicaSettings` has no default.
                check_interval: Duration::from_millis(250),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults `serve` starts with, value by value (each layer's
    /// `Default` supplies some of them, so a change there shows here). Run
    /// without `TWOFOLD_*` flag variables set, as the tests are.
    #[test]
    fn the_defaults_are_those_of_serve() {
        let s = Settings::for_database("sqlite://defaults.db?mode=rwc");
        assert_eq!(s.role, Role::All);
        assert_eq!(s.database_url, "sqlite://defaults.db?mode=rwc");
        assert_eq!(s.read_database_url, None);
        assert_eq!(s.commands_pool, PoolOptions { max_connections: 6, acquire_timeout: Duration::from_secs(2) });
        assert_eq!(s.reads_pool, PoolOptions { max_connections: 6, acquire_timeout: Duration::from_millis(500) });
        assert_eq!(s.metrics_bind, None);
        assert_eq!(s.startup_timeout, None);
        assert_eq!(s.runtime.batch_size, 500);
        assert_eq!(s.runtime.poll_interval, Duration::from_millis(500));
        assert_eq!(s.runtime.standby_retry, Duration::from_secs(1));
        assert!(s.runtime.modes.is_empty() && s.runtime.policies.is_empty());
        assert_eq!(s.stall_after, Duration::from_secs(2));
        assert_eq!(s.export, None);
        assert_eq!(s.consistency.default_wait, Duration::from_secs(2));
        assert_eq!(s.consistency.max_wait, Duration::from_secs(10));
        assert_eq!(s.http.max_body_bytes, 256 * 1024);
        assert_eq!(s.http.request_timeout, Duration::from_secs(15));
        let ws = s.http.ws;
        assert_eq!((ws.max_connections, ws.max_subscriptions_per_connection), (10_000, 100));
        assert_eq!(ws.max_message_bytes, 64 * 1024);
        assert_eq!(ws.send_timeout, Duration::from_secs(10));
        assert_eq!(ws.init_timeout, Duration::from_secs(10));
        assert_eq!(ws.keepalive, Duration::from_secs(15));
        assert_eq!(ws.outbox, 64);
        assert!(s.cors_origins.is_empty());
        assert_eq!(s.catalog_max_age, None);
        assert_eq!(s.response_cache, ResponseCacheSettings { entries: 512, max_age: Duration::from_secs(1) });
        let shape = s.schema.shape;
        assert_eq!((shape.max_depth, shape.max_introspection_depth), (12, 24));
        assert_eq!((shape.max_fields, shape.max_spreads, shape.max_aliases), (2_000, 1_000, 100));
        assert_eq!(shape.max_directives, 8);
        assert_eq!(s.schema.max_complexity, 5000);
        assert_eq!((s.trusted_documents, s.only_trusted), (None, false));
        assert!(s.replica_urls.is_empty());
        assert_eq!(s.replicas.max_lag, Duration::from_secs(5));
        assert_eq!(s.replicas.check_interval, Duration::from_millis(250));
        let id = s.identity;
        assert_eq!((id.jwt_secret, id.jwks_file, id.issuer, id.audience), (None, None, None, None));
        assert_eq!((id.leeway, id.admin_token), (Duration::from_secs(30), None));
    }

    /// `serve` with no flags runs each layer as that layer's `Default` does
    /// (the flags and the layers read one `crate::defaults`): change either
    /// side alone, a layer's `Default` or a flag's `default_value_t`, and
    /// this fails. Run without `TWOFOLD_*` flag variables set.
    #[test]
    fn the_flags_default_to_each_layers_default() {
        let s = Settings::from(&ServeArgs::parse_from(["twofold"]));
        // (`RuntimeSettings` has no `PartialEq`; its `Debug` shows every
        // field, and its maps are empty here.)
        assert_eq!(format!("{:?}", s.runtime), format!("{:?}", RuntimeSettings::default()));
        assert_eq!(s.consistency, ConsistencySettings::default());
        assert_eq!(s.http, HttpLimits::default());
        assert_eq!(s.schema, SchemaLimits::default());
        assert_eq!(s.response_cache, ResponseCacheSettings::default());
        assert_eq!(s.stall_after, crate::notice::Progress::default().stall_after());
    }

    /// Values that would stall or spin the service are raised to the least
    /// workable one; blank secrets and URLs count as absent.
    #[test]
    fn unworkable_values_are_clamped_and_blanks_dropped() {
        let args = ServeArgs::parse_from([
            "twofold",
            "--max-connections=0",
            "--read-max-connections=0",
            "--pool-timeout-ms=0",
            "--read-shed-ms=0",
            "--batch-size=0",
            "--poll-interval-ms=0",
            "--standby-retry-ms=0",
            "--stall-after-ms=0",
            "--consistency-wait-ms=3000",
            "--consistency-max-wait-ms=1000",
            "--request-timeout-ms=0",
            "--ws-max-connections=0",
            "--ws-max-subscriptions=0",
            "--ws-send-timeout-ms=0",
            "--replica-max-lag-ms=0",
            "--replica-url= , postgres://standby/db",
            "--nats-url= ",
            "--jwt-secret= ",
            "--admin-token= ",
        ]);
        let s = Settings::from(&args);
        assert_eq!(s.commands_pool, PoolOptions { max_connections: 2, acquire_timeout: Duration::from_millis(1) });
        assert_eq!(s.reads_pool, PoolOptions { max_connections: 1, acquire_timeout: Duration::from_millis(1) });
        assert_eq!(s.runtime.batch_size, 1);
        assert_eq!(s.runtime.poll_interval, Duration::from_millis(10));
        assert_eq!(s.runtime.standby_retry, Duration::from_millis(10));
        assert_eq!(s.stall_after, Duration::from_millis(10));
        assert_eq!(s.consistency.max_wait, Duration::from_secs(3));
        assert_eq!(s.http.request_timeout, Duration::from_millis(1));
        assert_eq!((s.http.ws.max_connections, s.http.ws.max_subscriptions_per_connection), (1, 1));
        assert_eq!(s.http.ws.send_timeout, Duration::from_millis(1));
        assert_eq!(s.replicas.max_lag, Duration::from_millis(1));
        assert_eq!(s.replica_urls, ["postgres://standby/db"]);
        assert_eq!(s.export, None);
        assert_eq!((s.identity.jwt_secret, s.identity.admin_token), (None, None));
    }

    /// The exporter's flags, with `--nats-url` trimmed.
    #[test]
    fn the_exporter_is_configured_by_its_url() {
        let args = ServeArgs::parse_from(["twofold", "--nats-url", " nats://127.0.0.1:4222 "]);
        let export = Settings::from(&args).export.expect("an exporter");
        assert_eq!(
            export,
            ExportSettings {
                nats_url: "nats://127.0.0.1:4222".into(),
                stream: "TWOFOLD_EVENTS".into(),
                subject_prefix: "twofold.events".into(),
                source: "urn:twofold".into(),
                duplicate_window: Duration::from_secs(120),
                batch_size: 5_000,
                timeout: Duration::from_secs(5),
            }
        );
    }
}
