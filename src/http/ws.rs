//! GraphQL subscriptions over WebSocket, both protocols clients use:
//! `graphql-transport-ws` (the graphql-ws library, Apollo Client 3+, urql)
//! and the legacy `graphql-ws` (subscriptions-transport-ws).
//!
//! Why our own connection loop rather than async-graphql's `WebSocket`
//! stream (or async-graphql-axum's `GraphQLWebSocket`, which wraps it):
//! that stream runs every subscription inside the one future that also
//! reads the client's messages, so the loop that feeds it can block on it
//! and a burst of `subscribe` messages froze the connection while holding
//! database connections mid-query. It also answers a subscribe that fails
//! validation with `next` instead of the `error` message graphql-transport-ws
//! specifies, and it has no hook for credentials in `ping`. We keep
//! async-graphql-axum's protocol negotiation (`GraphQLProtocol`, in
//! `http::mod`) and async-graphql's executor (`execute_stream`).
//!
//! The shape of a connection:
//!
//! - one task owns the socket. It reads client messages and handles each
//!   one without waiting on anything that only it could make progress on:
//!   a `subscribe` spawns the operation as its own task, a `complete`
//!   aborts that task;
//! - each operation task writes its messages into a bounded outbox that the
//!   socket task drains. A slow client makes operation tasks wait, never
//!   the socket task's reading; memory per connection is bounded by the
//!   outbox plus one message per operation;
//! - a client that does not take a message within the send timeout is a
//!   slow consumer and is disconnected (4503).
//!
//! | situation                                   | graphql-transport-ws            | graphql-ws (legacy)        |
//! |---------------------------------------------|---------------------------------|----------------------------|
//! | malformed JSON or unknown message type      | close 4400                      | close 4400                 |
//! | `subscribe`/`start` before `connection_init`| close 4401 Unauthorized         | close 4401                 |
//! | no `connection_init` within 10 s            | close 4408                      | close 4408                 |
//! | a bad or expired token in `connection_init` | close 4403 Forbidden            | close 4403                 |
//! | the token's `exp` passes                    | close 4403 Forbidden            | close 4403                 |
//! | `ping` refresh with another `sub` or role   | close 4403 Forbidden            | (no client ping)           |
//! | second `connection_init`                    | close 4429                      | close 4429                 |
//! | an id already in use                        | close 4409 Subscriber for … exists | close 4409              |
//! | a document that fails to parse or validate  | `error` (an array of errors)    | `error`                    |
//! | more subscriptions than the cap             | `error` for that id             | `error` for that id        |
//! | message larger than the limit               | close 1009                      | close 1009                 |
//! | invalid UTF-8 in a text frame               | close 1007                      | close 1007                 |
//! | a WebSocket protocol violation              | close 1002                      | close 1002                 |
//! | client does not read (slow consumer)        | close 4503, drop                | same                       |
//! | the client closes                           | its close frame is echoed       | same                       |
//! | the server shuts down                       | close 1001 Going Away           | same                       |
//! | too many connections                        | HTTP 503 before the upgrade     | same                       |
//!
//! Keep-alive: `ping` (graphql-transport-ws) or `ka` (legacy) every 15 s.
//!
//! Credentials: the `authorization` value of the `connection_init` payload
//! (any letter case: GraphiQL sends its headers there as `Authorization`),
//! else the upgrade request's `Authorization` header. The connection acts
//! as that actor until the token's `exp`, when it is closed with 4403. A
//! client extends it without dropping its subscriptions by sending
//! `{"type":"ping","payload":{"authorization":"Bearer <new token>"}}`: the
//! new token must verify and carry the same `sub` and role (else 4403); the
//! `pong` says until when the connection now lives (`expiresAt`, Unix
//! seconds). No other GraphQL server we know of offers this.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::GraphQLProtocol;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::{request_id_of, web, AppState};
use crate::auth::{Authenticated, Authenticator};
use crate::graphql::api::{Api, Caller};
use crate::graphql::error::UNAVAILABLE;

/// What a connection authenticates with once the client initialises it.
#[derive(Clone)]
pub struct Credentials {
    pub auth: Authenticator,
    pub request_id: String,
    /// The upgrade request's `Authorization` header, if any.
    pub upgrade_authorization: Option<String>,
    /// The upgrade request's `Twofold-Role` and `Twofold-Customer-Id`
    /// headers, if any (see [`crate::auth::narrow`]).
    pub upgrade_narrowing: Narrowing,
}

