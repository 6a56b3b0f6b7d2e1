//! The protocol machine driven frame by frame, for both protocols: what
//! each client message gets back (replies, operations started or stopped)
//! or the close code that ends the connection. These pin what the server
//! does; `tests/it/subscriptions.rs` checks the same over real sockets.
use std::time::Duration;

use async_graphql::http::WebSocketProtocols::{self, GraphQLWS as TRANSPORT, SubscriptionsTransportWS as LEGACY};
use serde_json::{json, Value};

use super::*;
use crate::auth::{mint, AuthSettings, Authenticator};
use crate::graphql::documents::{DocumentSettings, Documents};

const BOTH: [WebSocketProtocols; 2] = [TRANSPORT, LEGACY];
const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
const QUERY: &str = "subscription { writeVisible(token: \"0\") { token } }";
/// The only trusted document of these tests, and its id.
const TRUSTED: &str = "query { viewer { role } }";

/// What a test reads of one action.
#[derive(Debug, PartialEq)]
enum Did {
    Sent(Value),
    Started { id: String, generation: u64, query: String, sub: String, role: &'static str },
    Stopped(u64),
}

fn trusted_id() -> String {
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(TRUSTED.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hash}")
}

fn documents() -> Arc<Documents> {
    let settings =
        DocumentSettings { trusted: [(trusted_id(), TRUSTED.to_owned())].into(), ..DocumentSettings::default() };
    Arc::new(Documents::new(&settings).expect("the trusted document's id is its hash"))
}

fn keyed_settings() -> AuthSettings {
    AuthSettings {
        jwt_secret: Some(SECRET.into()),
        leeway: Duration::from_secs(0),
        admin_token: Some("ops-token".into()),
        ..AuthSettings::default()
    }
}

fn credentials(auth: Authenticator) -> Credentials {
    Credentials {
        auth,
        request_id: "request-1".into(),
        upgrade_authorization: None,
        upgrade_narrowing: Narrowing::default(),
        upgrade_correlation: None,
        upgrade_trace: None,
    }
}

/// A connection in open development mode (every caller is staff `open`),
/// at most two operations at a time.
fn open(protocol: WebSocketProtocols) -> Connection {
    Connection::new(protocol, documents(), credentials(Authenticator::open()), 2)
}

/// A connection whose tokens must verify with [`SECRET`].
fn keyed(protocol: WebSocketProtocols) -> Connection {
    let auth = Authenticator::from_settings(&keyed_settings()).expect("keys");
    Connection::new(protocol, documents(), credentials(auth), 2)
}

/// `Bearer <token>` for `sub` acting as `role` (staff or admin), valid for `ttl`.
fn bearer(sub: &str, role: &str, ttl: Duration) -> String {
    let auth = Authenticator::from_settings(&keyed_settings()).expect("keys");
    let admin = auth.authenticate(Some("Bearer ops-token")).expect("the admin token").actor;
    let mut actor = crate::auth::narrow(admin, Some(role), None).expect("an admin may act as any role");
    actor.sub = sub.into();
    format!("Bearer {}", mint(&keyed_settings(), &actor, ttl).expect("mint"))
}

/// `Bearer <token>` for staff `sub`, expired a minute ago: signed here, as
/// `mint` takes no lifetime below zero (and waiting for a fresh token's
/// `exp`, in whole seconds, to pass took the test a second of real time).
fn expired_bearer(sub: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let claims = json!({ "sub": sub, "role": "staff", "iat": now() - 120, "exp": now() - 60 });
    let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()));
    format!("Bearer {}", token.expect("sign"))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

fn read(actions: Vec<Action>) -> Vec<Did> {
    actions
        .into_iter()
        .map(|action| match action {
            Action::Send(text) => Did::Sent(serde_json::from_str(&text).expect("replies are JSON")),
            Action::Start(start) => Did::Started {
                id: start.id,
                generation: start.generation,
                query: start.request.query,
                sub: start.caller.actor.sub,
                role: start.caller.actor.role.as_str(),
            },
            Action::Stop { generation } => Did::Stopped(generation),
        })
        .collect()
}

