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
//! the arrows is forbidden. The table below is the map's one copy, and its
//! own check: `tests/it/architecture.rs` reads it from this doc comment,
//! parses every `use` tree and inline path under `src/` (and `main.rs`)
//! with `syn` (attribute arguments and aliases included) and checks each
//! against its row: the modules it may use, the outside crates it may use
//! (an allow-list; `std`, `core`, `alloc` go without saying) and what it
//! must never use, not even through a re-export. A layer never holds an
//! `entity` type another layer's public types hand out, and the import
//! graph, between modules and between files, has no cycle (each rule fails
//! on a planted violation, to prove it can). A list cell is names separated
//! by commas, `—`, or `everything`/`any`: anything else fails the test.
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
//!   admin ─▶ projection (on the request path, status, rebuilds, dead letters go through it;
//!   the operator CLI drives rebuilds and dead letters through projection directly).
//!   auth (tokens → actors) sits on domain; http, app and cli use it.
//!   args reads flags and environment and imports only catalog; settings turns them into each
//!   layer's own settings types (so it names those layers), for app and cli only.
//! ```
//!
//! | module | role | may use | outside crates | must never use |
//! |---|---|---|---|---|
//! | [`domain`] | aggregates decide events, enforce invariants, parse input | — | serde, serde_json, uuid, chrono, thiserror | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`token`] | the consistency token (a log position) | — | serde, thiserror | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`catalog`] | shared closed sets: view names, modes, policies, statuses, roles | — | clap, serde | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`backoff`] | the one exponential back-off with jitter and reset | — | fastrand | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`stable_hash`] | the one hash that agrees across processes (ETags, lock keys) | — | fnv | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`search`] | the search language and the one folding of text both stores index | — | deunicode, thiserror | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`telemetry`] | traces: the OpenTelemetry layer, W3C trace context in and out, span links | — | opentelemetry, opentelemetry_otlp, opentelemetry_sdk, thiserror, tracing, tracing_opentelemetry, tracing_subscriber | entity, sea_orm, axum, async_graphql |
//! | [`failure`] | what a failed database call means to a client (retry later, retry now, report) | — | thiserror | entity, sea_orm, sqlx, tokio, axum, async_graphql |
//! | [`args`] | flags and environment (clap), checked against the catalog | catalog, telemetry | clap, uuid | entity, sea_orm, sqlx, axum, async_graphql |
//! | [`metrics`] | metric names and the recorder | catalog | metrics, metrics_exporter_prometheus, tracing | — |
//! | [`db`] | pools, write transactions, the appender lock, error classes; read replicas (routing, health, rotation) | metrics, failure | futures_util, log, metrics, sea_orm, sqlx, thiserror, tokio, tokio_util, tracing | — |
//! | [`notice`] | in-process signals, NOTIFY payloads, runners' progress and the stall rule | token, db, catalog, backoff | chrono, entity, sea_orm, serde, serde_json, sqlx, tokio, tokio_util, tracing, uuid | — |
//! | [`auth`] | bearer tokens (JWT) into the actor a request acts as | domain | jsonwebtoken, serde, serde_json, thiserror, uuid | entity, sea_orm, sqlx, axum, async_graphql, tokio |
//! | [`inline`] | the seam the command side calls inline projections through | domain | async_trait, sea_orm, thiserror | — |
//! | [`command`] | write side: one pipeline (lock, claim key, load, decide, save, append, record, notify) | domain, token, db, notice, inline, metrics, failure, telemetry | async_trait, chrono, entity, metrics, sea_orm, serde, serde_json, thiserror, tokio, tracing, uuid | query, projection, entity::read, async_graphql, axum |
//! | [`projection`] | fold the log into read views; checkpoints, leadership, heartbeats, rebuilds | domain, token, db, notice, inline, catalog, metrics, backoff, stable_hash, failure, search, telemetry | async_trait, chrono, entity, futures_util, metrics, sea_orm, serde, serde_json, sqlx, thiserror, tokio, tokio_util, tracing, uuid | command, entity::write, async_graphql, axum |
//! | [`lazy`] | reads that fold: lazy views and reads at the token (a stored row plus its stream's events, by the view's own fold); the one way the query side reaches the log | projection, domain, token, db, catalog | entity, sea_orm, thiserror, tokio, uuid | command, entity::write, entity::log, async_graphql, axum |
//! | [`query`] | read side: read views only, read-your-own-writes waits (through replicas too); the log only through `lazy` | domain, token, db, notice, catalog, metrics, failure, search, lazy | chrono, entity, futures_util, sea_orm, serde, thiserror, tokio, tracing, uuid | command, entity::write, entity::log, async_graphql, axum |
//! | [`export`] | the exporter: the log published to NATS JetStream, exactly once, in order | projection, domain, token, db, catalog, metrics, telemetry | async_nats, async_trait, bytes, chrono, metrics, sea_orm, serde_json, thiserror, tokio, tracing, uuid | command, query, entity, async_graphql, axum |
//! | [`admin`] | operations on the request path: status, lag, horizon, rebuilds, dead letters | projection, token, db, notice, catalog, metrics | chrono, entity, metrics, sea_orm, thiserror, tokio, tracing, uuid | entity::write, async_graphql, axum |
//! | [`graphql`] | schema, roots, types, DataLoaders, document guard, error codes | command, query, admin, notice, token, domain, catalog, metrics, failure, telemetry | async_graphql, async_graphql_value, async_stream, async_trait, bytes, chrono, futures_util, lru, metrics, serde, serde_json, sha2, strsim, thiserror, tokio, tracing, uuid | entity, sea_orm, sqlx, axum |
//! | [`http`] | axum router, WebSockets, pages, limits, health, shutdown | graphql, admin, auth, catalog, metrics, stable_hash, telemetry | async_graphql, async_graphql_axum, axum, futures_util, jsonwebtoken, metrics, serde, serde_json, serde_urlencoded, sha2, tokio, tokio_util, tower_http, tracing, tungstenite | entity, sea_orm, sqlx |
//! | [`settings`] | args into each layer's own settings (one type per idea, owned by its layer); used by app and cli only | args, catalog, auth, db, projection, export, query, graphql, http | — | entity, sea_orm, sqlx, axum, async_graphql |
//! | [`app`] | wiring: connect, migrate, start projectors, serve | everything | any | — |
//! | [`cli`] | operator commands (`migrate`, `rebuild`, `dead-letters`, …) | app, args, settings, catalog, domain, token, db, notice, command, projection, admin, auth, graphql | chrono, futures_util, indicatif, sea_orm, thiserror, tokio, tokio_util, tracing, uuid | http |
//! | `main.rs` | the binary: flags, logs and traces, then the CLI; prints a failure with its causes | args, telemetry, cli, failure | clap, mimalloc, tokio, tracing, tracing_subscriber | — |
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