/// A connection's request to act with a narrower role: `Twofold-Role` and
/// `Twofold-Customer-Id`, from `connection_init`'s payload or the upgrade
/// request's headers. Kept so a refreshed token narrows the same way.
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    pub role: Option<String>,
    pub customer_id: Option<String>,
}

impl Narrowing {
    fn apply(&self, authenticated: &mut Authenticated) -> Result<(), Close> {
        authenticated.actor =
            crate::auth::narrow(authenticated.actor.clone(), self.role.as_deref(), self.customer_id.as_deref())
                .map_err(|refused| Close(CLOSE_FORBIDDEN, format!("Forbidden: {refused}")))?;
        Ok(())
    }
}

/// WebSocket limits.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_message_bytes: usize,
    /// How long one outgoing message may take to be accepted by the client.
    pub send_timeout: Duration,
    pub init_timeout: Duration,
    pub keepalive: Duration,
    /// Messages the operations of one connection may queue for the socket.
    pub outbox: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_subscriptions_per_connection: 100,
            max_message_bytes: 64 * 1024,
            send_timeout: Duration::from_secs(10),
            init_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            outbox: 64,
        }
    }
}

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_BAD_REQUEST: u16 = 4400;
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
pub const CLOSE_DUPLICATE_ID: u16 = 4409;
pub const CLOSE_TOO_MANY_INITS: u16 = 4429;
pub const CLOSE_SLOW_CONSUMER: u16 = 4503;

/// What an operation task hands to the socket task.
enum Outgoing {
    /// A protocol message to send.
    Text(String),
    /// The operation `id` (of generation `generation`) has ended.
    Ended { id: String, generation: u64 },
}

/// A reason to end the connection.
struct Close(u16, String);

/// The socket task's state.
struct Connection {
    protocol: WebSocketProtocols,
    api: Api,
    credentials: Credentials,
    /// Set by `connection_init`: who the operations act as.
    caller: Option<Caller>,
    /// When the connection's token expires (Unix seconds).
    expires_at: Option<u64>,
    limits: WsLimits,
    initialized: bool,
    /// Running operations by id, with the generation that tells a reused id apart.
    operations: HashMap<String, (u64, AbortHandle)>,
    generation: u64,
    outbox: mpsc::Sender<Outgoing>,
}

impl Connection {
    fn legacy(&self) -> bool {
        self.protocol == WebSocketProtocols::SubscriptionsTransportWS
    }

