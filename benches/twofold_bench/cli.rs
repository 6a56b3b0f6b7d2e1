//! Command-line flags and the size of each phase.
//!
//! Parsed by hand rather than with clap: `cargo bench` appends `--bench`
//! (and any filter the user typed) to a `harness = false` bench, and those
//! must be ignored, not rejected.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

pub const USAGE: &str = "usage: cargo bench --bench twofold_bench -- [--quick] [--backend postgres|sqlite] [--pg-url postgres://USER@HOST:PORT] [--out DIR]

  --quick     small data set, short phases (CI smoke test, under 2 minutes)
  --backend   postgres (default) or sqlite (a temporary file)
  --pg-url    PostgreSQL server without a database name (default postgres://postgres@127.0.0.1:5432)
  --out       where the JSON results and the SVG chart go (default bench-results)
  --nats-url  NATS server with JetStream for the export figures (default nats://127.0.0.1:4222; `none` skips them)
  --replica-url  a hot standby of --pg-url, without a database name, for the read replica figures
              (default $TWOFOLD_TEST_REPLICA_URL; `none` or unset skips them)
  --only      a comma-separated list of phases to run after the seeding (default: all), of
              commands, reads, mixed, wire, peer, lag, write-visible, cross-instance, replica,
              overload, tracing, search, lazy, resume, segments, rebuild, export (lag's and segments' 80% rows
              need commands; export reads the log the seeding and the phases before it wrote)
  --keep-database  leave the database in place at the end (the PostgreSQL name or the SQLite file is printed)
  --rebuild-events N  grow the log to N events for the rebuild phase (topped up by SQL; default: the
              mode's, 1,000,000 in full mode, none in quick mode)
  --search-orders N  grow the orders to N before the search phase (plain-SQL histories, then
              `twofold rebuild --all` brings the views up to them; default: the seeded orders)";

/// The phases `--only` can choose, in the order they run.
pub const PHASES: [&str; 17] = [
    "commands",
    "reads",
    "mixed",
    "wire",
    "peer",
    "lag",
    "write-visible",
    "cross-instance",
    "replica",
    "overload",
    "tracing",
    "search",
    "lazy",
    "resume",
    "segments",
    "rebuild",
    "export",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub backend: Backend,
    pub pg_url: String,
    pub out: PathBuf,
    /// `None`: the export figures are skipped.
    pub nats_url: Option<String>,
    /// A hot standby of `pg_url` (no database name); `None`: the replica figures are skipped.
    pub replica_url: Option<String>,
    /// `--only`: the phases to run (`None`: all of them).
    pub only: Option<Vec<String>>,
    pub keep_database: bool,
    /// `--rebuild-events`: the rebuild phase's log size, instead of the mode's.
    pub rebuild_events: Option<u64>,
    /// `--search-orders`: the orders the search phase reads, instead of the seeded ones.
    pub search_orders: Option<u64>,
    pub help: bool,
}

impl Options {
    pub fn from_args(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            quick: false,
            backend: Backend::Postgres,
            pg_url: "postgres://postgres@127.0.0.1:5432".to_owned(),
            out: PathBuf::from("bench-results"),
            nats_url: Some("nats://127.0.0.1:4222".to_owned()),
            replica_url: std::env::var("TWOFOLD_TEST_REPLICA_URL").ok().filter(|u| !u.trim().is_empty()),
            only: None,
            keep_database: false,
            rebuild_events: None,
            search_orders: None,
            help: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> anyhow::Result<String> {
                match inline_value.clone() {
                    Some(v) => Ok(v),
                    None => args.next().with_context(|| format!("{name} needs a value")),
                }
            };
            match flag.as_str() {
                "--quick" => options.quick = true,
                "--full" => options.quick = false,
                "--backend" => {
                    options.backend = match value("--backend")?.as_str() {
                        "postgres" | "postgresql" | "pg" => Backend::Postgres,
                        "sqlite" => Backend::Sqlite,
                        other => bail!("unknown backend '{other}' (postgres or sqlite)"),
                    }
                }
                "--pg-url" => options.pg_url = value("--pg-url")?.trim_end_matches('/').to_owned(),
                "--out" => options.out = PathBuf::from(value("--out")?),
                "--nats-url" => options.nats_url = Some(value("--nats-url")?).filter(|u| u != "none"),
                "--replica-url" => options.replica_url = Some(value("--replica-url")?).filter(|u| u != "none"),
                "--only" => {
                    let phases: Vec<String> = value("--only")?.split(',').map(|p| p.trim().to_owned()).collect();
                    if let Some(unknown) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                        bail!("--only: unknown phase '{unknown}' (one of {})", PHASES.join(", "));
                    }
                    options.only = Some(phases);
                }
                "--keep-database" => options.keep_database = true,
                "--rebuild-events" => {
                    options.rebuild_events = Some(count_of("--rebuild-events", &value("--rebuild-events")?)?)
                }
                "--search-orders" => {
                    options.search_orders = Some(count_of("--search-orders", &value("--search-orders")?)?)
                }
                "--help" | "-h" => options.help = true,
                // Added by `cargo bench` to harness=false targets.
                "--bench" => {}
                other => eprintln!("twofold_bench: ignoring argument '{other}'"),
            }
        }
        if !options.pg_url.starts_with("postgres://") && !options.pg_url.starts_with("postgresql://") {
            bail!("--pg-url must start with postgres://");
        }
        Ok(options)
    }

    /// Whether `phase` (one of [`PHASES`]) runs.
    pub fn runs(&self, phase: &str) -> bool {
        debug_assert!(PHASES.contains(&phase), "{phase} is not a phase");
        self.only.as_ref().is_none_or(|only| only.iter().any(|p| p == phase))
    }

    pub fn mode_name(&self) -> &'static str {
        if self.quick {
            "quick"
        } else {
            "full"
        }
    }

    /// `postgres-quick`, `sqlite-full`, ...: the stem of the output files.
    /// `<backend>-<mode>`, with `-only-<phases>` when `--only` chose some
    /// (so a partial run never overwrites a whole one's files).
    pub fn file_stem(&self) -> String {
        let only = self.only.as_ref().map(|p| format!("-only-{}", p.join("-"))).unwrap_or_default();
        format!("{}-{}{only}", self.backend.name(), self.mode_name())
    }

    pub fn scale(&self) -> Scale {
        let mut scale = if self.quick { Scale::quick() } else { Scale::full() };
        if let Some(events) = self.rebuild_events {
            scale.rebuild_events = events;
            scale.rebuild_timeout = scale.rebuild_timeout.max(Duration::from_secs(30 * 60));
        }
        if let Some(orders) = self.search_orders {
            scale.search_orders = Some(orders);
            scale.rebuild_timeout = scale.rebuild_timeout.max(Duration::from_secs(30 * 60));
        }
        scale
    }
}

