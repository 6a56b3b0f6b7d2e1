//! What every handler of the HTTP layer shares: the endpoints it is given
//! (the API, the operations service, the authenticator, the limits), the
//! connection budget and shutdown signal, and the request id. Its own file
//! so the handlers (`graphql_http`, `health`, `ws`) and the router that
//! mounts them each depend on it, not on one another.
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::correlation::REQUEST_ID;
use super::limits::{connection_budget, WsLimits};
use super::web;
use crate::admin::Admin;
use crate::auth::Authenticator;
use crate::graphql::api::Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub ws: WsLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::defaults::MAX_BODY_BYTES,
            request_timeout: Duration::from_millis(crate::defaults::REQUEST_TIMEOUT_MS),
            ws: WsLimits::default(),
        }
    }
}

/// What the HTTP layer is given: the GraphQL API, the operations service
/// (health, metrics, admin access) and its limits. It never sees a database.
#[derive(Clone)]
pub struct Endpoints {
    pub api: Api,
    pub admin: Admin,
    /// Verifies bearer tokens (open development mode when it has no keys).
    pub auth: Authenticator,
    pub limits: HttpLimits,
    /// CORS, and caching of GET queries.
    pub web: web::WebSettings,
    /// The read replicas serving queries, if any (their state in `/readyz`).
    pub replicas: Option<Arc<crate::admin::replicas::ReplicaSet>>,
}

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) api: Api,
    pub(super) admin: Admin,
    pub(super) auth: Authenticator,
    pub(super) limits: HttpLimits,
    pub(super) web: web::WebSettings,
    pub(super) replicas: Option<Arc<crate::admin::replicas::ReplicaSet>>,
    pub(super) ws_connections: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server shuts down: WebSocket clients are told to go (1001).
    pub(super) shutdown: CancellationToken,
    /// Every open WebSocket connection, so shutdown can wait for their goodbyes.
    pub(super) connections: TaskTracker,
}

impl AppState {
    pub(super) fn new(endpoints: Endpoints, shutdown: CancellationToken, connections: TaskTracker) -> Self {
        let Endpoints { api, admin, auth, limits, web, replicas } = endpoints;
        Self {
            api,
            admin,
            auth,
            limits,
            web,
            replicas,
            ws_connections: connection_budget(&limits.ws),
            shutdown,
            connections,
        }
    }
}

/// The request's `x-request-id` (set by [`SetRequestIdLayer`] when the
/// client sent none), carried into events' metadata.
pub(super) fn request_id_of(headers: &HeaderMap) -> String {
    headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}
