//! The closed sets of values several layers share, each defined once:
//! the projections (views) by name, the other consumer of the log (the
//! exporter), how a projection is applied (mode), what it does with a
//! poison event (policy), the statuses it can be in, and what a process
//! runs (role). A leaf: it imports no other layer.
//!
//! The domain's own vocabulary (order statuses, sales channels, event
//! types) stays in [`crate::domain`].
use std::fmt;

/// Every read view, in a fixed order (the order projections run and are listed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    OrderSummary,
    CustomerView,
    ProductCatalog,
    DailySales,
    OrderActivity,
}

impl View {
    pub const ALL: [View; 5] =
        [View::OrderSummary, View::CustomerView, View::ProductCatalog, View::DailySales, View::OrderActivity];

    /// The name of the projection and of its table.
    pub const fn name(self) -> &'static str {
        match self {
            Self::OrderSummary => "order_summary",
            Self::CustomerView => "customer_view",
            Self::ProductCatalog => "product_catalog",
            Self::DailySales => "daily_sales",
            Self::OrderActivity => "order_activity",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Every name, for messages and listings.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.name()).collect()
    }

    /// Whether the view may be lazy: each of its rows folds from the
    /// events of one stream, found by the log's stream index
    /// (`order_activity`: the order's; `order_summary`: the order's and its
    /// customer's renames). A customer's counters fold from every order of
    /// the customer, a product's sales from every order of it, a day's
    /// sales from every order of the day: no index finds those events.
    pub const fn can_be_lazy(self) -> bool {
        matches!(self, Self::OrderSummary | Self::OrderActivity)
    }

    /// The projection version of the view: bump it whenever the view's fold
    /// or its table's shape changes. A recovery snapshot records it for each
    /// view and a rebuild refuses to start from rows another version wrote.
    pub const fn projection_version(self) -> i64 {
        match self {
            Self::OrderSummary => 1,
            Self::CustomerView => 1,
            Self::ProductCatalog => 1,
            Self::DailySales => 1,
            Self::OrderActivity => 1,
        }
    }
}

impl View {
    /// Whether the view may be split into segments (`--projection-segments`).
    ///
    /// Events go to segments by their customer (an order's or a customer's
    /// own events) or, without one, by their stream (a product's): see
    /// `crate::projection::segment`. Each row of these views folds the
    /// events of one customer only — an order's row its own events and its
    /// customer's renames, a customer's row its own events and its orders'
    /// — so all of a row's events are applied by one segment, in log order.
    ///
    /// `product_catalog` and `daily_sales` fold many customers into one row
    /// (a product's sales from every order of it, a day's from every order
    /// of the day). Their counters skip an event at or below the row's
    /// marker, the `(tx_id, position)` of the last event the row applied
    /// (`crate::projection::fold`): a segment ahead of another would move
    /// the marker past events the one behind has yet to add, and those
    /// would be skipped, lost. They stay at one segment.
    pub const fn can_be_segmented(self) -> bool {
        matches!(self, Self::OrderSummary | Self::CustomerView | Self::OrderActivity)
    }
}

/// The most segments a view may be split into (`--projection-segments`).
pub const MAX_SEGMENTS: u32 = 64;

/// The checkpoint row (and leadership lock) of segment `index` of `count`
/// of `view`: the view's own name when it is not split (so one segment is
/// exactly what an unsplit view always was), else `view#index/count`.
pub fn segment_name(view: &str, index: u32, count: u32) -> String {
    if count <= 1 {
        view.to_owned()
    } else {
        format!("{view}#{index}/{count}")
    }
}

/// A segment's checkpoint name split into its view, index and count
/// (`None` for a plain name, which is the whole view).
pub fn parse_segment(name: &str) -> Option<(&str, u32, u32)> {
    let (view, rest) = name.split_once('#')?;
    let (index, count) = rest.split_once('/')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count && count > 1).then_some((view, index, count))
}

/// The view a checkpoint name belongs to (itself, for a plain name).
pub fn view_of(name: &str) -> &str {
    parse_segment(name).map_or(name, |(view, _, _)| view)
}

