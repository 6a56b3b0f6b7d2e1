//! The loop that owns one connection's socket: it reads frames, feeds each
//! client message to the protocol machine ([`Connection`]), carries out
//! what the machine asks (sends replies, spawns an operation as its own
//! task, aborts one), writes what the operation tasks queue in the
//! connection's bounded outbox, and keeps the connection's timers:
//! initialisation, keep-alive, the token's expiry and the server's
//! shutdown. It decides nothing about the protocol itself; frame-level
//! errors (too big, invalid UTF-8, protocol violations) and slow
//! consumers are its own.
use std::collections::HashMap;
use std::time::Duration;

use async_graphql::http::WebSocketProtocols;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::close::{
    CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, CLOSE_INIT_TIMEOUT, CLOSE_INVALID_PAYLOAD,
    CLOSE_PROTOCOL_ERROR, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG,
};
use super::protocol::{
    complete_message, data_message, error_message, keepalive, truncate, Action, Close, Connection, Credentials, Start,
};
use crate::graphql::api::{Api, Caller};
use crate::http::limits::WsLimits;

/// What an operation task hands to the socket task.
enum Outgoing {
    /// A protocol message to send.
    Text(String),
    /// The operation `id` (of generation `generation`) has ended.
    Ended { id: String, generation: u64 },
}

/// The connection's operation tasks, by generation: each runs
/// [`run_operation`] and writes into the connection's outbox. Dropping
/// this (the connection ended, however) aborts them all.
struct Operations {
    api: Api,
    protocol: WebSocketProtocols,
    outbox: mpsc::Sender<Outgoing>,
    running: HashMap<u64, AbortHandle>,
}

impl Operations {
    fn start(&mut self, start: Box<Start>) {
        let Start { id, generation, caller, request } = *start;
        let task = tokio::spawn(run_operation(
            self.api.clone(),
            caller,
            request,
            id,
            generation,
            self.protocol,
            self.outbox.clone(),
        ));
        self.running.insert(generation, task.abort_handle());
    }

    fn stop(&mut self, generation: u64) {
        if let Some(task) = self.running.remove(&generation) {
            task.abort();
        }
    }

    /// The task has returned on its own.
    fn ended(&mut self, generation: u64) {
        self.running.remove(&generation);
    }
}

impl Drop for Operations {
    fn drop(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

/// Carries out what the machine asked for one client message, in order;
/// the first send that fails ends the connection.
async fn carry_out(
    actions: Vec<Action>,
    sink: &mut Sink,
    operations: &mut Operations,
    send_timeout: Duration,
) -> Result<(), Close> {
    for action in actions {
        match action {
            Action::Send(reply) => send(sink, reply, send_timeout).await?,
            Action::Start(start) => operations.start(start),
            Action::Stop { generation } => operations.stop(generation),
        }
    }
    Ok(())
}

/// How long until `expires_at` (Unix seconds); zero if it has passed.
fn until(expires_at: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(expires_at).saturating_sub(now)
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
    while let Some(mut response) = responses.next().await {
        crate::graphql::error::for_client(&mut response.errors, progress.validated());
        if first && !progress.validated() {
            // The document never ran: graphql-transport-ws answers with `error`, and no `complete`.
            let errors = response
                .errors
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_else(|err| crate::graphql::error::internal_error(&err)))
                .collect();
            // A closed outbox means the connection is gone: nobody is left to tell.
            let _ = outbox.send(Outgoing::Text(error_message(protocol, &id, errors))).await;
            let _ = outbox.send(Outgoing::Ended { id, generation }).await;
            return;
        }
        first = false;
        let payload = match serde_json::to_value(&response) {
            Ok(payload) => payload,
            Err(e) => json!({ "data": null, "errors": [crate::graphql::error::internal_error(&e)] }),
        };
        if outbox.send(Outgoing::Text(data_message(protocol, &id, payload))).await.is_err() {
            return;
        }
    }
    // A closed outbox means the connection is gone: nobody is left to tell.
    let _ = outbox.send(Outgoing::Text(complete_message(&id))).await;
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
        // Closing is best effort: a peer that is gone or slow cannot be told more.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
    }
    // Best effort as above: the socket is dropped right after either way.
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
pub(super) async fn serve(
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
    let mut conn =
        Connection::new(protocol, api.documents.clone(), credentials, limits.max_subscriptions_per_connection);
    let mut operations = Operations { api, protocol, outbox, running: HashMap::new() };
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    let mut subscriptions = SubscriptionGauge(0);
    let mut keepalive_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + limits.keepalive, limits.keepalive);
    // The token's expiry (Unix seconds) as a deadline on the runtime's
    // clock, set when the expiry is (`connection_init`, a `ping` refresh):
    // the timers of a connection all run on one clock.
    let mut expiry: Option<(u64, tokio::time::Instant)> = None;
    let ending: Close = loop {
        subscriptions.set(conn.operations());
        if expiry.map(|(exp, _)| exp) != conn.expires_at() {
            expiry = conn.expires_at().map(|exp| (exp, tokio::time::Instant::now() + until(exp)));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Close(CLOSE_GOING_AWAY, "the server is shutting down; reconnect".into()),
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => match conn.handle(text.as_str()) {
                    Ok(actions) => {
                        if let Err(e) = carry_out(actions, &mut sink, &mut operations, limits.send_timeout).await {
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
                Outgoing::Ended { id, generation } => {
                    operations.ended(generation);
                    conn.ended(&id, generation);
                }
            },
            _ = &mut init_deadline, if !conn.initialized() => break Close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout".into()),
            // A refresh moves the deadline (see `expiry` above).
            _ = tokio::time::sleep_until(expiry.map_or_else(tokio::time::Instant::now, |(_, at)| at)), if expiry.is_some() => {
                break Close(CLOSE_FORBIDDEN, "Forbidden: the token has expired; reconnect with a new one".into());
            }
            _ = keepalive_timer.tick(), if conn.initialized() => {
                if let Err(e) = send(&mut sink, keepalive(protocol), limits.send_timeout).await {
                    break e;
                }
            }
        }
    };
    // Every operation ends with the connection, before the goodbye.
    drop(operations);
    close(&mut sink, ending).await;
    subscriptions.set(0);
    metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
}
