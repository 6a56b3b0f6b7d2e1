//! Both subscription protocols, `graphql-transport-ws` and the legacy
//! `graphql-ws`, as a pure state machine: [`Connection::handle`] takes one
//! client message and returns what the socket loop must do, in order
//! ([`Action`]: send a reply, start an operation, stop one), or the
//! [`Close`] that ends the connection. Starting an operation is an action,
//! not a spawn: the loop (`socket.rs`) runs it and tells the machine when
//! it has ended ([`Connection::ended`]). Nothing here reads a socket,
//! spawns a task or sleeps, so the unit tests below drive it frame by
//! frame.
//!
//! The machine owns the connection's identity: who it acts as (set by
//! `connection_init`, from its payload or the upgrade request's headers,
//! then narrowed), until when (the token's `exp`, moved by a `ping`
//! refresh), and which operation ids are in use.
//!
//! The wire format of the messages the loop and the operation tasks send
//! (keep-alive, `next`/`data`, `error`, `complete`) is here too, so each
//! protocol's spelling lives in one file.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::http::WebSocketProtocols;
use serde_json::{json, Value};

use super::close::{CLOSE_BAD_REQUEST, CLOSE_DUPLICATE_ID, CLOSE_FORBIDDEN, CLOSE_TOO_MANY_INITS, CLOSE_UNAUTHORIZED};
use crate::auth::{Authenticated, Authenticator};
use crate::graphql::api::Caller;
use crate::graphql::documents::Documents;

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
    /// The upgrade request's `Twofold-Correlation-Id`, if any.
    pub upgrade_correlation: Option<String>,
    /// The upgrade request's `traceparent` and `tracestate`, if any.
    pub upgrade_trace: Option<(String, Option<String>)>,
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

/// A reason to end the connection: the close code and its reason. Code 0
/// sends no close frame (the peer is gone, or its close is being echoed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Close(pub(super) u16, pub(super) String);

/// One thing the socket loop must do for a client message, in the order given.
#[derive(Debug)]
pub(super) enum Action {
    /// Send this text message to the client.
    Send(String),
    /// Run this operation as its own task.
    Start(Box<Start>),
    /// Abort the task of the operation started as `generation` (the client
    /// completed or stopped it).
    Stop { generation: u64 },
}

/// An operation to run: its id, the generation that tells a reused id
/// apart, who it acts as, and the request.
#[derive(Debug)]
pub(super) struct Start {
    pub(super) id: String,
    pub(super) generation: u64,
    pub(super) caller: Caller,
    pub(super) request: async_graphql::Request,
}

/// The state of one connection's protocol.
pub(super) struct Connection {
    protocol: WebSocketProtocols,
    /// Resolves `documentId`s and APQ hashes (an in-memory lookup).
    documents: Arc<Documents>,
    credentials: Credentials,
    max_operations: usize,
    /// Set by `connection_init`: who the operations act as.
    caller: Option<Caller>,
    /// When the connection's token expires (Unix seconds).
    expires_at: Option<u64>,
    initialized: bool,
    /// Running operations: id → the generation it was started as.
    operations: HashMap<String, u64>,
    generation: u64,
}

impl Connection {
    pub(super) fn new(
        protocol: WebSocketProtocols,
        documents: Arc<Documents>,
        credentials: Credentials,
        max_operations: usize,
    ) -> Self {
        Self {
            protocol,
            documents,
            credentials,
            max_operations,
            caller: None,
            expires_at: None,
            initialized: false,
            operations: HashMap::new(),
            generation: 0,
        }
    }

    /// Whether `connection_init` has been accepted.
    pub(super) fn initialized(&self) -> bool {
        self.initialized
    }

    /// When the connection's token expires (Unix seconds), if it does.
    pub(super) fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// How many operations are running.
    pub(super) fn operations(&self) -> usize {
        self.operations.len()
    }

    fn legacy(&self) -> bool {
        self.protocol == WebSocketProtocols::SubscriptionsTransportWS
    }

