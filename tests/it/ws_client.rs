//! A GraphQL WebSocket client for tests that speaks both protocols message
//! by message: `graphql-transport-ws` (what the graphql-ws npm library,
//! Apollo Client 3+ and urql speak) and the legacy `graphql-ws`
//! (subscriptions-transport-ws).
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`
    TransportWs,
    /// legacy `graphql-ws`
    LegacyWs,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::LegacyWs => "graphql-ws",
        }
    }
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub protocol: Protocol,
}

/// What the server did next.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Message(Value),
    Closed(Option<u16>, String),
}

impl WsClient {
    pub async fn connect(base: &str, path: &str, protocol: Protocol) -> Self {
        let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
        let mut request = url.clone().into_client_request().expect("request");
        request.headers_mut().insert("sec-websocket-protocol", protocol.name().parse().expect("header"));
        let (ws, response) = tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|_| panic!("no WebSocket handshake with {url} within 30 s"))
            .expect("WebSocket handshake");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol.name());
        Self { ws, protocol }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends, reporting whether the connection took it (it may have been closed).
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.ws.send(Message::Text(text.to_owned().into())).await.is_ok()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_owned().into())).await.expect("send");
    }

    /// `connection_init` and its `connection_ack`.
    pub async fn init(&mut self) {
        self.init_with(json!({ "client": "twofold-tests" })).await;
    }

    /// `connection_init` with `payload` (e.g. `{"authorization": "Bearer …"}`) and its `connection_ack`.
    pub async fn init_with(&mut self, payload: Value) {
        self.send_json(json!({ "type": "connection_init", "payload": payload })).await;
        match self.next().await {
            Event::Message(m) if m["type"] == "connection_ack" => {}
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send_json(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } })).await;
    }

    /// The next protocol message (keep-alives answered and skipped), or the close.
    pub async fn next(&mut self) -> Event {
        self.next_within(Duration::from_secs(15)).await.expect("a message in time")
    }

    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match message {
                None => return Some(Event::Closed(None, String::new())),
                Some(Err(e)) => return Some(Event::Closed(None, e.to_string())),
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("server sends JSON");
                    match value["type"].as_str() {
                        Some("ping") => self.send_json(json!({ "type": "pong" })).await,
                        Some("ka") => {}
                        _ => return Some(Event::Message(value)),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Event::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The payload of the next data message for `id` (`next` or legacy `data`).
    pub async fn next_data(&mut self, id: &str) -> Value {
        loop {
            match self.next().await {
                Event::Message(m) if m["id"] == id && (m["type"] == "next" || m["type"] == "data") => {
                    return m["payload"].clone()
                }
                Event::Message(m) if m["id"] == id && m["type"] == "error" => {
                    panic!("subscription error: {m}")
                }
                Event::Message(_) => continue,
                Event::Closed(code, reason) => {
                    panic!("closed ({code:?}: {reason}) while waiting for data")
                }
            }
        }
    }

    /// Waits for `complete` of `id`, failing on any further data for it.
    pub async fn expect_complete(&mut self, id: &str) {
        match self.next().await {
            Event::Message(m) if m["id"] == id && m["type"] == "complete" => {}
            other => panic!("expected complete for {id}, got {other:?}"),
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_within(Duration::from_secs(15)).await.expect("a close in time") {
                Event::Closed(code, _) => return code,
                Event::Message(_) => continue,
            }
        }
    }

    /// Sends a close frame with `code` and returns the code of the server's answering close frame.
    pub async fn close_with(mut self, code: u16) -> Option<u16> {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let frame = CloseFrame { code: CloseCode::from(code), reason: "bye".into() };
        self.ws.send(Message::Close(Some(frame))).await.ok()?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Used by abuse tests: a normal-closure code, for comparisons.
pub fn normal() -> u16 {
    u16::from(CloseCode::Normal)
}
