//! The HTTP surface (axum). This file is the router and the state every
//! handler shares; each concern has its own module:
//!
//! - [`graphql_http`]: `/graphql`, GraphQL over HTTP, POST and GET,
//!   following the GraphQL-over-HTTP spec (request parsing, the caller's
//!   authentication and narrowing, the refusals, conditional GETs, response
//!   encoding). A WebSocket upgrade on `/graphql` serves subscriptions.
//! - [`ws`]: `/graphql/ws`, subscriptions over `graphql-transport-ws` and
//!   the legacy `graphql-ws` protocol: the upgrade, the protocol as a pure
//!   state machine (`ws/protocol.rs`) and the socket loop that runs it.
//! - [`health`]: `/healthz` (the process is up), `/readyz` (the databases
//!   answer, and which projections, if any, are stopped) and `/metrics`.
//! - [`pages`]: `/` (GraphiQL), `/board` (the live order board) and
//!   `/assets/…`, their files, all embedded in the binary.
//! - [`web`]: CORS, compression, conditional GETs, the headers every
//!   response carries.
//! - [`starting`]: what the server answers while it starts.
//! - `refusal`: the one GraphQL error body every refusal above answers
//!   with (`{"errors":[{"message","extensions":{"code"}}]}`).
//!
//! Limits: request body size (413), request timeout, and, in the schema,
//! document shape (fields, fragments, aliases, depth) and complexity.
//!
//! Why our own handlers rather than async-graphql-axum's `GraphQLRequest`
//! extractor, `GraphQL` service and `GraphQLWebSocket`: see
//! [`graphql_http`] and [`ws`]. We keep async-graphql-axum for WebSocket
//! protocol negotiation (`GraphQLProtocol`, in [`ws`]).
pub mod correlation;
pub mod graphql_http;
pub mod health;
pub mod limits;
pub mod pages;
mod refusal;
pub mod starting;
mod state;
pub mod web;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use health::{healthz, metrics_text, readyz};
use state::AppState;
pub use state::{Endpoints, HttpLimits};

/// The API router. WebSocket connections are tracked by `connections`:
/// on `shutdown` each tells its client to go (1001), and the caller waits
/// for them (`TaskTracker::wait`) before the process exits.
pub fn router(endpoints: Endpoints, shutdown: CancellationToken, connections: TaskTracker) -> Router {
    let max_body_bytes = endpoints.limits.max_body_bytes;
    let cors = web::cors(&endpoints.web);
    let web_settings = endpoints.web.clone();
    let state = AppState::new(endpoints, shutdown, connections);
    // Layers run outside in, from the last one added: nosniff on every
    // answer; preflight statuses; CORS; response compression; request
    // decompression (its output, not the wire bytes, counts against the
    // body limit, so a decompression bomb is a 413; an encoding it does not
    // decode passes through, for `/graphql` to refuse with a GraphQL error
    // rather than the layer's empty 415); request ids.
    let mut router = Router::new()
        .merge(pages::router())
        .route("/graphql", get(graphql_http::graphql_get).post(graphql_http::graphql_post))
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true).pass_through_unaccepted(true))
        .layer(web::compression());
    if let Some(cors) = cors {
        router = router.layer(cors).layer(axum::middleware::from_fn(web::preflight_status));
    }
    // Outside CORS: an origin that may not call is refused before anything runs.
    router = router.layer(axum::middleware::from_fn_with_state(web_settings, web::origin_guard));
    router.layer(axum::middleware::from_fn(web::nosniff)).layer(axum::middleware::from_fn(traced)).with_state(state)
}

/// The HTTP server span of each request (traces only; see
/// `crate::telemetry`), continuing the trace of its `traceparent`.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "http",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        crate::telemetry::continue_trace(&span, header("traceparent"), header("tracestate"));
    }
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// Only `/healthz`, `/readyz` and `/metrics` (for `--role projector`).
pub fn health_router(endpoints: Endpoints, shutdown: CancellationToken) -> Router {
    let state = AppState::new(endpoints, shutdown, TaskTracker::new());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Only `/metrics` (for `--metrics-bind`, a separate address).
pub fn metrics_router(endpoints: Endpoints, shutdown: CancellationToken) -> Router {
    let state = AppState::new(endpoints, shutdown, TaskTracker::new());
    Router::new().route("/metrics", get(metrics_text)).with_state(state)
}
