//! Read replicas: PostgreSQL hot standbys of the read database that serve
//! queries, their health, and which of them are in rotation.
//!
//! Its vocabulary (positions, settings, states) is in `replica/state.rs`
//! and one health measure in `replica/measure.rs`; the rest is one thing,
//! the replica set's state. Routing,
//! health, read-your-writes and rejoining all read and change the same
//! rotation under one lock, and each rule below holds only with the others
//! (a replica rejoins only when it holds what waits were promised; a wait
//! joins only replicas in rotation), so they are kept where they can be
//! read together.
//!
//! - **Routing.** [`ReadConn`] is the query side's connection: each
//!   statement goes to the next replica in rotation (round robin), or to the
//!   primary when none is. A statement a replica fails is run again on the
//!   primary at once, and a replica that cannot be reached leaves rotation:
//!   a stopped standby costs its clients no error.
//! - **Health.** [`ReplicaSet::run`] measures every replica each
//!   `check_interval`: reachable, still in recovery (a promoted replica leaves
//!   rotation with an error line), and its lag: how old the oldest write it
//!   lacks may be, from its own copy of the checkpoint rows against the
//!   primary's at recent checks (or the age of its last replayed commit,
//!   `pg_last_xact_replay_timestamp()`, when it holds none of those). Past
//!   `max_lag` it leaves rotation.
//! - **Read-your-writes.** A replica holds a projection's batch once its own
//!   copy of the checkpoint row has reached the token (the projector commits
//!   view rows and checkpoint together, and a standby replays commits in
//!   order). [`ReplicaSet::wait_held`] waits until *every* replica in
//!   rotation holds a position, so whichever one serves the next read has
//!   it; no read is pinned. While waiters exist, one shared poll reads the
//!   replicas' checkpoint rows every few milliseconds; with none, only the
//!   health check reads them.
//! - **Rejoining.** Every position a wait reported held is remembered (per
//!   projection, the highest). A replica enters rotation only when it holds
//!   all of them, checked under the same lock as the waits' verdicts: a
//!   replica that joins after a client was told "visible" holds that write.
//!   Until then it is *joining*: new waits already wait for it too, so the
//!   positions it must reach stop moving and it gets there even under a
//!   steady stream of writes (each wait then takes its apply delay).
//!
//! Nothing here writes to a replica: its sessions are read-only
//! (`default_transaction_read_only`), and no migration or status write is
//! ever sent to one. Positions are `(tx_id, position)` pairs (a token's
//! parts; `db` knows no token type).
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database as SeaDatabase, DatabaseConnection, DbBackend, DbErr, ExecResult,
    QueryResult, Statement,
};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{classify, redact, ConnectError, Db, DbFailure, PoolOptions};

mod measure;
mod state;

use measure::{checkpoints, measure, Measure};
pub use state::{Position, ReplicaReport, ReplicaSettings, ReplicaState, REPLICA_APPLICATION};

/// How often the shared poll reads the replicas' checkpoints while someone waits.
const WAIT_POLL: Duration = Duration::from_millis(10);

struct Status {
    state: ReplicaState,
    lag: Option<f64>,
    /// Its own copy of the checkpoint rows (lower bounds: it only moves on).
    checkpoints: HashMap<String, Position>,
    last_error: Option<String>,
}

struct Inner {
    status: Vec<Status>,
    /// Per projection, the highest position a wait reported held.
    promised: HashMap<String, Position>,
    /// The primary's checkpoints at each recent health check (as of when
    /// its read began), oldest first, reaching back a little past `max_lag`.
    history: std::collections::VecDeque<(Instant, HashMap<String, Position>)>,
}

/// The replicas of one read database.
pub struct ReplicaSet {
    primary: DatabaseConnection,
    names: Vec<String>,
    conns: Vec<DatabaseConnection>,
    inner: Mutex<Inner>,
    next: AtomicUsize,
    waiters: AtomicUsize,
    waiter_arrived: Notify,
    /// Bumped when replica checkpoints or the rotation change.
    progress: watch::Sender<u64>,
    settings: ReplicaSettings,
}

