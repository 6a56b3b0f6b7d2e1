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
//! `accept` here) and async-graphql's executor (`execute_stream`).
//!
//! The files:
//!
//! - this one: the upgrade (`accept`: origin, subprotocol, connection
//!   budget, the upgrade request's credentials), the limits and the close
//!   codes;
//! - `protocol.rs`: both protocols as a pure state machine. A client's
//!   message goes in; the replies to send and the operations to start or
//!   stop come out, or the close code that ends the connection. No I/O, no
//!   task, no clock but the token's own check: its unit tests drive it
//!   frame by frame;
//! - `socket.rs`: the loop that owns the socket. It reads frames, feeds the
//!   machine, carries out what it asks (sending, spawning and aborting
//!   operation tasks), and keeps the connection's timers: initialisation,
//!   keep-alive, the token's expiry, shutdown.
//!
//! The shape of a connection:
//!
//! - one task owns the socket. It reads client messages and handles each
//!   one without waiting on anything that only it could make progress on:
//!   a `subscribe` spawns the operation as its own task, a `complete`
//!   aborts that task (the machine decides, the loop spawns and aborts);
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
mod close;
mod protocol;
mod socket;

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::GraphQLProtocol;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use super::limits::{connection_budget, WsLimits};
pub use close::*;
pub use protocol::{Credentials, Narrowing};

use super::state::{request_id_of, AppState};
use super::{refusal, web};
use crate::graphql::error::{UNAVAILABLE, VALIDATION};

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
    // A correlation id the connection cannot carry is refused as over HTTP
    // (400 `VALIDATION`), never dropped: the caller meant to correlate.
    // (A header that is not text is as bad as a malformed one.)
    let correlation = parts.headers.get(super::correlation::CORRELATION_HEADER).map(|v| v.to_str().unwrap_or("?"));
    let upgrade_correlation = match super::correlation::correlation_of(correlation) {
        Ok(id) => id,
        Err(why) => return refusal::json(StatusCode::BAD_REQUEST, VALIDATION, &why.to_string()),
    };
    let Ok(permit) = state.ws_connections.clone().try_acquire_owned() else {
        let mut busy =
            refusal::json(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, "too many WebSocket connections; retry later");
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return busy;
    };
    // The token may come with the upgrade request or in `connection_init`:
    // the connection authenticates when it is initialised (see `protocol.rs`).
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
        upgrade_correlation,
        upgrade_trace: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(|p| (p.to_owned(), parts.headers.get("tracestate").and_then(|v| v.to_str().ok()).map(str::to_owned))),
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
            connections.track_future(socket::serve(socket, api, credentials, protocol, limits, shutdown, permit))
        })
}