/// Feeds one message; what the machine did.
fn feed(conn: &mut Connection, message: Value) -> Vec<Did> {
    match conn.handle(&message.to_string()) {
        Ok(actions) => read(actions),
        Err(Close(code, reason)) => panic!("{message} closed the connection: {code} {reason}"),
    }
}

/// Feeds one message that must close the connection; the close.
fn refused(conn: &mut Connection, text: &str) -> (u16, String) {
    match conn.handle(text) {
        Ok(actions) => panic!("{text} did not close the connection: {:?}", read(actions)),
        Err(Close(code, reason)) => (code, reason),
    }
}

fn init(conn: &mut Connection) {
    feed(conn, json!({ "type": "connection_init" }));
}

fn subscribe_type(protocol: WebSocketProtocols) -> &'static str {
    match protocol {
        TRANSPORT => "subscribe",
        LEGACY => "start",
    }
}

fn subscribe(protocol: WebSocketProtocols, id: &str) -> Value {
    json!({ "type": subscribe_type(protocol), "id": id, "payload": { "query": QUERY } })
}

fn ack_of(protocol: WebSocketProtocols) -> Vec<Did> {
    match protocol {
        TRANSPORT => vec![Did::Sent(json!({ "type": "connection_ack" }))],
        // The legacy protocol's first keep-alive follows the ack at once.
        LEGACY => vec![Did::Sent(json!({ "type": "connection_ack" })), Did::Sent(json!({ "type": "ka" }))],
    }
}

fn started(id: &str, generation: u64) -> Did {
    Did::Started { id: id.into(), generation, query: QUERY.into(), sub: "open".into(), role: "staff" }
}

#[test]
fn connection_init_is_acknowledged() {
    for protocol in BOTH {
        let mut conn = open(protocol);
        assert!(!conn.initialized());
        assert_eq!(feed(&mut conn, json!({ "type": "connection_init", "payload": {} })), ack_of(protocol));
        assert!(conn.initialized());
        // Open mode: no token, so no expiry.
        assert_eq!(conn.expires_at(), None);
    }
}

#[test]
fn a_second_connection_init_closes_4429() {
    for protocol in BOTH {
        let mut conn = open(protocol);
        init(&mut conn);
        let second = json!({ "type": "connection_init" }).to_string();
        assert_eq!(refused(&mut conn, &second), (CLOSE_TOO_MANY_INITS, "Too many initialisation requests".into()));
    }
}

#[test]
fn subscribing_before_connection_init_closes_4401() {
    for protocol in BOTH {
        let mut conn = open(protocol);
        let early = subscribe(protocol, "1").to_string();
        assert_eq!(refused(&mut conn, &early), (CLOSE_UNAUTHORIZED, "Unauthorized".into()));
    }
}

#[test]
fn a_subscribe_starts_its_operation_as_the_caller_with_a_new_generation() {
    for protocol in BOTH {
        let mut conn = open(protocol);
        init(&mut conn);
        assert_eq!(feed(&mut conn, subscribe(protocol, "a")), vec![started("a", 1)]);
        assert_eq!(feed(&mut conn, subscribe(protocol, "b")), vec![started("b", 2)]);
        assert_eq!(conn.operations(), 2);
    }
}