/// `VIEW=N` of `--projection-segments`: a view that can be split (see
/// [`View::can_be_segmented`]) into 1 to [`MAX_SEGMENTS`] segments.
pub fn parse_segments(s: &str) -> Result<(String, u32), String> {
    let (name, count) =
        s.split_once('=').ok_or_else(|| format!("expected VIEW=N, got '{s}' (views: {})", View::names().join(", ")))?;
    let (name, count) = (name.trim(), count.trim());
    let view =
        View::parse(name).ok_or_else(|| format!("unknown view '{name}'; known: {}", View::names().join(", ")))?;
    let count: u32 =
        count.parse().ok().filter(|n| (1..=MAX_SEGMENTS).contains(n)).ok_or_else(|| {
            format!("the segments of {name} must be a number from 1 to {MAX_SEGMENTS}, got '{count}'")
        })?;
    if count > 1 && !view.can_be_segmented() {
        return Err(format!(
            "{name} cannot be split into segments: each of its rows adds up the orders of many customers, and a              row skips any event at or below the last one it applied, so a segment ahead of another would make              the other's events be skipped; it stays at one segment (views that can be split: {})",
            View::ALL.iter().filter(|v| v.can_be_segmented()).map(|v| v.name()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((name.to_owned(), count))
}

/// The format of a recovery snapshot file (`twofold snapshot create`).
pub const SNAPSHOT_FORMAT: i64 = 1;

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The exporter's name: its checkpoint row, its leadership lock, its dead
/// letters and its poison policy (`--poison-policy event_export=skip`).
///
/// It reads the log like a projection, but it is not a read view: it is not
/// in [`View::ALL`], so `writeVisible` and `consistentWith` never wait for
/// it, and it cannot be rebuilt (what it published cannot be taken back).
pub const EXPORTER: &str = "event_export";

/// Events read and applied per replay transaction of a rebuild (the
/// default of `twofold rebuild --batch-size`, and what rebuilds started
/// from the admin API use).
pub const REPLAY_BATCH: u64 = 5_000;

/// Every consumer that may be given a poison policy: the views and the exporter.
pub fn consumer_names() -> Vec<&'static str> {
    let mut names = View::names();
    names.push(EXPORTER);
    names
}

/// Where a projection is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// By its projector, after the command commits (eventual consistency).
    #[default]
    Async,
    /// Inside the command's transaction (strong consistency; same database only).
    Inline,
    /// By nobody in the background: a read folds the stored row and the
    /// stream's events after it, so it never lags (only views whose rows
    /// fold from one stream or two: see [`View::can_be_lazy`]). Snapshots
    /// (rows folded and stored) keep those folds short.
    Lazy,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Async, Mode::Inline, Mode::Lazy];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Inline => "inline",
            Self::Lazy => "lazy",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

/// What an operator did with a dead letter (stored as
/// `entity::read::dead_letter::Resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The projection was set to apply the event again.
    Retried,
    /// The projection moved past the event, which stays unapplied.
    Skipped,
}

impl Resolution {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retried => "retried",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a poison event (one whose apply fails deterministically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PoisonPolicy {
    /// Dead-letter it and stop this projection until an operator intervenes.
    #[default]
    Stop,
    /// Dead-letter it and go on with the next event.
    Skip,
}

/// A projection's status. All but `Stalled` are stored in its checkpoint
/// row; `Stalled` is never stored: it is derived, whenever it is asked, from
/// facts (behind the log, no progress for `--stall-after-ms`), see
/// `crate::notice::progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    /// The runner's last attempts failed (database unreachable…); it keeps retrying with back-off.
    Retrying,
    /// A poison event under the `stop` policy: an operator must retry or skip it.
    Stopped,
    Rebuilding,
    /// The runner met an event written by a newer release and stood down;
    /// a newer instance takes the projection over.
    Outdated,
    /// Behind the log with no progress for `--stall-after-ms`: something
    /// stands in the way, named by its [`WaitKind`]. Derived, never stored.
    Stalled,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Running, Status::Retrying, Status::Stopped, Status::Rebuilding, Status::Outdated, Status::Stalled];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Stopped => "stopped",
            Self::Rebuilding => "rebuilding",
            Self::Outdated => "outdated",
            Self::Stalled => "stalled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the projection is keeping up by itself (`/readyz` is not degraded by it).
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Running | Self::Rebuilding)
    }
}

