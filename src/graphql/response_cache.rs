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
//! - **One computation per key and state.** When a view moves, every
//!   reader of a popular page misses at once; without care each of them
//!   computes the same page (16 connections: 16 times the work, all
//!   competing for the same cores). The first miss computes; a request for
//!   the same key under the same state that arrives meanwhile waits for
//!   that answer instead. If the computing request fails, is refused or is
//!   cancelled, its waiters compute for themselves: nobody waits on an
//!   answer that will not come.
//! - **An age bound** (one second by default) caps what a lost notice connection
//!   could cost: an instance that stopped hearing of other instances'
//!   batches would otherwise serve the same answer until it heard again.
//! - **Readers that asked for no consistency get the previous answer while
//!   one request computes the new one.** Under writes every batch moves the
//!   views, so without this every reader of a popular page waits for its
//!   recomputation after each batch (or computes it). A request that
//!   carries no `consistentWith` (neither on the request nor on a field)
//!   and finds the answer of an older state, younger than the age bound,
//!   while another request is computing the new one, is served that older
//!   answer at once (outcome `stale`). It is a real answer the views gave
//!   less than the age bound ago: exactly the promise a reader without a
//!   token has (docs/frontend.md, "Consistency"). A reader with a token
//!   never gets it: it waits for, or computes, an answer at its token.
//!
//! Only queries whose root fields all read views (the [`CACHEABLE`] list)
//! are kept, and only answers without errors, extensions or headers. The
//! cache is off where the state does not describe the views: with a
//! projection in inline mode (commands change its view before its
//! checkpoint moves) and with read replicas (a standby may be behind the
//! checkpoints this process knows).
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// `--response-cache-entries` and `--response-cache-max-age-ms`'s defaults.
    fn default() -> Self {
        Self {
            entries: crate::defaults::RESPONSE_CACHE_ENTRIES,
            max_age: Duration::from_millis(crate::defaults::RESPONSE_CACHE_MAX_AGE_MS),
        }
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
    answer: Arc<Kept>,
}

/// A kept answer: its data, and the HTTP body that carries it, encoded
/// once when it was kept, so a hit over HTTP neither copies the value tree
/// nor serializes it again (a 50-order page: about 450 values, 12 KB).
#[derive(Debug)]
pub struct Kept {
    data: Value,
    body: bytes::Bytes,
}

impl Kept {
    /// The answer as a GraphQL response (for callers that need the value).
    pub fn response(&self) -> Response {
        Response::new(self.data.clone())
    }

    /// `{"data": …}`, exactly what `serde_json` makes of [`Kept::response`].
    pub fn body(&self) -> bytes::Bytes {
        self.body.clone()
    }
}

/// The cache (see the module docs); one per API.
pub struct ResponseCache {
    notices: Notices,
    max_age: Duration,
    entries: Mutex<LruCache<String, Entry>>,
    computing: Arc<Computing>,
}

/// The answers being computed now, by key: at most one per key (the
/// newest state's), each with the channel its waiters listen on.
#[derive(Default)]
struct Computing {
    flights: Mutex<HashMap<String, Flight>>,
    next_id: AtomicU64,
}

struct Flight {
    id: u64,
    state: ViewState,
    answer: tokio::sync::watch::Receiver<Option<Arc<Kept>>>,
}

impl Computing {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A lookup that missed: what to store the computed response under.
pub struct Pending {
    key: String,
    state: ViewState,
    at: Instant,
    /// Set when this request computes for others waiting on the same key.
    leader: Option<Leader>,
}

/// The computing side of a [`Flight`]. Dropped without an answer (an error,
/// a cancelled request), it takes the flight away, and its waiters, seeing
/// the channel close, compute for themselves.
struct Leader {
    id: u64,
    answer: tokio::sync::watch::Sender<Option<Arc<Kept>>>,
    computing: Arc<Computing>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut flights = self.computing.lock();
        // Remove only this leader's flight: a newer state's may have replaced it.
        let key = flights.iter().find(|(_, flight)| flight.id == self.id).map(|(key, _)| key.clone());
        if let Some(key) = key {
            flights.remove(&key);
        }
    }
}

