//! GraphQL subscriptions over WebSocket, both protocols clients use:
//! `graphql-transport-ws` (the graphql-ws library, Apollo Client 3+, urql)
//! and the legacy `graphql-ws` (subscriptions-transport-ws).
//!
//! async-graphql executes the operations; this module owns the connection
//! and enforces what a production endpoint needs and the protocol specifies:
//!
//! | situation                                   | graphql-transport-ws          | graphql-ws (legacy)            |
//! |---------------------------------------------|-------------------------------|--------------------------------|
//! | malformed JSON or unknown message type      | close 4400                    | close 4400                     |
//! | `subscribe`/`start` before `connection_init`| close 4401 Unauthorized       | close 4401                     |
//! | no `connection_init` within 10 s            | close 4408                    | close 4408                     |
//! | second `connection_init`                    | close 4429                    | `connection_error`, close      |
//! | an id already in use                        | close 4409 Subscriber for … exists | close 4409                |
//! | more subscriptions than the cap             | `error` for that id           | `error` for that id            |
//! | message larger than the limit               | close 1009                    | close 1009                     |
//! | client does not read (slow consumer)        | close 4503 (best effort), drop | same                          |
//! | too many connections                        | HTTP 503 before the upgrade   | same                           |
//!
//! Keep-alive: `ping` (graphql-transport-ws) or `ka` (legacy) every 15 s.
//! Memory per connection is bounded: nothing is queued beyond one message
//! in flight; a subscription whose notices pile up past the broadcast
//! capacity ends with a `SLOW_CONSUMER` error instead of buffering.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocket as GraphQLProtocolStream, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;

use crate::graphql::TwofoldSchema;

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
        }
    }
}

pub const CLOSE_BAD_REQUEST: u16 = 4400;
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
pub const CLOSE_DUPLICATE_ID: u16 = 4409;
pub const CLOSE_TOO_MANY_INITS: u16 = 4429;
pub const CLOSE_SLOW_CONSUMER: u16 = 4503;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// What to do with one client message.
enum Verdict {
    Forward,
    Close(u16, String),
    /// Refuse this subscription only, with an `error` message.
    Refuse(String, String),
}

struct Connection {
    protocol: WebSocketProtocols,
    initialized: bool,
    active: HashSet<String>,
    max_subscriptions: usize,
}

impl Connection {
    fn check(&mut self, text: &str) -> Verdict {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            return Verdict::Close(CLOSE_BAD_REQUEST, "Invalid message received: not a JSON object".into());
        };
        let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match kind {
            "connection_init" => {
                if self.initialized {
                    return Verdict::Close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests".into());
                }
                self.initialized = true;
                Verdict::Forward
            }
            "subscribe" | "start" => {
                if !self.initialized {
                    return Verdict::Close(CLOSE_UNAUTHORIZED, "Unauthorized: send connection_init first".into());
                }
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return Verdict::Close(CLOSE_BAD_REQUEST, "Invalid message received: subscribe needs an id".into());
                };
                if message.get("payload").and_then(|p| p.get("query")).and_then(Value::as_str).is_none() {
                    return Verdict::Close(
                        CLOSE_BAD_REQUEST,
                        "Invalid message received: subscribe needs payload.query".into(),
                    );
                }
                if self.active.contains(&id) {
                    return Verdict::Close(CLOSE_DUPLICATE_ID, format!("Subscriber for {id} already exists"));
                }
                if self.active.len() >= self.max_subscriptions {
                    return Verdict::Refuse(
                        id,
                        format!("at most {} subscriptions per connection", self.max_subscriptions),
                    );
                }
                self.active.insert(id);
                Verdict::Forward
            }
            "complete" | "stop" => {
                if let Some(id) = id {
                    self.active.remove(&id);
                }
                Verdict::Forward
            }
            "ping" | "pong" | "connection_terminate" => Verdict::Forward,
            other => Verdict::Close(
                CLOSE_BAD_REQUEST,
                format!("Invalid message received: unknown type '{}'", other.chars().take(40).collect::<String>()),
            ),
        }
    }

    /// Notes subscriptions the server completed, freeing their ids.
    fn observe_outgoing(&mut self, text: &str) {
        if let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) {
            let kind = message.get("type").and_then(Value::as_str);
            if matches!(kind, Some("complete" | "error")) {
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.active.remove(id);
                }
            }
        }
    }

    fn refusal(&self, id: &str, message: &str) -> String {
        let error = json!({ "message": message, "extensions": { "code": "VALIDATION" } });
        match self.protocol {
            WebSocketProtocols::GraphQLWS => json!({ "type": "error", "id": id, "payload": [error] }),
            WebSocketProtocols::SubscriptionsTransportWS => json!({ "type": "error", "id": id, "payload": error }),
        }
        .to_string()
    }

    fn keepalive(&self) -> String {
        match self.protocol {
            WebSocketProtocols::GraphQLWS => json!({ "type": "ping" }),
            WebSocketProtocols::SubscriptionsTransportWS => json!({ "type": "ka" }),
        }
        .to_string()
    }
}