#[test]
fn a_subscribe_without_an_id_or_a_document_closes_4400() {
    for protocol in BOTH {
        let kind = subscribe_type(protocol);
        let mut conn = open(protocol);
        init(&mut conn);
        let needs_id = (CLOSE_BAD_REQUEST, "Invalid message received: subscribe needs an id".to_owned());
        for message in [
            json!({ "type": kind, "payload": { "query": QUERY } }),
            json!({ "type": kind, "id": "", "payload": { "query": QUERY } }),
            json!({ "type": kind, "id": 7, "payload": { "query": QUERY } }),
        ] {
            assert_eq!(refused(&mut open_and_init(protocol), &message.to_string()), needs_id, "{message}");
        }
        let needs_document = (
            CLOSE_BAD_REQUEST,
            "Invalid message received: subscribe needs payload.query (or payload.documentId)".to_owned(),
        );
        for message in [
            json!({ "type": kind, "id": "1" }),
            json!({ "type": kind, "id": "1", "payload": {} }),
            json!({ "type": kind, "id": "1", "payload": { "query": 5 } }),
        ] {
            assert_eq!(refused(&mut open_and_init(protocol), &message.to_string()), needs_document, "{message}");
        }
        // A payload that names a document but is no GraphQL request.
        let bad = json!({ "type": kind, "id": "1", "payload": { "query": QUERY, "variables": 5 } }).to_string();
        let (code, reason) = refused(&mut conn, &bad);
        assert_eq!(code, CLOSE_BAD_REQUEST);
        assert!(reason.starts_with("Invalid message received: "), "{reason}");
    }
}

fn open_and_init(protocol: WebSocketProtocols) -> Connection {
    let mut conn = open(protocol);
    init(&mut conn);
    conn
}

#[test]
fn an_id_in_use_closes_4409_and_is_free_again_once_its_operation_ends() {
    for protocol in BOTH {
        let mut conn = open_and_init(protocol);
        assert_eq!(feed(&mut conn, subscribe(protocol, "1")), vec![started("1", 1)]);
        let again = subscribe(protocol, "1").to_string();
        assert_eq!(
            refused(&mut open_and_init_with(protocol, "1"), &again),
            (CLOSE_DUPLICATE_ID, "Subscriber for 1 already exists".into())
        );
        // The operation ends on its own: its id may be used again.
        conn.ended("1", 1);
        assert_eq!(conn.operations(), 0);
        assert_eq!(feed(&mut conn, subscribe(protocol, "1")), vec![started("1", 2)]);
        // The end of the old generation does not free the new one.
        conn.ended("1", 1);
        assert_eq!(conn.operations(), 1);
        assert_eq!(refused(&mut conn, &again).0, CLOSE_DUPLICATE_ID);
    }
}

/// A connection that has started operation `id`.
fn open_and_init_with(protocol: WebSocketProtocols, id: &str) -> Connection {
    let mut conn = open_and_init(protocol);
    feed(&mut conn, subscribe(protocol, id));
    conn
}

#[test]
fn more_operations_than_the_cap_get_an_error_for_that_id_and_the_connection_stays() {
    let error = json!({ "message": "at most 2 subscriptions per connection", "extensions": { "code": "VALIDATION" } });
    for protocol in BOTH {
        let mut conn = open_and_init(protocol);
        feed(&mut conn, subscribe(protocol, "1"));
        feed(&mut conn, subscribe(protocol, "2"));
        let payload = match protocol {
            TRANSPORT => json!([error]),
            // The legacy protocol's `error` carries one error, not an array.
            LEGACY => error.clone(),
        };
        assert_eq!(
            feed(&mut conn, subscribe(protocol, "3")),
            vec![Did::Sent(json!({ "type": "error", "id": "3", "payload": payload }))]
        );
        assert_eq!(conn.operations(), 2);
    }
}

