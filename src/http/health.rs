//! What operators and load balancers poll: `/healthz` (the process is up),
//! `/readyz` (the databases answer; which projections, replicas or the
//! exporter, if any, are in trouble) and `/metrics` (Prometheus text).
//! The API router serves all three; `--role projector` serves only these
//! ([`super::health_router`]), `--metrics-bind` only `/metrics`
//! ([`super::metrics_router`]).
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::AppState;
use crate::admin::Horizon;
use crate::catalog::Status;

/// Prometheus text: this process's metrics, then each projection's lines,
/// read from the checkpoints now.
pub(super) async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut body = crate::metrics::render();
    body.push_str(&state.admin.metrics_text().await);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}

/// Liveness: the process is up and answering (no database is asked).
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when both databases answer within a second (else 503). 503
/// `degraded` while a projection is stalled (behind the log with no
/// progress for `--stall-after-ms`), naming each and what it waits on: a
/// client's write would not become visible. 200 `degraded` when a
/// projection (or the exporter) is stopped, retrying or outdated, the
/// projectors had to fall back to the global horizon, or a read replica is
/// out of rotation (its queries go to the primary). `replicas` lists each
/// replica's state and lag.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let ready = state.admin.readiness().await;
    let (write_ok, read_ok) = (ready.write_database, ready.read_database);
    if !(write_ok && read_ok) {
        let body = json!({ "status": "unavailable", "writeDatabase": write_ok, "readDatabase": read_ok });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let Some(projections) = ready.projections else {
        let body = json!({ "status": "unavailable", "writeDatabase": true, "readDatabase": true, "error": "the projection checkpoints could not be read" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    // The exporter, when there is one: `degraded` (in `projections` too) while its broker is unreachable.
    let exporter = projections.iter().find(|p| p.row.name == crate::catalog::EXPORTER).map(|p| {
        let status = p.status_name();
        json!({ "status": status, "healthy": p.status().is_some_and(Status::is_healthy), "lag": p.lag, "lastError": p.last_error() })
    });
    let troubled: Vec<serde_json::Value> = projections
        .iter()
        .filter(|p| !p.status().is_some_and(Status::is_healthy))
        .map(|p| {
            let status = p.status_name();
            json!({ "name": p.row.name, "status": status, "lastError": p.last_error(), "attempts": p.attempts(), "lag": p.lag })
        })
        .collect();
    let stalled: Vec<serde_json::Value> = projections
        .iter()
        .filter_map(|p| Some((p, p.waiting_on.as_ref().filter(|_| p.status() == Some(Status::Stalled))?)))
        .map(|(p, wait)| {
            json!({
                "name": p.row.name,
                "lag": p.lag,
                "secondsSinceProgress": p.behind_for.as_secs_f64(),
                "waitingOn": wait,
                "cause": wait.describe(),
            })
        })
        .collect();
    let horizon = match ready.horizon {
        Horizon::Global => json!({
            "mode": "global",
            "reason": "an event writer's transaction id is not visible to this role (grant pg_read_all_stats); any open transaction on the server delays projections"
        }),
        Horizon::Appenders { oldest_appender_seconds } => {
            json!({ "mode": "appenders", "oldestAppenderSeconds": oldest_appender_seconds })
        }
        Horizon::Serial => json!({ "mode": "serial" }),
        Horizon::Unknown => json!({ "mode": "unknown" }),
    };
    // Replicas out of rotation leave their queries to the primary: degraded, still serving.
    let replicas: Vec<serde_json::Value> = state
        .replicas
        .iter()
        .flat_map(|set| set.report())
        .map(|r| json!({ "replica": r.name, "state": r.state.as_str(), "lagSeconds": r.lag_seconds, "lastError": r.last_error }))
        .collect();
    let replicas_out = replicas.iter().any(|r| r["state"] != crate::admin::replicas::ReplicaState::InRotation.as_str());
    // A troubled projection degrades its views; the instance still serves.
    let status =
        if troubled.is_empty() && ready.horizon != Horizon::Global && !replicas_out { "ready" } else { "degraded" };
    let stopped: Vec<&serde_json::Value> =
        troubled.iter().filter(|p| p["status"] == Status::Stopped.as_str()).collect();
    // `open`: no keys configured, every request acts as staff (development only).
    let auth = if state.auth.is_open() { "open" } else { "jwt" };
    let body = json!({ "status": status, "writeDatabase": true, "readDatabase": true, "projections": troubled, "stoppedProjections": stopped, "stalledProjections": stalled, "horizon": horizon, "exporter": exporter, "auth": auth, "replicas": replicas });
    if !stalled.is_empty() {
        // A stalled view lets clients down now: not ready (load balancers take note).
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(body).into_response()
}
