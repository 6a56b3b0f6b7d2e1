//! The web platform around the API: CORS (a request from an origin that is
//! neither the server's own nor allowed is refused with 403 before anything
//! runs, WebSocket upgrades included), compression both ways, conditional GETs keyed by
//! the read model, and the headers every response carries.
//!
//! **Conditional GET.** A query sent by GET whose root fields read only
//! read views ([`crate::graphql::reads`]) gets an `ETag` made of: the
//! binary's version, the document, the operation name, the variables, the
//! caller (sub, role, customer), and the checkpoint of every view the
//! query reads. A checkpoint moves with every batch a view commits, so the
//! tag changes whenever the answer could; it is computed *before* the query
//! runs, so a body is never older than its tag claims. `If-None-Match` with
//! the current tag answers 304 without executing. Views applied inline are
//! not keyed (their rows change before their checkpoint moves).
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which other origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Same origin only (no CORS headers at all).
    #[default]
    None,
    /// Any origin (`--cors-origin '*'`; open development mode only).
    Any,
    /// Exactly these (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses `--cors-origin` values; a wildcard needs open mode.
    pub fn parse(values: &[String], open_mode: bool) -> Result<Self, String> {
        let values: Vec<&str> = values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return Ok(Self::None);
        }
        if values.contains(&"*") {
            if !open_mode {
                return Err(
                    "--cors-origin '*' is refused when bearer tokens are required: list the origins (e.g. https://app.example.com)"
                        .into(),
                );
            }
            return Ok(Self::Any);
        }
        let mut origins = Vec::with_capacity(values.len());
        for value in values {
            let Some((scheme, authority)) = value.split_once("://") else {
                return Err(format!("--cors-origin '{value}' is not an origin like https://app.example.com"));
            };
            let valid = matches!(scheme, "http" | "https")
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', ' '])
                && HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err(format!(
                    "--cors-origin '{value}' is not an origin (scheme://host[:port], no path), like https://app.example.com"
                ));
            }
            origins.push(value.to_ascii_lowercase());
        }
        Ok(Self::List(origins))
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// How the API behaves towards browsers and caches.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    pub cors: CorsOrigins,
    /// `Cache-Control: public, max-age=N` for anonymous catalog reads by GET.
    pub catalog_max_age: Option<Duration>,
}

use super::correlation::REQUEST_ID;

/// The CORS layer for `settings`, or `None` for same-origin only.
pub fn cors(settings: &WebSettings) -> Option<CorsLayer> {
    let origins = match &settings.cors {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                REQUEST_ID,
                HeaderName::from_static(crate::auth::ROLE_HEADER),
                HeaderName::from_static(crate::auth::CUSTOMER_ID_HEADER),
            ])
            .expose_headers([REQUEST_ID])
            .max_age(Duration::from_secs(600)),
    )
}

/// Preflights from an allowed origin: 204 (the CORS layer answers 200).
/// Installed outside the CORS layer; [`origin_guard`] has already refused
/// every other origin.
pub async fn preflight_status(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = next.run(request).await;
    if preflight && response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// Whether a request may proceed: no `Origin` (not a browser), the
/// server's own origin (`Sec-Fetch-Site: same-origin`, or an `Origin` whose
/// host and port are the `Host` asked for: GraphiQL and the board), or an
/// allowed one (`--cors-origin`).
pub fn origin_allowed(settings: &WebSettings, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let same_site = headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"same-origin");
    let same_origin = headers.get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(|host| {
        origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
    });
    same_site || same_origin || settings.cors.allows(origin)
}

/// Whether a WebSocket upgrade may proceed: the same rule as every other
/// request ([`origin_allowed`]). Anything else is cross-site WebSocket
/// hijacking (a page on another site riding the user's credentials) and
/// gets 403 before the upgrade.
pub fn websocket_origin_allowed(settings: &WebSettings, headers: &HeaderMap) -> bool {
    origin_allowed(settings, headers)
}

/// Refuses, before anything runs, a request whose `Origin` is present and
/// not allowed ([`origin_allowed`]): 403 with a GraphQL error
/// (`FORBIDDEN`). A preflight from it is refused the same way, so a
/// browser never sends the request itself; one that does not preflight (a
/// form, a "simple" POST) is refused here, so no mutation runs.
pub async fn origin_guard(
    axum::extract::State(settings): axum::extract::State<WebSettings>,
    request: Request,
    next: Next,
) -> Response {
    if origin_allowed(&settings, request.headers()) {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
    let upgrade = request.headers().contains_key(header::UPGRADE);
    let what = if upgrade { "may not open a WebSocket here" } else { "may not call the API" };
    let message = format!("the origin {origin} {what} (see --cors-origin)");
    super::refusal::json(StatusCode::FORBIDDEN, crate::graphql::error::FORBIDDEN, &message)
}

/// Gzip and brotli for responses of 1 KiB or more, by `Accept-Encoding`.
pub fn compression() -> CompressionLayer<impl Predicate> {
    let predicate =
        SizeAbove::new(1024).and(NotForContentType::GRPC).and(NotForContentType::IMAGES).and(NotForContentType::SSE);
    CompressionLayer::new().gzip(true).br(true).no_deflate().no_zstd().compress_when(predicate)
}

/// `nosniff` on every response (pages add their CSP and referrer policy).
pub async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The tag of a GET query's answer (see the module docs): `caller` is the
/// caller's identity key, `checkpoints` those of the views it reads.
pub fn etag(
    query: &str,
    operation_name: Option<&str>,
    variables: &str,
    caller: &str,
    checkpoints: &[impl std::fmt::Display],
) -> String {
    use std::hash::Hasher;
    let mut h = crate::stable_hash::hasher();
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    for part in [query, operation_name.unwrap_or(""), variables, caller] {
        h.write(part.as_bytes());
        h.write(&[0]);
    }
    for c in checkpoints {
        h.write(c.to_string().as_bytes());
        h.write(&[0]);
    }
    format!("W/\"{:016x}\"", h.finish())
}

/// Whether `If-None-Match` names `tag` (or is `*`).
pub fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|list| list.split(',').map(str::trim).any(|candidate| candidate == "*" || weak_eq(candidate, tag)))
}

/// Weak comparison (RFC 9110 §8.8.3.2): `W/` prefixes do not matter.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_a_wildcard_needs_open_mode() {
        let list = CorsOrigins::parse(&["http://localhost:3000".into(), "https://App.example.com".into()], false);
        assert_eq!(list, Ok(CorsOrigins::List(vec!["http://localhost:3000".into(), "https://app.example.com".into()])));
        assert!(CorsOrigins::parse(&["*".into()], false).is_err());
        assert_eq!(CorsOrigins::parse(&["*".into()], true), Ok(CorsOrigins::Any));
        assert!(CorsOrigins::parse(&["localhost:3000".into()], true).is_err());
        assert!(CorsOrigins::parse(&["https://app.example.com/path".into()], true).is_err());
    }

    #[test]
    fn a_tag_changes_with_the_checkpoints_and_the_caller() {
        let at = |p| [format!("1.{p}")];
        let tag = etag("{ orders { edges { cursor } } }", None, "{}", "staff", &at(5));
        assert_eq!(tag, etag("{ orders { edges { cursor } } }", None, "{}", "staff", &at(5)));
        assert_ne!(tag, etag("{ orders { edges { cursor } } }", None, "{}", "staff", &at(6)));
        assert_ne!(tag, etag("{ orders { edges { cursor } } }", None, "{}", "customer", &at(5)));
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", {tag}")).expect("header"));
        assert!(matches(&headers, &tag));
    }
}
