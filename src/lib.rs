//! # Twofold — two models, one truth
//!
//! A CQRS order service. Mutations are task-based commands over a
//! normalized write model; every change is recorded in an append-only event
//! log in the same transaction; projections fold that log into denormalized
//! read views; queries read only those views.
//!
//! ## Layer map (who may import whom)
//!
//! Arrows point at what a module may import; anything not reachable along
//! the arrows is forbidden. `tests/it/architecture.rs` holds this map: it
//! parses every `use` tree and inline path under `src/` with `syn` (attribute
//! arguments and aliases included) and checks each against the same
//! allow-list; re-exports are followed, a layer never holds an `entity`
//! type another layer's public types hand out, and the import graph has no
//! cycle (each rule fails on a planted violation, to prove it can).
//!
//! ```text
//!   main.rs ─▶ cli ─▶ app (wiring: the one module that knows every layer)
//!                      │
//!                      ▼
//!                     http ─▶ graphql ─┬─▶ command ───┬─▶ domain
//!                       │              ├─▶ query      ├─▶ inline ◀── projection ◀── export
//!                       └──────────────┴─▶ admin ─────┴─▶ notice, db, token, metrics
//!                                                                    │
//!   leaves: domain, token, catalog (closed sets of names), backoff ◀─┘, stable_hash, search,
//!   failure (database failure classes: db decides them, command, query, projection and graphql report them)
//!   admin ─▶ projection (status, rebuilds, dead letters go through it).
//!   auth (tokens → actors) sits on domain; http, app and cli use it.
//!   args reads flags and environment and imports only catalog; settings turns them into each
//!   layer's own settings types (so it names those layers), for app and cli only.
//! ```
//!
//! | module         | role                                                           | may use                                                 | must never use                               |
//! |----------------|----------------------------------------------------------------|---------------------------------------------------------|----------------------------------------------|
//! | [`domain`]     | aggregates decide events, enforce invariants, parse input      | std, serde, uuid, chrono                                | any I/O crate (sea_orm, tokio, axum…)        |
//! | [`token`]      | the consistency token (a log position)                         | nothing of the crate                                    | I/O crates                                   |
//! | [`catalog`]    | shared closed sets: view names, modes, policies, statuses, roles | nothing of the crate                                  | I/O crates                                   |
//! | [`backoff`]    | the one exponential back-off with jitter and reset             | nothing of the crate                                    | I/O crates                                   |
//! | [`stable_hash`] | the one hash that agrees across processes (ETags, lock keys)  | nothing of the crate                                    | I/O crates                                   |
//! | [`search`]     | the search language and the one folding of text both stores index | nothing of the crate                | I/O crates                                   |
//! | [`telemetry`]  | traces: the OpenTelemetry layer, W3C trace context in and out, span links | nothing of the crate            | sea_orm, axum, async_graphql                 |
//! | [`failure`]    | what a failed database call means to a client (retry later, retry now, report) | nothing of the crate                  | I/O crates                                   |
//! | [`args`]       | flags and environment (clap), checked against the catalog      | catalog, telemetry                                      | entity, sea_orm, axum, async_graphql         |
//! | [`metrics`]    | metric names and the recorder                                  | catalog                                                 |                                              |
//! | [`db`]         | pools, write transactions, the appender lock, error classes; read replicas (routing, health, rotation) | metrics, failure |                                              |
//! | [`notice`]     | in-process signals, NOTIFY payloads, runners' progress and the stall rule | token, db, catalog, backoff                  |                                              |
//! | [`auth`]       | bearer tokens (JWT) into the actor a request acts as           | domain                                                  | entity, sea_orm, axum, async_graphql         |
//! | [`inline`]     | the seam the command side calls inline projections through     | domain                                                  |                                              |
//! | [`command`]    | write side: one pipeline (lock, claim key, load, decide, save, append, record, notify) | domain, token, db, notice, inline, metrics, failure, telemetry | entity::read, query, projection, async_graphql |
//! | [`projection`] | fold the log into read views; checkpoints, leadership, heartbeats, rebuilds | domain, token, db, notice, inline, catalog, metrics, backoff, stable_hash, failure, search, telemetry | entity::write, command, async_graphql |
//! | [`lazy`]       | reads that fold: lazy views and reads at the token (a stored row plus its stream's events, by the view's own fold); the one way the query side reaches the log | projection, domain, token, db, catalog | entity::write, entity::log, command, async_graphql |
//! | [`query`]      | read side: read views only, read-your-own-writes waits (through replicas too); the log only through `lazy` | domain, token, db, notice, catalog, metrics, failure, search, lazy | entity::write, entity::log, command, projection |
//! | [`export`]     | the exporter: the log published to NATS JetStream, exactly once, in order | projection, domain, token, db, catalog, metrics, telemetry | entity, command, query, async_graphql, axum |
//! | [`admin`]      | operations on the request path: status, lag, horizon, rebuilds, dead letters | projection, token, db, notice, catalog, metrics | entity::write, async_graphql           |
//! | [`graphql`]    | schema, roots, types, DataLoaders, document guard, error codes | command, query, admin, notice, token, domain, catalog, metrics, failure, telemetry | entity, sea_orm, sqlx, axum |
//! | [`http`]       | axum router, WebSockets, pages, limits, health, shutdown       | graphql, admin, auth, catalog, metrics, stable_hash, telemetry | entity, sea_orm, sqlx                 |
//! | [`settings`]   | args into each layer's own settings (one type per idea, owned by its layer); used by app and cli only | args, catalog, auth, db, projection, export, query, graphql, http | entity, sea_orm, axum, async_graphql |
//! | [`app`]        | wiring: connect, migrate, start projectors, serve              | everything                                              |                                              |
//! | [`cli`]        | operator commands (`migrate`, `rebuild`, `dead-letters`, …)    | app and the layers it drives                            | http                                         |
//!
//! `graphql` may name `domain` for its value types only (order status,
//! sales channel, limits), so each enum has one definition; it never
//! calls an aggregate.
//!
//! Outside tests nothing under `src/` unwraps: bad input and failed I/O are
//! errors with a code, never a panic (the lint below holds it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod admin;
pub mod app;
pub mod args;
pub mod auth;
pub mod backoff;
pub mod catalog;
pub mod cli;
pub mod command;
pub mod db;
pub mod domain;
pub mod export;
pub mod failure;
pub mod graphql;
pub mod http;
pub mod inline;
pub mod lazy;
pub mod metrics;
pub mod notice;
pub mod projection;
pub mod query;
pub mod search;
pub mod settings;
pub mod stable_hash;
pub mod telemetry;
pub mod token;
