//! The one way into the schema for every transport (HTTP and WebSocket):
//! it attaches what a request needs (per-request DataLoaders, the request
//! id, the caller's credentials) and reports whether the request got past
//! parsing and validation, which decides HTTP status codes and whether a
//! WebSocket `subscribe` is answered with `error` or with `next`.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};

use super::documents::Documents;
use super::loaders::{CustomerLoader, CustomerOrderCountLoader, CustomerOrdersLoader, ProductLoader};
pub use super::progress::{Progress, ProgressTracker};
pub use super::request::{Caller, RequestCache, RequestConsistency, RequestId, ServedLog, CONSISTENT_WITH};
use super::response_cache::{Kept, ResponseCache};
use super::schema::TwofoldSchema;
use crate::command::CommandService;
use crate::notice::Notices;
use crate::query::ReadModel;
use crate::token::LogPosition;

/// The request-level token of `request`, if it carries one; a value that
/// is not a token is the client's mistake (VALIDATION), never ignored.
fn request_consistency(request: &Request) -> Result<Option<RequestConsistency>, ServerError> {
    let refuse = |why: String| {
        Err(super::error::request_level(super::error::validation(format!("extensions.consistentWith: {why}"))))
    };
    match request.extensions.get(CONSISTENT_WITH) {
        None | Some(async_graphql::Value::Null) => Ok(None),
        Some(async_graphql::Value::String(s)) => match s.parse::<LogPosition>() {
            Ok(position) => Ok(Some(RequestConsistency(position))),
            Err(bad) => refuse(bad.to_string()),
        },
        Some(other) => refuse(format!(
            "a token is a string such as \"0.42\", exactly as a mutation returned it, not {}",
            other.to_string().chars().take(64).collect::<String>()
        )),
    }
}

/// The schema plus what each request needs attached.
#[derive(Clone)]
pub struct Api {
    /// Every rule, for documents seen for the first time.
    pub schema: TwofoldSchema,
    /// The twin for documents that passed before (see [`super::documents`]).
    cached: TwofoldSchema,
    pub documents: Arc<Documents>,
    /// Shared by every request's DataLoaders (one `Arc` each, not a clone
    /// of the read model's pools and settings per loader per request).
    pub(crate) reads: Option<Arc<ReadModel>>,
    /// Whole query responses, while the views they were read from hold
    /// (see [`super::response_cache`]); `None` where it is off.
    responses: Option<Arc<ResponseCache>>,
}

/// A request ready to run, and which schema runs it.
pub struct Prepared {
    pub request: Request,
    pub progress: Progress,
    /// The document cache's key of this request (to find its parse again
    /// for [`super::conform`]).
    key: String,
    /// The validated parse, when it came from the cache.
    document: Option<Arc<ExecutableDocument>>,
    /// Served from the validated-document cache.
    pub cached: bool,
    /// The caller's identity, as the response cache keys it (empty when
    /// the cache is off).
    identity: String,
    /// Refused before running (a cached document whose variables do not
    /// fit): the request errors to answer with.
    pub refused: Option<Vec<ServerError>>,
    /// How root fields that read at a token were served.
    served: ServedLog,
    /// The operation's span (traces only; see [`operation_span`]).
    span: tracing::Span,
}

/// The GraphQL span of an operation, as the OpenTelemetry conventions name
/// it (its operation type, `graphql.operation.name`/`.type`), with a hash
/// of the document in place of the document and no variables (they may
/// hold personal data). A WebSocket operation continues the trace its
/// caller named; an HTTP one is a child of the request's span.
fn operation_span(request: &Request, parsed: Option<&ExecutableDocument>, caller: &Caller) -> tracing::Span {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let span = tracing::info_span!(
        target: crate::telemetry::TARGET,
        "graphql",
        otel.name = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
        graphql.document.sha256 = tracing::field::Empty,
        twofold.request_id = %caller.request_id,
    );
    if span.is_disabled() {
        return span;
    }
    let parsed_now;
    let document = match parsed {
        Some(document) => Some(document),
        None => {
            parsed_now = async_graphql::parser::parse_query(&request.query).ok();
            parsed_now.as_ref()
        }
    };
    // The name the request selects, else the document's only operation's
    // (the parser keeps a lone named operation among `Multiple`).
    let (name, operation) = match document.map(|d| &d.operations) {
        Some(DocumentOperations::Single(op)) => (request.operation_name.as_deref(), Some(op.node.ty)),
        Some(DocumentOperations::Multiple(ops)) => match request.operation_name.as_deref() {
            Some(name) => (Some(name), ops.get(name).map(|op| op.node.ty)),
            None if ops.len() == 1 => {
                ops.iter().next().map_or((None, None), |(n, op)| (Some(n.as_str()), Some(op.node.ty)))
            }
            None => (None, None),
        },
        None => (request.operation_name.as_deref(), None),
    };
    let kind = match operation {
        Some(OperationType::Query) => Some("query"),
        Some(OperationType::Mutation) => Some("mutation"),
        Some(OperationType::Subscription) => Some("subscription"),
        None => None,
    };
    // The conventions' span name: `{type} {name}`, the type alone, or
    // "GraphQL Operation" for a document that does not parse.
    let shown = match (kind, name) {
        (Some(kind), Some(name)) => format!("{kind} {name}"),
        (Some(kind), None) => kind.to_owned(),
        (None, _) => "GraphQL Operation".to_owned(),
    };
    span.record("otel.name", shown.as_str());
    if let Some(kind) = kind {
        span.record("graphql.operation.type", kind);
    }
    if let Some(name) = name {
        span.record("graphql.operation.name", name);
    }
    span.record("graphql.document.sha256", super::documents::sha256_hex(&request.query).as_str());
    if let Some((parent, state)) = &caller.trace {
        crate::telemetry::continue_trace(&span, Some(parent), state.as_deref());
    }
    span
}

