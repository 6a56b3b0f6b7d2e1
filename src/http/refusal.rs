//! The one shape of a request refused before GraphQL runs (or where no
//! GraphQL runs at all: the start-up router, a refused WebSocket upgrade, a
//! forbidden origin, a GraphQL client at the GraphiQL page): a GraphQL
//! response holding one error with its code,
//! `{"errors":[{"message":…,"extensions":{"code":…}}]}`. A leaf, so every
//! handler of the HTTP layer (`graphql_http`, `ws`, `web`, `pages`,
//! `starting`) can build it without importing another.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// `application/json`, the media type every client reads.
pub(super) const JSON: &str = "application/json";

/// One GraphQL error with its code (as the WebSocket protocols carry it in
/// their `error` messages).
pub(super) fn error(code: &str, message: &str) -> Value {
    json!({ "message": message, "extensions": { "code": code } })
}

/// The refusal: `status`, `content_type` (`application/json`, or
/// `application/graphql-response+json` where the client asked for it), and
/// the body of one error with its code. Callers add the headers their
/// refusal needs (`Retry-After`, `Allow`, `WWW-Authenticate`).
pub(super) fn response(status: StatusCode, content_type: &'static str, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [error(code, message)] });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body.to_string()).into_response()
}

/// [`response`] as `application/json`.
pub(super) fn json(status: StatusCode, code: &str, message: &str) -> Response {
    response(status, JSON, code, message)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    /// The body, the status and the media type, exactly.
    #[tokio::test]
    async fn a_refusal_is_one_coded_graphql_error() {
        let reply = response(StatusCode::FORBIDDEN, "application/graphql-response+json", "FORBIDDEN", "not \"you\"");
        assert_eq!(reply.status(), StatusCode::FORBIDDEN);
        assert_eq!(reply.headers()[header::CONTENT_TYPE], "application/graphql-response+json");
        let body = to_bytes(reply.into_body(), 1024).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({ "errors": [{ "message": "not \"you\"", "extensions": { "code": "FORBIDDEN" } }] })
        );
        assert_eq!(json(StatusCode::OK, "X", "y").headers()[header::CONTENT_TYPE], JSON);
    }
}
