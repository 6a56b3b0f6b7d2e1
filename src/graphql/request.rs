//! What one request carries beside its document, as the resolvers read it
//! from the request's data: its request-level consistency token, the id of
//! the HTTP request, and results shared by every field that asks for the
//! same thing. A leaf: the roots read these, [`super::api`] attaches them.
use crate::token::LogPosition;

/// The key of the request-level consistency token in a GraphQL request's
/// `extensions` (beside `persistedQuery`, which it never touches).
pub const CONSISTENT_WITH: &str = "consistentWith";

/// A request's `extensions.consistentWith`: every root query field of the
/// operation waits for it as for its own `consistentWith` argument (given
/// both, a field waits for the later of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestConsistency(pub LogPosition);

/// Results shared by every field of one request that asks for the same thing.
#[derive(Default)]
pub struct RequestCache {
    pub projections: tokio::sync::OnceCell<Vec<crate::admin::ProjectionState>>,
}

/// The request id of the HTTP request, if any (set by the HTTP layer).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
