//! Whether a request got past parsing and validation, which decides HTTP
//! status codes and whether a WebSocket `subscribe` is answered with
//! `error` or with `next`; and the extension that marks it.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{ServerError, ValidationResult};

/// Set once a request has passed parsing and validation: errors after that
/// point are execution errors, reported with data (HTTP 200, WebSocket `next`);
/// errors before it are request errors (HTTP 400 with
/// `application/graphql-response+json`, WebSocket `error`).
#[derive(Debug, Clone, Default)]
pub struct Progress(pub(super) Arc<AtomicBool>);

impl Progress {
    pub fn validated(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
