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
//! document shape (fields, fragments, aliases, depth) and complexity.
//!
//! Why our own handlers rather than async-graphql-axum's `GraphQLRequest`
//! extractor and `GraphQL` service: the GraphQL-over-HTTP spec's status
//! codes depend on whether a request got past validation, media types must
//! match exactly, a shed or unreachable database answers 503 with
//! `Retry-After`, and GET must refuse mutations with 405. We keep
//! async-graphql-axum for WebSocket protocol negotiation (`GraphQLProtocol`).
pub mod pages;
pub mod starting;
pub mod web;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::parser::types::OperationType;
use async_graphql_axum::GraphQLProtocol;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::admin::{Admin, Horizon};
use crate::auth::{Authenticator, InvalidToken};
use crate::catalog::Status;
use crate::graphql::api::{Api, Caller};
use crate::graphql::error::{self, UNAVAILABLE, VALIDATION};

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

/// What the HTTP layer is given: the GraphQL API, the operations service
/// (health, metrics, admin access) and its limits. It never sees a database.
#[derive(Clone)]
pub struct Endpoints {
    pub api: Api,
    pub admin: Admin,
    /// Verifies bearer tokens (open development mode when it has no keys).
    pub auth: Authenticator,
    pub limits: HttpLimits,
    /// CORS, and caching of GET queries.
    pub web: web::WebSettings,
    /// The read replicas serving queries, if any (their state in `/readyz`).
    pub replicas: Option<Arc<crate::admin::replicas::ReplicaSet>>,
}

#[derive(Clone)]
struct AppState {
    api: Api,
    admin: Admin,
    auth: Authenticator,
    limits: HttpLimits,
    web: web::WebSettings,
    replicas: Option<Arc<crate::admin::replicas::ReplicaSet>>,
    ws_connections: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server shuts down: WebSocket clients are told to go (1001).
    shutdown: CancellationToken,
    /// Every open WebSocket connection, so shutdown can wait for their goodbyes.
    connections: TaskTracker,
}

impl AppState {
    fn new(endpoints: Endpoints, shutdown: CancellationToken, connections: TaskTracker) -> Self {
        let Endpoints { api, admin, auth, limits, web, replicas } = endpoints;
        Self {
            api,
            admin,
            auth,
            limits,
            web,
            replicas,
            ws_connections: ws::connection_budget(&limits.ws),
            shutdown,
            connections,
        }
    }
}

/// The API router. WebSocket connections are tracked by `connections`:
/// on `shutdown` each tells its client to go (1001), and the caller waits
/// for them (`TaskTracker::wait`) before the process exits.
pub fn router(endpoints: Endpoints, shutdown: CancellationToken, connections: TaskTracker) -> Router {
    let max_body_bytes = endpoints.limits.max_body_bytes;
    let cors = web::cors(&endpoints.web);
    let state = AppState::new(endpoints, shutdown, connections);
    // Layers run outside in, from the last one added: nosniff on every
    // answer; preflight statuses; CORS; response compression; request
    // decompression (its output, not the wire bytes, counts against the
    // body limit, so a decompression bomb is a 413); request ids.
    let mut router = Router::new()
        .merge(pages::router())
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(web::compression());
    if let Some(cors) = cors {
        router = router.layer(cors).layer(axum::middleware::from_fn(web::preflight_status));
    }
    router.layer(axum::middleware::from_fn(web::nosniff)).with_state(state)
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

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut body = crate::metrics::render();
    body.push_str(&state.admin.metrics_text().await);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
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
async fn readyz(State(state): State<AppState>) -> Response {
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
            json!({ "name": p.row.name, "status": status, "lastError": p.last_error(), "attempts": p.row.attempts, "lag": p.lag })
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

/// Serves subscriptions on an upgraded connection (see [`ws`]).
/// async-graphql-axum's `GraphQLProtocol` extractor negotiates the
/// subprotocol; the connection loop is ours (see the module docs of [`ws`]).
async fn websocket(state: &AppState, parts: &mut axum::http::request::Parts, upgrade: WebSocketUpgrade) -> Response {
    if !web::websocket_origin_allowed(&state.web, &parts.headers) {
        return (StatusCode::FORBIDDEN, "this origin may not open a WebSocket here (see --cors-origin)")
            .into_response();
    }
    if GraphQLProtocol::from_request_parts(parts, &()).await.is_err() {
        return (StatusCode::BAD_REQUEST, "unsupported WebSocket subprotocol: use graphql-transport-ws or graphql-ws")
            .into_response();
    }
    let Ok(permit) = state.ws_connections.clone().try_acquire_owned() else {
        let body = json!({ "errors": [{ "message": "too many WebSocket connections; retry later", "extensions": { "code": UNAVAILABLE } }] });
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, HeaderValue::from_static("5"))], Json(body))
            .into_response();
    };
    // The token may come with the upgrade request or in `connection_init`:
    // the connection authenticates when it is initialised (see `ws`).
    let credentials = ws::Credentials {
        auth: state.auth.clone(),
        request_id: request_id_of(&parts.headers),
        upgrade_authorization: parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?").to_owned()),
        upgrade_narrowing: ws::Narrowing {
            role: parts.headers.get(crate::auth::ROLE_HEADER).map(|v| v.to_str().unwrap_or("?").to_owned()),
            customer_id: parts
                .headers
                .get(crate::auth::CUSTOMER_ID_HEADER)
                .map(|v| v.to_str().unwrap_or("?").to_owned()),
        },
    };
    let (api, limits, shutdown, connections) =
        (state.api.clone(), state.limits.ws, state.shutdown.clone(), state.connections.clone());
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| {
            // The same choice GraphQLProtocol made: the first GraphQL subprotocol the client offered.
            let protocol = socket
                .protocol()
                .and_then(|p| p.to_str().ok())
                .and_then(|p| p.parse::<WebSocketProtocols>().ok())
                .unwrap_or(WebSocketProtocols::GraphQLWS);
            connections.track_future(ws::serve(socket, api, credentials, protocol, limits, shutdown, permit))
        })
}