/// A count given to `flag`, with `_` or `,` between its digits allowed (`1_000_000`).
fn count_of(flag: &str, text: &str) -> anyhow::Result<u64> {
    text.replace(['_', ','], "").parse::<u64>().with_context(|| format!("{flag}: '{text}' is not a number"))
}

/// How much work each phase does. Every loop is bounded by both a count and
/// a time, so a slow machine makes the numbers worse, never the run endless.
#[derive(Debug, Clone)]
pub struct Scale {
    pub customers: usize,
    pub products: usize,
    /// Per concurrency level, for the HTTP commands and for the SQL baseline.
    pub throughput_time: Duration,
    pub throughput_max_ops: u64,
    /// Orders in the database before the read phase.
    pub orders: u64,
    /// Upper bound on the time spent seeding orders.
    pub seed_time: Duration,
    /// Per read variant.
    pub read_time: Duration,
    pub lag_time_200: Duration,
    pub lag_time_1000: Duration,
    pub subscribers: usize,
    /// Events wanted in the log for the rebuild (topped up by SQL if short).
    pub rebuild_events: u64,
    /// Orders the search phase reads (topped up by SQL and rebuilt into the
    /// views if more than were seeded); `None`: the seeded ones.
    pub search_orders: Option<u64>,
    /// Upper bound on one `twofold rebuild` run.
    pub rebuild_timeout: Duration,
    /// Upper bound on waiting for the projections to catch up.
    pub catch_up_timeout: Duration,
    /// How long the overload phase (500 heavy readers beside commands) runs.
    pub overload_time: Duration,
    /// Link cuts in the resume phase (PostgreSQL).
    pub resume_cuts: usize,
}

