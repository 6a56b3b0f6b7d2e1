//! The GraphQL API: schema, roots, input/output types and error codes.
//!
//! Conventions (DESIGN.md §6): mutations are task-based commands that return
//! only ids and a consistency [`scalars::Token`]; queries read only the read
//! views, and every query field takes `consistentWith: Token`; lists are
//! Relay connections with a capped page size; errors carry
//! `extensions.code` from a small closed set ([`error`]).
//!
//! This module never touches the database directly (no `entity`, no
//! `sea_orm`): it calls [`crate::command`] and [`crate::query`].
pub mod error;
pub mod mutation;
pub mod query;
pub mod scalars;
pub mod subscription;
pub mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::Schema;

use crate::command::CommandService;
use crate::notice::Notices;
use crate::query::loaders::{CustomerLoader, ProductLoader};
use crate::query::ReadModel;

pub type TwofoldSchema = Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Limits on every request.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self { max_depth: 12, max_complexity: 5000 }
    }
}

/// Builds the schema with its services. `None` services give a schema for
/// printing the SDL only.
pub fn build(commands: Option<CommandService>, reads: Option<ReadModel>, notices: Notices, limits: SchemaLimits) -> TwofoldSchema {
    let mut builder = Schema::build(query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .data(notices);
    if let Some(commands) = commands {
        builder = builder.data(commands);
    }
    if let Some(reads) = reads {
        builder = builder
            .data(DataLoader::new(CustomerLoader(reads.clone()), tokio::spawn))
            .data(DataLoader::new(ProductLoader(reads.clone()), tokio::spawn))
            .data(reads);
    }
    builder.finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build(None, None, Notices::default(), SchemaLimits::default()).sdl()
}
