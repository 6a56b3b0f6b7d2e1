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

/// How each root field that read at a token was served (`stored`,
/// `folded`, `waited`), for the response's `extensions.served`.
#[derive(Default, Clone)]
pub struct ServedLog(std::sync::Arc<std::sync::Mutex<Vec<(String, &'static str)>>>);

impl ServedLog {
    pub fn note(&self, field: &str, served: &'static str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((field.to_owned(), served));
    }

    /// What was noted, as `extensions.served`: `{field: how}`; `None` if nothing.
    pub fn take(&self) -> Option<async_graphql::Value> {
        let noted = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        (!noted.is_empty()).then(|| {
            async_graphql::Value::Object(
                noted
                    .into_iter()
                    .map(|(field, served)| (async_graphql::Name::new(field), async_graphql::Value::from(served)))
                    .collect(),
            )
        })
    }
}

/// What a transport knows about the caller of one operation.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The HTTP request id (`x-request-id`), carried into events' metadata.
    pub request_id: String,
    /// Who it acts as: the transport authenticated it (see `crate::auth`).
    pub actor: crate::domain::Actor,
    /// `Twofold-Correlation-Id`: the work the caller's commands belong to.
    pub correlation_id: Option<String>,
    /// The W3C trace context (`traceparent`, `tracestate`) the caller
    /// continues, when the transport's own span does not carry it (a
    /// WebSocket operation).
    pub trace: Option<(String, Option<String>)>,
}

/// The request id of the HTTP request, if any (set by the HTTP layer).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
