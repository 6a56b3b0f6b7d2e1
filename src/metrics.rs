//! Prometheus metrics (`/metrics`).
//!
//! Counters and histograms are recorded where things happen (commands,
//! projector batches, WebSockets) through the `metrics` facade; per-projection
//! checkpoint and lag are read from the database at scrape time
//! (`crate::admin`), so each instance reports the truth of its own store.
//! A leaf: the names and the recorder, nothing of the other layers.
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const COMMANDS: &str = "twofold_commands_total";
pub const RESPONSE_CACHE: &str = "twofold_response_cache_total";
pub const COMMAND_DURATION: &str = "twofold_command_duration_seconds";
pub const EVENTS_APPENDED: &str = "twofold_events_appended_total";
pub const BATCH_SIZE: &str = "twofold_projection_batch_size";
pub const BATCH_DURATION: &str = "twofold_projection_batch_duration_seconds";
pub const DEAD_LETTERS: &str = "twofold_dead_letters_total";
pub const REBUILD_PROGRESS: &str = "twofold_rebuild_progress_ratio";
pub const WS_CONNECTIONS: &str = "twofold_ws_connections";
pub const SUBSCRIPTIONS: &str = "twofold_subscriptions_active";
pub const NOTICE_LATENCY: &str = "twofold_notice_latency_seconds";
pub const PROJECTION_ATTEMPTS: &str = "twofold_projection_attempts";
pub const HORIZON_FALLBACK: &str = "twofold_horizon_fallback";
pub const APPENDER_AGE: &str = "twofold_appender_oldest_age_seconds";
pub const HORIZON_WAIT: &str = "twofold_projection_horizon_wait_seconds";
pub const PROJECTOR_PANICS: &str = "twofold_projector_panics_total";
pub const WRITER_SLOT_WAIT: &str = "twofold_writer_slot_wait_seconds";
pub const WRITER_SLOT_TIMEOUTS: &str = "twofold_writer_slot_timeouts_total";
/// Waits and stalls of the projection runners.
pub const PROJECTOR_WAITS: &str = "twofold_projector_waits_total";
pub const PROJECTOR_SET_ASIDE: &str = "twofold_projection_set_aside_total";
pub const PROJECTOR_FENCED: &str = "twofold_projector_fenced_total";
pub const PROJECTOR_HELD_BACK: &str = "twofold_projector_held_back_total";
pub const HEARTBEAT_FAILURES: &str = "twofold_projector_heartbeat_failures_total";
/// Snapshots of a lazy view that stored something (label `projection`).
pub const SNAPSHOTS: &str = "twofold_lazy_snapshots_total";
/// Keys of a lazy view stored after a long fold (label `projection`).
pub const SNAPSHOT_KEYS: &str = "twofold_lazy_snapshot_keys_total";
/// Looks of a read at the token at event writers below its token still
/// open, before it folds (each a pause of 1–32 ms; see `crate::lazy`).
pub const FOLD_SETTLE_WAITS: &str = "twofold_fold_settle_waits_total";
/// Seconds a read replica is behind the read database's primary (label `replica`: its redacted URL).
pub const REPLICA_LAG: &str = "twofold_replica_lag_seconds";
/// 1 while a read replica serves queries, else 0 (label `replica`).
pub const REPLICA_IN_ROTATION: &str = "twofold_replica_in_rotation";
pub const SHED: &str = "twofold_requests_shed_total";
/// Lookups of the validated-document cache, by `result` (`hit`, `miss`).
pub const DOCUMENT_CACHE: &str = "twofold_document_cache_lookups_total";
pub const EXPORT_EVENTS: &str = "twofold_export_events_total";
pub const EXPORT_DUPLICATES: &str = "twofold_export_duplicates_total";
pub const EXPORT_ERRORS: &str = "twofold_export_publish_errors_total";
pub const EXPORT_ACK_LATENCY: &str = "twofold_export_ack_latency_seconds";
pub const EXPORT_DELAY: &str = "twofold_export_delay_seconds";
/// Kinds of [`EXPORT_ERRORS`].
pub const EXPORT_ERROR_KINDS: [&str; 4] = ["unavailable", "wrong_last_sequence", "rejected", "diverged"];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let latency_buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_SIZE.into()),
                        &[1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    describe_and_zero();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Every series exists from the start (at zero), so dashboards and alerts
/// never see a missing series.
fn describe_and_zero() {
    metrics::describe_counter!(COMMANDS, "Commands by type and outcome.");
    metrics::describe_counter!(
        RESPONSE_CACHE,
        "Query responses served from the response cache (hit) or computed (miss)."
    );
    metrics::describe_histogram!(COMMAND_DURATION, metrics::Unit::Seconds, "Command latency, from decode to commit.");
    metrics::describe_counter!(EVENTS_APPENDED, "Events appended to the log.");
    metrics::describe_histogram!(BATCH_SIZE, "Events per committed projection batch.");
    metrics::describe_histogram!(BATCH_DURATION, metrics::Unit::Seconds, "Duration of a projection batch transaction.");
    metrics::describe_counter!(DEAD_LETTERS, "Poison events written to dead_letter.");
    metrics::describe_counter!(
        FOLD_SETTLE_WAITS,
        "Looks of reads at the token at event writers below their token still open, before folding."
    );
    metrics::describe_gauge!(
        PROJECTION_ATTEMPTS,
        "Consecutive failed attempts of this instance's runner of each projection (0 while healthy)."
    );
    metrics::describe_gauge!(REBUILD_PROGRESS, "Progress of a running rebuild, 0 to 1.");
    metrics::describe_gauge!(WS_CONNECTIONS, "Open GraphQL WebSocket connections.");
    metrics::describe_gauge!(SUBSCRIPTIONS, "Active subscriptions.");
    metrics::describe_gauge!(REPLICA_LAG, metrics::Unit::Seconds, "How far each read replica is behind the primary.");
    metrics::describe_gauge!(REPLICA_IN_ROTATION, "1 while a read replica serves queries, else 0.");
    metrics::describe_histogram!(
        NOTICE_LATENCY,
        metrics::Unit::Seconds,
        "From an event's append to the notice of its projection batch."
    );
    metrics::describe_counter!(
        SHED,
        "Requests refused with UNAVAILABLE: no database connection was free in time, or the database was unreachable."
    );
    metrics::counter!(SHED).increment(0);
    metrics::describe_histogram!(
        WRITER_SLOT_WAIT,
        metrics::Unit::Seconds,
        "Each wait for this process's SQLite writer slot that could not take it at once."
    );
    metrics::describe_counter!(
        WRITER_SLOT_TIMEOUTS,
        "Waits for the SQLite writer slot that ran past their deadline (the caller got UNAVAILABLE)."
    );
    metrics::counter!(WRITER_SLOT_TIMEOUTS).increment(0);
    metrics::describe_counter!(
        PROJECTOR_WAITS,
        "What blocked a projection runner's step, by projection and kind (lock, sqlite_write_lock, horizon, writer_slot, database_outage, failing)."
    );
    metrics::describe_counter!(
        PROJECTOR_SET_ASIDE,
        "Projections set aside from a grouped batch because a lock wait ran past lock_timeout (PostgreSQL)."
    );
    metrics::describe_counter!(
        PROJECTOR_FENCED,
        "Batches a runner found fenced out (another runner moved the checkpoint or the fence first)."
    );
    metrics::describe_counter!(
        PROJECTOR_HELD_BACK,
        "Steps that found nothing to read while this process knew of newer appends (an open writer below the horizon)."
    );
    metrics::describe_counter!(HEARTBEAT_FAILURES, "Failed heartbeat writes of a projection leader.");
    metrics::counter!(HEARTBEAT_FAILURES).increment(0);
    metrics::describe_counter!(
        PROJECTOR_PANICS,
        "Projector tasks that panicked (each is logged, dead-letters the event it was at, and is restarted)."
    );
    metrics::describe_gauge!(
        HORIZON_FALLBACK,
        "1 when projections read below the global horizon (an event writer's xid is not visible to this role)."
    );
    metrics::describe_gauge!(
        APPENDER_AGE,
        metrics::Unit::Seconds,
        "How long the oldest transaction that may append to the event log has been running."
    );
    metrics::describe_histogram!(HORIZON_WAIT, metrics::Unit::Seconds, "Each wait of a projector for an open event writer below the horizon (the sum is the total time spent waiting).");
    metrics::describe_counter!(
        EXPORT_EVENTS,
        "Events the exporter published that the broker stored (acknowledged, not duplicates)."
    );
    metrics::describe_counter!(
        EXPORT_DUPLICATES,
        "Re-sent events the broker already held (dropped in its duplicate window, or found by a reconciliation)."
    );
    metrics::describe_counter!(
        EXPORT_ERRORS,
        "Failed publish attempts of the exporter, by kind: unavailable (broker unreachable, timeout), wrong_last_sequence (reconciled), rejected (poison), diverged (the stream disagrees with the exporter's record)."
    );
    metrics::describe_histogram!(
        EXPORT_ACK_LATENCY,
        metrics::Unit::Seconds,
        "From an exported batch's first publish to its last acknowledgement."
    );
    metrics::describe_histogram!(
        EXPORT_DELAY,
        metrics::Unit::Seconds,
        "Per exported event: from its append to the log to the broker's acknowledgement."
    );
    metrics::counter!(EXPORT_EVENTS).increment(0);
    metrics::counter!(EXPORT_DUPLICATES).increment(0);
    for kind in EXPORT_ERROR_KINDS {
        metrics::counter!(EXPORT_ERRORS, "kind" => kind).increment(0);
    }
    metrics::gauge!(HORIZON_FALLBACK).set(0.0);
    metrics::gauge!(APPENDER_AGE).set(0.0);
    metrics::counter!(EVENTS_APPENDED).increment(0);
    metrics::gauge!(WS_CONNECTIONS).increment(0.0);
    metrics::gauge!(SUBSCRIPTIONS).increment(0.0);
    for projection in crate::catalog::View::names() {
        metrics::gauge!(REBUILD_PROGRESS, "projection" => projection).increment(0.0);
    }
    // The exporter's series too: it dead-letters, retries and may panic like a projection.
    for projection in crate::catalog::consumer_names() {
        metrics::counter!(DEAD_LETTERS, "projection" => projection).increment(0);
        metrics::gauge!(PROJECTION_ATTEMPTS, "projection" => projection).set(0.0);
        metrics::counter!(PROJECTOR_PANICS, "projection" => projection).increment(0);
    }
}

/// Counts a request refused for want of a database connection. Logs at
/// most one line every ten seconds, with how many it stands for: under
/// overload a line per refusal would itself become the load.
pub fn shed(detail: &dyn std::fmt::Display) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    metrics::counter!(SHED).increment(1);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(10)) {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    *last = Some(std::time::Instant::now());
    let also = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(error = %detail, refused_since_last_line = also, "request refused: the database is unreachable or no connection was free in time (UNAVAILABLE)");
}

/// Renders the recorded metrics (the per-projection gauges read from the
/// database are appended by `crate::admin`).
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// A read replica's rotation and lag (lag left as it was when unknown: unreachable).
pub fn replica_state(replica: &str, in_rotation: bool, lag_seconds: Option<f64>) {
    metrics::gauge!(REPLICA_IN_ROTATION, "replica" => replica.to_owned()).set(if in_rotation { 1.0 } else { 0.0 });
    if let Some(lag) = lag_seconds {
        metrics::gauge!(REPLICA_LAG, "replica" => replica.to_owned()).set(lag);
    }
}