fn request_id_of(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The caller of an HTTP request, or the 401 for credentials that do not
/// verify (a missing token is not an error here: it is anonymous), then
/// narrowed as `Twofold-Role` / `Twofold-Customer-Id` ask (see
/// [`crate::auth::narrow`]): 400 for headers that say nothing sensible, 403
/// for a role wider than the credentials give.
fn caller_of(state: &AppState, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
    // A header that is not text is refused like a bad token, never ignored.
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    let actor = match state.auth.authenticate(authorization) {
        Ok(authenticated) => authenticated.actor,
        Err(invalid) => return Err(Box::new(unauthenticated(headers, &invalid))),
    };
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    match crate::auth::narrow(actor, text(crate::auth::ROLE_HEADER), text(crate::auth::CUSTOMER_ID_HEADER)) {
        Ok(actor) => Ok(Caller { request_id: request_id_of(headers), actor }),
        Err(refused) => {
            let (status, code) = match refused {
                crate::auth::NarrowError::Malformed(_) => (StatusCode::BAD_REQUEST, error::VALIDATION),
                crate::auth::NarrowError::Widens(_) => (StatusCode::FORBIDDEN, error::FORBIDDEN),
            };
            Err(Box::new(refusal(headers, status, code, &refused.to_string())))
        }
    }
}

/// A request refused before GraphQL runs, as a GraphQL error.
fn refusal(headers: &HeaderMap, status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let content_type = if wants_graphql_response(headers) { GRAPHQL_RESPONSE } else { "application/json" };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3)
/// and the reason as a GraphQL error (`UNAUTHENTICATED`).
fn unauthenticated(headers: &HeaderMap, invalid: &InvalidToken) -> Response {
    let description: String = invalid.0.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    let mut reply = refusal(headers, StatusCode::UNAUTHORIZED, error::UNAUTHENTICATED, &invalid.0);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        reply.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    reply
}

async fn graphql_ws(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => websocket(&state, &mut parts, upgrade).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// A GraphQL-over-HTTP request body: the request, or a `documentId`
/// (persisted documents) in place of its `query`.
#[derive(serde::Deserialize)]
struct WireRequest {
    #[serde(flatten)]
    request: async_graphql::Request,
    #[serde(default, rename = "documentId")]
    document_id: Option<String>,
}

/// The request of a GET query string: `query` or `documentId`,
/// `operationName`, `variables` and `extensions` (JSON). Ours rather than
/// async-graphql's `parse_query_string`, which reads `operation_name`
/// where the GraphQL-over-HTTP spec says `operationName`, and knows no
/// `documentId`.
fn get_request(query_string: &str) -> Result<(async_graphql::Request, Option<String>), String> {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        query: String,
        #[serde(rename = "operationName", alias = "operation_name")]
        operation_name: Option<String>,
        variables: Option<String>,
        extensions: Option<String>,
        #[serde(rename = "documentId")]
        document_id: Option<String>,
    }
    let params: Params = serde_urlencoded::from_str(query_string).map_err(|e| e.to_string())?;
    let mut request = async_graphql::Request::new(params.query);
    request.operation_name = params.operation_name.filter(|n| !n.is_empty());
    if let Some(variables) = params.variables.filter(|v| !v.is_empty()) {
        request.variables = serde_json::from_str(&variables).map_err(|e| format!("invalid variables: {e}"))?;
    }
    if let Some(extensions) = params.extensions.filter(|v| !v.is_empty()) {
        request.extensions = serde_json::from_str(&extensions).map_err(|e| format!("invalid extensions: {e}"))?;
    }
    Ok((request, params.document_id))
}

/// A document that could not be had (unknown id or hash, not trusted, a
/// hash that does not match its text): a request error with its code.
fn document_error(headers: &HeaderMap, error: &crate::graphql::documents::DocumentError) -> Response {
    let body = json!({ "errors": [{ "message": error.message(), "extensions": { "code": error.code() } }] });
    // 400 under the GraphQL-over-HTTP media type; 200 under plain JSON,
    // where Apollo's clients read `PersistedQueryNotFound` and retry.
    let (status, content_type) = if wants_graphql_response(headers) {
        (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE)
    } else {
        (StatusCode::OK, "application/json")
    };
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body.to_string()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A browser's navigation (it lists `text/html` in `Accept`).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE))
}

/// A response made of request-level errors (no execution happened).
fn request_error(status: StatusCode, headers: &HeaderMap, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": VALIDATION } }] });
    let (status, content_type) =
        if wants_graphql_response(headers) { (status, GRAPHQL_RESPONSE) } else { (status, "application/json") };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body.to_string()).into_response()
}

