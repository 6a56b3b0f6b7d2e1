//! A cache of whole query responses, keyed by everything that decides the
//! answer and checked against what the answer was read from.
//!
//! A page of 50 orders costs the server about 400 field resolutions, a row
//! decode and a JSON parse per order; every client that asks it between two
//! projection batches gets the same bytes. So a response is kept with the
//! state of the read views it was read at, and served again while that
//! state holds:
//!
//! - **The key** is the caller's identity (role, `sub`, customer id, so a
//!   customer is never served another's data; staff never share with a
//!   customer), the document and operation name, the variables, and the
//!   request-level `consistentWith`. Keys are compared in full, never by
//!   hash alone.
//! - **The state** is the checkpoint this process knows for every view, plus
//!   the count of status changes (a rebuild's swap, a dead letter retried).
//!   It is read *before* the response is computed, so what was read is at
//!   least that state; an entry is served only while the state is the same.
//!   A request with a token waits for it while it computes, then stores a
//!   response that holds the token under a state that may be older: that
//!   is only ever newer data under an older state, never the reverse.
//! - **An age bound** (one second by default) caps what a lost notice connection
//!   could cost: an instance that stopped hearing of other instances'
//!   batches would otherwise serve the same answer until it heard again.
//!
//! Only queries whose root fields all read views (the [`CACHEABLE`] list)
//! are kept, and only answers without errors, extensions or headers. The
//! cache is off where the state does not describe the views: with a
//! projection in inline mode (commands change its view before its
//! checkpoint moves) and with read replicas (a standby may be behind the
//! checkpoints this process knows).
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Request, Response, Value};
use lru::LruCache;

use crate::catalog::View;
use crate::notice::Notices;

/// Root fields that read only read views (and their nested fields only
/// views too): their answers are the views' state and nothing else.
pub const CACHEABLE: &[&str] = &[
    "orders",
    "order",
    "customers",
    "customer",
    "products",
    "product",
    "topProducts",
    "dailySales",
    "orderActivity",
    "node",
    "__typename",
];

/// How many responses are kept, and for how long at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCacheSettings {
    /// Responses kept (least recently used go first); 0 turns the cache off.
    pub entries: usize,
    /// The longest an entry is served, whatever the state says.
    pub max_age: Duration,
}

impl Default for ResponseCacheSettings {
    /// 512 responses (a 50-order page is about 12 KB), one second.
    fn default() -> Self {
        Self { entries: 512, max_age: Duration::from_secs(1) }
    }
}

/// What the views looked like: each view's known checkpoint, and the count
/// of status changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ViewState {
    checkpoints: [crate::token::LogPosition; View::ALL.len()],
    status_changes: u64,
}

struct Entry {
    state: ViewState,
    at: Instant,
    data: Value,
}

/// The cache (see the module docs); one per API.
pub struct ResponseCache {
    notices: Notices,
    max_age: Duration,
    entries: Mutex<LruCache<String, Entry>>,
}

/// A lookup that missed: what to store the computed response under.
pub struct Pending {
    key: String,
    state: ViewState,
    at: Instant,
}

impl ResponseCache {
    /// The cache `settings` describe; `None` when they keep no entry.
    pub fn new(notices: Notices, settings: ResponseCacheSettings) -> Option<Self> {
        let capacity = NonZeroUsize::new(settings.entries)?;
        Some(Self { notices, max_age: settings.max_age, entries: Mutex::new(LruCache::new(capacity)) })
    }

    fn state(&self) -> ViewState {
        ViewState {
            checkpoints: View::ALL.map(|v| self.notices.known(v.name())),
            status_changes: *self.notices.watch_status().borrow(),
        }
    }

    /// The response kept for `request`, or what to store it under once
    /// computed; `None` for a request that is not cacheable.
    pub fn lookup(
        &self,
        request: &Request,
        document: &ExecutableDocument,
        key: &str,
        identity: &str,
    ) -> Option<Result<Response, Pending>> {
        if !reads_only_views(document, request.operation_name.as_deref()) {
            return None;
        }
        let consistent_with = request.extensions.get(super::request::CONSISTENT_WITH).map(|v| v.to_string());
        let variables = serde_json::to_string(&request.variables).ok()?;
        let key = format!("{identity}\u{0}{key}\u{0}{variables}\u{0}{}", consistent_with.unwrap_or_default());
        let state = self.state();
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = entries.get(&key) {
            if entry.state == state && now.duration_since(entry.at) < self.max_age {
                metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "hit").increment(1);
                return Some(Ok(Response::new(entry.data.clone())));
            }
        }
        metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "miss").increment(1);
        Some(Err(Pending { key, state, at: now }))
    }

    /// Keeps `response` for the request `pending` was looked up for, if it
    /// is a plain answer.
    pub fn store(&self, pending: Pending, response: &Response) {
        let plain = response.errors.is_empty() && response.extensions.is_empty() && response.http_headers.is_empty();
        if !plain || matches!(response.data, Value::Null) {
            return;
        }
        let entry = Entry { state: pending.state, at: pending.at, data: response.data.clone() };
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).put(pending.key, entry);
    }
}

