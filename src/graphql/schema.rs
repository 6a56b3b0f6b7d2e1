//! The schema: its roots, limits and extensions, built with its services
//! (or without, to print the SDL). The twin for validated documents is
//! built here too; [`super::api`] puts them to use.
use async_graphql::Schema;

use crate::command::CommandService;
use crate::notice::Notices;
use crate::query::ReadModel;

pub type TwofoldSchema =
    Schema<super::query::QueryRoot, super::mutation::MutationRoot, super::subscription::SubscriptionRoot>;

/// Limits on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaLimits {
    /// The document's expanded shape, including depth (see [`super::shape`]).
    pub shape: super::shape::ShapeLimits,
    pub max_complexity: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self { shape: super::shape::ShapeLimits::default(), max_complexity: crate::defaults::MAX_COMPLEXITY }
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

pub(super) fn build_with(
    commands: Option<CommandService>,
    reads: Option<ReadModel>,
    admin: Option<crate::admin::Admin>,
    notices: Notices,
    limits: SchemaLimits,
    documents: Option<std::sync::Arc<super::documents::Documents>>,
    cached: bool,
) -> TwofoldSchema {
    // Depth is measured by the document guard, which leaves introspection
    // to its own rule; the guard runs before async-graphql parses anything.
    let mut builder =
        Schema::build(super::query::QueryRoot, super::mutation::MutationRoot, super::subscription::SubscriptionRoot)
            .limit_complexity(limits.max_complexity)
            .limit_directives(limits.shape.max_directives)
            .data(notices);
    if cached {
        // No extensions at all (see `api::Api::prepare`): the checks they
        // make for a first-time document were made for this one already,
        // and its request-level ones run before it does.
        builder = builder.validation_mode(async_graphql::ValidationMode::Fast);
    } else {
        builder = builder
            .extension(super::shape::DocumentGuard { limits: limits.shape, documents })
            .extension(super::progress::ProgressTracker);
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

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build(None, None, None, Notices::default(), SchemaLimits::default()).sdl()
}