impl Scale {
    fn quick() -> Self {
        Self {
            customers: 200,
            products: 100,
            throughput_time: Duration::from_secs(2),
            throughput_max_ops: 5_000,
            orders: 5_000,
            seed_time: Duration::from_secs(40),
            read_time: Duration::from_secs(2),
            lag_time_200: Duration::from_secs(3),
            lag_time_1000: Duration::from_secs(3),
            subscribers: 1_000,
            rebuild_events: 0,
            search_orders: None,
            rebuild_timeout: Duration::from_secs(60),
            catch_up_timeout: Duration::from_secs(30),
            overload_time: Duration::from_secs(4),
            resume_cuts: 20,
        }
    }

    fn full() -> Self {
        Self {
            customers: 2_000,
            products: 500,
            throughput_time: Duration::from_secs(10),
            throughput_max_ops: 200_000,
            orders: 100_000,
            seed_time: Duration::from_secs(20 * 60),
            read_time: Duration::from_secs(10),
            lag_time_200: Duration::from_secs(30),
            lag_time_1000: Duration::from_secs(15),
            subscribers: 1_000,
            rebuild_events: 1_000_000,
            search_orders: None,
            rebuild_timeout: Duration::from_secs(30 * 60),
            catch_up_timeout: Duration::from_secs(10 * 60),
            overload_time: Duration::from_secs(20),
            resume_cuts: 40,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} customers, {} products, {} orders, {} s per throughput level, {} s per read variant, {} subscribers, rebuild target {} events",
            self.customers,
            self.products,
            self.orders,
            self.throughput_time.as_secs(),
            self.read_time.as_secs(),
            self.subscribers,
            self.rebuild_events
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rebuild_events_overrides_the_modes_log_size() {
        // Everything inside the test: the bench target compiles this module
        // under `cfg(test)` without its tests (`harness = false`), and a
        // helper or an import beside them would be dead code there.
        use super::{Duration, Options};
        let parse = |args: &[&str]| Options::from_args(args.iter().map(|a| (*a).to_owned()));
        let quick = parse(&["--quick"]).expect("parse");
        assert_eq!(quick.scale().rebuild_events, 0);
        let grown = parse(&["--quick", "--rebuild-events", "1_000_000"]).expect("parse");
        assert_eq!(grown.scale().rebuild_events, 1_000_000);
        assert!(grown.scale().rebuild_timeout >= Duration::from_secs(30 * 60));
        assert_eq!(parse(&["--rebuild-events=2,000"]).expect("parse").scale().rebuild_events, 2_000);
        let bad = parse(&["--rebuild-events", "lots"]).expect_err("refused");
        assert!(format!("{bad:#}").contains("'lots' is not a number"), "{bad:#}");
        assert_eq!(parse(&["--search-orders", "1,000,000"]).expect("parse").search_orders, Some(1_000_000));
        assert_eq!(parse(&["--quick"]).expect("parse").search_orders, None);
        let bad = parse(&["--search-orders=many"]).expect_err("refused");
        assert!(format!("{bad:#}").contains("--search-orders: 'many' is not a number"), "{bad:#}");
    }
}
