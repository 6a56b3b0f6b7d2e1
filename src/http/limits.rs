//! A WebSocket connection's limits, and the budget of connections all of
//! them share. A leaf: the server's state holds them, the socket loop obeys
//! them.
use std::sync::Arc;
use std::time::Duration;

/// WebSocket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_message_bytes: usize,
    /// How long one outgoing message may take to be accepted by the client.
    pub send_timeout: Duration,
    pub init_timeout: Duration,
    pub keepalive: Duration,
    /// Messages the operations of one connection may queue for the socket.
    pub outbox: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_connections: crate::defaults::WS_MAX_CONNECTIONS,
            max_subscriptions_per_connection: crate::defaults::WS_MAX_SUBSCRIPTIONS,
            max_message_bytes: 64 * 1024,
            send_timeout: Duration::from_millis(crate::defaults::WS_SEND_TIMEOUT_MS),
            init_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            outbox: 64,
        }
    }
}

/// Shared connection budget.
pub fn connection_budget(limits: &WsLimits) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(limits.max_connections))
}
