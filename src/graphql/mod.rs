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
/// printing the SDL only.
pub fn build(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: SchemaLimits,
) -> TwofoldSchema {
    // Depth is measured by the document guard, which leaves introspection
    // to its own rule; the guard runs before async-graphql parses anything.
    let mut builder = Schema::build(query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot)
        .extension(shape::DocumentGuard { limits: limits.shape })
        .extension(api::ProgressTracker)
        .limit_complexity(limits.max_complexity)
        .limit_directives(limits.shape.max_directives)
        .data(notices);
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

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build(None, None, None, Notices::default(), SchemaLimits::default()).sdl()
}
