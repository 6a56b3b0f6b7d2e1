//! The events: past-tense facts, versioned, serialized as camelCase JSON.
//!
//! Events carry the facts their consumers need (event-carried state
//! transfer): `OrderPlaced` holds the customer's name and each line's sku,
//! title and price; `OrderCancelled` holds the customer, total and lines it
//! reverses. A projection is then a pure fold of the log: it never reads the
//! write model, never reads another projection, and a rebuild is one pass.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of aggregate a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    Customer,
    Product,
    Order,
}

impl StreamType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Product => "product",
            Self::Order => "order",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRegistered {
    pub customer_id: Uuid,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRenamed {
    pub customer_id: Uuid,
    pub previous_name: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductAdded {
    pub product_id: Uuid,
    pub sku: String,
    pub title: String,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductPriceChanged {
    pub product_id: Uuid,
    pub previous_price_cents: i64,
    pub price_cents: i64,
}

/// One line of a placed order, with the product as it was at order time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacedLine {
    pub line_no: i32,
    pub product_id: Uuid,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

impl PlacedLine {
    /// Quantity × unit price; `None` if that leaves 64 bits (never for a
    /// line the domain accepted, but the log is read as data, not trusted).
    pub fn line_total_cents(&self) -> Option<i64> {
        self.unit_price_cents.checked_mul(i64::from(self.quantity))
    }
}

/// Where an order was placed. Added in `OrderPlaced` v2; v1 events are
/// upcast with `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SalesChannel {
    Web,
    Mobile,
    Api,
    #[default]
    Unknown,
}

impl SalesChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "WEB",
            Self::Mobile => "MOBILE",
            Self::Api => "API",
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Web, Self::Mobile, Self::Api, Self::Unknown].into_iter().find(|c| c.as_str() == value)
    }
}

/// Schema history: v1 `{orderId, customerId, customerName, customerEmail,
/// customerVersion, lines, totalCents}`; v2 adds `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub customer_email: String,
    /// The customer stream version the name and email were read at.
    pub customer_version: i64,
    pub lines: Vec<PlacedLine>,
    pub total_cents: i64,
    /// Since v2.
    pub channel: SalesChannel,
}

/// What a cancellation reverses, per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelledLine {
    pub product_id: Uuid,
    pub quantity: i32,
    pub line_total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub reason: Option<String>,
    pub total_cents: i64,
    pub lines: Vec<CancelledLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
}

/// Every event Twofold records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    CustomerRegistered(CustomerRegistered),
    CustomerRenamed(CustomerRenamed),
    ProductAdded(ProductAdded),
    ProductPriceChanged(ProductPriceChanged),
    OrderPlaced(OrderPlaced),
    OrderCancelled(OrderCancelled),
    OrderShipped(OrderShipped),
}

/// An event that could not be decoded from the log.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {event_type} v{event_version}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub event_version: i32,
    pub reason: String,
    /// A known event type at a schema version above the newest this build
    /// knows: written by a newer release (during a rolling upgrade), not broken.
    pub newer: bool,
    /// The JSON error beneath, when the payload did not fit the event's shape.
    #[source]
    pub source: Option<serde_json::Error>,
}

impl DecodeError {
    fn new(event_type: &str, event_version: i32, reason: String) -> Self {
        let newer = DomainEvent::newest_version(event_type).is_some_and(|known| event_version > known);
        let reason = if newer {
            format!(
                "{event_type} v{event_version} is newer than this release knows (v{}): a newer release wrote it",
                DomainEvent::newest_version(event_type).unwrap_or(0)
            )
        } else {
            reason
        };
        Self { event_type: event_type.to_owned(), event_version, reason, newer, source: None }
    }

    /// A payload that is not the event's JSON: the reason is the JSON error, kept as the source.
    fn json(event_type: &str, event_version: i32, e: serde_json::Error) -> Self {
        Self { source: Some(e), ..Self::new(event_type, event_version, String::new()) }.with_reason()
    }

    fn with_reason(mut self) -> Self {
        if let (false, Some(e)) = (self.newer, &self.source) {
            self.reason = e.to_string();
        }
        self
    }
}

impl DomainEvent {
    /// The newest schema version of `event_type` this release can read.
    pub fn newest_version(event_type: &str) -> Option<i32> {
        match event_type {
            "OrderPlaced" => Some(2),
            "CustomerRegistered"
            | "CustomerRenamed"
            | "ProductAdded"
            | "ProductPriceChanged"
            | "OrderCancelled"
            | "OrderShipped" => Some(1),
            _ => None,
        }
    }

