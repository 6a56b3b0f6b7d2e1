//! The WebSocket connection's timers under a paused clock
//! (`tokio::time::pause`): the `connection_init` deadline (4408), the
//! keep-alive, the token's expiry (4403) and its refresh by `ping`, and the
//! send timeout that drops a client that does not read. Each waits tens of
//! seconds of virtual time and none in real time.
//!
//! The real router (`twofold::http::router`) is served over in-memory pipes
//! rather than TCP, so that nothing but the clock moves the connection on
//! while the clock is paused: a paused runtime advances time whenever all
//! its tasks wait, and a socket's bytes in flight would lose that race.
//! The service starts (and migrates its SQLite file) before time is
//! paused; nothing these tests send touches the database afterwards.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use twofold::app;
use twofold::auth::{mint, AuthSettings};
use twofold::domain::Actor;
use twofold::http::ws::WsLimits;

use crate::helpers::*;

const SECRET: &str = "ws-timer-tests-hs256-secret-of-32-bytes+";

/// An axum listener whose connections are the server ends of in-memory pipes.
struct Pipes(mpsc::Receiver<DuplexStream>);

impl axum::serve::Listener for Pipes {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (DuplexStream, ()) {
        match self.0.recv().await {
            Some(io) => (io, ()),
            // No more connections: the server keeps serving the ones it has.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The API router on a fresh SQLite file, reached through [`Server::connect`].
struct Server {
    pipes: mpsc::Sender<DuplexStream>,
    /// Every WebSocket connection's task (the router tracks them).
    connections: TaskTracker,
    shutdown: CancellationToken,
    _database: TestDatabase,
}

impl Server {
    /// Starts the service with `limits`, keyed with [`SECRET`] when `keyed`.
    async fn start(limits: WsLimits, keyed: bool) -> Self {
        let database = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
        let mut settings = twofold::settings::Settings::for_database(&database.url);
        settings.http.ws = limits;
        if keyed {
            settings.identity.jwt_secret = Some(SECRET.into());
            settings.identity.leeway = Duration::ZERO;
        }
        let services = app::start(&settings).await.expect("service starts");
        let endpoints = twofold::http::Endpoints {
            api: services.api.clone(),
            admin: services.admin.clone(),
            auth: services.auth.clone(),
            web: services.web.clone(),
            replicas: None,
            limits: settings.http,
        };
        let (shutdown, connections) = (CancellationToken::new(), TaskTracker::new());
        let router = twofold::http::router(endpoints, shutdown.clone(), connections.clone());
        let (pipes, incoming) = mpsc::channel(16);
        tokio::spawn(async move {
            axum::serve(Pipes(incoming), router).await.expect("serves");
        });
        Self { pipes, connections, shutdown, _database: database }
    }

    /// A WebSocket connection over a pipe that holds at most `buffer` bytes
    /// in each direction (what a client has not read stays in it).
    async fn connect(&self, protocol: &str, buffer: usize) -> WebSocketStream<DuplexStream> {
        let (client, server) = tokio::io::duplex(buffer);
        self.pipes.send(server).await.expect("the server accepts");
        let mut request = "ws://twofold.test/graphql/ws".into_client_request().expect("request");
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (ws, response) = within(Duration::from_secs(5), "the WebSocket handshake", async {
            tokio_tungstenite::client_async(request, client).await.expect("handshake")
        })
        .await;
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        ws
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the server sent next: a JSON message, or the close (its code).
#[derive(Debug, PartialEq)]
enum Next {
    Message(Value),
    Closed(Option<u16>),
}

/// The next thing the server sends, within `limit` of (virtual) time.
async fn next(ws: &mut WebSocketStream<DuplexStream>, limit: Duration) -> Option<Next> {
    loop {
        let message = tokio::time::timeout(limit, ws.next()).await.ok()?;
        return Some(match message {
            Some(Ok(Message::Text(text))) => Next::Message(serde_json::from_str(text.as_str()).expect("JSON")),
            Some(Ok(Message::Close(frame))) => Next::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => Next::Closed(None),
        });
    }
}

async fn send(ws: &mut WebSocketStream<DuplexStream>, message: Value) {
    ws.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// `connection_init` (with `payload`) and its `connection_ack`.
async fn init(ws: &mut WebSocketStream<DuplexStream>, payload: Value) {
    send(ws, json!({ "type": "connection_init", "payload": payload })).await;
    match next(ws, Duration::from_secs(1)).await {
        Some(Next::Message(m)) if m["type"] == "connection_ack" => {}
        other => panic!("expected connection_ack, got {other:?}"),
    }
}

/// `elapsed` is `expected` on the paused clock (whose timers round up to
/// the next millisecond).
fn assert_at(elapsed: Duration, expected: Duration, what: &str) {
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(5),
        "{what}: after {elapsed:?}, expected {expected:?}"
    );
}

fn bearer(ttl: Duration) -> String {
    let settings = AuthSettings { jwt_secret: Some(SECRET.into()), ..AuthSettings::default() };
    format!("Bearer {}", mint(&settings, &Actor::staff("sam"), ttl).expect("mint"))
}

#[tokio::test]
async fn a_connection_not_initialised_in_time_is_closed_4408_at_the_deadline_with_no_keep_alive_before() {
    // A keep-alive far shorter than the deadline: none may come before `connection_init`.
    let limits = WsLimits { keepalive: Duration::from_secs(1), ..WsLimits::default() };
    let server = Server::start(limits, false).await;
    tokio::time::pause();
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = server.connect(protocol, 64 * 1024).await;
        let opened = Instant::now();
        let quiet = next(&mut ws, limits.init_timeout - Duration::from_millis(1)).await;
        assert_eq!(quiet, None, "{protocol}: nothing before the deadline (no keep-alive, no close)");
        assert_eq!(next(&mut ws, Duration::from_secs(1)).await, Some(Next::Closed(Some(4408))), "{protocol}");
        assert_at(opened.elapsed(), limits.init_timeout, &format!("{protocol}: closed at the deadline"));
    }
}

#[tokio::test]
async fn keep_alives_come_every_interval_on_both_protocols() {
    let limits = WsLimits::default();
    let server = Server::start(limits, false).await;
    tokio::time::pause();
    for (protocol, keep_alive) in
        [("graphql-transport-ws", json!({ "type": "ping" })), ("graphql-ws", json!({ "type": "ka" }))]
    {
        let mut ws = server.connect(protocol, 64 * 1024).await;
        let opened = Instant::now();
        init(&mut ws, json!({})).await;
        if protocol == "graphql-ws" {
            // subscriptions-transport-ws clients expect one at once, with the ack.
            assert_eq!(next(&mut ws, Duration::ZERO).await, Some(Next::Message(keep_alive.clone())));
        }
        for beat in 1..=4 {
            let got = next(&mut ws, limits.keepalive * 2).await;
            assert_eq!(got, Some(Next::Message(keep_alive.clone())), "{protocol}: keep-alive {beat}");
            assert_at(opened.elapsed(), limits.keepalive * beat, &format!("{protocol}: keep-alive {beat}"));
        }
    }
}

#[tokio::test]
async fn a_connection_lives_until_its_tokens_expiry_and_a_ping_with_a_new_token_extends_it() {
    let limits = WsLimits::default();
    let server = Server::start(limits, true).await;
    tokio::time::pause();
    // `exp` is whole seconds of the real clock: 50 s from now is 49–50 s of
    // paused time, between the third keep-alive (45 s) and the fourth.
    let mut kept = server.connect("graphql-transport-ws", 64 * 1024).await;
    init(&mut kept, json!({ "authorization": bearer(Duration::from_secs(50)) })).await;
    let mut refreshed = server.connect("graphql-transport-ws", 64 * 1024).await;
    init(&mut refreshed, json!({ "authorization": bearer(Duration::from_secs(50)) })).await;
    send(&mut refreshed, json!({ "type": "ping", "payload": { "authorization": bearer(Duration::from_secs(110)) } }))
        .await;
    match next(&mut refreshed, Duration::from_secs(1)).await {
        Some(Next::Message(m)) if m["type"] == "pong" => assert!(m["payload"]["expiresAt"].is_u64(), "{m}"),
        other => panic!("expected pong, got {other:?}"),
    }
    let opened = Instant::now();
    /// Keep-alives until the close: their count, the close code and when it came.
    async fn until_closed(ws: &mut WebSocketStream<DuplexStream>, opened: Instant) -> (usize, Option<u16>, Duration) {
        let mut pings = 0;
        loop {
            match next(ws, Duration::from_secs(300)).await.expect("the connection ends within 300 s") {
                Next::Message(m) if m["type"] == "ping" => pings += 1,
                Next::Message(m) => panic!("unexpected {m}"),
                Next::Closed(code) => return (pings, code, opened.elapsed()),
            }
        }
    }
    let (pings, code, at) = until_closed(&mut kept, opened).await;
    assert_eq!((pings, code), (3, Some(4403)), "closed at its token's expiry, after {at:?}");
    assert!(at > Duration::from_secs(45) && at <= Duration::from_secs(50), "closed after {at:?}");
    // The refreshed one outlived it, up to its new token's expiry (105 s: seven keep-alives).
    let (pings, code, at) = until_closed(&mut refreshed, opened).await;
    assert_eq!((pings, code), (7, Some(4403)), "the refreshed connection closed after {at:?}");
    assert!(at > Duration::from_secs(105) && at <= Duration::from_secs(110), "closed after {at:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout_and_a_reading_one_is_not() {
    let limits = WsLimits::default();
    let server = Server::start(limits, false).await;
    tokio::time::pause();
    // Pipes of 16 bytes: a keep-alive frame (17 bytes) does not fit unless
    // the client reads.
    let mut stalled = server.connect("graphql-transport-ws", 16).await;
    init(&mut stalled, json!({})).await;
    let mut reading = server.connect("graphql-transport-ws", 16).await;
    init(&mut reading, json!({})).await;
    let opened = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..4 {
            let got = next(&mut reading, limits.keepalive * 2).await;
            assert_eq!(got, Some(Next::Message(json!({ "type": "ping" }))), "the reading client's keep-alives");
        }
        reading
    });
    // The stalled client's first keep-alive (at 15 s) waits out the send
    // timeout (10 s); then the goodbye gets a second to leave, and closing
    // the socket another.
    let blocked = limits.keepalive + limits.send_timeout;
    tokio::time::sleep_until(opened + blocked - Duration::from_millis(1)).await;
    assert_eq!(server.connections.len(), 2, "no connection dropped before the send timeout");
    tokio::time::sleep_until(opened + blocked + Duration::from_secs(2) + Duration::from_millis(5)).await;
    assert_eq!(server.connections.len(), 1, "the client that does not read was dropped");
    // The reading one lives on: its keep-alives keep coming (15 s … 60 s).
    let reading = within(Duration::from_secs(120), "four keep-alives on the reading connection", reader).await;
    let _reading = reading.expect("the reading client");
    assert_eq!(server.connections.len(), 1, "the reading client is still connected after 60 s");
    drop(stalled);
}