async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    // A WebSocket upgrade on /graphql serves subscriptions too.
    if parts.headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket(&state, &mut parts, upgrade).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    let headers = parts.headers;
    let query = parts.uri.query().unwrap_or("");
    let names_a_document =
        |name: &str| query.split('&').any(|pair| pair == name || pair.starts_with(&format!("{name}=")));
    if !["query", "documentId", "extensions"].into_iter().any(names_a_document) {
        // A browser navigating here gets the playground; a client, a clear message.
        if accepts_html(&headers) {
            return pages::graphiql(headers).await;
        }
        return request_error(
            StatusCode::BAD_REQUEST,
            &headers,
            "GET /graphql needs a `query` parameter, e.g. /graphql?query={viewer{role}}; POST JSON to /graphql for everything else; GraphiQL is at /",
        );
    }
    let (mut request, document_id) = match get_request(query) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                &headers,
                format!("cannot read the GraphQL request from the query string: {e}"),
            )
        }
    };
    if let Err(e) = state.api.documents.resolve(&mut request, document_id.as_deref()) {
        return document_error(&headers, &e);
    }
    if is_mutation(&request) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &headers,
            "mutations are not executed over GET; send them with POST",
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let caller = match caller_of(&state, &headers) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    conditional_get(&state, &headers, caller, request).await
}