/// What a lookup found before computing.
enum Found {
    Kept(Arc<Kept>),
    /// An older state's answer, within the age bound, for a reader
    /// without a token while another request computes the new one.
    Previous(Arc<Kept>),
    Wait(tokio::sync::watch::Receiver<Option<Arc<Kept>>>),
    Compute(Leader),
}

impl ResponseCache {
    /// The cache `settings` describe; `None` when they keep no entry.
    pub fn new(notices: Notices, settings: ResponseCacheSettings) -> Option<Self> {
        let capacity = NonZeroUsize::new(settings.entries)?;
        Some(Self {
            notices,
            max_age: settings.max_age,
            entries: Mutex::new(LruCache::new(capacity)),
            computing: Arc::default(),
        })
    }

    fn state(&self) -> ViewState {
        ViewState {
            checkpoints: View::ALL.map(|v| self.notices.known(v.name())),
            status_changes: *self.notices.watch_status().borrow(),
        }
    }

    /// The response kept for `request` (or computed meanwhile by a twin
    /// request, waited for), or what to store it under once computed;
    /// `None` for a request that is not cacheable.
    pub async fn lookup(
        &self,
        request: &Request,
        document: &ExecutableDocument,
        key: &str,
        identity: &str,
    ) -> Option<Result<Arc<Kept>, Pending>> {
        if !reads_only_views(document, request.operation_name.as_deref()) {
            return None;
        }
        let consistent_with = request.extensions.get(super::request::CONSISTENT_WITH).map(|v| v.to_string());
        // A token on a field is an argument: in the document, or passed in a
        // variable the document names.
        let tokenless = consistent_with.is_none() && !request.query.contains("consistentWith");
        let variables = serde_json::to_string(&request.variables).ok()?;
        let key = format!("{identity}\u{0}{key}\u{0}{variables}\u{0}{}", consistent_with.unwrap_or_default());
        let state = self.state();
        let now = Instant::now();
        let found = self.find(&key, &state, now, tokenless);
        let leader = match found {
            Found::Kept(answer) => {
                metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "hit").increment(1);
                return Some(Ok(answer));
            }
            Found::Previous(answer) => {
                metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "stale").increment(1);
                return Some(Ok(answer));
            }
            Found::Wait(mut computed) => match computed.wait_for(Option::is_some).await.map(|answer| answer.clone()) {
                Ok(Some(answer)) => {
                    metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "shared").increment(1);
                    return Some(Ok(answer));
                }
                // The computing request gave up: compute here.
                Ok(None) | Err(_) => None,
            },
            Found::Compute(leader) => Some(leader),
        };
        metrics::counter!(crate::metrics::RESPONSE_CACHE, "outcome" => "miss").increment(1);
        Some(Err(Pending { key, state, at: now, leader }))
    }

    fn find(&self, key: &str, state: &ViewState, now: Instant, tokenless: bool) -> Found {
        let previous = {
            let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match entries.get(key) {
                Some(entry) if now.duration_since(entry.at) < self.max_age => {
                    if entry.state == *state {
                        return Found::Kept(entry.answer.clone());
                    }
                    tokenless.then(|| entry.answer.clone())
                }
                _ => None,
            }
        };
        let mut flights = self.computing.lock();
        if let Some(flight) = flights.get(key) {
            // Someone computes a newer answer: a reader without a token
            // takes the previous one rather than wait for it.
            if let Some(previous) = previous {
                return Found::Previous(previous);
            }
            if flight.state == *state {
                return Found::Wait(flight.answer.clone());
            }
        }
        let id = self.computing.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, receiver) = tokio::sync::watch::channel(None);
        flights.insert(key.to_owned(), Flight { id, state: state.clone(), answer: receiver });
        Found::Compute(Leader { id, answer, computing: self.computing.clone() })
    }

    /// Keeps `response` for the request `pending` was looked up for, if it
    /// is a plain answer, and hands it to the requests waiting for it.
    pub fn store(&self, pending: Pending, response: &Response) {
        let plain = response.errors.is_empty() && response.extensions.is_empty() && response.http_headers.is_empty();
        if !plain || matches!(response.data, Value::Null) {
            // `pending` drops here: any waiters compute for themselves.
            return;
        }
        let Ok(body) = serde_json::to_vec(response) else {
            return;
        };
        let answer = Arc::new(Kept { data: response.data.clone(), body: body.into() });
        let entry = Entry { state: pending.state, at: pending.at, answer: answer.clone() };
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).put(pending.key, entry);
        if let Some(leader) = pending.leader {
            leader.answer.send_replace(Some(answer));
        }
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
    async fn ask(cache: &ResponseCache, identity: &str, answer: &str) -> bool {
        let document = async_graphql::parser::parse_query(PAGE).expect("parses");
        match cache.lookup(&Request::new(PAGE), &document, PAGE, identity).await.expect("cacheable") {
            Ok(hit) => {
                assert_eq!(hit.response().data, Value::String("kept".into()));
                assert_eq!(&hit.body()[..], br#"{"data":"kept"}"#, "the body is the answer, encoded");
                true
            }
            Err(pending) => {
                cache.store(pending, &Response::new(Value::String(answer.into())));
                false
            }
        }
    }

    #[tokio::test]
    async fn an_answer_is_kept_until_a_view_moves_a_status_changes_or_it_ages() {
        let notices = Notices::default();
        let long = ResponseCacheSettings { entries: 8, max_age: Duration::from_secs(600) };
        let cache = ResponseCache::new(notices.clone(), long).expect("on");
        assert!(!ask(&cache, "staff", "kept").await);
        assert!(ask(&cache, "staff", "kept").await);
        assert!(!ask(&cache, "customer-1", "kept").await, "another caller has its own answer");
        notices.advance("order_summary", LogPosition::new(1, 1));
        assert!(!ask(&cache, "staff", "kept").await, "a view moved");
        assert!(ask(&cache, "staff", "kept").await);
        notices.status_changed();
        assert!(!ask(&cache, "staff", "kept").await, "a status changed (a rebuild's swap, a dead letter retried)");

        let aged = ResponseCache::new(notices, ResponseCacheSettings { entries: 8, max_age: Duration::ZERO });
        let aged = aged.expect("on");
        assert!(!ask(&aged, "staff", "kept").await);
        assert!(!ask(&aged, "staff", "kept").await, "older than max_age");
        assert!(ResponseCache::new(Notices::default(), ResponseCacheSettings { entries: 0, ..long }).is_none());
    }

    #[tokio::test]
    async fn only_plain_answers_are_kept() {
        let cache = ResponseCache::new(Notices::default(), ResponseCacheSettings::default()).expect("on");
        let document = async_graphql::parser::parse_query(PAGE).expect("parses");
        let request = Request::new(PAGE);
        let pending = || async { cache.lookup(&request, &document, PAGE, "staff").await.expect("cacheable").err() };
        cache.store(pending().await.expect("miss"), &Response::new(Value::Null));
        let mut with_error = Response::new(Value::String("partial".into()));
        with_error.errors.push(async_graphql::ServerError::new("a field failed", None));
        cache.store(pending().await.expect("miss"), &with_error);
        assert!(pending().await.is_some(), "neither a null nor a partial answer was kept");
    }

    /// Twin requests that miss together compute once: the rest wait for
    /// the first one's answer. If it gives up, a waiter computes instead.
    #[tokio::test]
    async fn twins_that_miss_together_compute_once() {
        let cache =
            std::sync::Arc::new(ResponseCache::new(Notices::default(), ResponseCacheSettings::default()).expect("on"));
        let document = std::sync::Arc::new(async_graphql::parser::parse_query(PAGE).expect("parses"));
        let lookup = |cache: std::sync::Arc<ResponseCache>, document: std::sync::Arc<_>| async move {
            cache.lookup(&Request::new(PAGE), &document, PAGE, "staff").await.expect("cacheable")
        };
        let first = lookup(cache.clone(), document.clone()).await.expect_err("the first request misses");
        let twins: Vec<_> = (0..3).map(|_| tokio::spawn(lookup(cache.clone(), document.clone()))).collect();
        // The twins are waiting, not computing: none has finished.
        tokio::task::yield_now().await;
        assert!(twins.iter().all(|twin| !twin.is_finished()), "twins wait for the computing request");
        cache.store(first, &Response::new(Value::String("kept".into())));
        for twin in twins {
            let answer = twin.await.expect("joins").ok().expect("a twin gets the computed answer");
            assert_eq!(answer.response().data, Value::String("kept".into()));
        }

        // A computing request that gives up (an error, a cancelled request) releases its waiters.
        let cache =
            std::sync::Arc::new(ResponseCache::new(Notices::default(), ResponseCacheSettings::default()).expect("on"));
        let first = lookup(cache.clone(), document.clone()).await.expect_err("miss");
        let twin = tokio::spawn(lookup(cache.clone(), document.clone()));
        tokio::task::yield_now().await;
        assert!(!twin.is_finished());
        drop(first);
        let second = twin.await.expect("joins").expect_err("the twin computes for itself");
        cache.store(second, &Response::new(Value::String("kept".into())));
        assert!(lookup(cache, document).await.is_ok(), "its answer is kept");
    }

    /// After a view moves, while one request computes the new answer, a
    /// reader without a token gets the previous one at once; a reader with
    /// a token waits for the new one; past the age bound nobody gets it.
    #[tokio::test]
    async fn a_reader_without_a_token_gets_the_previous_answer_while_the_new_one_computes() {
        use std::sync::Arc;
        let notices = Notices::default();
        let settings = ResponseCacheSettings { entries: 8, max_age: Duration::from_secs(600) };
        let cache = Arc::new(ResponseCache::new(notices.clone(), settings).expect("on"));
        let document = Arc::new(async_graphql::parser::parse_query(PAGE).expect("parses"));
        let lookup = |cache: Arc<ResponseCache>, request: Request| {
            let document = document.clone();
            async move { cache.lookup(&request, &document, PAGE, "staff").await.expect("cacheable") }
        };
        let first = lookup(cache.clone(), Request::new(PAGE)).await.expect_err("miss");
        cache.store(first, &Response::new(Value::String("before".into())));
        notices.advance("order_summary", LogPosition::new(1, 1));
        let computing = lookup(cache.clone(), Request::new(PAGE)).await.expect_err("the view moved: compute");
        let previous = futures_util::FutureExt::now_or_never(lookup(cache.clone(), Request::new(PAGE)))
            .expect("answered at once, not made to wait")
            .ok()
            .expect("the previous answer");
        assert_eq!(previous.response().data, Value::String("before".into()));
        cache.store(computing, &Response::new(Value::String("after".into())));
        let fresh = lookup(cache.clone(), Request::new(PAGE)).await.ok().expect("kept");
        assert_eq!(fresh.response().data, Value::String("after".into()));

        // A reader with a token (on the request, or a field's argument)
        // waits for the new answer instead.
        let on_field = "{ order(id: \"x\", consistentWith: \"1.1\") { id } }";
        let mut on_request = Request::new(PAGE);
        on_request.extensions.insert(crate::graphql::request::CONSISTENT_WITH.to_owned(), Value::String("1.1".into()));
        for (n, request) in [Request::new(on_field), on_request].into_iter().enumerate() {
            let document = async_graphql::parser::parse_query(&request.query).expect("parses");
            let ask = || cache.lookup(&request, &document, &request.query, "staff");
            let first = ask().await.expect("cacheable").expect_err("miss");
            cache.store(first, &Response::new(Value::String("before".into())));
            notices.advance("order_summary", LogPosition::new(2, n as i64));
            let _computing = ask().await.expect("cacheable").expect_err("the view moved: compute");
            assert!(futures_util::FutureExt::now_or_never(ask()).is_none(), "a reader with a token waits ({n})");
        }

        // Past the age bound, nobody is served the previous answer.
        let cache = Arc::new(
            ResponseCache::new(notices.clone(), ResponseCacheSettings { entries: 8, max_age: Duration::ZERO })
                .expect("on"),
        );
        let first = lookup(cache.clone(), Request::new(PAGE)).await.expect_err("miss");
        cache.store(first, &Response::new(Value::String("before".into())));
        notices.advance("order_summary", LogPosition::new(3, 1));
        let _computing = lookup(cache.clone(), Request::new(PAGE)).await.expect_err("compute");
        assert!(
            futures_util::FutureExt::now_or_never(lookup(cache.clone(), Request::new(PAGE))).is_none(),
            "an answer older than the bound is not served: the reader waits"
        );
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