    /// The event type name stored in the log.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::CustomerRegistered(_) => "CustomerRegistered",
            Self::CustomerRenamed(_) => "CustomerRenamed",
            Self::ProductAdded(_) => "ProductAdded",
            Self::ProductPriceChanged(_) => "ProductPriceChanged",
            Self::OrderPlaced(_) => "OrderPlaced",
            Self::OrderCancelled(_) => "OrderCancelled",
            Self::OrderShipped(_) => "OrderShipped",
        }
    }

    /// The payload schema version written for new events.
    pub fn schema_version(&self) -> i32 {
        match self {
            Self::OrderPlaced(_) => 2,
            _ => 1,
        }
    }

    /// The customer the event's stream belongs to: who may see it. `None`
    /// for the product catalog, which everyone may see.
    pub fn owner(&self) -> Option<Uuid> {
        match self {
            Self::CustomerRegistered(e) => Some(e.customer_id),
            Self::CustomerRenamed(e) => Some(e.customer_id),
            Self::ProductAdded(_) | Self::ProductPriceChanged(_) => None,
            Self::OrderPlaced(e) => Some(e.customer_id),
            Self::OrderCancelled(e) => Some(e.customer_id),
            Self::OrderShipped(e) => Some(e.customer_id),
        }
    }

    pub fn stream(&self) -> (StreamType, Uuid) {
        match self {
            Self::CustomerRegistered(e) => (StreamType::Customer, e.customer_id),
            Self::CustomerRenamed(e) => (StreamType::Customer, e.customer_id),
            Self::ProductAdded(e) => (StreamType::Product, e.product_id),
            Self::ProductPriceChanged(e) => (StreamType::Product, e.product_id),
            Self::OrderPlaced(e) => (StreamType::Order, e.order_id),
            Self::OrderCancelled(e) => (StreamType::Order, e.order_id),
            Self::OrderShipped(e) => (StreamType::Order, e.order_id),
        }
    }

    /// The JSON payload stored in the log.
    pub fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Self::CustomerRegistered(e) => serde_json::to_value(e),
            Self::CustomerRenamed(e) => serde_json::to_value(e),
            Self::ProductAdded(e) => serde_json::to_value(e),
            Self::ProductPriceChanged(e) => serde_json::to_value(e),
            Self::OrderPlaced(e) => serde_json::to_value(e),
            Self::OrderCancelled(e) => serde_json::to_value(e),
            Self::OrderShipped(e) => serde_json::to_value(e),
        }
    }

    /// The payload as JSON text, serialized straight from the typed event
    /// (the exporter's message body: no intermediate JSON tree). The same
    /// JSON as [`Self::to_payload`], its keys in the struct's order.
    pub fn to_payload_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Self::CustomerRegistered(e) => serde_json::to_vec(e),
            Self::CustomerRenamed(e) => serde_json::to_vec(e),
            Self::ProductAdded(e) => serde_json::to_vec(e),
            Self::ProductPriceChanged(e) => serde_json::to_vec(e),
            Self::OrderPlaced(e) => serde_json::to_vec(e),
            Self::OrderCancelled(e) => serde_json::to_vec(e),
            Self::OrderShipped(e) => serde_json::to_vec(e),
        }
    }

    /// Decodes a stored payload from its JSON text, straight into the typed
    /// event for current versions (no intermediate JSON tree: this is the
    /// hot path of projections and rebuilds); older versions are parsed
    /// into a tree for their upcaster, as in [`DomainEvent::decode`].
    pub fn decode_json(event_type: &str, event_version: i32, payload: &str) -> Result<Self, DecodeError> {
        let json = |e: serde_json::Error| DecodeError::json(event_type, event_version, e);
        match Self::reading(event_type, event_version)? {
            Reading::Current => {
                let mut text = serde_json::Deserializer::from_str(payload);
                let event = Self::of_type(event_type, &mut text).map_err(json)?;
                // Only whitespace may follow the value, as `serde_json::from_str` asks.
                text.end().map_err(json)?;
                Ok(event)
            }
            Reading::Upcast(upcast) => {
                let tree: serde_json::Value = serde_json::from_str(payload).map_err(json)?;
                Self::of_type(event_type, upcast(&tree)).map_err(json)
            }
        }
    }

    /// Decodes a stored payload. Older schema versions are upcast to the
    /// current shape here, so every read path (projections, rebuild, audit)
    /// sees only current events.
    pub fn decode(event_type: &str, event_version: i32, payload: &serde_json::Value) -> Result<Self, DecodeError> {
        let json = |e: serde_json::Error| DecodeError::json(event_type, event_version, e);
        match Self::reading(event_type, event_version)? {
            Reading::Current => Self::of_type(event_type, payload).map_err(json),
            Reading::Upcast(upcast) => Self::of_type(event_type, upcast(payload)).map_err(json),
        }
    }

    /// How a stored event of this type and version is read: as it is (the
    /// newest version), through its upcaster (an older one), or not at all.
    fn reading(event_type: &str, event_version: i32) -> Result<Reading, DecodeError> {
        let err = |reason: String| DecodeError::new(event_type, event_version, reason);
        match (Self::newest_version(event_type), event_type, event_version) {
            (None, ..) => Err(err(format!("unknown event type {event_type}"))),
            (Some(newest), ..) if newest == event_version => Ok(Reading::Current),
            (Some(_), "OrderPlaced", 1) => Ok(Reading::Upcast(upcast_order_placed_v1)),
            (Some(_), _, v) => Err(err(format!("unknown schema version {v}"))),
        }
    }

    /// The event types by their stored name, listed once for both decoders:
    /// the current shape of a [known](Self::newest_version) `event_type`,
    /// read from any serde deserializer of JSON (the text on the fast path,
    /// a tree otherwise).
    fn of_type<'de, D: serde::Deserializer<'de, Error = serde_json::Error>>(
        event_type: &str,
        payload: D,
    ) -> Result<Self, serde_json::Error> {
        use serde::de::Error;
        use serde::Deserialize;
        match event_type {
            "CustomerRegistered" => Deserialize::deserialize(payload).map(Self::CustomerRegistered),
            "CustomerRenamed" => Deserialize::deserialize(payload).map(Self::CustomerRenamed),
            "ProductAdded" => Deserialize::deserialize(payload).map(Self::ProductAdded),
            "ProductPriceChanged" => Deserialize::deserialize(payload).map(Self::ProductPriceChanged),
            "OrderPlaced" => Deserialize::deserialize(payload).map(Self::OrderPlaced),
            "OrderCancelled" => Deserialize::deserialize(payload).map(Self::OrderCancelled),
            "OrderShipped" => Deserialize::deserialize(payload).map(Self::OrderShipped),
            // (`reading` refused it first: `newest_version` knows the same names.)
            other => Err(serde_json::Error::custom(format!("unknown event type {other}"))),
        }
    }
}

