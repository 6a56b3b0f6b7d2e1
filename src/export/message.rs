//! One event as a NATS message: CloudEvents 1.0 in binary content mode.
//!
//! The subject is `<prefix>.<stream type>.<event type>`; the body is the
//! event's payload as JSON, in the current schema version (older versions
//! are upcast when the log is read); the context attributes are headers:
//!
//! | header                   | value                                                |
//! |--------------------------|------------------------------------------------------|
//! | `ce-specversion`         | `1.0`                                                |
//! | `ce-id`                  | the event's log position (unique, never reused)      |
//! | `ce-source`              | `--export-source`                                    |
//! | `ce-type`                | `twofold.<EventType>.v<N>`                           |
//! | `ce-subject`             | the stream (aggregate) id                            |
//! | `ce-time`                | when the event was recorded (RFC 3339, UTC)          |
//! | `content-type`           | `application/json`                                   |
//! | `twofold-token`          | the event's consistency token (`tx.position`)        |
//! | `twofold-stream-version` | the aggregate's version after the event              |
//! | `twofold-actor`          | who caused it, when the log records one              |
//! | `ce-correlationid`       | the work it belongs to (see `EventMeta`)             |
//! | `ce-causationid`         | the command (or event) that caused it                |
//! | `ce-traceparent`         | the W3C trace context of the command that recorded it (CloudEvents distributed tracing) |
//! | `Nats-Msg-Id`            | the position again, for JetStream's duplicate window |
//!
//! The three extensions are left out when the event has none (or, for
//! older events, one a header cannot hold: never a reason not to export).
//!
//! `Nats-Expected-Last-Sequence` is added when the message is published.
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;

use crate::domain::event::RecordedEvent;
use crate::token::LogPosition;

/// The CloudEvents version of every message.
pub const SPEC_VERSION: &str = "1.0";
/// The longest `twofold-actor` header value exported; a longer actor makes the event a poison event.
pub const MAX_ACTOR_BYTES: usize = 1024;

/// Why an event cannot be exported as it is (deterministic: a poison event).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("cannot encode the payload: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("header {name} cannot hold {value:?}")]
    Header {
        name: &'static str,
        value: String,
        #[source]
        source: async_nats::header::ParseHeaderValueError,
    },
    #[error("the actor is {0} bytes long; at most {MAX_ACTOR_BYTES} are exported")]
    ActorTooLong(usize),
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The event's log position (its `ce-id` and `Nats-Msg-Id`).
    pub position: i64,
    pub subject: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Builds the message for `event`, recorded by `actor` (the `actor` key of
/// the event's metadata; absent or null exports no header). An error is
/// deterministic: the event cannot be exported as it is.
pub fn to_message(
    event: &RecordedEvent,
    actor: Option<&serde_json::Value>,
    prefix: &str,
    source: &str,
) -> Result<Outgoing, MessageError> {
    let (stream_type, stream_id) = event.event.stream();
    let event_type = event.event.event_type();
    let body = event.event.to_payload_bytes().map_err(MessageError::Payload)?;
    let position = event.position.to_string();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| -> Result<(), MessageError> {
        let value: HeaderValue = value.parse().map_err(|source| MessageError::Header { name, value, source })?;
        headers.insert(name, value);
        Ok(())
    };
    put("ce-specversion", SPEC_VERSION.to_owned())?;
    put("ce-id", position.clone())?;
    put("ce-source", source.to_owned())?;
    put("ce-type", format!("twofold.{event_type}.v{}", event.event.schema_version()))?;
    put("ce-subject", stream_id.to_string())?;
    put("ce-time", event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))?;
    put("content-type", "application/json".to_owned())?;
    put("twofold-token", LogPosition::new(event.tx_id, event.position).to_string())?;
    put("twofold-stream-version", event.stream_version.to_string())?;
    if let Some(actor) = actor.and_then(actor_header).transpose()? {
        put("twofold-actor", actor)?;
    }
    put("Nats-Msg-Id", position)?;
    let meta = &event.meta;
    for (name, value) in [
        ("ce-correlationid", &meta.correlation_id),
        ("ce-causationid", &meta.causation_id),
        ("ce-traceparent", &meta.traceparent),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| v.parse::<HeaderValue>().ok()) {
            headers.insert(name, value);
        }
    }
    Ok(Outgoing {
        position: event.position,
        subject: format!("{prefix}.{}.{event_type}", stream_type.as_str()),
        headers,
        body: Bytes::from(body),
    })
}