/// After a run on the cached schema, which has no extensions (see
/// [`Api::prepare`]): were the errors about the request (nothing ran) or
/// about fields? async-graphql gives every execution error the path of its
/// field; an error without one comes from before execution (a variable
/// that does not coerce, a complexity limit).
fn mark_cached(progress: &Progress, response: &async_graphql::Response) {
    let request_error = !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    progress.0.store(!request_error, Ordering::Release);
}

/// What a one-shot request came to: a response computed now, or an answer
/// the response cache kept (which HTTP sends as its encoded body).
// Returned once per request and moved once: boxing the response would cost
// an allocation on every computed request to save a few bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Executed {
    Computed(async_graphql::Response),
    Kept(Arc<Kept>),
}

impl Executed {
    pub fn into_response(self) -> async_graphql::Response {
        match self {
            Executed::Computed(response) => response,
            Executed::Kept(kept) => kept.response(),
        }
    }
}

impl Api {
    pub fn new(
        schema: TwofoldSchema,
        cached: TwofoldSchema,
        documents: Arc<Documents>,
        reads: Option<ReadModel>,
        responses: Option<Arc<ResponseCache>>,
    ) -> Self {
        Self { schema, cached, documents, reads: reads.map(Arc::new), responses }
    }

    /// Runs a prepared one-shot request.
    pub async fn execute(&self, mut prepared: Prepared) -> Executed {
        if let Some(errors) = prepared.refused.take() {
            return Executed::Computed(async_graphql::Response::from_errors(errors));
        }
        let pending = match (&self.responses, &prepared.document) {
            (Some(responses), Some(document)) => {
                match responses.lookup(&prepared.request, document, &prepared.key, &prepared.identity).await {
                    Some(Ok(kept)) => {
                        // A kept answer has no error: the request was valid.
                        prepared.progress.0.store(true, Ordering::Release);
                        return Executed::Kept(kept);
                    }
                    Some(Err(pending)) => Some(pending),
                    None => None,
                }
            }
            _ => None,
        };
        let conformer = self.conformer(&mut prepared);
        let span = std::mem::replace(&mut prepared.span, tracing::Span::none());
        let run = async {
            if prepared.cached {
                let response = self.cached.execute(prepared.request).await;
                mark_cached(&prepared.progress, &response);
                response
            } else {
                self.schema.execute(prepared.request).await
            }
        };
        let mut response = tracing::Instrument::instrument(run, span).await;
        conformer.apply(&mut response);
        if let Some(served) = prepared.served.take() {
            response.extensions.insert("served".to_owned(), served);
        }
        if let (Some(responses), Some(pending)) = (&self.responses, pending) {
            responses.store(pending, &response);
        }
        Executed::Computed(response)
    }

