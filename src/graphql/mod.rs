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
pub mod direct;
pub mod documents;
pub mod enums;
pub mod error;
pub mod inputs;
pub mod lists;
pub mod loaders;
pub mod mutation;
pub mod progress;
pub mod query;
pub mod reads;
pub mod request;
pub mod response_cache;
pub mod scalars;
pub mod schema;
pub mod shape;
pub mod subscription;
pub mod syntax;
pub mod types;

pub use api::build_api;
pub use loaders::{CustomerLoaderHandle, ProductLoaderHandle};
pub use schema::{build, sdl, SchemaLimits, TwofoldSchema};
