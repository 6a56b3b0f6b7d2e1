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
    pub schema: TwofoldSchema,
    pub(crate) reads: Option<ReadModel>,
}

impl Api {
    pub fn new(schema: TwofoldSchema, reads: Option<ReadModel>) -> Self {
        Self { schema, reads }
    }

    /// Attaches loaders, the caller and a [`Progress`] to `request`.
    /// `cache_loaders`: true for one-shot operations, false for subscriptions.
    pub fn prepare(&self, mut request: Request, caller: &Caller, cache_loaders: bool) -> (Request, Progress) {
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
        (request, progress)
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