/// True when the operation is a query whose root selection is only fields
/// of [`CACHEABLE`], with no directive (an `@include` could hide a field
/// that is not).
fn reads_only_views(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    use async_graphql::parser::types::DocumentOperations;
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return false,
        },
        (DocumentOperations::Multiple(_), None) => return false,
    };
    let operation = &operation.node;
    operation.ty == OperationType::Query
        && operation.directives.is_empty()
        && operation.selection_set.node.items.iter().all(|item| match &item.node {
            Selection::Field(field) => {
                field.node.directives.is_empty() && CACHEABLE.contains(&field.node.name.node.as_str())
            }
            Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_graphql::{Request, Response, Value};

    use super::{reads_only_views, ResponseCache, ResponseCacheSettings};
    use crate::notice::Notices;
    use crate::token::LogPosition;

    const PAGE: &str = "{ orders(first: 5) { edges { node { id } } } }";

    /// Looks `PAGE` up for `identity`; stores `answer` on a miss. True on a hit.
    fn ask(cache: &ResponseCache, identity: &str, answer: &str) -> bool {
        let document = async_graphql::parser::parse_query(PAGE).expect("parses");
        match cache.lookup(&Request::new(PAGE), &document, PAGE, identity).expect("cacheable") {
            Ok(hit) => {
                assert_eq!(hit.data, Value::String("kept".into()));
                true
            }
            Err(pending) => {
                cache.store(pending, &Response::new(Value::String(answer.into())));
                false
            }
        }
    }

    #[test]
    fn an_answer_is_kept_until_a_view_moves_a_status_changes_or_it_ages() {
        let notices = Notices::default();
        let long = ResponseCacheSettings { entries: 8, max_age: Duration::from_secs(600) };
        let cache = ResponseCache::new(notices.clone(), long).expect("on");
        assert!(!ask(&cache, "staff", "kept"));
        assert!(ask(&cache, "staff", "kept"));
        assert!(!ask(&cache, "customer-1", "kept"), "another caller has its own answer");
        notices.advance("order_summary", LogPosition::new(1, 1));
        assert!(!ask(&cache, "staff", "kept"), "a view moved");
        assert!(ask(&cache, "staff", "kept"));
        notices.status_changed();
        assert!(!ask(&cache, "staff", "kept"), "a status changed (a rebuild's swap, a dead letter retried)");

        let aged = ResponseCache::new(notices, ResponseCacheSettings { entries: 8, max_age: Duration::ZERO });
        let aged = aged.expect("on");
        assert!(!ask(&aged, "staff", "kept"));
        assert!(!ask(&aged, "staff", "kept"), "older than max_age");
        assert!(ResponseCache::new(Notices::default(), ResponseCacheSettings { entries: 0, ..long }).is_none());
    }

    #[test]
    fn only_plain_answers_are_kept() {
        let cache = ResponseCache::new(Notices::default(), ResponseCacheSettings::default()).expect("on");
        let document = async_graphql::parser::parse_query(PAGE).expect("parses");
        let pending = || cache.lookup(&Request::new(PAGE), &document, PAGE, "staff").expect("cacheable").err();
        cache.store(pending().expect("miss"), &Response::new(Value::Null));
        let mut with_error = Response::new(Value::String("partial".into()));
        with_error.errors.push(async_graphql::ServerError::new("a field failed", None));
        cache.store(pending().expect("miss"), &with_error);
        assert!(pending().is_some(), "neither a null nor a partial answer was kept");
    }

    fn reads_views(query: &str, name: Option<&str>) -> bool {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        reads_only_views(&document, name)
    }

    #[test]
    fn only_queries_of_read_views_are_kept() {
        assert!(reads_views("{ orders(first: 5) { edges { node { id } } } }", None));
        assert!(reads_views("query Q { a: order(id: \"x\") { id } products { edges { node { sku } } } }", Some("Q")));
        // Operations that are not plain view reads.
        assert!(!reads_views("mutation { placeOrder(input: {}) { id } }", None));
        assert!(!reads_views("{ projections { name lag } }", None));
        assert!(!reads_views("{ orders { edges { node { id } } } projections { name } }", None));
        assert!(!reads_views("{ orders @include(if: true) { edges { node { id } } } }", None));
        assert!(!reads_views("{ ...F } fragment F on Query { orders { edges { node { id } } } }", None));
        assert!(!reads_views("query A { orders { edges { node { id } } } } query B { deadLetters { id } }", Some("B")));
        assert!(!reads_views(
            "query A { orders { edges { node { id } } } } query B { orders { edges { node { id } } } }",
            None
        ));
    }
}