    /// Handles one client message; returns what to send back at once, or why to close.
    fn handle(&mut self, text: &str) -> Result<Vec<String>, Close> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Err(Close(CLOSE_BAD_REQUEST, "Invalid message received: not a JSON object".into()));
        };
        let kind = message.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match kind.as_str() {
            "connection_init" => {
                if self.initialized {
                    return Err(Close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests".into()));
                }
                let payload = message.remove("payload").unwrap_or(Value::Null);
                let authorization = authorization_in(&payload).or(self.credentials.upgrade_authorization.clone());
                let mut authenticated = self.authenticate(authorization.as_deref())?;
                let narrowing = Narrowing {
                    role: text_in(&payload, crate::auth::ROLE_HEADER).or(self
                        .credentials
                        .upgrade_narrowing
                        .role
                        .clone()),
                    customer_id: text_in(&payload, crate::auth::CUSTOMER_ID_HEADER).or(self
                        .credentials
                        .upgrade_narrowing
                        .customer_id
                        .clone()),
                };
                narrowing.apply(&mut authenticated)?;
                self.credentials.upgrade_narrowing = narrowing;
                self.expires_at = authenticated.expires_at;
                self.caller =
                    Some(Caller { request_id: self.credentials.request_id.clone(), actor: authenticated.actor });
                self.initialized = true;
                let mut replies = vec![json!({ "type": "connection_ack" }).to_string()];
                if self.legacy() {
                    replies.push(keepalive(self.protocol));
                }
                Ok(replies)
            }
            "subscribe" | "start" => {
                let Some(caller) = self.caller.clone().filter(|_| self.initialized) else {
                    return Err(Close(CLOSE_UNAUTHORIZED, "Unauthorized".into()));
                };
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return Err(Close(CLOSE_BAD_REQUEST, "Invalid message received: subscribe needs an id".into()));
                };
                let mut payload = message.remove("payload").unwrap_or(Value::Null);
                // A document by text, by `documentId` (persisted documents) or by APQ hash.
                let document_id = match payload.as_object_mut().and_then(|p| p.remove("documentId")) {
                    Some(Value::String(id)) => Some(id),
                    _ => None,
                };
                let names_document = payload.get("query").and_then(Value::as_str).is_some()
                    || document_id.is_some()
                    || payload.pointer("/extensions/persistedQuery").is_some();
                if !names_document {
                    return Err(Close(
                        CLOSE_BAD_REQUEST,
                        "Invalid message received: subscribe needs payload.query (or payload.documentId)".into(),
                    ));
                }
                let mut request: async_graphql::Request = serde_json::from_value(payload).map_err(|e| {
                    Close(CLOSE_BAD_REQUEST, format!("Invalid message received: {}", truncate(&e.to_string(), 80)))
                })?;
                if let Err(e) = self.api.documents.resolve(&mut request, document_id.as_deref()) {
                    return Ok(vec![error_message(self.protocol, &id, vec![coded_error(e.message(), e.code())])]);
                }
                if self.operations.contains_key(&id) {
                    return Err(Close(
                        CLOSE_DUPLICATE_ID,
                        format!("Subscriber for {} already exists", truncate(&id, 60)),
                    ));
                }
                if self.operations.len() >= self.limits.max_subscriptions_per_connection {
                    let message = format!(
                        "at most {} subscriptions per connection",
                        self.limits.max_subscriptions_per_connection
                    );
                    return Ok(vec![error_message(self.protocol, &id, vec![coded_error(&message, "VALIDATION")])]);
                }
                self.generation += 1;
                let task = tokio::spawn(run_operation(
                    self.api.clone(),
                    caller,
                    request,
                    id.clone(),
                    self.generation,
                    self.protocol,
                    self.outbox.clone(),
                ));
                self.operations.insert(id, (self.generation, task.abort_handle()));
                Ok(Vec::new())
            }
            "complete" | "stop" => {
                let Some(id) = id else { return Ok(Vec::new()) };
                match self.operations.remove(&id) {
                    // The legacy protocol confirms a stop with `complete`.
                    Some((_, task)) => {
                        task.abort();
                        Ok(if self.legacy() {
                            vec![json!({ "type": "complete", "id": id }).to_string()]
                        } else {
                            Vec::new()
                        })
                    }
                    None => Ok(Vec::new()),
                }
            }
            "ping" if !self.legacy() => {
                let payload = message.remove("payload").filter(|p| !p.is_null());
                let mut pong = json!({ "type": "pong" });
                match payload.as_ref().and_then(authorization_in) {
                    Some(authorization) if self.initialized => {
                        pong["payload"] = json!({ "expiresAt": self.refresh(&authorization)? });
                    }
                    _ => {
                        if let Some(payload) = payload {
                            pong["payload"] = payload;
                        }
                    }
                }
                Ok(vec![pong.to_string()])
            }
            "pong" if !self.legacy() => Ok(Vec::new()),
            "connection_terminate" if self.legacy() => Err(Close(1000, "connection terminated".into())),
            other => Err(Close(
                CLOSE_BAD_REQUEST,
                format!("Invalid message received: unknown type '{}'", truncate(other, 40)),
            )),
        }
    }

    /// The actor of `authorization`, or 4403 with the reason.
    fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, Close> {
        self.credentials
            .auth
            .authenticate(authorization)
            .map_err(|invalid| Close(CLOSE_FORBIDDEN, format!("Forbidden: {invalid}")))
    }

    /// Extends the connection with a new token for the same actor; returns
    /// its new expiry (Unix seconds; `null`: none).
    fn refresh(&mut self, authorization: &str) -> Result<Option<u64>, Close> {
        let mut renewed = self.authenticate(Some(authorization))?;
        self.credentials.upgrade_narrowing.apply(&mut renewed)?;
        let Some(caller) = self.caller.as_mut() else {
            return Err(Close(CLOSE_UNAUTHORIZED, "Unauthorized".into()));
        };
        if renewed.actor.sub != caller.actor.sub || renewed.actor.role != caller.actor.role {
            return Err(Close(CLOSE_FORBIDDEN, "Forbidden: a refreshed token must have the same sub and role".into()));
        }
        caller.actor = renewed.actor;
        self.expires_at = renewed.expires_at;
        Ok(self.expires_at)
    }

    fn ended(&mut self, id: String, generation: u64) {
        if self.operations.get(&id).is_some_and(|(g, _)| *g == generation) {
            self.operations.remove(&id);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, (_, task)) in self.operations.drain() {
            task.abort();
        }
    }
}

/// The `authorization` value of a `connection_init` or `ping` payload, in
/// any letter case (GraphiQL sends `Authorization`).
fn authorization_in(payload: &Value) -> Option<String> {
    text_in(payload, "authorization")
}

