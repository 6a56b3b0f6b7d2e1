//! GraphQL over HTTP on `/graphql`, POST and GET, following the
//! GraphQL-over-HTTP spec: reading the request (a JSON body, or a GET query
//! string; a `documentId` or APQ hash in place of the text), who the caller
//! is (the bearer token, narrowed by `Twofold-Role` /
//! `Twofold-Customer-Id`), the refusals before anything runs (401, 400,
//! 403, 405, 415), conditional GETs (`ETag`, 304; see [`super::web`]),
//! executing within the request timeout, and encoding the answer.
//!
//! Status and media type: `application/graphql-response+json` when the
//! client accepts it (then a request that fails to parse or validate is a
//! 400), `application/json` otherwise (always 200); GET never executes a
//! mutation (405); a shed or unreachable database answers 503 with
//! `Retry-After`; a body over the limit is a 413 with a GraphQL error. A
//! WebSocket upgrade on `/graphql` is handed to [`super::ws`].
//!
//! Why our own handlers rather than async-graphql-axum's `GraphQLRequest`
//! extractor and `GraphQL` service: the GraphQL-over-HTTP spec's status
//! codes depend on whether a request got past validation, media types must
//! match exactly, a shed or unreachable database answers 503 with
//! `Retry-After`, and GET must refuse mutations with 405. We keep
//! async-graphql-axum for WebSocket protocol negotiation (`GraphQLProtocol`,
//! in [`super::ws`]).
use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::{request_id_of, AppState};
use super::{pages, web, ws};
use crate::auth::InvalidToken;
use crate::graphql::api::{Caller, Executed};
use crate::graphql::error::{self, UNAVAILABLE, VALIDATION};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

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
    let correlation_id = super::correlation::correlation_of(text(super::correlation::CORRELATION_HEADER))
        .map_err(|why| Box::new(refusal(headers, StatusCode::BAD_REQUEST, error::VALIDATION, &why.to_string())))?;
    match crate::auth::narrow(actor, text(crate::auth::ROLE_HEADER), text(crate::auth::CUSTOMER_ID_HEADER)) {
        // (The HTTP request's span carries its trace context.)
        Ok(actor) => Ok(Caller { request_id: request_id_of(headers), actor, correlation_id, trace: None }),
        Err(refused) => {
            let (status, code) = match refused {
                crate::auth::NarrowError::Malformed(_) => (StatusCode::BAD_REQUEST, error::VALIDATION),
                crate::auth::NarrowError::Widens(_) => (StatusCode::FORBIDDEN, error::FORBIDDEN),
            };
            Err(Box::new(refusal(headers, status, code, &refused.to_string())))
        }
    }
}

/// A request refused before GraphQL runs, as a GraphQL error, in the media
/// type the client asked for.
fn refusal(headers: &HeaderMap, status: StatusCode, code: &str, message: &str) -> Response {
    super::refusal::response(status, media_type(headers), code, message)
}

/// `application/graphql-response+json` when the client accepts it, else `application/json`.
fn media_type(headers: &HeaderMap) -> &'static str {
    if wants_graphql_response(headers) {
        GRAPHQL_RESPONSE
    } else {
        super::refusal::JSON
    }
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
    // 400 under the GraphQL-over-HTTP media type; 200 under plain JSON,
    // where Apollo's clients read `PersistedQueryNotFound` and retry.
    let status = if wants_graphql_response(headers) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let mut response = refusal(headers, status, error.code(), error.message());
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
    refusal(headers, status, VALIDATION, &message.into())
}

pub(super) async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    // A WebSocket upgrade on /graphql serves subscriptions too.
    if parts.headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => ws::accept(&state, &mut parts, upgrade).await,
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

/// The body of a POST, or the GraphQL answer for one that could not be
/// read. axum's `Bytes` extractor enforces the body limit (its
/// `DefaultBodyLimit`, counted after request decompression, so it holds for
/// a `Content-Length`, a chunked body and a gzip body alike) but answers a
/// refusal as `text/plain`; taking its result rather than letting it reject
/// keeps the limit where axum enforces it and makes the answer a GraphQL
/// error like every other refusal here.
fn body_of(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Box::new(request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            headers,
            format!(
                "the request body (decompressed, if it was sent compressed) is larger than this server's limit of {} bytes; send a smaller request",
                state.limits.max_body_bytes
            ),
        ))),
        // A body that ends early, or says gzip and is not: the client's to fix.
        Err(rejection) => {
            let text = rejection.body_text();
            let cause = text.split_once(": ").map_or(text.as_str(), |(_, cause)| cause);
            Err(Box::new(request_error(
                StatusCode::BAD_REQUEST,
                headers,
                format!("the request body could not be read: {}", one_line(cause, 200)),
            )))
        }
    }
}

/// `text` on one line, at most `max_chars` long.
fn one_line(text: &str, max_chars: usize) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(max_chars).collect()
}

pub(super) async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_of(&state, &headers, body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    // The decompression layer lets an encoding it does not decode through
    // (see `super::router`), so that it is refused here, as a GraphQL error.
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?");
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            let mut response = request_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &headers,
                format!(
                    "Content-Encoding '{}' is not supported; send the body gzipped or uncompressed",
                    encoding.chars().take(40).collect::<String>()
                ),
            );
            response.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            return response;
        }
    }
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
        Ok(Executed::Kept(kept)) => {
            return ([(header::CONTENT_TYPE, HeaderValue::from_static(media_type(headers)))], kept.body())
                .into_response();
        }
        Ok(Executed::Computed(response)) => response,
        Err(_) => {
            let err = error::coded(
                "TIMEOUT",
                format!("the request took longer than {} ms and was abandoned; a command either committed or left no trace — retry it with the same commandId", state.limits.request_timeout.as_millis()),
            );
            async_graphql::Response::from_errors(vec![error::request_level(err)])
        }
    };
    error::for_client(&mut response.errors, progress.validated());
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
    let content_type = media_type(headers);
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
