//! What the server answers while it starts: it binds its address first and
//! answers there at once, so an orchestrator sees a live process
//! (`/healthz` 200) that is not ready yet (`/readyz` 503, naming what it
//! waits for: the kind of database it cannot reach, why in a few words,
//! and the number of tries). Every other path gets 503 `UNAVAILABLE` with
//! `Retry-After`. Anyone may ask, so nothing here names the database's
//! host, port, name or path (the log does, for the operator). Once the
//! service has started, the real router takes the same listening socket
//! over.
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Start-up progress, shared by the start-up loop and the router below.
#[derive(Clone)]
pub struct Starting {
    inner: Arc<Mutex<Progress>>,
}

struct Progress {
    since: Instant,
    /// `sqlite` or `postgres`.
    database: &'static str,
    attempts: u64,
    last_error: Option<String>,
}

impl Starting {
    /// Waiting for a database of this kind (`sqlite`, `postgres`).
    pub fn new(database: &'static str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Progress { since: Instant::now(), database, attempts: 0, last_error: None })),
        }
    }

    /// A try failed with `error`: a few words that name no address.
    pub fn failed(&self, error: &str) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.attempts += 1;
        p.last_error = Some(error.to_owned());
    }

    fn body(&self) -> serde_json::Value {
        let p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "status": "starting",
            "waitingFor": "database",
            "database": p.database,
            "attempts": p.attempts,
            "lastError": p.last_error,
            "secondsStarting": p.since.elapsed().as_secs_f64(),
        })
    }
}

/// The router served while the service starts.
pub fn router(starting: Starting) -> Router {
    let ready = starting.clone();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok", "starting": true })) }))
        .route("/readyz", get(move || async move { (StatusCode::SERVICE_UNAVAILABLE, Json(ready.body())) }))
        .fallback(move || async move { not_yet(&starting) })
}

fn not_yet(starting: &Starting) -> Response {
    let waiting = starting.body();
    let message = format!(
        "the service is starting: waiting for its {} database; retry shortly",
        waiting["database"].as_str().unwrap_or("")
    );
    let mut reply = super::refusal::json(StatusCode::SERVICE_UNAVAILABLE, crate::graphql::error::UNAVAILABLE, &message);
    reply.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    reply
}
