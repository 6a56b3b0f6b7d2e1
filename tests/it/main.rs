//! Twofold's integration tests: one binary, the real server on
//! `127.0.0.1:0`, each test with its own SQLite file or PostgreSQL database.
//!
//! PostgreSQL variants run when `TWOFOLD_TEST_PG_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432`); with `TWOFOLD_REQUIRE_PG=1` (set by
//! `.ci/run`) a missing URL fails them instead of skipping.
mod helpers;

mod architecture;
mod cli;
mod cluster;
mod commands;
mod concurrency;
mod conformance;
mod docs;
mod documents;
mod export;
mod faults;
mod fleet;
mod fuzz;
mod hardening;
mod horizon;
mod http_spec;
mod idempotency;
mod identity;
mod invariants;
mod lazy;
mod metrics;
mod outage;
mod process;
mod projections;
mod property;
mod queries;
mod rebuild;
mod replicas;
mod request_consistency;
mod response_cache;
mod schema_file;
mod search;
mod segments;
mod snapshots;
mod stalls;
mod subscriptions;
mod traces;
mod web;
mod ws_client;
mod ws_timers;

// The benchmark's pure modules: its target has `harness = false`, so their
// unit tests run here (`bench_stats::tests`, `bench_rebuilt::tests`,
// `bench_cli::tests`).
#[allow(dead_code)]
#[path = "../../benches/twofold_bench/cli.rs"]
mod bench_cli;
#[allow(dead_code)]
#[path = "../../benches/twofold_bench/rebuilt.rs"]
mod bench_rebuilt;
#[allow(dead_code)]
#[path = "../../benches/twofold_bench/stats.rs"]
mod bench_stats;
