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
use serde::Serialize;
use serde_json::json;

use super::state::AppState;
use crate::admin::{Horizon, ProjectionState};
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

/// A projection in trouble, as `/readyz` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Troubled<'a> {
    name: &'a str,
    status: &'static str,
    last_error: Option<String>,
    attempts: i64,
    lag: i64,
}

impl<'a> Troubled<'a> {
    fn of(p: &'a ProjectionState) -> Self {
        Self {
            name: p.name(),
            status: p.status().as_str(),
            last_error: p.last_error(),
            attempts: p.attempts(),
            lag: p.lag,
        }
    }
}

/// A stalled projection and what it waits on.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stalled<'a> {
    name: &'a str,
    lag: i64,
    seconds_since_progress: f64,
    /// What it waits on (`crate::notice::progress::Wait`, as admin hands it out).
    waiting_on: serde_json::Value,
    cause: String,
}

/// The exporter, when there is one.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exporter {
    status: &'static str,
    healthy: bool,
    lag: i64,
    last_error: Option<String>,
}

/// A read replica's state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Replica {
    replica: String,
    state: &'static str,
    lag_seconds: Option<f64>,
    last_error: Option<String>,
}

/// `/readyz` when both databases answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ready<'a> {
    status: &'static str,
    write_database: bool,
    read_database: bool,
    projections: Vec<Troubled<'a>>,
    stopped_projections: Vec<Troubled<'a>>,
    stalled_projections: Vec<Stalled<'a>>,
    horizon: serde_json::Value,
    exporter: Option<Exporter>,
    auth: &'static str,
    replicas: Vec<Replica>,
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
    let exporter = projections.iter().find(|p| p.name() == crate::catalog::EXPORTER).map(|p| Exporter {
        status: p.status().as_str(),
        healthy: p.status().is_healthy(),
        lag: p.lag,
        last_error: p.last_error(),
    });
    let troubled: Vec<&ProjectionState> = projections.iter().filter(|p| !p.status().is_healthy()).collect();
    let stalled: Vec<Stalled<'_>> = projections
        .iter()
        .filter(|p| p.status() == Status::Stalled)
        .filter_map(|p| {
            let wait = p.waiting_on.as_ref()?;
            Some(Stalled {
                name: p.name(),
                lag: p.lag,
                seconds_since_progress: p.behind_for.as_secs_f64(),
                waiting_on: serde_json::to_value(wait).unwrap_or_default(),
                cause: wait.describe(),
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
    let in_rotation = crate::admin::replicas::ReplicaState::InRotation;
    let reports: Vec<_> = state.replicas.iter().flat_map(|set| set.report()).collect();
    let replicas_out = reports.iter().any(|r| r.state != in_rotation);
    let replicas: Vec<Replica> = reports
        .into_iter()
        .map(|r| Replica {
            replica: r.name,
            state: r.state.as_str(),
            lag_seconds: r.lag_seconds,
            last_error: r.last_error,
        })
        .collect();
    // A troubled projection degrades its views; the instance still serves.
    let status =
        if troubled.is_empty() && ready.horizon != Horizon::Global && !replicas_out { "ready" } else { "degraded" };
    let any_stalled = !stalled.is_empty();
    let body = Ready {
        status,
        write_database: true,
        read_database: true,
        stopped_projections: troubled
            .iter()
            .filter(|p| p.status() == Status::Stopped)
            .map(|p| Troubled::of(p))
            .collect(),
        projections: troubled.iter().map(|p| Troubled::of(p)).collect(),
        stalled_projections: stalled,
        horizon,
        exporter,
        // `open`: no keys configured, every request acts as staff (development only).
        auth: if state.auth.is_open() { "open" } else { "jwt" },
        replicas,
    };
    if any_stalled {
        // A stalled view lets clients down now: not ready (load balancers take note).
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(body).into_response()
}