#[test]
fn complete_and_stop_abort_the_operation_and_only_the_legacy_protocol_confirms() {
    for protocol in BOTH {
        let mut conn = open_and_init_with(protocol, "1");
        let end = match protocol {
            TRANSPORT => "complete",
            LEGACY => "stop",
        };
        let done = feed(&mut conn, json!({ "type": end, "id": "1" }));
        match protocol {
            TRANSPORT => assert_eq!(done, vec![Did::Stopped(1)]),
            LEGACY => {
                assert_eq!(done, vec![Did::Stopped(1), Did::Sent(json!({ "type": "complete", "id": "1" }))])
            }
        }
        assert_eq!(conn.operations(), 0);
        // Ending what is not running (again, unknown, or without an id) does nothing.
        assert_eq!(feed(&mut conn, json!({ "type": end, "id": "1" })), vec![]);
        assert_eq!(feed(&mut conn, json!({ "type": end, "id": "nope" })), vec![]);
        assert_eq!(feed(&mut conn, json!({ "type": end })), vec![]);
        // Both protocols accept both words.
        feed(&mut conn, subscribe(protocol, "2"));
        let other = if end == "complete" { "stop" } else { "complete" };
        assert_eq!(feed(&mut conn, json!({ "type": other, "id": "2" }))[0], Did::Stopped(2));
    }
}

#[test]
fn ping_is_answered_with_pong_echoing_its_payload() {
    let mut conn = open(TRANSPORT);
    // Before connection_init too.
    assert_eq!(feed(&mut conn, json!({ "type": "ping" })), vec![Did::Sent(json!({ "type": "pong" }))]);
    init(&mut conn);
    assert_eq!(feed(&mut conn, json!({ "type": "ping", "payload": null })), vec![Did::Sent(json!({ "type": "pong" }))]);
    assert_eq!(
        feed(&mut conn, json!({ "type": "ping", "payload": { "at": 1 } })),
        vec![Did::Sent(json!({ "type": "pong", "payload": { "at": 1 } }))]
    );
    // A client's pong needs no answer.
    assert_eq!(feed(&mut conn, json!({ "type": "pong", "payload": { "at": 1 } })), vec![]);
}

#[test]
fn the_legacy_protocol_has_no_client_ping_or_pong_but_has_connection_terminate() {
    let mut conn = open_and_init(LEGACY);
    for kind in ["ping", "pong"] {
        let message = json!({ "type": kind }).to_string();
        assert_eq!(
            refused(&mut open_and_init(LEGACY), &message),
            (CLOSE_BAD_REQUEST, format!("Invalid message received: unknown type '{kind}'"))
        );
    }
    let terminate = json!({ "type": "connection_terminate" }).to_string();
    assert_eq!(refused(&mut conn, &terminate), (1000, "connection terminated".into()));
    assert_eq!(
        refused(&mut open_and_init(TRANSPORT), &terminate),
        (CLOSE_BAD_REQUEST, "Invalid message received: unknown type 'connection_terminate'".into())
    );
}

#[test]
fn an_unknown_type_closes_4400() {
    let long = "x".repeat(100);
    for protocol in BOTH {
        for (message, kind) in [
            (json!({ "type": "subscription_data", "id": "1" }), "subscription_data"),
            (json!({ "id": "1" }), ""),
            (json!({ "type": 3 }), ""),
            // The reason quotes at most 40 characters of the type.
            (json!({ "type": long }), &long[..40]),
        ] {
            assert_eq!(
                refused(&mut open_and_init(protocol), &message.to_string()),
                (CLOSE_BAD_REQUEST, format!("Invalid message received: unknown type '{kind}'")),
                "{message}"
            );
        }
    }
}

#[test]
fn what_is_not_a_json_object_closes_4400() {
    for protocol in BOTH {
        for text in ["{", "not json", "[]", "\"connection_init\"", "null", ""] {
            assert_eq!(
                refused(&mut open(protocol), text),
                (CLOSE_BAD_REQUEST, "Invalid message received: not a JSON object".into()),
                "{text:?}"
            );
        }
    }
}