/// A GET query: answered 304 when the caller's `If-None-Match` holds the
/// current tag of a cacheable query, executed (and tagged) otherwise.
async fn conditional_get(
    state: &AppState,
    headers: &HeaderMap,
    caller: Caller,
    request: async_graphql::Request,
) -> Response {
    let reads = crate::graphql::reads::read_set(&request.query, request.operation_name.as_deref());
    let checkpoints = match &reads {
        Some(reads) => state.admin.checkpoints(&reads.views).await.ok().flatten(),
        None => None,
    };
    let (Some(reads), Some(checkpoints)) = (reads, checkpoints) else {
        let mut response = execute_as(state, headers, caller, request).await;
        set(&mut response, header::CACHE_CONTROL, "no-store");
        return response;
    };
    // The request-level token is part of what was asked: an answer tagged
    // before the write must not be confirmed (304) to a caller waiting for it.
    let mut variables = serde_json::to_string(&request.variables).unwrap_or_default();
    if let Some(token) = request.extensions.get(crate::graphql::api::CONSISTENT_WITH) {
        variables.push_str(&token.to_string());
    }
    let caller_key = caller.actor.identity_key();
    let tag = web::etag(&request.query, request.operation_name.as_deref(), &variables, &caller_key, &checkpoints);
    let public = reads.catalog_only && caller.actor.is_anonymous();
    let cache_control = match state.web.catalog_max_age {
        Some(age) if public => format!("public, max-age={}", age.as_secs()),
        _ => "private, no-cache".to_owned(),
    };
    let mut response = if web::matches(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let response = execute_as(state, headers, caller, request).await;
        // Only a complete answer is worth keeping.
        if response.status() != StatusCode::OK || response.extensions().get::<Erroneous>().is_some() {
            let mut response = response;
            set(&mut response, header::CACHE_CONTROL, "no-store");
            return response;
        }
        response
    };
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("authorization, accept"));
    response
}

/// Marks a response whose GraphQL body carries errors (never cached).
#[derive(Clone, Copy)]
struct Erroneous;

fn set(response: &mut Response, name: header::HeaderName, value: &'static str) {
    response.headers_mut().insert(name, HeaderValue::from_static(value));
}

async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json_media_type(content_type) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &headers,
            format!(
                "send the request as application/json (got '{}')",
                content_type.chars().take(80).collect::<String>()
            ),
        );
    }
    let (mut request, document_id) = match serde_json::from_slice::<WireRequest>(&body) {
        Ok(wire) => (wire.request, wire.document_id),
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                &headers,
                format!("the request body is not a GraphQL request: {e}"),
            )
        }
    };
    if let Err(e) = state.api.documents.resolve(&mut request, document_id.as_deref()) {
        return document_error(&headers, &e);
    }
    // POST answers (and every mutation) are never cached.
    let mut response = execute(&state, &headers, request).await;
    set(&mut response, header::CACHE_CONTROL, "no-store");
    response
}

/// True when the operation the request selects is a mutation.
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
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

/// `application/json` (or the older `application/graphql+json`), exactly,
/// with parameters such as `charset` allowed: `application/jsonxyz` is not JSON.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case("application/graphql+json")
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    match caller_of(state, headers) {
        Ok(caller) => execute_as(state, headers, caller, request).await,
        Err(refused) => *refused,
    }
}

async fn execute_as(
    state: &AppState,
    headers: &HeaderMap,
    caller: Caller,
    request: async_graphql::Request,
) -> Response {
    let span = tracing::info_span!("graphql", request_id = %caller.request_id);
    tracing::debug!(parent: &span, operation = request.operation_name.as_deref().unwrap_or(""), "executing a GraphQL request");
    let prepared = state.api.prepare(request.data(state.admin.clone()), &caller, true);
    let progress = prepared.progress.clone();
    let execution = tracing::Instrument::instrument(state.api.execute(prepared), span);
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
    error::label_codeless(&mut response.errors, progress.validated());
    let graphql_response = wants_graphql_response(headers);
    let unavailable = response
        .errors
        .iter()
        .any(|e| e.extensions.as_ref().and_then(|x| x.get("code")) == Some(&async_graphql::Value::from(UNAVAILABLE)));
    // GraphQL over HTTP: 4xx only for requests that fail before execution.
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if graphql_response && !progress.validated() && !response.errors.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let content_type = if graphql_response { GRAPHQL_RESPONSE } else { "application/json" };
    // A request error (nothing executed) has no `data` entry at all
    // (GraphQL spec, "Response Format"; GraphQL over HTTP).
    let encoded = if !progress.validated() && !response.errors.is_empty() {
        serde_json::to_vec(&json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let body = match encoded {
        Ok(b) => b,
        Err(e) => serde_json::to_vec(&json!({ "errors": [error::internal_error(&e)] })).unwrap_or_default(),
    };
    let erroneous = !response.errors.is_empty();
    let mut reply = (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response();
    if erroneous {
        reply.extensions_mut().insert(Erroneous);
    }
    if unavailable {
        reply.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    reply
}