/// The actor as one header line: a string as it is when it is printable
/// (no control characters), anything else as compact JSON (which escapes
/// them). `None` for JSON null.
fn actor_header(actor: &serde_json::Value) -> Option<Result<String, MessageError>> {
    let text = match actor {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) if !s.chars().any(char::is_control) => s.clone(),
        other => other.to_string(),
    };
    if text.len() > MAX_ACTOR_BYTES {
        return Some(Err(MessageError::ActorTooLong(text.len())));
    }
    Some(Ok(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{DomainEvent, OrderShipped};

    fn shipped() -> RecordedEvent {
        let id = uuid::Uuid::now_v7();
        RecordedEvent {
            position: 42,
            tx_id: 7,
            stream_id: id,
            stream_version: 3,
            recorded_at: chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00.5Z").unwrap().into(),
            actor: None,
            meta: Default::default(),
            event: DomainEvent::OrderShipped(OrderShipped {
                order_id: id,
                customer_id: id,
                carrier: "DHL".into(),
                tracking_number: "1Z".into(),
            }),
        }
    }

    fn header<'a>(m: &'a Outgoing, name: &str) -> Option<&'a str> {
        m.headers.get(name).map(|v| v.as_str())
    }

    #[test]
    fn an_event_becomes_a_binary_mode_cloud_event() {
        let e = shipped();
        let m = to_message(&e, None, "twofold.events", "urn:twofold").unwrap();
        assert_eq!(m.subject, "twofold.events.order.OrderShipped");
        assert_eq!(header(&m, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&m, "ce-id"), Some("42"));
        assert_eq!(header(&m, "Nats-Msg-Id"), Some("42"));
        assert_eq!(header(&m, "ce-source"), Some("urn:twofold"));
        assert_eq!(header(&m, "ce-type"), Some("twofold.OrderShipped.v1"));
        assert_eq!(header(&m, "ce-subject"), Some(e.stream_id.to_string().as_str()));
        assert_eq!(header(&m, "ce-time"), Some("2026-11-28T10:00:00.500000Z"));
        assert_eq!(header(&m, "content-type"), Some("application/json"));
        assert_eq!(header(&m, "twofold-token"), Some("7.42"));
        assert_eq!(header(&m, "twofold-stream-version"), Some("3"));
        assert_eq!(header(&m, "twofold-actor"), None);
        let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body, e.event.to_payload().unwrap());
    }

    #[test]
    fn the_actor_is_exported_when_present_and_always_on_one_line() {
        let e = shipped();
        let m = to_message(&e, Some(&serde_json::json!("alice")), "p", "s").unwrap();
        assert_eq!(header(&m, "twofold-actor"), Some("alice"));
        let m = to_message(&e, Some(&serde_json::json!(null)), "p", "s").unwrap();
        assert_eq!(header(&m, "twofold-actor"), None);
        let m = to_message(&e, Some(&serde_json::json!("evil\r\nNats-Msg-Id: 1")), "p", "s").unwrap();
        assert_eq!(header(&m, "twofold-actor"), Some(r#""evil\r\nNats-Msg-Id: 1""#));
        assert_eq!(header(&m, "Nats-Msg-Id"), Some("42"));
        let m = to_message(&e, Some(&serde_json::json!({"sub": "u1"})), "p", "s").unwrap();
        assert_eq!(header(&m, "twofold-actor"), Some(r#"{"sub":"u1"}"#));
        let long = serde_json::json!("x".repeat(MAX_ACTOR_BYTES + 1));
        assert!(to_message(&e, Some(&long), "p", "s").unwrap_err().to_string().contains("at most"));
    }
}
