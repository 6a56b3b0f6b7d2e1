//! # Twofold — two models, one truth
//!
//! A CQRS order service. Mutations are task-based commands over a
//! normalized write model; every change is recorded in an append-only event
//! log in the same transaction; projections fold that log into denormalized
//! read views; queries read only those views.
//!
//! ## Layer map (who may import whom)
//!
//! ```text
//!   main.rs ─▶ config ─▶ app (wiring) ─▶ http ─▶ graphql ─┬─▶ command ─▶ domain
//!                                                         ├─▶ query ───▶ notice
//!                                                         └─▶ notice
//!              projection ─▶ domain, notice   (reads entity::log, writes entity::read)
//! ```
//!
//! | module        | role                                              | may use                              | must never use                        |
//! |---------------|---------------------------------------------------|--------------------------------------|---------------------------------------|
//! | [`domain`]    | aggregates decide events, enforce invariants      | std, serde, uuid, chrono             | any I/O crate (sea_orm, tokio, axum…) |
//! | [`command`]   | write side: load/lock, decide, save + append      | domain, entity::write, entity::log   | entity::read, query, projection       |
//! | [`projection`]| fold the log into read views, checkpoints         | domain, entity::log, entity::read    | entity::write, command                |
//! | [`query`]     | read side: read views only, DataLoaders, waits    | entity::read, notice                 | entity::write, entity::log, command   |
//! | [`graphql`]   | schema, roots, types, error codes                 | command, query, notice               | entity, sea_orm                       |
//! | [`http`]      | axum router, limits, health, shutdown             | graphql                              |                                       |
//!
//! `tests/architecture.rs` enforces these rules on the source text.
pub mod admin;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod command;
pub mod config;
pub mod db;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod inline;
pub mod metrics;
pub mod notice;
pub mod projection;
pub mod query;
pub mod token;