/// How a stored event is read (see [`DomainEvent::reading`]).
enum Reading {
    /// Straight into the current shape.
    Current,
    /// Its tree made current first.
    Upcast(fn(&serde_json::Value) -> serde_json::Value),
}

/// `OrderPlaced` v1 → v2: the channel was not recorded, so it is `UNKNOWN`.
fn upcast_order_placed_v1(payload: &serde_json::Value) -> serde_json::Value {
    let mut upcast = payload.clone();
    if let serde_json::Value::Object(fields) = &mut upcast {
        fields.entry("channel").or_insert_with(|| serde_json::Value::String(SalesChannel::Unknown.as_str().to_owned()));
    }
    upcast
}

/// An event as read back from the log, with its place in it.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub position: i64,
    pub tx_id: i64,
    pub stream_id: Uuid,
    pub stream_version: i64,
    pub recorded_at: DateTime<Utc>,
    /// Who caused it (from the event's metadata; `None` on events written
    /// before actors were recorded).
    pub actor: Option<super::actor::Actor>,
    /// Why it happened, from its metadata.
    pub meta: EventMeta,
    pub event: DomainEvent,
}

/// Why an event happened (its metadata): the command that caused it, the
/// root of the work it belongs to, and the trace of the request.
///
/// - `causation_id`: the command's `commandId` (or, without one, an id the
///   command was given), or the event that caused it;
/// - `correlation_id`: the `Twofold-Correlation-Id` of the request, or else
///   the root command's id (for a command a client sends, its own);
/// - `traceparent`: the W3C trace context of the command's transaction,
///   when it was traced.
///
/// Events recorded before these were (their metadata's `correlationId`
/// held the HTTP request id) read with their `commandId` as both ids: the
/// log is append-only, so they are derived when read, never rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl EventMeta {
    /// The ids of an event `causation` caused: it correlates to
    /// `correlation` when given, else (a root command) to its own cause.
    /// The one place that rule is written, for the writer and the reader.
    pub fn caused_by(causation: String, correlation: Option<String>, traceparent: Option<String>) -> Self {
        Self {
            correlation_id: Some(correlation.unwrap_or_else(|| causation.clone())),
            causation_id: Some(causation),
            traceparent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_payload() {
        let id = Uuid::now_v7();
        let events = vec![
            DomainEvent::CustomerRegistered(CustomerRegistered {
                customer_id: id,
                name: "Ada".into(),
                email: "ada@example.com".into(),
            }),
            DomainEvent::CustomerRenamed(CustomerRenamed {
                customer_id: id,
                previous_name: "Ada".into(),
                name: "Ada L.".into(),
            }),
            DomainEvent::ProductAdded(ProductAdded {
                product_id: id,
                sku: "TEA".into(),
                title: "Tea".into(),
                price_cents: 450,
            }),
            DomainEvent::ProductPriceChanged(ProductPriceChanged {
                product_id: id,
                previous_price_cents: 450,
                price_cents: 500,
            }),
            DomainEvent::OrderPlaced(OrderPlaced {
                order_id: id,
                customer_id: id,
                customer_name: "Ada".into(),
                customer_email: "ada@example.com".into(),
                customer_version: 1,
                lines: vec![PlacedLine {
                    line_no: 1,
                    product_id: id,
                    sku: "TEA".into(),
                    title: "Tea".into(),
                    quantity: 2,
                    unit_price_cents: 450,
                }],
                total_cents: 900,
                channel: SalesChannel::Web,
            }),
            DomainEvent::OrderCancelled(OrderCancelled {
                order_id: id,
                customer_id: id,
                reason: None,
                total_cents: 900,
                lines: vec![CancelledLine { product_id: id, quantity: 2, line_total_cents: 900 }],
            }),
            DomainEvent::OrderShipped(OrderShipped {
                order_id: id,
                customer_id: id,
                carrier: "DHL".into(),
                tracking_number: "1Z".into(),
            }),
        ];
        for event in events {
            assert_eq!(DomainEvent::newest_version(event.event_type()), Some(event.schema_version()));
            let decoded =
                DomainEvent::decode(event.event_type(), event.schema_version(), &event.to_payload().unwrap()).unwrap();
            assert_eq!(decoded, event);
            let from_text = DomainEvent::decode_json(
                event.event_type(),
                event.schema_version(),
                &event.to_payload().unwrap().to_string(),
            )
            .unwrap();
            assert_eq!(from_text, event);
            // The exporter's body: the same JSON, serialized without the tree.
            let bytes = event.to_payload_bytes().unwrap();
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), event.to_payload().unwrap());
        }
    }

    #[test]
    fn unknown_types_and_versions_are_decode_errors() {
        assert!(DomainEvent::decode("Nope", 1, &serde_json::json!({})).is_err());
        assert!(DomainEvent::decode("CustomerRegistered", 9, &serde_json::json!({})).is_err());
        assert!(DomainEvent::decode("CustomerRegistered", 1, &serde_json::json!({"name": 1})).is_err());
        assert!(DomainEvent::decode("OrderPlaced", 3, &serde_json::json!({})).unwrap_err().newer);
        // The text path refuses the same, and text after the payload.
        assert!(DomainEvent::decode_json("Nope", 1, "{}").is_err());
        assert!(DomainEvent::decode_json("OrderPlaced", 3, "{}").unwrap_err().newer);
        assert!(DomainEvent::decode_json("CustomerRegistered", 1, r#"{"name": 1}"#).unwrap_err().source.is_some());
        let id = Uuid::nil();
        let text = format!(r#"{{"customerId": "{id}", "name": "Ada", "email": "ada@example.com"}}"#);
        assert!(DomainEvent::decode_json("CustomerRegistered", 1, &text).is_ok());
        assert!(DomainEvent::decode_json("CustomerRegistered", 1, &format!("{text} x")).is_err());
    }

    #[test]
    fn order_placed_v1_is_upcast_with_an_unknown_channel() {
        let id = Uuid::now_v7();
        let v1 = serde_json::json!({
            "orderId": id, "customerId": id, "customerName": "Ada", "customerEmail": "ada@example.com",
            "customerVersion": 1, "totalCents": 900,
            "lines": [{"lineNo": 1, "productId": id, "sku": "TEA", "title": "Tea", "quantity": 2, "unitPriceCents": 450}]
        });
        let DomainEvent::OrderPlaced(e) = DomainEvent::decode("OrderPlaced", 1, &v1).unwrap() else {
            panic!("OrderPlaced")
        };
        assert_eq!(e.channel, SalesChannel::Unknown);
        // The text path (what projections use) agrees.
        assert_eq!(
            DomainEvent::decode_json("OrderPlaced", 1, &v1.to_string()).unwrap(),
            DomainEvent::OrderPlaced(e.clone())
        );
        assert_eq!(e.total_cents, 900);
        // A v2 payload keeps its channel, and new events are written as v2.
        let mut v2 = v1.clone();
        v2["channel"] = serde_json::json!("MOBILE");
        let DomainEvent::OrderPlaced(e) = DomainEvent::decode("OrderPlaced", 2, &v2).unwrap() else {
            panic!("OrderPlaced")
        };
        assert_eq!(e.channel, SalesChannel::Mobile);
        assert_eq!(DomainEvent::OrderPlaced(e).schema_version(), 2);
    }
}