#[test]
fn connection_init_authenticates_with_its_payload_in_any_letter_case_or_the_upgrade_header() {
    for protocol in BOTH {
        for key in ["authorization", "Authorization", "AUTHORIZATION"] {
            let mut conn = keyed(protocol);
            let token = bearer("sam", "staff", Duration::from_secs(600));
            feed(&mut conn, json!({ "type": "connection_init", "payload": { key: token } }));
            let expires_at = conn.expires_at().expect("a token expires");
            assert!((now() + 590..=now() + 610).contains(&expires_at), "{expires_at}");
            let started = feed(&mut conn, subscribe(protocol, "1"));
            assert_eq!(
                started,
                vec![Did::Started {
                    id: "1".into(),
                    generation: 1,
                    query: QUERY.into(),
                    sub: "sam".into(),
                    role: "staff"
                }]
            );
        }
        // No authorization in the payload: the upgrade request's.
        let mut conn = keyed(protocol);
        conn.credentials.upgrade_authorization = Some(bearer("ada", "admin", Duration::from_secs(60)));
        init(&mut conn);
        assert!(
            matches!(&feed(&mut conn, subscribe(protocol, "1"))[0], Did::Started { sub, role: "admin", .. } if sub == "ada")
        );
        // No credentials at all: anonymous.
        let mut conn = keyed(protocol);
        init(&mut conn);
        assert!(matches!(&feed(&mut conn, subscribe(protocol, "1"))[0], Did::Started { role: "anonymous", .. }));
        assert_eq!(conn.expires_at(), None);
    }
}

#[test]
fn credentials_that_do_not_verify_close_4403() {
    let expired = expired_bearer("sam");
    for protocol in BOTH {
        for (authorization, reason) in [
            ("Bearer not-a-jwt", "Forbidden: the bearer token is not a well-formed JWT (header.payload.signature)"),
            ("Basic dXNlcjpwYXNz", "Forbidden: credentials must be `Bearer <token>`"),
        ] {
            let message = json!({ "type": "connection_init", "payload": { "authorization": authorization } });
            assert_eq!(refused(&mut keyed(protocol), &message.to_string()), (CLOSE_FORBIDDEN, reason.into()));
            // Open mode refuses what could never be a token the same way.
            assert_eq!(refused(&mut open(protocol), &message.to_string()), (CLOSE_FORBIDDEN, reason.into()));
        }
        let message = json!({ "type": "connection_init", "payload": { "authorization": expired } }).to_string();
        assert_eq!(
            refused(&mut keyed(protocol), &message),
            (CLOSE_FORBIDDEN, "Forbidden: the token has expired".into())
        );
        // The upgrade request's header is held to the same rule.
        let mut conn = keyed(protocol);
        conn.credentials.upgrade_authorization = Some("Bearer not-a-jwt".into());
        let (code, _) = refused(&mut conn, &json!({ "type": "connection_init" }).to_string());
        assert_eq!(code, CLOSE_FORBIDDEN);
        assert!(!conn.initialized());
    }
}

#[test]
fn a_narrowing_that_widens_or_says_nothing_sensible_closes_4403() {
    let customer = "8c5f0c1e-0d7e-4f4e-9a52-6f0c8d8f3b21";
    for protocol in BOTH {
        // Open mode acts as staff: it may narrow to a customer, not widen to admin.
        let mut conn = open(protocol);
        let narrowed = json!({ "type": "connection_init", "payload": { "Twofold-Role": "customer", "twofold-customer-id": customer } });
        feed(&mut conn, narrowed);
        assert!(matches!(&feed(&mut conn, subscribe(protocol, "1"))[0], Did::Started { role: "customer", .. }));
        let widen = json!({ "type": "connection_init", "payload": { "twofold-role": "admin" } }).to_string();
        assert_eq!(
            refused(&mut open(protocol), &widen),
            (
                CLOSE_FORBIDDEN,
                "Forbidden: a role can be narrowed, never widened: this request acts as staff and cannot act as admin"
                    .into()
            )
        );
        for payload in [
            json!({ "twofold-role": "root" }),
            json!({ "twofold-role": "customer" }),
            json!({ "twofold-customer-id": customer }),
        ] {
            let message = json!({ "type": "connection_init", "payload": payload }).to_string();
            let (code, reason) = refused(&mut open(protocol), &message);
            assert_eq!(code, CLOSE_FORBIDDEN, "{payload}");
            assert!(reason.starts_with("Forbidden: "), "{reason}");
        }
        // The upgrade request's headers narrow when the payload says nothing.
        let mut conn = open(protocol);
        conn.credentials.upgrade_narrowing = Narrowing { role: Some("admin".into()), customer_id: None };
        assert_eq!(refused(&mut conn, &json!({ "type": "connection_init" }).to_string()).0, CLOSE_FORBIDDEN);
        let mut conn = open(protocol);
        conn.credentials.upgrade_narrowing = Narrowing { role: Some("anonymous".into()), customer_id: None };
        init(&mut conn);
        assert!(matches!(&feed(&mut conn, subscribe(protocol, "1"))[0], Did::Started { role: "anonymous", .. }));
    }
}

