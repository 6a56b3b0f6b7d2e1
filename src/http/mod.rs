//! The HTTP surface (axum):
//!
//! - `/graphql`: GraphQL over HTTP, POST and GET, following the
//!   GraphQL-over-HTTP spec: `application/graphql-response+json` when the
//!   client accepts it (then a request that fails to parse or validate is a
//!   400), `application/json` otherwise (always 200); GET never executes a
//!   mutation (405). A WebSocket upgrade on `/graphql` serves subscriptions.
//! - `/graphql/ws`: subscriptions over `graphql-transport-ws` and the legacy
//!   `graphql-ws` protocol.
//! - `/`: GraphiQL, `/board`: the live order board, `/assets/…`: their
//!   files, all embedded in the binary (see [`pages`]). `/healthz`: the process is up. `/readyz`: the databases
//!   answer (and which projections, if any, are stopped).
//!
//! Limits: request body size (413), request timeout, and, in the schema,
//! query depth and complexity.
pub mod pages;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::ErrorExtensions;
use async_graphql::http::WebSocketProtocols;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::app::Services;
use crate::graphql::error::{self, VALIDATION};
use crate::graphql::mutation;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const REQUEST_ID: &str = "x-request-id";
/// Largest WebSocket message accepted.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub ws: ws::WsLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_body_bytes: 256 * 1024, request_timeout: Duration::from_secs(15), ws: ws::WsLimits::default() }
    }
}

#[derive(Clone)]
struct AppState {
    services: Services,
    limits: HttpLimits,
    ws_connections: Arc<tokio::sync::Semaphore>,
}

pub fn router(services: Services, limits: HttpLimits) -> Router {
    let state = AppState { services, limits, ws_connections: ws::connection_budget(&limits.ws) };
    Router::new()
        .merge(pages::router())
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Only `/healthz` and `/readyz` (for `--role projector`).
pub fn health_router(services: Services, limits: HttpLimits) -> Router {
    let state = AppState { services, limits, ws_connections: ws::connection_budget(&limits.ws) };
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_text)).with_state(state)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let body = crate::metrics::render(&state.services.reads).await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.services;
    let write_ok = s.write_db.conn.ping().await.is_ok();
    let read_ok = s.read_db.conn.ping().await.is_ok();
    if !(write_ok && read_ok) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "writeDatabase": write_ok, "readDatabase": read_ok })))
            .into_response();
    }
    let stopped: Vec<serde_json::Value> = match s.reads.projections().await {
        Ok(list) => list
            .into_iter()
            .filter(|p| p.row.status == crate::projection::runtime::STATUS_STOPPED)
            .map(|p| json!({ "name": p.row.name, "lastError": p.row.last_error }))
            .collect(),
        Err(_) => Vec::new(),
    };
    // A stopped projection degrades one view; the instance still serves.
    let status = if stopped.is_empty() { "ready" } else { "degraded" };
    Json(json!({ "status": status, "writeDatabase": true, "readDatabase": true, "stoppedProjections": stopped })).into_response()
}

/// Serves subscriptions on an upgraded connection (see [`ws`]).
fn websocket(state: &AppState, headers: &HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let Some(protocol) = protocol_of(headers) else {
        return (StatusCode::BAD_REQUEST, "unsupported WebSocket subprotocol: use graphql-transport-ws or graphql-ws").into_response();
    };
    let Ok(permit) = state.ws_connections.clone().try_acquire_owned() else {
        let body = json!({ "errors": [{ "message": "too many WebSocket connections; retry later", "extensions": { "code": "UNAVAILABLE" } }] });
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, HeaderValue::from_static("5"))], Json(body)).into_response();
    };
    let schema = state.services.schema.clone();
    let limits = state.limits.ws;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| ws::serve(socket, schema, protocol, limits, permit))
}

/// The first GraphQL subprotocol the client offers.
fn protocol_of(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
}

async fn graphql_ws(State(state): State<AppState>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    websocket(&state, &headers, upgrade)
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE))
}

/// A response made of request-level errors (no execution happened).
fn request_error(status: StatusCode, headers: &HeaderMap, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": VALIDATION } }] });
    let (status, content_type) = if wants_graphql_response(headers) { (status, GRAPHQL_RESPONSE) } else { (status, "application/json") };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body.to_string()).into_response()
}

async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    // A WebSocket upgrade on /graphql serves subscriptions too.
    if parts.headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket(&state, &parts.headers, upgrade),
            Err(rejection) => rejection.into_response(),
        };
    }
    let headers = parts.headers;
    let query = parts.uri.query().unwrap_or("");
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(e) => return request_error(StatusCode::BAD_REQUEST, &headers, format!("cannot read the GraphQL request from the query string: {e}")),
    };
    if is_mutation(&request) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &headers,
            "mutations are not executed over GET; send them with POST",
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &headers, request).await
}

async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") && !content_type.starts_with("application/graphql+json") {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &headers,
            format!("send the request as application/json (got '{}')", content_type.chars().take(80).collect::<String>()),
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return request_error(StatusCode::BAD_REQUEST, &headers, format!("the request body is not a GraphQL request: {e}")),
    };
    execute(&state, &headers, request).await
}

/// True when the operation the request selects is a mutation.
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else { return false };
    match (&document.operations, request.operation_name.as_deref()) {
        (async_graphql::parser::types::DocumentOperations::Single(op), _) => op.node.ty == OperationType::Mutation,
        (async_graphql::parser::types::DocumentOperations::Multiple(ops), Some(name)) => {
            ops.iter().any(|(n, op)| n.as_str() == name && op.node.ty == OperationType::Mutation)
        }
        (async_graphql::parser::types::DocumentOperations::Multiple(ops), None) => {
            ops.len() == 1 && ops.values().all(|op| op.node.ty == OperationType::Mutation)
        }
    }
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (customers, products) = crate::graphql::request_loaders(&state.services.reads);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let admin = state.services.admin.access(authorization);
    let request = request
        .data(mutation::RequestId(request_id.clone()))
        .data(customers)
        .data(products)
        .data(admin)
        .data(state.services.admin.clone());
    let span = tracing::info_span!("graphql", request_id = %request_id);
    let execution = tracing::Instrument::instrument(state.services.schema.execute(request), span);
    let mut response = match tokio::time::timeout(state.limits.request_timeout, execution).await {
        Ok(response) => response,
        Err(_) => {
            let err = error::coded(
                "TIMEOUT",
                format!("the request took longer than {} ms and was abandoned; a command either committed or left no trace — retry it with the same commandId", state.limits.request_timeout.as_millis()),
            );
            async_graphql::Response::from_errors(vec![err.into_server_error(async_graphql::Pos::default())])
        }
    };
    // Parse and validation errors come without a code: they are the client's.
    for e in &mut response.errors {
        let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
        if !has_code {
            let extended = async_graphql::Error::new(e.message.clone()).extend_with(|_, x| x.set("code", VALIDATION));
            e.extensions = extended.extensions;
        }
    }
    let is_request_error = response.data == async_graphql::Value::Null && !response.errors.is_empty();
    let graphql_response = wants_graphql_response(headers);
    let status = if graphql_response && is_request_error { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let content_type = if graphql_response { GRAPHQL_RESPONSE } else { "application/json" };
    let body = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

