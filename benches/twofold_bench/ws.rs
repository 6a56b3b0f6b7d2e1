//! A WebSocket client for GraphQL subscriptions (`graphql-transport-ws`)
//! that multiplexes many subscriptions over one connection.
//!
//! A reader task timestamps every frame the moment it arrives, so the
//! measured lag does not include the time the bench takes to look at it.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const PROTOCOL: &str = "graphql-transport-ws";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `next` of a subscription (when it arrived and its payload), or its
/// `complete` (`complete` set, payload null), which is the last notice.
#[derive(Debug)]
pub struct Notice {
    pub at: Instant,
    pub payload: Value,
    pub complete: bool,
}

/// Where each live subscription's notices go, by id.
type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Notice>>>>;

/// Subscription errors the server sent, counted, with the first one kept
/// (a missed notice is then explained in the report).
#[derive(Debug, Default)]
pub struct ErrorLog {
    pub count: u64,
    pub first: Option<String>,
}

pub type SharedErrorLog = Arc<Mutex<ErrorLog>>;

/// One open, acknowledged connection.
pub struct WsMux {
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    errors: SharedErrorLog,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl WsMux {
    /// Connects to `<base>/graphql/ws` and completes `connection_init`/`connection_ack`.
    pub async fn connect(base_url: &str) -> anyhow::Result<Self> {
        let url = format!("{}/graphql/ws", base_url.replacen("http://", "ws://", 1));
        let mut request = url.as_str().into_client_request().context("WebSocket request")?;
        request.headers_mut().insert("sec-websocket-protocol", PROTOCOL.parse().context("protocol header")?);
        let (ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| anyhow!("WebSocket handshake timed out"))?
            .context("WebSocket handshake")?;
        let (mut sink, mut stream) = ws.split();
        sink.send(Message::Text(json!({ "type": "connection_init" }).to_string().into()))
            .await
            .context("send connection_init")?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            while let Some(message) = stream.next().await {
                if let Message::Text(text) = message.context("read connection_ack")? {
                    let value: Value = serde_json::from_str(text.as_str()).context("server sent non-JSON")?;
                    match value["type"].as_str() {
                        Some("connection_ack") => return Ok(()),
                        Some("ping") => sink.send(pong()).await.context("send pong")?,
                        _ => bail!("expected connection_ack, got {value}"),
                    }
                }
            }
            bail!("connection closed before connection_ack")
        })
        .await
        .map_err(|_| anyhow!("no connection_ack in time"))??;

        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let errors: SharedErrorLog = Arc::default();
        let reader = tokio::spawn(read_loop(stream, pending.clone(), errors.clone(), outgoing.clone()));
        Ok(Self { outgoing, pending, errors, next_id: AtomicU64::new(1), reader, writer })
    }

    /// Starts a subscription; the receiver yields each `next`, then a
    /// `complete` notice if the server completes it, and ends on `error`,
    /// `complete`, [`unsubscribe`](Self::unsubscribe) or when the connection
    /// ends.
    pub fn subscribe(&self, query: &str, variables: Value) -> (u64, mpsc::UnboundedReceiver<Notice>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, rx) = mpsc::unbounded_channel();
        self.pending.lock().expect("pending subscriptions lock").insert(id, sender);
        let message =
            json!({ "id": id.to_string(), "type": "subscribe", "payload": { "query": query, "variables": variables } });
        // A closed writer drops nothing here: the reader's exit clears `pending`.
        let _ = self.outgoing.send(Message::Text(message.to_string().into()));
        (id, rx)
    }

    /// The subscription errors received so far: `(count, first message)`.
    pub fn errors(&self) -> (u64, Option<String>) {
        let log = self.errors.lock().expect("error log lock");
        (log.count, log.first.clone())
    }

    /// Stops a subscription (harmless if the server already completed it).
    pub fn unsubscribe(&self, id: u64) {
        self.pending.lock().expect("pending subscriptions lock").remove(&id);
        let _ =
            self.outgoing.send(Message::Text(json!({ "id": id.to_string(), "type": "complete" }).to_string().into()));
    }
}

impl Drop for WsMux {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

fn pong() -> Message {
    Message::Text(json!({ "type": "pong" }).to_string().into())
}

/// Routes each server message to its subscription; answers pings.
async fn read_loop<S>(mut stream: S, pending: Pending, errors: SharedErrorLog, outgoing: mpsc::UnboundedSender<Message>)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        let at = Instant::now();
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let id = value["id"].as_str().and_then(|id| id.parse::<u64>().ok());
        match (value["type"].as_str(), id) {
            (Some("next"), Some(id)) => {
                if let Some(sender) = pending.lock().expect("pending subscriptions lock").get(&id) {
                    let _ = sender.send(Notice { at, payload: value["payload"].clone(), complete: false });
                }
            }
            (Some("error"), Some(id)) => {
                pending.lock().expect("pending subscriptions lock").remove(&id);
                let mut log = errors.lock().expect("error log lock");
                log.count += 1;
                log.first.get_or_insert_with(|| value["payload"].to_string());
            }
            (Some("complete"), Some(id)) => {
                if let Some(sender) = pending.lock().expect("pending subscriptions lock").remove(&id) {
                    let _ = sender.send(Notice { at, payload: Value::Null, complete: true });
                }
            }
            (Some("ping"), _) => {
                let _ = outgoing.send(pong());
            }
            _ => {}
        }
    }
    pending.lock().expect("pending subscriptions lock").clear();
    let mut log = errors.lock().expect("error log lock");
    log.count += 1;
    log.first.get_or_insert_with(|| "the connection closed".to_owned());
}