/// A text value of `connection_init`'s payload, its key matched as HTTP
/// header names are (case-insensitively).
fn text_in(payload: &Value, key: &str) -> Option<String> {
    payload.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))?.1.as_str().map(str::to_owned)
}

/// How long until `expires_at` (Unix seconds); zero if it has passed.
fn until(expires_at: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(expires_at).saturating_sub(now)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn keepalive(protocol: WebSocketProtocols) -> String {
    match protocol {
        WebSocketProtocols::GraphQLWS => json!({ "type": "ping" }),
        WebSocketProtocols::SubscriptionsTransportWS => json!({ "type": "ka" }),
    }
    .to_string()
}

fn coded_error(message: &str, code: &str) -> Value {
    json!({ "message": message, "extensions": { "code": code } })
}

/// The `error` message: an array of GraphQL errors (the legacy protocol carries one object).
fn error_message(protocol: WebSocketProtocols, id: &str, mut errors: Vec<Value>) -> String {
    match protocol {
        WebSocketProtocols::GraphQLWS => json!({ "type": "error", "id": id, "payload": errors }),
        WebSocketProtocols::SubscriptionsTransportWS => {
            json!({ "type": "error", "id": id, "payload": errors.drain(..).next().unwrap_or(Value::Null) })
        }
    }
    .to_string()
}

/// Runs one operation (a subscription, or a query or mutation sent over the
/// socket) and queues its messages. Aborted when the client completes it
/// or the connection ends.
async fn run_operation(
    api: Api,
    caller: Caller,
    request: async_graphql::Request,
    id: String,
    generation: u64,
    protocol: WebSocketProtocols,
    outbox: mpsc::Sender<Outgoing>,
) {
    let is_subscription = is_subscription(&request);
    let prepared = api.prepare(request, &caller, !is_subscription);
    let progress = prepared.progress.clone();
    let mut responses = api.execute_stream(prepared);
    let mut first = true;
    let data_type = match protocol {
        WebSocketProtocols::GraphQLWS => "next",
        WebSocketProtocols::SubscriptionsTransportWS => "data",
    };
    while let Some(mut response) = responses.next().await {
        crate::graphql::error::label_codeless(&mut response.errors, progress.validated());
        if first && !progress.validated() {
            // The document never ran: graphql-transport-ws answers with `error`, and no `complete`.
            let errors = response
                .errors
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_else(|err| crate::graphql::error::internal_error(&err)))
                .collect();
            let _ = outbox.send(Outgoing::Text(error_message(protocol, &id, errors))).await;
            let _ = outbox.send(Outgoing::Ended { id, generation }).await;
            return;
        }
        first = false;
        let text = match serde_json::to_value(&response) {
            Ok(payload) => json!({ "type": data_type, "id": id, "payload": payload }).to_string(),
            Err(e) => {
                let error = crate::graphql::error::internal_error(&e);
                json!({ "type": data_type, "id": id, "payload": { "data": null, "errors": [error] } }).to_string()
            }
        };
        if outbox.send(Outgoing::Text(text)).await.is_err() {
            return;
        }
    }
    let _ = outbox.send(Outgoing::Text(json!({ "type": "complete", "id": id }).to_string())).await;
    let _ = outbox.send(Outgoing::Ended { id, generation }).await;
}

fn is_subscription(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => op.node.ty == OperationType::Subscription,
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.iter().any(|(n, op)| n.as_str() == name && op.node.ty == OperationType::Subscription)
        }
        (DocumentOperations::Multiple(ops), None) => ops.values().all(|op| op.node.ty == OperationType::Subscription),
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Sends one message; false when the client is gone or did not take it in time.
async fn send(sink: &mut Sink, text: String, timeout: Duration) -> Result<(), Close> {
    match tokio::time::timeout(timeout, sink.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close(0, String::new())),
        Err(_) => {
            tracing::warn!("closing a WebSocket whose client does not read (slow consumer)");
            Err(Close(CLOSE_SLOW_CONSUMER, "slow consumer: messages were not read in time".into()))
        }
    }
}

