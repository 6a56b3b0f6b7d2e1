//! The defaults of `serve`'s flags that a layer's settings also start from,
//! each written once: [`crate::args`] shows them as the flags' defaults
//! (`default_value_t`), and each layer's `Default` is built from them
//! (`WsLimits::default()`, `ShapeLimits::default()`, …), so a test run with
//! the layer's default and a service started with no flags agree by
//! construction (`settings`' tests hold them to it).
//!
//! A leaf, so the parser can name these numbers without importing a layer.
//! Durations are in milliseconds, as the flags take them; the layers turn
//! them into `Duration`s. A flag no layer default shares (pool sizes, the
//! exporter's, demo data) keeps its one default in `args`; a limit no flag
//! sets keeps its one default in its layer.

// projection: how every projector runs (`RuntimeSettings`, `SnapshotSettings`).

/// Events per projection batch (`--batch-size`).
pub const BATCH_SIZE: u64 = 500;
/// The safety-net poll of the event log (`--poll-interval-ms`).
pub const POLL_INTERVAL_MS: u64 = 500;
/// Under load, a batch begins at least this long after the one before
/// it (`--projection-gather-ms`; 0: at once).
pub const PROJECTION_GATHER_MS: u64 = 0;
/// How often a standby tries to take over (`--standby-retry-ms`).
pub const STANDBY_RETRY_MS: u64 = 1_000;
/// Lazy views: snapshot once the log grew this many events (`--lazy-snapshot-events`).
pub const LAZY_SNAPSHOT_EVENTS: u64 = 1_000;
/// Lazy views: snapshot at least this often (`--lazy-snapshot-ms`).
pub const LAZY_SNAPSHOT_MS: u64 = 10_000;
/// Lazy views: a read that folded more events stores its key (`--lazy-hot-events`).
pub const LAZY_HOT_EVENTS: usize = 20;
/// Lazy views: …or that took longer (`--lazy-hot-ms`).
pub const LAZY_HOT_MS: u64 = 5;

// notice: the stall rule (`Progress`).

/// Behind the log with no progress for this long: stalled (`--stall-after-ms`).
pub const STALL_AFTER_MS: u64 = 2_000;

// query: read-your-own-writes waits (`ConsistencySettings`).

/// How long `consistentWith` waits by default (`--consistency-wait-ms`).
pub const CONSISTENCY_WAIT_MS: u64 = 2_000;
/// The longest wait a client may ask for (`--consistency-max-wait-ms`).
pub const CONSISTENCY_MAX_WAIT_MS: u64 = 10_000;

// http: requests and WebSockets (`HttpLimits`, `WsLimits`).

/// Largest request body, in bytes (`--max-body-bytes`).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest a request may run (`--request-timeout-ms`).
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;
/// WebSocket connections served at once (`--ws-max-connections`).
pub const WS_MAX_CONNECTIONS: usize = 10_000;
/// Subscriptions on one WebSocket connection (`--ws-max-subscriptions`).
pub const WS_MAX_SUBSCRIPTIONS: usize = 100;
/// How long a WebSocket client may take to accept a message (`--ws-send-timeout-ms`).
pub const WS_SEND_TIMEOUT_MS: u64 = 10_000;

// graphql: a document's bounds (`ShapeLimits`, `SchemaLimits`) and the kept
// answers (`ResponseCacheSettings`).

/// Deepest query outside introspection (`--max-depth`).
pub const MAX_DEPTH: u64 = 12;
/// Fields after expanding fragments (`--max-fields`).
pub const MAX_FIELDS: u64 = 2_000;
/// Aliases after expanding fragments (`--max-aliases`).
pub const MAX_ALIASES: u64 = 100;
/// Most complex query accepted (`--max-complexity`).
pub const MAX_COMPLEXITY: usize = 5_000;
/// Query answers kept in memory; 0 turns the cache off (`--response-cache-entries`).
/// 512: a 50-order page is about 12 KB.
pub const RESPONSE_CACHE_ENTRIES: usize = 512;
/// The longest a kept answer is served (`--response-cache-max-age-ms`).
pub const RESPONSE_CACHE_MAX_AGE_MS: u64 = 1_000;