    /// Runs a prepared request as a stream (subscriptions; one item for the rest).
    pub fn execute_stream(
        &self,
        mut prepared: Prepared,
    ) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
        use futures_util::StreamExt;
        if let Some(errors) = prepared.refused.take() {
            return futures_util::stream::once(async move { async_graphql::Response::from_errors(errors) }).boxed();
        }
        let conformer = self.conformer(&mut prepared);
        let progress = prepared.progress.clone();
        let cached = prepared.cached;
        let mut first = true;
        let span = std::mem::replace(&mut prepared.span, tracing::Span::none());
        let stream = if cached {
            self.cached.execute_stream(prepared.request)
        } else {
            self.schema.execute_stream(prepared.request)
        };
        // Every poll of the operation runs in its span (a stream is
        // instrumented by hand: `tracing` instruments futures only).
        let mut inner = stream;
        let stream = futures_util::stream::poll_fn(move |cx| span.in_scope(|| inner.poll_next_unpin(cx)));
        stream
            .map(move |mut response| {
                if cached && std::mem::take(&mut first) {
                    mark_cached(&progress, &response);
                }
                conformer.apply(&mut response);
                response
            })
            .boxed()
    }

    /// What [`super::conform`] needs to put this request's responses in the
    /// spec's shape. The key (the whole document text) and the parse move
    /// over: nothing else of `prepared` uses them, and copying the text per
    /// request would put an allocation on every response's path.
    fn conformer(&self, prepared: &mut Prepared) -> Conformer {
        Conformer {
            documents: self.documents.clone(),
            key: std::mem::take(&mut prepared.key),
            document: prepared.document.take(),
            operation_name: prepared.request.operation_name.clone(),
        }
    }

    /// Validates `query` (operation `operation_name`) without running it.
    pub async fn validate(&self, query: &str, operation_name: Option<&str>) -> Result<(), Vec<ServerError>> {
        let mut request = Request::new(query).data(super::shape::ValidateOnly);
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        let response = self.schema.execute(request).await;
        if response.errors.is_empty() {
            Ok(())
        } else {
            Err(response.errors)
        }
    }

    /// Attaches loaders, the caller and a [`Progress`] to `request`, and
    /// picks the schema: a document that passed validation before comes
    /// parsed from the cache. `cache_loaders`: true for one-shot
    /// operations, false for subscriptions.
    pub fn prepare(&self, mut request: Request, caller: &Caller, cache_loaders: bool) -> Prepared {
        let key = super::documents::cache_key(&request.query, request.operation_name.as_deref());
        // A document that passed validation before runs on the twin schema,
        // which has no extensions: with any extension async-graphql sends
        // every field and list item through the extension chain and a
        // registry lookup, which the profile of a page showed to cost. So
        // the request-level checks the guard makes run here instead.
        let mut refused = None;
        let mut parsed = None;
        let cached = match (self.documents.validated(&key), self.documents.schema_env()) {
            (Some(document), Some(env)) => {
                if let Err(error) = super::shape::check_request(&env.registry, &document, &request) {
                    refused = Some(vec![error]);
                }
                request.set_parsed_query((*document).clone());
                parsed = Some(document);
                true
            }
            _ => false,
        };
        match request_consistency(&request) {
            Ok(Some(consistency)) => request = request.data(consistency),
            Ok(None) => {}
            Err(error) => {
                refused.get_or_insert_with(Vec::new).push(error);
            }
        }
        let progress = Progress::default();
        let identity = match &self.responses {
            Some(_) if cached => caller.actor.identity_key(),
            _ => String::new(),
        };
        if let Some(reads) = &self.reads {
            // Cached for one-shot operations (a page asks for the same
            // customer many times); a subscription's stream must see fresh
            // rows, so its loaders batch but never cache.
            let customers =
                DataLoader::with_cache(CustomerLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            let products = DataLoader::with_cache(ProductLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            let customer_orders =
                DataLoader::with_cache(CustomerOrdersLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            let customer_order_counts =
                DataLoader::with_cache(CustomerOrderCountLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            if !cache_loaders {
                customers.enable_all_cache(false);
                products.enable_all_cache(false);
                customer_orders.enable_all_cache(false);
                customer_order_counts.enable_all_cache(false);
            }
            request = request.data(customers).data(products).data(customer_orders).data(customer_order_counts);
        }
        let request = request
            .data(RequestId(caller.request_id.clone()))
            .data(caller.actor.clone())
            .data(caller.clone())
            .data(progress.clone())
            .data(RequestCache::default());
        let served = ServedLog::default();
        let span = operation_span(&request, parsed.as_deref(), caller);
        let request = request.data(served.clone());
        Prepared { request, progress, key, document: parsed, cached, identity, refused, served, span }
    }
}

/// Applies [`super::conform`] to the responses of one request.
struct Conformer {
    documents: Arc<Documents>,
    key: String,
    document: Option<Arc<ExecutableDocument>>,
    operation_name: Option<String>,
}

impl Conformer {
    fn apply(&self, response: &mut async_graphql::Response) {
        // A document seen for the first time was remembered when it passed
        // validation; one that did not pass has no data to put in shape.
        let document = self.document.clone().or_else(|| self.documents.peek(&self.key));
        if let (Some(document), Some(env)) = (document, self.documents.schema_env()) {
            super::conform::conform(response, &document, self.operation_name.as_deref(), &env.registry);
        }
    }
}

/// The API: the schema, its twin for validated documents, the document store.
pub fn build_api(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: super::schema::SchemaLimits,
    documents: Documents,
    response_cache: Option<super::response_cache::ResponseCacheSettings>,
) -> Api {
    let responses = response_cache.and_then(|settings| ResponseCache::new(notices.clone(), settings)).map(Arc::new);
    let documents = Arc::new(documents);
    let strict = super::schema::build_with(
        commands.clone(),
        reads.clone(),
        admin.clone(),
        notices.clone(),
        limits,
        Some(documents.clone()),
        false,
    );
    let cached = super::schema::build_with(commands, reads.clone(), admin, notices, limits, None, true);
    Api::new(strict, cached, documents, reads, responses)
}
