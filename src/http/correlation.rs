//! `Twofold-Correlation-Id`: the work a caller's commands belong to, as
//! HTTP requests and WebSocket connections give it (see
//! `crate::domain::event::EventMeta`).

use axum::http::HeaderName;

/// The header that carries (or is given) a request's id: set by the router,
/// read by the handlers, exposed to browsers.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header that names the work a request's commands belong to.
pub const CORRELATION_HEADER: &str = "twofold-correlation-id";

/// The longest correlation id accepted.
const MAX_CORRELATION_ID: usize = 128;

/// A `Twofold-Correlation-Id` that is not one: how long it was.
#[derive(Debug)]
pub struct BadCorrelationId(usize);

impl std::fmt::Display for BadCorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Twofold-Correlation-Id must be 1 to {MAX_CORRELATION_ID} visible ASCII characters (no spaces), got {} bytes",
            self.0
        )
    }
}

impl std::error::Error for BadCorrelationId {}

/// A `Twofold-Correlation-Id` as given: 1 to 128 visible ASCII characters
/// (it goes into every event's metadata and the NATS headers), or why not.
pub fn correlation_of(value: Option<&str>) -> Result<Option<String>, BadCorrelationId> {
    let Some(value) = value else { return Ok(None) };
    let valid = !value.is_empty() && value.len() <= MAX_CORRELATION_ID && value.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(Some(value.to_owned()))
    } else {
        Err(BadCorrelationId(value.len()))
    }
}