async fn close(sink: &mut Sink, Close(code, reason): Close) {
    if code != 0 {
        let frame = CloseFrame { code, reason: truncate(&reason, 120).into() };
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// The close code for a frame-level error (RFC 6455 §7.4.1).
fn frame_error(error: axum::Error, max_bytes: usize) -> Close {
    use tungstenite::error::Error as WsError;
    match error.into_inner().downcast::<WsError>() {
        Ok(e) => match *e {
            WsError::Capacity(_) => Close(CLOSE_TOO_BIG, format!("message larger than {max_bytes} bytes")),
            WsError::Utf8(_) => Close(CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8".into()),
            WsError::Protocol(p) => Close(CLOSE_PROTOCOL_ERROR, truncate(&p.to_string(), 100)),
            // The connection itself failed: nobody to tell.
            _ => Close(0, String::new()),
        },
        Err(_) => Close(0, String::new()),
    }
}

/// Keeps the active-subscriptions gauge in step with a connection's set.
struct SubscriptionGauge(usize);

impl SubscriptionGauge {
    fn set(&mut self, now: usize) {
        let gauge = metrics::gauge!(crate::metrics::SUBSCRIPTIONS);
        if now > self.0 {
            gauge.increment((now - self.0) as f64);
        } else if now < self.0 {
            gauge.decrement((self.0 - now) as f64);
        }
        self.0 = now;
    }
}

/// Serves one upgraded connection until either side ends it, or `shutdown`.
pub async fn serve(
    socket: WebSocket,
    api: Api,
    credentials: Credentials,
    protocol: WebSocketProtocols,
    limits: WsLimits,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
    let (mut sink, mut source) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Outgoing>(limits.outbox.max(1));
    let mut conn = Connection {
        protocol,
        api,
        credentials,
        caller: None,
        expires_at: None,
        limits,
        initialized: false,
        operations: HashMap::new(),
        generation: 0,
        outbox,
    };
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    let mut subscriptions = SubscriptionGauge(0);
    let mut keepalive_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + limits.keepalive, limits.keepalive);
    let ending: Close = loop {
        subscriptions.set(conn.operations.len());
        tokio::select! {
            _ = shutdown.cancelled() => break Close(CLOSE_GOING_AWAY, "the server is shutting down; reconnect".into()),
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => match conn.handle(text.as_str()) {
                    Ok(replies) => {
                        let mut failed = None;
                        for reply in replies {
                            if let Err(e) = send(&mut sink, reply, limits.send_timeout).await {
                                failed = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = failed {
                            break e;
                        }
                    }
                    Err(close) => break close,
                },
                Some(Ok(Message::Binary(_))) => break Close(CLOSE_BAD_REQUEST, "Invalid message received: binary frames are not GraphQL messages".into()),
                // Echo the client's close frame (RFC 6455 §5.5.1): the library
                // queued the reply; closing the sink flushes it.
                Some(Ok(Message::Close(_))) => break Close(0, String::new()),
                Some(Ok(_)) => {} // WebSocket-level ping/pong: answered by the library
                Some(Err(e)) => break frame_error(e, limits.max_message_bytes),
                None => break Close(0, String::new()),
            },
            Some(out) = outgoing.recv() => match out {
                Outgoing::Text(text) => {
                    if let Err(e) = send(&mut sink, text, limits.send_timeout).await {
                        break e;
                    }
                }
                Outgoing::Ended { id, generation } => conn.ended(id, generation),
            },
            _ = &mut init_deadline, if !conn.initialized => break Close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout".into()),
            // Re-armed on every turn: a refresh moves the deadline.
            _ = tokio::time::sleep(conn.expires_at.map_or(Duration::MAX, until)), if conn.expires_at.is_some() => {
                break Close(CLOSE_FORBIDDEN, "Forbidden: the token has expired; reconnect with a new one".into());
            }
            _ = keepalive_timer.tick(), if conn.initialized => {
                if let Err(e) = send(&mut sink, keepalive(protocol), limits.send_timeout).await {
                    break e;
                }
            }
        }
    };
    drop(conn);
    close(&mut sink, ending).await;
    subscriptions.set(0);
    metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
}

/// Shared connection budget.
pub fn connection_budget(limits: &WsLimits) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(limits.max_connections))
}

/// `/graphql/ws`: a WebSocket upgrade, or the extractor's refusal.
pub(super) async fn graphql_ws(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => accept(&state, &mut parts, upgrade).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// Upgrades a request on `/graphql` or `/graphql/ws` to a subscriptions
/// connection: the origin must be allowed, the subprotocol one of ours, and
/// the connection budget not spent (else 403, 400, 503).
/// async-graphql-axum's `GraphQLProtocol` extractor negotiates the
/// subprotocol; the connection loop is ours (see the module docs).
pub(super) async fn accept(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    upgrade: WebSocketUpgrade,
) -> Response {
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
    let credentials = Credentials {
        auth: state.auth.clone(),
        request_id: request_id_of(&parts.headers),
        upgrade_authorization: parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?").to_owned()),
        upgrade_narrowing: Narrowing {
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
            connections.track_future(serve(socket, api, credentials, protocol, limits, shutdown, permit))
        })
}