impl ReplicaSet {
    /// Pools on `urls` (opened lazily: an unreachable replica does not stop
    /// the start, it stays out of rotation). `primary` is the read database.
    pub async fn connect(
        primary: &Db,
        urls: &[String],
        pool: PoolOptions,
        settings: ReplicaSettings,
    ) -> Result<Arc<Self>, ConnectError> {
        let mut conns = Vec::new();
        for url in urls {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                return Err(ConnectError::UnsupportedUrl(redact(url)));
            }
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(pool.max_connections)
                .min_connections(0)
                .connect_lazy(true)
                .connect_timeout(Duration::from_secs(2).min(pool.acquire_timeout.max(Duration::from_millis(200))))
                .acquire_timeout(pool.acquire_timeout)
                .test_before_acquire_if_idle_for(super::PING_IF_IDLE_FOR)
                .sqlx_logging(false);
            options.map_sqlx_postgres_opts(|o| {
                o.options([("default_transaction_read_only", "on")]).application_name(REPLICA_APPLICATION)
            });
            options.map_sqlx_postgres_pool_opts(|o| o.acquire_slow_level(log::LevelFilter::Off));
            let conn = SeaDatabase::connect(options)
                .await
                .map_err(|source| ConnectError::Pool { url: redact(url), source })?;
            conns.push(conn);
        }
        let status = urls
            .iter()
            .map(|_| Status { state: ReplicaState::Starting, lag: None, checkpoints: HashMap::new(), last_error: None })
            .collect();
        Ok(Arc::new(Self {
            primary: primary.conn.clone(),
            names: urls.iter().map(|u| redact(u)).collect(),
            conns,
            inner: Mutex::new(Inner { status, promised: HashMap::new(), history: Default::default() }),
            next: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            waiter_arrived: Notify::new(),
            progress: watch::channel(0).0,
            settings,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max_lag(&self) -> Duration {
        self.settings.max_lag
    }

    pub fn check_interval(&self) -> Duration {
        self.settings.check_interval
    }

    /// A signal that changes whenever a replica's state or checkpoints
    /// change (what [`Self::wait_held`] waits on), for whoever watches the
    /// rotation: a test waiting for a replica to enter or leave it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Each replica's state and lag.
    pub fn report(&self) -> Vec<ReplicaReport> {
        let inner = self.lock();
        self.names
            .iter()
            .zip(&inner.status)
            .map(|(name, s)| ReplicaReport {
                name: name.clone(),
                state: s.state,
                lag_seconds: s.lag,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// The next replica in rotation (round robin), or `None`: use the primary.
    fn choose(&self) -> Option<usize> {
        let inner = self.lock();
        let members: Vec<usize> =
            (0..inner.status.len()).filter(|i| inner.status[*i].state == ReplicaState::InRotation).collect();
        if members.is_empty() {
            return None;
        }
        Some(members[self.next.fetch_add(1, Ordering::Relaxed) % members.len()])
    }

    /// Takes replica `i` out of rotation after a failed statement or check.
    fn leave(&self, i: usize, state: ReplicaState, error: String) {
        let mut inner = self.lock();
        let status = &mut inner.status[i];
        let was = status.state;
        status.state = state;
        status.last_error = Some(error.clone());
        drop(inner);
        if was != state {
            match state {
                ReplicaState::Promoted => tracing::error!(
                    replica = %self.names[i],
                    "read replica is no longer in recovery (it was promoted): out of rotation; queries go to the primary and the other replicas"
                ),
                _ => {
                    tracing::warn!(replica = %self.names[i], state = state.as_str(), error = %error, "read replica out of rotation")
                }
            }
            crate::metrics::replica_state(&self.names[i], false, None);
            self.progress.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether every replica in rotation holds `at` in each of
    /// `projections`; if so, remembers it (a rejoining replica must hold it).
    pub fn held(&self, projections: &[&str], at: Position) -> bool {
        let mut inner = self.lock();
        let holds = inner
            .status
            .iter()
            .filter(|s| s.state.awaited())
            .all(|s| projections.iter().all(|p| s.checkpoints.get(*p).is_some_and(|c| *c >= at)));
        if holds {
            for p in projections {
                let promised = inner.promised.entry((*p).to_owned()).or_insert((0, 0));
                *promised = (*promised).max(at);
            }
        }
        holds
    }

    /// Waits up to `wait` until every replica in rotation holds `at` in each
    /// of `projections` (true), or not (false). A replica that falls too far
    /// behind leaves rotation, which ends the wait too.
    pub async fn wait_held(&self, projections: &[&str], at: Position, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut progress = self.progress.subscribe();
        let _waiting = Waiting::new(self);
        loop {
            progress.borrow_and_update();
            if self.held(projections, at) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = progress.changed() => {}
            }
        }
    }

    /// Measures health and moves replicas in and out of rotation every
    /// `check_interval`; reads the replicas' checkpoints every few
    /// milliseconds while waits are open. Until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_check = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_check {
                self.check().await;
                next_check = tokio::time::Instant::now() + self.settings.check_interval;
            }
            let arrived = self.waiter_arrived.notified();
            if self.waiters.load(Ordering::Acquire) > 0 {
                self.poll_for_waiters().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(WAIT_POLL) => {}
                }
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(next_check) => {}
                    _ = arrived => {}
                }
            }
        }
    }

    /// The replicas in rotation: their checkpoint rows, for the waits.
    async fn poll_for_waiters(&self) {
        let members: Vec<usize> = {
            let inner = self.lock();
            (0..inner.status.len()).filter(|i| inner.status[*i].state.awaited()).collect()
        };
        let reads = members.iter().map(|i| checkpoints(&self.conns[*i]));
        let results = futures_util::future::join_all(reads).await;
        let mut moved = false;
        for (i, result) in members.into_iter().zip(results) {
            match result {
                Ok(rows) => {
                    let mut inner = self.lock();
                    let status = &mut inner.status[i];
                    for (name, at) in rows {
                        let known = status.checkpoints.entry(name).or_insert((0, 0));
                        if at > *known {
                            *known = at;
                            moved = true;
                        }
                    }
                }
                Err(e) => self.leave(i, unreachable_or_lagging(&e), e.to_string()),
            }
        }
        if moved {
            self.progress.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// One health measure of every replica.
    async fn check(&self) {
        // The primary first: a replica read after it that holds as much holds
        // everything committed before this moment.
        let asked = Instant::now();
        match checkpoints(&self.primary).await {
            Ok(rows) => {
                let keep = self.settings.max_lag + self.settings.check_interval * 4;
                let mut inner = self.lock();
                inner.history.push_back((asked, rows));
                while inner.history.front().is_some_and(|(at, _)| asked.duration_since(*at) > keep) {
                    inner.history.pop_front();
                }
            }
            Err(e) => tracing::debug!(error = %e, "the primary's checkpoints could not be read for the replica lag"),
        }
        let measures = self.conns.iter().map(measure);
        let measures = futures_util::future::join_all(measures).await;
        for (i, measure) in measures.into_iter().enumerate() {
            match measure {
                Err(e) => self.leave(i, ReplicaState::Unreachable, e.to_string()),
                Ok(m) if !m.in_recovery => self.leave(i, ReplicaState::Promoted, "not in recovery (promoted)".into()),
                Ok(m) => self.judge(i, m),
            }
        }
    }

    /// A reachable standby's lag, and whether it is (or enters) rotation.
    ///
    /// Its lag is how old the oldest write it lacks may be: the time since
    /// the newest health check whose primary checkpoints it holds (zero when
    /// it holds this check's). When it holds none of those remembered, the
    /// age of its last replayed commit (`pg_last_xact_replay_timestamp()`),
    /// which is never less.
    fn judge(&self, i: usize, m: Measure) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Inner { status, promised, history } = &mut *inner;
        let status = &mut status[i];
        // Waits must hear of it, whichever read saw the advance first.
        let mut moved = false;
        for (name, at) in m.checkpoints {
            let known = status.checkpoints.entry(name).or_insert((0, 0));
            moved |= at > *known;
            *known = (*known).max(at);
        }
        let holds = |p: &HashMap<String, Position>| {
            p.iter().all(|(name, at)| status.checkpoints.get(name).is_some_and(|mine| mine >= at))
        };
        let newest_held = history.iter().rev().position(|(_, p)| holds(p));
        let lag = match (newest_held, history.front()) {
            (Some(0), _) => 0.0,
            (Some(k), _) => now.duration_since(history[history.len() - 1 - k].0).as_secs_f64(),
            (None, Some((oldest, _))) => {
                let at_least = now.duration_since(*oldest).as_secs_f64();
                m.replay_age.unwrap_or(at_least).max(at_least)
            }
            (None, None) => m.replay_age.unwrap_or(f64::INFINITY),
        };
        let holds_promises = holds(promised);
        status.lag = lag.is_finite().then_some(lag);
        let was = status.state;
        let too_far = lag > self.settings.max_lag.as_secs_f64();
        let state = match (too_far, was, holds_promises) {
            (true, _, _) => ReplicaState::Lagging,
            // In rotation, it holds every promise (none is made without it).
            (false, ReplicaState::InRotation, _) | (false, _, true) => ReplicaState::InRotation,
            (false, _, false) => ReplicaState::Joining,
        };
        status.state = state;
        if state == ReplicaState::InRotation {
            status.last_error = None;
        } else if too_far {
            status.last_error = Some(format!("{lag:.1} s behind the primary"));
        }
        drop(inner);
        crate::metrics::replica_state(&self.names[i], state == ReplicaState::InRotation, status_lag(lag));
        if was != state {
            match state {
                ReplicaState::InRotation => {
                    tracing::info!(replica = %self.names[i], lag_seconds = lag, "read replica in rotation")
                }
                _ if was == ReplicaState::InRotation => tracing::warn!(
                    replica = %self.names[i], lag_seconds = lag, max_lag_ms = self.settings.max_lag.as_millis() as u64,
                    "read replica too far behind: out of rotation until it catches up"
                ),
                _ => {}
            }
        }
        if was != state || moved {
            self.progress.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

fn status_lag(lag: f64) -> Option<f64> {
    lag.is_finite().then_some(lag)
}

fn unreachable_or_lagging(e: &DbErr) -> ReplicaState {
    match classify(e) {
        DbFailure::Contention => ReplicaState::Lagging,
        _ => ReplicaState::Unreachable,
    }
}

/// Counts an open wait while it lives (the shared poll runs while any does).
struct Waiting<'a>(&'a ReplicaSet);

impl<'a> Waiting<'a> {
    fn new(set: &'a ReplicaSet) -> Self {
        set.waiters.fetch_add(1, Ordering::AcqRel);
        set.waiter_arrived.notify_one();
        Self(set)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The query side's connection: a replica in rotation per statement, or the
/// primary (see the module docs). Without replicas, just the primary.
#[derive(Clone)]
pub struct ReadConn {
    primary: DatabaseConnection,
    replicas: Option<Arc<ReplicaSet>>,
}

impl ReadConn {
    pub fn new(primary: DatabaseConnection, replicas: Option<Arc<ReplicaSet>>) -> Self {
        Self { primary, replicas }
    }

    pub fn replicas(&self) -> Option<&Arc<ReplicaSet>> {
        self.replicas.as_ref()
    }

    /// The replica the next statement goes to, if any is in rotation.
    fn pick(&self) -> Option<(&ReplicaSet, usize)> {
        let set = self.replicas.as_deref()?;
        set.choose().map(|i| (set, i))
    }
}

impl ReplicaSet {
    /// Replica `i` failed a statement, which now runs on the primary. A
    /// recovery conflict is the statement's bad luck; anything else takes
    /// the replica out of rotation until its next good health check.
    fn failed(&self, i: usize, e: &DbErr) {
        if classify(e) != DbFailure::Contention {
            self.leave(i, ReplicaState::Unreachable, e.to_string());
        }
        tracing::debug!(replica = %self.names[i], error = %e, "a replica failed a statement: run on the primary");
    }
}

/// Runs `$call` on the chosen replica, or on the primary when there is
/// none or it failed.
macro_rules! routed {
    ($read:expr, |$conn:ident| $call:expr) => {{
        if let Some((set, i)) = $read.pick() {
            let $conn = &set.conns[i];
            match $call.await {
                Ok(answer) => return Ok(answer),
                Err(e) => set.failed(i, &e),
            }
        }
        let $conn = &$read.primary;
        $call.await
    }};
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'a>>;

/// By hand rather than with `#[async_trait]`: the same signatures it expands to.
impl ConnectionTrait for ReadConn {
    fn get_database_backend(&self) -> DbBackend {
        self.primary.get_database_backend()
    }

    fn execute_raw<'a, 'b>(&'a self, stmt: Statement) -> Answer<'b, ExecResult>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { routed!(self, |c| c.execute_raw(stmt.clone())) })
    }

    fn execute_unprepared<'a, 'b, 'c>(&'a self, sql: &'b str) -> Answer<'c, ExecResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move { routed!(self, |c| c.execute_unprepared(sql)) })
    }

    fn query_one_raw<'a, 'b>(&'a self, stmt: Statement) -> Answer<'b, Option<QueryResult>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { routed!(self, |c| c.query_one_raw(stmt.clone())) })
    }

    fn query_all_raw<'a, 'b>(&'a self, stmt: Statement) -> Answer<'b, Vec<QueryResult>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { routed!(self, |c| c.query_all_raw(stmt.clone())) })
    }

    fn support_returning(&self) -> bool {
        self.primary.support_returning()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas that are never connected to (the pools are lazy).
    async fn set() -> Arc<ReplicaSet> {
        let primary = Db {
            conn: SeaDatabase::connect("sqlite::memory:").await.expect("sqlite"),
            url: "sqlite::memory:".into(),
            sqlite_writer: None,
            slot_deadline: Duration::from_secs(1),
        };
        let urls = ["postgres://u:secret@127.0.0.1:1/a".to_owned(), "postgres://u@127.0.0.1:1/b".to_owned()];
        let settings = ReplicaSettings { max_lag: Duration::from_secs(5), check_interval: Duration::from_millis(250) };
        ReplicaSet::connect(&primary, &urls, PoolOptions::new(1, Duration::from_millis(100)), settings).await.unwrap()
    }

    fn measure(checkpoints: &[(&str, Position)]) -> Measure {
        Measure {
            in_recovery: true,
            replay_age: Some(0.1),
            checkpoints: checkpoints.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(),
        }
    }

    fn primary_was(set: &ReplicaSet, ago: Duration, checkpoints: &[(&str, Position)]) {
        let at = Instant::now() - ago;
        set.lock().history.push_back((at, checkpoints.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()));
    }

    #[tokio::test]
    async fn with_no_replica_in_rotation_a_wait_is_held_by_the_primary_and_remembered() {
        let set = set().await;
        assert!(set.held(&["order_summary"], (7, 1)));
        assert_eq!(set.choose(), None, "reads go to the primary");
        assert_eq!(set.lock().promised.get("order_summary"), Some(&(7, 1)));
        let names: Vec<String> = set.report().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["postgres://u:***@127.0.0.1:1/a", "postgres://u@127.0.0.1:1/b"], "passwords redacted");
    }

    #[tokio::test]
    async fn a_replica_joins_only_once_it_holds_every_write_a_wait_reported_visible() {
        let set = set().await;
        primary_was(&set, Duration::ZERO, &[("order_summary", (9, 0))]);
        assert!(set.held(&["order_summary"], (9, 0)), "no replica yet: the primary holds it");
        // Healthy but behind the promise: joining, waited for, not read from.
        set.judge(0, measure(&[("order_summary", (8, 0))]));
        assert_eq!(set.report()[0].state, ReplicaState::Joining);
        assert_eq!(set.choose(), None);
        assert!(!set.held(&["order_summary"], (9, 0)), "new waits wait for the joining replica");
        // Caught up: in rotation, and waits need it to hold their writes.
        set.judge(0, measure(&[("order_summary", (9, 0))]));
        assert_eq!(set.report()[0].state, ReplicaState::InRotation);
        assert_eq!(set.choose(), Some(0));
        assert!(set.held(&["order_summary"], (9, 0)));
        assert!(!set.held(&["order_summary"], (10, 0)));
    }

    #[tokio::test]
    async fn lag_is_the_age_of_the_newest_primary_state_a_replica_holds() {
        let set = set().await;
        primary_was(&set, Duration::from_millis(3_000), &[("p", (1, 0))]);
        primary_was(&set, Duration::from_millis(1_000), &[("p", (2, 0))]);
        primary_was(&set, Duration::ZERO, &[("p", (3, 0))]);
        set.judge(0, measure(&[("p", (2, 0))]));
        let lag = set.report()[0].lag_seconds.expect("measured");
        assert!((0.9..1.5).contains(&lag), "{lag}");
        assert_eq!(set.report()[0].state, ReplicaState::InRotation);
        set.judge(1, measure(&[("p", (3, 0))]));
        assert_eq!(set.report()[1].lag_seconds, Some(0.0));
    }

    #[tokio::test]
    async fn a_wait_wakes_when_the_health_check_is_the_read_that_sees_the_advance() {
        let set = set().await;
        primary_was(&set, Duration::ZERO, &[("p", (1, 0))]);
        set.judge(0, measure(&[("p", (1, 0))]));
        set.judge(1, measure(&[("p", (1, 0))]));
        let waiting = tokio::spawn({
            let set = set.clone();
            async move { set.wait_held(&["p"], (2, 0), Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        set.judge(0, measure(&[("p", (2, 0))]));
        set.judge(1, measure(&[("p", (2, 0))]));
        let held = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(held, Ok(Ok(true))), "the wait heard of the advance: {held:?}");
    }

    #[tokio::test]
    async fn a_replica_further_behind_than_max_lag_leaves_rotation_and_a_promoted_one_too() {
        let set = set().await;
        primary_was(&set, Duration::from_millis(6_000), &[("p", (1, 0))]);
        primary_was(&set, Duration::ZERO, &[("p", (5, 0))]);
        set.judge(0, measure(&[("p", (1, 0))]));
        assert_eq!(set.report()[0].state, ReplicaState::Lagging);
        set.judge(1, measure(&[("p", (5, 0))]));
        assert_eq!(set.choose(), Some(1));
        set.leave(1, ReplicaState::Promoted, "not in recovery (promoted)".into());
        assert_eq!(set.choose(), None);
        assert!(set.held(&["p"], (99, 0)), "no replica left to wait for");
    }
}