/// Sends one message; `Err(Elapsed)` when the client did not take it in time.
async fn send_text(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    text: String,
    timeout: Duration,
) -> Result<Result<(), axum::Error>, tokio::time::error::Elapsed> {
    tokio::time::timeout(timeout, sink.send(Message::Text(text.into()))).await
}

async fn close(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, code: u16, reason: String) {
    let frame = CloseFrame { code, reason: reason.chars().take(120).collect::<String>().into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
}

/// Serves one upgraded connection until either side ends it.
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

pub async fn serve(
    socket: WebSocket,
    schema: TwofoldSchema,
    protocol: WebSocketProtocols,
    limits: WsLimits,
    _permit: OwnedSemaphorePermit,
) {
    metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
    let (mut sink, mut source) = socket.split();
    let (to_graphql, from_client) = mpsc::channel::<String>(8);
    let mut graphql = GraphQLProtocolStream::new(schema, ReceiverStream::new(from_client), protocol);
    let mut conn = Connection {
        protocol,
        initialized: false,
        active: HashSet::new(),
        max_subscriptions: limits.max_subscriptions_per_connection,
    };
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    let mut subscriptions = SubscriptionGauge(0);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + limits.keepalive, limits.keepalive);
    loop {
        subscriptions.set(conn.active.len());
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => match conn.check(text.as_str()) {
                    Verdict::Forward => {
                        if to_graphql.send(text.as_str().to_owned()).await.is_err() {
                            break;
                        }
                    }
                    Verdict::Close(code, reason) => {
                        close(&mut sink, code, reason).await;
                        break;
                    }
                    Verdict::Refuse(id, message) => {
                        let refusal = conn.refusal(&id, &message);
                        if !matches!(send_text(&mut sink, refusal, limits.send_timeout).await, Ok(Ok(()))) {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    close(&mut sink, CLOSE_BAD_REQUEST, "Invalid message received: binary frames are not GraphQL messages".into()).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {} // WebSocket-level ping/pong: handled by the library
                Some(Err(e)) => {
                    let too_big = e.to_string().to_lowercase().contains("too long") || e.to_string().to_lowercase().contains("size");
                    if too_big {
                        close(&mut sink, CLOSE_TOO_BIG, format!("message larger than {} bytes", limits.max_message_bytes)).await;
                    }
                    break;
                }
            },
            outgoing = graphql.next() => match outgoing {
                Some(WsMessage::Text(text)) => {
                    conn.observe_outgoing(&text);
                    match send_text(&mut sink, text, limits.send_timeout).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::warn!("closing a WebSocket whose client does not read (slow consumer)");
                            close(&mut sink, CLOSE_SLOW_CONSUMER, "slow consumer: messages were not read in time".into()).await;
                            break;
                        }
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    close(&mut sink, code, reason).await;
                    break;
                }
                None => break,
            },
            _ = &mut init_deadline, if !conn.initialized => {
                close(&mut sink, CLOSE_INIT_TIMEOUT, "Connection initialisation timeout".into()).await;
                break;
            }
            _ = keepalive.tick(), if conn.initialized => {
                if !matches!(send_text(&mut sink, conn.keepalive(), limits.send_timeout).await, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    subscriptions.set(0);
    metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
}

/// Shared connection budget.
pub fn connection_budget(limits: &WsLimits) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(limits.max_connections))
}
