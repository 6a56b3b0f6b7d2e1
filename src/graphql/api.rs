//! The one way into the schema for every transport (HTTP and WebSocket):
//! it attaches what a request needs (per-request DataLoaders, the request
//! id, the caller's credentials) and reports whether the request got past
//! parsing and validation, which decides HTTP status codes and whether a
//! WebSocket `subscribe` is answered with `error` or with `next`.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{Request, ServerError, ValidationResult};

use super::documents::Documents;
use super::loaders::{CustomerLoader, ProductLoader};
use super::mutation::RequestId;
use super::TwofoldSchema;
use crate::query::ReadModel;

/// What a transport knows about the caller of one operation.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The HTTP request id (`x-request-id`), carried into events' metadata.
    pub request_id: String,
    /// Who it acts as: the transport authenticated it (see `crate::auth`).
    pub actor: crate::domain::Actor,
}

/// Results shared by every field of one request that asks for the same thing.
#[derive(Default)]
pub struct RequestCache {
    pub projections: tokio::sync::OnceCell<Vec<crate::admin::ProjectionState>>,
}

/// Set once a request has passed parsing and validation: errors after that
/// point are execution errors, reported with data (HTTP 200, WebSocket `next`);
/// errors before it are request errors (HTTP 400 with
/// `application/graphql-response+json`, WebSocket `error`).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicBool>);

impl Progress {
    pub fn validated(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
    pub(crate) reads: Option<ReadModel>,
}

/// A request ready to run, and which schema runs it.
pub struct Prepared {
    pub request: Request,
    pub progress: Progress,
    /// Served from the validated-document cache.
    pub cached: bool,
}

impl Api {
    pub fn new(
        schema: TwofoldSchema,
        cached: TwofoldSchema,
        documents: Arc<Documents>,
        reads: Option<ReadModel>,
    ) -> Self {
        Self { schema, cached, documents, reads }
    }

    /// Runs a prepared one-shot request.
    pub async fn execute(&self, prepared: Prepared) -> async_graphql::Response {
        let schema = if prepared.cached { &self.cached } else { &self.schema };
        schema.execute(prepared.request).await
    }

    /// Runs a prepared request as a stream (subscriptions; one item for the rest).
    pub fn execute_stream(
        &self,
        prepared: Prepared,
    ) -> impl futures_util::Stream<Item = async_graphql::Response> + Send + 'static {
        let schema = if prepared.cached { &self.cached } else { &self.schema };
        schema.execute_stream(prepared.request)
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
        let cached = match self.documents.validated(&key) {
            Some(document) => {
                request.set_parsed_query((*document).clone());
                true
            }
            None => false,
        };
        let progress = Progress::default();
        if let Some(reads) = &self.reads {
            // Cached for one-shot operations (a page asks for the same
            // customer many times); a subscription's stream must see fresh
            // rows, so its loaders batch but never cache.
            let customers =
                DataLoader::with_cache(CustomerLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            let products = DataLoader::with_cache(ProductLoader(reads.clone()), tokio::spawn, HashMapCache::default());
            if !cache_loaders {
                customers.enable_all_cache(false);
                products.enable_all_cache(false);
            }
            request = request.data(customers).data(products);
        }
        let request = request
            .data(RequestId(caller.request_id.clone()))
            .data(caller.actor.clone())
            .data(caller.clone())
            .data(progress.clone())
            .data(RequestCache::default());
        Prepared { request, progress, cached }
    }
}

/// Marks [`Progress`] once validation has passed.
pub struct ProgressTracker;

impl ExtensionFactory for ProgressTracker {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ProgressTracker)
    }
}

#[async_trait::async_trait]
impl Extension for ProgressTracker {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_ok() {
            if let Some(progress) = ctx.data_opt::<Progress>() {
                progress.0.store(true, Ordering::Release);
            }
        }
        result
    }
}