#[test]
fn a_ping_with_a_token_for_the_same_actor_extends_the_connection() {
    let mut conn = keyed(TRANSPORT);
    let short = bearer("sam", "staff", Duration::from_secs(60));
    feed(&mut conn, json!({ "type": "connection_init", "payload": { "authorization": short } }));
    let first = conn.expires_at().expect("expires");
    let longer = bearer("sam", "staff", Duration::from_secs(3600));
    let pong = feed(&mut conn, json!({ "type": "ping", "payload": { "Authorization": longer } }));
    let expires_at = conn.expires_at().expect("still expires");
    assert!(expires_at > first + 3000, "{first} → {expires_at}");
    assert_eq!(pong, vec![Did::Sent(json!({ "type": "pong", "payload": { "expiresAt": expires_at } }))]);
    // The operations act as the refreshed actor.
    assert!(
        matches!(&feed(&mut conn, subscribe(TRANSPORT, "1"))[0], Did::Started { sub, role: "staff", .. } if sub == "sam")
    );
}

#[test]
fn a_ping_with_another_actors_or_a_bad_token_closes_4403() {
    let sam = bearer("sam", "staff", Duration::from_secs(60));
    let init_as_sam = json!({ "type": "connection_init", "payload": { "authorization": sam } });
    let same = (CLOSE_FORBIDDEN, "Forbidden: a refreshed token must have the same sub and role".to_owned());
    for other in [bearer("bob", "staff", Duration::from_secs(60)), bearer("sam", "admin", Duration::from_secs(60))] {
        let mut conn = keyed(TRANSPORT);
        feed(&mut conn, init_as_sam.clone());
        let ping = json!({ "type": "ping", "payload": { "authorization": other } }).to_string();
        assert_eq!(refused(&mut conn, &ping), same);
    }
    let mut conn = keyed(TRANSPORT);
    feed(&mut conn, init_as_sam.clone());
    let ping = json!({ "type": "ping", "payload": { "authorization": "Bearer not-a-jwt" } }).to_string();
    assert_eq!(refused(&mut conn, &ping).0, CLOSE_FORBIDDEN);
    // A refreshed token is narrowed as the connection was before it is
    // compared: an admin acting as staff refreshes with a staff token.
    let mut conn = keyed(TRANSPORT);
    let ada = bearer("ada", "admin", Duration::from_secs(60));
    feed(&mut conn, json!({ "type": "connection_init", "payload": { "authorization": ada, "twofold-role": "staff" } }));
    let staff_ada = bearer("ada", "staff", Duration::from_secs(600));
    let ping = json!({ "type": "ping", "payload": { "authorization": staff_ada } });
    assert!(matches!(&feed(&mut conn, ping)[0], Did::Sent(pong) if pong["payload"]["expiresAt"].is_u64()));
}

