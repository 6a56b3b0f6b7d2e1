//! The GraphQL API: schema, roots, input/output types and error codes.
//!
//! Conventions (docs/design.md, "GraphQL conventions"): mutations are task-based commands that return
//! only ids and a consistency [`scalars::Token`]; queries read only the read
//! views, and every query field takes `consistentWith: Token`; lists are
//! Relay connections with a capped page size; errors carry
//! `extensions.code` from a small closed set ([`error`]).
//!
//! This module never touches the database directly (no `entity`, no
//! `sea_orm`): it calls [`crate::command`] and [`crate::query`].
pub mod access;
pub mod api;
pub mod conform;
pub mod documents;
pub mod error;
pub mod inputs;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod reads;
pub mod scalars;
pub mod shape;
pub mod subscription;
pub mod types;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::Schema;

use crate::command::CommandService;
use crate::notice::Notices;
use crate::query::ReadModel;
use loaders::{CustomerLoader, ProductLoader};

/// `OrderSummary.customer` → `customer_view`, batched (and, per request, cached).
pub type CustomerLoaderHandle = DataLoader<CustomerLoader, HashMapCache>;
/// `OrderLine.product` → `product_catalog`, batched (and, per request, cached).
pub type ProductLoaderHandle = DataLoader<ProductLoader, HashMapCache>;

pub type TwofoldSchema = Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Limits on every request.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// The document's expanded shape, including depth (see [`shape`]).
    pub shape: shape::ShapeLimits,
    pub max_complexity: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self { shape: shape::ShapeLimits::default(), max_complexity: 5000 }
    }
}

/// Builds the schema with its services. `None` services give a schema for
/// printing the SDL only. `documents`: where documents that pass validation
/// are remembered; `cached`: the twin that serves remembered documents
/// (async-graphql's `Fast` validation: complexity and depth only, see
/// [`documents`]).
pub fn build(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: SchemaLimits,
) -> TwofoldSchema {
    build_with(commands, reads, admin, notices, limits, None, false)
}

fn build_with(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: SchemaLimits,
    documents: Option<std::sync::Arc<documents::Documents>>,
    cached: bool,
) -> TwofoldSchema {
    // Depth is measured by the document guard, which leaves introspection
    // to its own rule; the guard runs before async-graphql parses anything.
    let mut builder = Schema::build(query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot)
        .limit_complexity(limits.max_complexity)
        .limit_directives(limits.shape.max_directives)
        .data(notices);
    if cached {
        // No extensions at all (see `api::Api::prepare`): the checks they
        // make for a first-time document were made for this one already,
        // and its request-level ones run before it does.
        builder = builder.validation_mode(async_graphql::ValidationMode::Fast);
    } else {
        builder =
            builder.extension(shape::DocumentGuard { limits: limits.shape, documents }).extension(api::ProgressTracker);
    }
    if let Some(commands) = commands {
        builder = builder.data(commands);
    }
    if let Some(admin) = admin {
        builder = builder.data(admin);
    }
    // Per-request DataLoaders come with each request (see [`api::Api::prepare`]).
    if let Some(reads) = reads {
        builder = builder.data(reads);
    }
    builder.finish()
}

/// The API: the schema, its twin for validated documents, the document store.
pub fn build_api(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: SchemaLimits,
    documents: documents::Documents,
) -> api::Api {
    let documents = std::sync::Arc::new(documents);
    let strict = build_with(
        commands.clone(),
        reads.clone(),
        admin.clone(),
        notices.clone(),
        limits,
        Some(documents.clone()),
        false,
    );
    let cached = build_with(commands, reads.clone(), admin, notices, limits, None, true);
    api::Api::new(strict, cached, documents, reads)
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build(None, None, None, Notices::default(), SchemaLimits::default()).sdl()
}