    /// Handles one client message: what to do at once, or why to close.
    pub(super) fn handle(&mut self, text: &str) -> Result<Vec<Action>, Close> {
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
                let correlation = text_in(&payload, crate::http::correlation::CORRELATION_HEADER);
                let correlation_id = match correlation {
                    Some(given) => crate::http::correlation::correlation_of(Some(&given))
                        .map_err(|why| Close(CLOSE_BAD_REQUEST, truncate(&why.to_string(), 100)))?,
                    None => self.credentials.upgrade_correlation.clone(),
                };
                let trace = trace_in(&payload).or_else(|| self.credentials.upgrade_trace.clone());
                self.caller = Some(Caller {
                    request_id: self.credentials.request_id.clone(),
                    actor: authenticated.actor,
                    correlation_id,
                    trace,
                });
                self.initialized = true;
                let mut replies = vec![Action::Send(json!({ "type": "connection_ack" }).to_string())];
                if self.legacy() {
                    replies.push(Action::Send(keepalive(self.protocol)));
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
                // A subscribe may continue a trace of its own (`traceparent`
                // beside the query, or in its extensions).
                let mut caller = caller;
                if let Some(trace) = trace_in(&payload).or_else(|| payload.get("extensions").and_then(trace_in)) {
                    caller.trace = Some(trace);
                }
                let mut request: async_graphql::Request = serde_json::from_value(payload).map_err(|e| {
                    Close(CLOSE_BAD_REQUEST, format!("Invalid message received: {}", truncate(&e.to_string(), 80)))
                })?;
                if let Err(e) = self.documents.resolve(&mut request, document_id.as_deref()) {
                    let error =
                        error_message(self.protocol, &id, vec![crate::http::refusal::error(e.code(), e.message())]);
                    return Ok(vec![Action::Send(error)]);
                }
                if self.operations.contains_key(&id) {
                    return Err(Close(
                        CLOSE_DUPLICATE_ID,
                        format!("Subscriber for {} already exists", truncate(&id, 60)),
                    ));
                }
                if self.operations.len() >= self.max_operations {
                    let message = format!("at most {} subscriptions per connection", self.max_operations);
                    let error = error_message(
                        self.protocol,
                        &id,
                        vec![crate::http::refusal::error(crate::graphql::error::VALIDATION, &message)],
                    );
                    return Ok(vec![Action::Send(error)]);
                }
                self.generation += 1;
                self.operations.insert(id.clone(), self.generation);
                Ok(vec![Action::Start(Box::new(Start { id, generation: self.generation, caller, request }))])
            }
            "complete" | "stop" => {
                let Some(id) = id else { return Ok(Vec::new()) };
                match self.operations.remove(&id) {
                    // The legacy protocol confirms a stop with `complete`.
                    Some(generation) => {
                        let mut actions = vec![Action::Stop { generation }];
                        if self.legacy() {
                            actions.push(Action::Send(complete_message(&id)));
                        }
                        Ok(actions)
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
                Ok(vec![Action::Send(pong.to_string())])
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

    /// The operation `id`, started as `generation`, has ended on its own:
    /// its id is free again (unless the client already reused it).
    pub(super) fn ended(&mut self, id: &str, generation: u64) {
        if self.operations.get(id).is_some_and(|g| *g == generation) {
            self.operations.remove(id);
        }
    }
}

/// The `traceparent` (and `tracestate`) of a payload, if any.
fn trace_in(payload: &Value) -> Option<(String, Option<String>)> {
    Some((text_in(payload, "traceparent")?, text_in(payload, "tracestate")))
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

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The server's keep-alive message.
pub(super) fn keepalive(protocol: WebSocketProtocols) -> String {
    match protocol {
        WebSocketProtocols::GraphQLWS => json!({ "type": "ping" }),
        WebSocketProtocols::SubscriptionsTransportWS => json!({ "type": "ka" }),
    }
    .to_string()
}

/// The `error` message: an array of GraphQL errors (the legacy protocol carries one object).
pub(super) fn error_message(protocol: WebSocketProtocols, id: &str, mut errors: Vec<Value>) -> String {
    match protocol {
        WebSocketProtocols::GraphQLWS => json!({ "type": "error", "id": id, "payload": errors }),
        WebSocketProtocols::SubscriptionsTransportWS => {
            json!({ "type": "error", "id": id, "payload": errors.drain(..).next().unwrap_or(Value::Null) })
        }
    }
    .to_string()
}

/// One result of an operation: `next` (graphql-transport-ws) or `data` (legacy).
pub(super) fn data_message(protocol: WebSocketProtocols, id: &str, payload: Value) -> String {
    let data_type = match protocol {
        WebSocketProtocols::GraphQLWS => "next",
        WebSocketProtocols::SubscriptionsTransportWS => "data",
    };
    json!({ "type": data_type, "id": id, "payload": payload }).to_string()
}

/// The operation `id` has no more results (both protocols).
pub(super) fn complete_message(id: &str) -> String {
    json!({ "type": "complete", "id": id }).to_string()
}

#[cfg(test)]
mod tests;