#[test]
fn a_ping_with_a_token_before_connection_init_is_only_echoed() {
    let mut conn = keyed(TRANSPORT);
    let payload = json!({ "authorization": "Bearer not-a-jwt" });
    assert_eq!(
        feed(&mut conn, json!({ "type": "ping", "payload": payload })),
        vec![Did::Sent(json!({ "type": "pong", "payload": payload }))]
    );
    assert_eq!(conn.expires_at(), None);
}

#[test]
fn a_persisted_document_is_resolved_and_an_unknown_one_is_an_error_for_that_id() {
    for protocol in BOTH {
        let kind = subscribe_type(protocol);
        let mut conn = open_and_init(protocol);
        let by_id = json!({ "type": kind, "id": "1", "payload": { "documentId": trusted_id() } });
        assert!(matches!(&feed(&mut conn, by_id)[0], Did::Started { query, .. } if query == TRUSTED));
        let unknown = format!("sha256:{}", "0".repeat(64));
        let missing = feed(&mut conn, json!({ "type": kind, "id": "2", "payload": { "documentId": unknown } }));
        let [Did::Sent(error)] = &missing[..] else { panic!("{missing:?}") };
        assert_eq!((&error["type"], &error["id"]), (&json!("error"), &json!("2")));
        let first = if protocol == TRANSPORT { &error["payload"][0] } else { &error["payload"] };
        assert_eq!(first["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
        // An APQ hash the server has not seen: Apollo's clients read this message and retry with the text.
        let apq = json!({ "type": kind, "id": "3", "payload": { "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } } } });
        let missing = feed(&mut conn, apq);
        let [Did::Sent(error)] = &missing[..] else { panic!("{missing:?}") };
        let first = if protocol == TRANSPORT { &error["payload"][0] } else { &error["payload"] };
        assert_eq!(first["message"], "PersistedQueryNotFound");
        // A document error comes before the id check: an id in use gets the error, not 4409.
        let reused =
            json!({ "type": kind, "id": "1", "payload": { "documentId": format!("sha256:{}", "0".repeat(64)) } });
        assert!(matches!(&feed(&mut conn, reused)[0], Did::Sent(error) if error["type"] == "error"));
        assert_eq!(conn.operations(), 1);
    }
}

#[test]
fn the_messages_the_loop_and_the_operations_send_are_spelled_per_protocol() {
    assert_eq!(keepalive(TRANSPORT), json!({ "type": "ping" }).to_string());
    assert_eq!(keepalive(LEGACY), json!({ "type": "ka" }).to_string());
    let payload = json!({ "data": { "n": 1 } });
    assert_eq!(
        data_message(TRANSPORT, "7", payload.clone()),
        json!({ "type": "next", "id": "7", "payload": payload }).to_string()
    );
    assert_eq!(
        data_message(LEGACY, "7", payload.clone()),
        json!({ "type": "data", "id": "7", "payload": payload }).to_string()
    );
    assert_eq!(complete_message("7"), json!({ "type": "complete", "id": "7" }).to_string());
    let errors = vec![json!({ "message": "a" }), json!({ "message": "b" })];
    assert_eq!(
        error_message(TRANSPORT, "7", errors.clone()),
        json!({ "type": "error", "id": "7", "payload": errors }).to_string()
    );
    assert_eq!(
        error_message(LEGACY, "7", errors),
        json!({ "type": "error", "id": "7", "payload": { "message": "a" } }).to_string()
    );
    assert_eq!(error_message(LEGACY, "7", vec![]), json!({ "type": "error", "id": "7", "payload": null }).to_string());
}

#[test]
fn a_long_duplicate_id_is_truncated_in_the_close_reason() {
    let id = "i".repeat(100);
    let mut conn = open_and_init_with(TRANSPORT, &id);
    let (code, reason) = refused(&mut conn, &subscribe(TRANSPORT, &id).to_string());
    assert_eq!((code, reason), (CLOSE_DUPLICATE_ID, format!("Subscriber for {} already exists", "i".repeat(60))));
}