/// What a stalled projection waits on (see `crate::notice::progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A lock held by another database session (PostgreSQL: its backends
    /// are named, with `pg_blocking_pids`/`pg_locks`).
    Lock,
    /// The SQLite write lock, held by another connection or process.
    SqliteWriteLock,
    /// The horizon: an open event writer's transaction that began before
    /// events that committed after it (PostgreSQL).
    Horizon,
    /// This process's SQLite writer slot, held by another task.
    WriterSlot,
    /// The database cannot be reached (or gives no connection in time).
    DatabaseOutage,
    /// The runner fails with another error (see `lastError`), and retries.
    Failing,
    /// No instance runs the projection: no heartbeat from a runner (every
    /// instance runs `--role api`, or the leader died and nobody took over).
    NoRunner,
    /// The runner is alive and leads, but reports no cause.
    Unknown,
}

impl WaitKind {
    pub const ALL: [WaitKind; 8] = [
        WaitKind::Lock,
        WaitKind::SqliteWriteLock,
        WaitKind::Horizon,
        WaitKind::WriterSlot,
        WaitKind::DatabaseOutage,
        WaitKind::Failing,
        WaitKind::NoRunner,
        WaitKind::Unknown,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::SqliteWriteLock => "sqlite_write_lock",
            Self::Horizon => "horizon",
            Self::WriterSlot => "writer_slot",
            Self::DatabaseOutage => "database_outage",
            Self::Failing => "failing",
            Self::NoRunner => "no_runner",
            Self::Unknown => "unknown",
        }
    }
}

/// What a `serve` process does, so API and projector instances scale apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Serve the API and run the projections.
    #[default]
    All,
    /// Serve the API only (projections run elsewhere).
    Api,
    /// Run the projections only (plus /healthz, /readyz and /metrics); also
    /// the exporter, when `--nats-url` is set.
    Projector,
    /// Run the exporter only (plus /healthz, /readyz and /metrics); needs `--nats-url`.
    Exporter,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }
    pub fn runs_projections(self) -> bool {
        matches!(self, Self::All | Self::Projector)
    }
    /// Whether the process runs the exporter (when one is configured).
    pub fn runs_exporter(self) -> bool {
        matches!(self, Self::All | Self::Projector | Self::Exporter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in View::ALL {
            assert_eq!(View::parse(v.name()), Some(v));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Mode::parse("inline"), Some(Mode::Inline));
        assert_eq!(View::parse("nope"), None);
        assert_eq!(View::parse(EXPORTER), None, "the exporter is not a view");
        assert!(consumer_names().contains(&EXPORTER));
    }

    #[test]
    fn segment_names_round_trip_and_one_segment_is_the_view() {
        assert_eq!(segment_name("order_summary", 0, 1), "order_summary");
        assert_eq!(segment_name("order_summary", 2, 4), "order_summary#2/4");
        assert_eq!(parse_segment("order_summary#2/4"), Some(("order_summary", 2, 4)));
        assert_eq!(parse_segment("order_summary"), None);
        assert_eq!(parse_segment("order_summary#4/4"), None);
        assert_eq!(view_of("customer_view#0/2"), "customer_view");
        assert_eq!(view_of("daily_sales"), "daily_sales");
    }

    #[test]
    fn segments_are_bounded_and_refused_for_aggregates() {
        assert_eq!(parse_segments("order_summary=4"), Ok(("order_summary".into(), 4)));
        assert_eq!(parse_segments("daily_sales=1"), Ok(("daily_sales".into(), 1)));
        for bad in ["order_summary=0", "order_summary=65", "order_summary=x", "nope=2", "order_summary"] {
            assert!(parse_segments(bad).is_err(), "{bad}");
        }
        for aggregate in ["daily_sales=2", "product_catalog=4"] {
            let e = parse_segments(aggregate).unwrap_err();
            assert!(e.contains("cannot be split") && e.contains("skipped"), "{e}");
        }
    }
}
