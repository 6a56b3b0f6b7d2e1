//! Reads that fold: the one place the query side reads the event log.
//!
//! Two of the design's variants read a view's stored row and fold, in
//! memory, the events it has not applied yet, with the projection's own
//! fold (`crate::projection::order_summary::fold` and its twins), never a
//! second implementation of the view:
//!
//! - **lazy views** (`--projection-mode order_activity=lazy`): nothing
//!   keeps them current in the background; a read folds the stored row (the
//!   snapshot) and the stream's events after it, up to the log's head, so a
//!   lazy view never lags;
//! - **reads at the token**: an eager view behind a query's
//!   `consistentWith` answers a single-key field without waiting, from the
//!   stored row and the stream's events up to the token.
//!
//! Every fold reads the log by its stream index (the events of one stream
//! after a version), never by scanning it. A customer's counters are the
//! exception: they fold from the orders of the customer, which no index of
//! the log finds, so a read at the token reads the log's range between the
//! view's checkpoint and the token (bounded by [`MAX_FOLD`]) and keeps the
//! customer's events.
//!
//! A fold is bounded: past [`MAX_FOLD`] events or [`FOLD_WAIT`], or
//! (PostgreSQL) while a transaction that could still append before the
//! token stays open past [`SETTLE_WAIT`], it gives up and the caller waits
//! for the view instead.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use entity::read::{customer_view, order_activity, order_summary};

use crate::catalog::View;
use crate::db::Db;
use crate::domain::event::RecordedEvent;
use crate::projection::reader::{self, Beside, ReadEvent};
use crate::token::LogPosition;

/// The most events one read folds; past it the read waits for the view.
pub const MAX_FOLD: u64 = 5_000;

/// The longest a fold may take (its reads may meet a lock a session holds
/// on a view); past it the read waits for the view, which says what
/// stands in the way.
pub const FOLD_WAIT: Duration = Duration::from_secs(1);

/// How long a read at the token waits for the event writers below its
/// token to end (commands in flight, a few milliseconds each) before it
/// gives up folding and waits for the view, which would have to wait for
/// them too, and then for a projector batch.
/// Polled (another process's transactions are seen only by asking), with a
/// pause doubling from 1 ms to 32 ms, cut short by a commit heard of
/// ([`Folder::with_commits`]) at most [`SETTLE_WAKES`] times.
pub const SETTLE_WAIT: Duration = Duration::from_millis(250);

/// How many times commits may wake one read at the token before it looks
/// only when its pause runs out: under a high write rate they come every
/// millisecond, most of them above its token, and each wake is a look.
pub const SETTLE_WAKES: u32 = 16;

/// How far a read folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upto {
    /// Every committed event (a lazy view).
    Head,
    /// The events at or before a token (a read at the token).
    Token(LogPosition),
}

impl Upto {
    fn position(self) -> Option<LogPosition> {
        match self {
            Self::Head => None,
            Self::Token(token) => Some(token),
        }
    }
}

/// A folded answer, and what it cost.
#[derive(Debug, Clone)]
pub struct Folded<T> {
    pub value: T,
    /// Events folded onto the stored rows.
    pub events: usize,
    pub elapsed: Duration,
}

/// Why a fold gave up.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Database(#[from] DbErr),
    /// More than [`MAX_FOLD`] events to fold: wait for the view instead.
    #[error("more than {MAX_FOLD} events to fold")]
    TooFar,
    /// No committed event has the token's position (a token from the
    /// future, or from another database): nothing to fold to.
    #[error("no committed event is at the token")]
    UnknownToken,
    /// A transaction that could still append an event before the token is
    /// open (PostgreSQL): the view's answer at the token is not settled yet.
    #[error("an event writer below the token has not finished")]
    NotSettled,
    /// An event that cannot be decoded or applied: the view's runner
    /// dead-letters it; the read waits to hear so.
    #[error("event at position {position} cannot be folded: {reason}")]
    Poison { position: i64, reason: String },
    /// The fold took longer than [`FOLD_WAIT`] (a lock on the view?).
    #[error("the fold took longer than {} ms", FOLD_WAIT.as_millis())]
    TimedOut,
}

/// `fold`, within [`FOLD_WAIT`].
async fn bounded<T>(fold: impl std::future::Future<Output = Result<T, FoldError>>) -> Result<T, FoldError> {
    tokio::time::timeout(FOLD_WAIT, fold).await.unwrap_or(Err(FoldError::TimedOut))
}

pub use crate::projection::snapshotter::{HotKey, SnapshotWish};

/// When a key's fold is long enough to be worth a snapshot of that key
/// (Axon's load-time trigger, per key): the folder tells the snapshotter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotThreshold {
    pub events: usize,
    pub elapsed: Duration,
}

/// The pauses between a settle wait's looks: from `first`, doubling up to `most`.
#[derive(Debug, Clone, Copy)]
struct Pauses {
    first: Duration,
    most: Duration,
}

/// [`Folder::when_settled`]'s loop: looks until `look` finds every writer
/// below the token ended, pausing between looks (doubling), until
/// `deadline`. A commit heard of on `commits` ends a pause early, at most
/// [`SETTLE_WAKES`] times; after that, or once `commits` closes, only the
/// pauses end.
async fn look_until_settled<T, Fut>(
    deadline: Instant,
    pauses: Pauses,
    mut commits: Option<watch::Receiver<LogPosition>>,
    mut look: impl FnMut() -> Fut,
) -> Result<T, FoldError>
where
    Fut: std::future::Future<Output = Result<Look<T>, FoldError>>,
{
    let mut pause = pauses.first;
    let mut wakes = 0;
    loop {
        // Seen before the look: a commit during it ends the pause after it.
        if let Some(commits) = commits.as_mut() {
            commits.borrow_and_update();
        }
        let Look { exists, settled, value } = look().await?;
        if !exists {
            return Err(FoldError::UnknownToken);
        }
        if settled {
            return Ok(value);
        }
        metrics::counter!(crate::metrics::FOLD_SETTLE_WAITS).increment(1);
        if Instant::now() + pause > deadline {
            return Err(FoldError::NotSettled);
        }
        let woken = match commits.as_mut() {
            Some(heard) => match tokio::time::timeout(pause, heard.changed()).await {
                Ok(Ok(())) => true,
                Ok(Err(_closed)) => {
                    commits = None;
                    tokio::time::sleep(pause).await;
                    false
                }
                Err(_elapsed) => false,
            },
            None => {
                tokio::time::sleep(pause).await;
                false
            }
        };
        if woken {
            wakes += 1;
            if wakes == SETTLE_WAKES {
                commits = None;
            }
        } else {
            pause = (pause * 2).min(pauses.most);
        }
    }
}

/// Reads that fold: the log, the views, and where to report hot keys.
#[derive(Clone)]
pub struct Folder {
    log: Db,
    views: Db,
    hot: Option<(mpsc::Sender<SnapshotWish>, HotThreshold)>,
    settle_wait: Duration,
    /// Every commit heard of (see [`Folder::with_commits`]).
    commits: Option<watch::Receiver<LogPosition>>,
}

impl Folder {
    pub fn new(log: Db, views: Db) -> Self {
        Self { log, views, hot: None, settle_wait: SETTLE_WAIT, commits: None }
    }

    /// Wakes a read waiting for the writers below its token on every commit
    /// heard of (`notice::commit_heard`: this process's commands, and
    /// on PostgreSQL the other instances' by NOTIFY), not only when its
    /// doubling pause runs out: the writer it waits for is a command a few
    /// milliseconds from its commit, and the pause overshot it by as much.
    /// A writer that rolls back, or one whose notice was lost, is still
    /// found by the pause.
    pub fn with_commits(mut self, commits: watch::Receiver<LogPosition>) -> Self {
        self.commits = Some(commits);
        self
    }

    /// How long a read at the token waits for the event writers below its
    /// token to end before it gives up folding ([`SETTLE_WAIT`] unless set;
    /// within [`FOLD_WAIT`] in any case).
    pub fn with_settle_wait(mut self, wait: Duration) -> Self {
        self.settle_wait = wait;
        self
    }

    /// Reports keys whose fold passed `threshold` on `hot` (a full channel
    /// drops them: a snapshot every N events or T seconds comes anyway).
    pub fn with_hot_keys(mut self, hot: mpsc::Sender<SnapshotWish>, threshold: HotThreshold) -> Self {
        self.hot = Some((hot, threshold));
        self
    }

    /// Looks at the log at a token until every writer below it has ended:
    /// `look` reads what the fold needs with the token's presence and the
    /// settle check beside it. A token not in the log is an error. While a
    /// writer below the token is still open (another transaction, seen
    /// only by asking the database) it looks again after a short pause,
    /// doubling, until the settle wait (the caller then waits for the view
    /// instead). A commit heard of cuts the pause short. Each look is the
    /// whole read, so a read that met a writer is one more round trip per
    /// look, not a check and then the read.
    ///
    /// Only the log's reads depend on the check: a view's stored row may be
    /// read beside it, at any moment, since a fold only adds to a stored row
    /// the events it has not applied (by version), and a row is never older
    /// than the view's checkpoint the caller passed.
    async fn when_settled<T, Fut>(&self, look: impl FnMut() -> Fut) -> Result<T, FoldError>
    where
        Fut: std::future::Future<Output = Result<Look<T>, FoldError>>,
    {
        let pauses = Pauses { first: Duration::from_millis(1), most: Duration::from_millis(32) };
        look_until_settled(Instant::now() + self.settle_wait, pauses, self.commits.clone(), look).await
    }

    /// Every event of an order's stream up to `upto`, from its first: an
    /// order's stream is at most two events (placed, then cancelled or
    /// shipped), so the read needs no stored version and goes beside the
    /// stored row's read; the caller keeps the events the row has not
    /// applied. At a token, the settle check rides in the same statement
    /// ([`reader::read_stream_at`]: one snapshot, so the events it returns
    /// are all of them once it says the writers below have ended), and so
    /// do the placing customer's events since the order read it when
    /// `beside` asks (`Some` of them when they came): a read at the token
    /// is then one round trip, this beside the stored row, where it was
    /// three in turn.
    async fn order_stream(&self, id: Uuid, upto: Upto, beside: Beside) -> Result<OrderStream, FoldError> {
        let Upto::Token(token) = upto else { return Ok((self.stream(id, 0, upto).await?, None)) };
        let read = self
            .when_settled(|| async {
                let read = reader::read_stream_at(&self.log.conn, id, beside, token, MAX_FOLD + 1).await?;
                Ok(Look { exists: read.exists, settled: read.settled, value: read })
            })
            .await?;
        Ok((decoded(read.events)?, read.beside.map(decoded).transpose()?))
    }

    async fn stream(&self, id: Uuid, after_version: i64, upto: Upto) -> Result<Vec<RecordedEvent>, FoldError> {
        let read = reader::read_stream(&self.log.conn, id, after_version, upto.position(), MAX_FOLD + 1).await?;
        decoded(read)
    }

    /// The trace context of the command whose last event is at `token`
    /// (a span answering about that write links to it).
    pub async fn traceparent_at(&self, token: LogPosition) -> Result<Option<String>, DbErr> {
        Ok(reader::meta_at(&self.log.conn, token).await?.and_then(|meta| meta.traceparent))
    }

    /// Asks for a lazy view's snapshot up to `token` (a list read waits for it).
    pub fn wish(&self, view: View, token: LogPosition) {
        if let Some((hot, _)) = &self.hot {
            // A full queue drops it: the waiter's deadline still holds.
            let _dropped = hot.try_send(SnapshotWish::Upto(view, token));
        }
    }

    fn report(&self, view: View, key: Uuid, events: usize, elapsed: Duration) {
        if let Some((hot, threshold)) = &self.hot {
            if events > threshold.events || elapsed > threshold.elapsed {
                // A full queue drops it: the next snapshot comes anyway.
                let _dropped = hot.try_send(SnapshotWish::Key(HotKey { view, key }));
            }
        }
    }

    /// An order's summary at `upto`: its stored row, the order's events
    /// after the row's version, and its customer's renames after the row's
    /// customer version, folded by the view's own code.
    pub async fn order(&self, id: Uuid, upto: Upto) -> Result<Folded<Option<order_summary::Model>>, FoldError> {
        bounded(self.fold_order(id, upto)).await
    }

    async fn fold_order(&self, id: Uuid, upto: Upto) -> Result<Folded<Option<order_summary::Model>>, FoldError> {
        let started = Instant::now();
        // The stored row is read beside the order's events (see
        // [`Folder::order_stream`] for why that is sound).
        let (order_events, stored) = tokio::join!(
            self.order_stream(id, upto, Beside::PlacingCustomer),
            order_summary::Entity::find_by_id(id).one(&self.views.conn)
        );
        let mut rows: HashMap<Uuid, order_summary::Model> = HashMap::new();
        if let Some(stored) = stored? {
            rows.insert(id, stored);
        }
        let after = rows.get(&id).map_or(0, |row| row.version);
        let (mut order_events, placing_customer) = order_events?;
        order_events.retain(|e| e.stream_version > after);
        for e in &order_events {
            crate::projection::order_summary::fold(&mut rows, e).map_err(poison)?;
        }
        let mut events = order_events.len();
        if let Some((customer, since)) = rows.get(&id).map(|row| (row.customer_id, row.customer_version)) {
            let mut customer_events = match placing_customer {
                Some(read) if read.iter().all(|e| e.stream_id == customer) => read,
                _ => self.stream(customer, since, upto).await?,
            };
            // (The read beside may hold renames the stored row has applied.)
            customer_events.retain(|e| e.stream_version > since);
            events += customer_events.len();
            for e in &customer_events {
                crate::projection::order_summary::fold_rename(&mut rows, e);
            }
        }
        let mut row = rows.remove(&id);
        if let Some(row) = row.as_mut() {
            crate::projection::order_summary::index(row);
        }
        let elapsed = started.elapsed();
        if upto == Upto::Head {
            self.report(View::OrderSummary, id, events, elapsed);
        }
        Ok(Folded { value: row, events, elapsed })
    }

    /// An order's timeline at `upto`: its stored rows, and a row for each
    /// of the order's events after the last stored one.
    pub async fn activity(&self, order_id: Uuid, upto: Upto) -> Result<Folded<Vec<order_activity::Model>>, FoldError> {
        bounded(self.fold_activity(order_id, upto)).await
    }

    async fn fold_activity(&self, order_id: Uuid, upto: Upto) -> Result<Folded<Vec<order_activity::Model>>, FoldError> {
        let started = Instant::now();
        let stored = order_activity::Entity::find()
            .filter(order_activity::Column::OrderId.eq(order_id))
            .order_by_asc(order_activity::Column::StreamVersion)
            .all(&self.views.conn);
        // Beside the stored rows, as for a summary ([`Folder::order_stream`]).
        let (events, stored) = tokio::join!(self.order_stream(order_id, upto, Beside::Nothing), stored);
        let mut rows = stored?;
        if let Upto::Token(token) = upto {
            rows.retain(|row| LogPosition::new(row.tx_id, row.position) <= token);
        }
        let after = rows.iter().map(|row| row.stream_version).max().unwrap_or(0);
        let (mut events, _) = events?;
        events.retain(|e| e.stream_version > after);
        rows.extend(events.iter().filter_map(crate::projection::order_activity::row_of));
        let elapsed = started.elapsed();
        if upto == Upto::Head {
            self.report(View::OrderActivity, order_id, events.len(), elapsed);
        }
        Ok(Folded { value: rows, events: events.len(), elapsed })
    }

    /// A customer's dashboard at `token`, for a `customer_view` whose
    /// checkpoint is `checkpoint` (before the token): the stored row and
    /// the log's events between the two that concern the customer.
    pub async fn customer(
        &self,
        id: Uuid,
        token: LogPosition,
        checkpoint: LogPosition,
    ) -> Result<Folded<Option<customer_view::Model>>, FoldError> {
        bounded(self.fold_customer(id, token, checkpoint)).await
    }

    async fn fold_customer(
        &self,
        id: Uuid,
        token: LogPosition,
        checkpoint: LogPosition,
    ) -> Result<Folded<Option<customer_view::Model>>, FoldError> {
        let started = Instant::now();
        // The stored row beside the log's range since the view's checkpoint,
        // read with the settle check in one statement ([`reader::read_range_at`]):
        // one round trip, where it was the check and then the range.
        let range = self.when_settled(|| async {
            let read = reader::read_range_at(&self.log.conn, checkpoint, token, MAX_FOLD + 1).await?;
            Ok(Look { exists: read.exists, settled: read.settled, value: read.events })
        });
        let (range, stored) = tokio::join!(range, customer_view::Entity::find_by_id(id).one(&self.views.conn));
        let mut row = stored?;
        let range = decoded(range?)?;
        let mut events = 0;
        for e in range.iter().filter(|e| e.stream_id == id || e.event.owner() == Some(id)) {
            crate::projection::customer_view::fold(&mut row, id, e).map_err(poison)?;
            events += 1;
        }
        Ok(Folded { value: row, events, elapsed: started.elapsed() })
    }
}

/// One look at the log at a token ([`Folder::when_settled`]): whether the
/// token's event is there, whether every writer below it had ended, and
/// what was read beside, in the same snapshot.
struct Look<T> {
    exists: bool,
    settled: bool,
    value: T,
}

/// An order's events, and its placing customer's when they were read beside
/// them ([`Folder::order_stream`]).
type OrderStream = (Vec<RecordedEvent>, Option<Vec<RecordedEvent>>);

/// The events of a read, or the first that cannot be decoded; past
/// [`MAX_FOLD`], [`FoldError::TooFar`].
fn decoded(read: Vec<ReadEvent>) -> Result<Vec<RecordedEvent>, FoldError> {
    if read.len() as u64 > MAX_FOLD {
        return Err(FoldError::TooFar);
    }
    read.into_iter().map(|e| e.map_err(|bad| FoldError::Poison { position: bad.position, reason: bad.error })).collect()
}

fn poison(e: crate::projection::ApplyError) -> FoldError {
    match e {
        crate::projection::ApplyError::Database(e) => FoldError::Database(e),
        crate::projection::ApplyError::Poison { position, reason } => FoldError::Poison { position, reason },
        crate::projection::ApplyError::Unavailable(reason) => FoldError::Poison { position: 0, reason },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A look that is unsettled until `settled` is set, counting looks.
    fn looking(
        settled: Arc<AtomicBool>,
        looks: Arc<AtomicU32>,
    ) -> impl FnMut() -> std::future::Ready<Result<Look<()>, FoldError>> {
        move || {
            looks.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Look { exists: true, settled: settled.load(Ordering::SeqCst), value: () }))
        }
    }

    /// A wait that never settles, with 20 ms pauses, given up after
    /// `deadline` (it must end `NotSettled`): how many looks it took.
    async fn looks_until_given_up(deadline: Duration, commits: watch::Receiver<LogPosition>) -> u32 {
        let (never, looks) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let pauses = Pauses { first: Duration::from_millis(20), most: Duration::from_millis(20) };
        let gave_up =
            look_until_settled(Instant::now() + deadline, pauses, Some(commits), looking(never, looks.clone())).await;
        assert!(matches!(gave_up, Err(FoldError::NotSettled)), "{gave_up:?}");
        looks.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_commit_heard_ends_the_pause_so_the_writer_below_is_seen_gone_at_once() {
        let (appended, commits) = watch::channel(LogPosition::START);
        let (settled, looks) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        // A pause of an hour: only the commit can end it within the test.
        let pauses = Pauses { first: Duration::from_secs(3600), most: Duration::from_secs(3600) };
        let wait = tokio::spawn(look_until_settled(
            Instant::now() + Duration::from_secs(7200),
            pauses,
            Some(commits),
            looking(settled.clone(), looks.clone()),
        ));
        while looks.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The writer below commits (its token is not the newest: still a wake).
        settled.store(true, Ordering::SeqCst);
        appended.send_modify(|_| {}); // what `notice::commit_heard` sends
        let settled_at = tokio::time::timeout(Duration::from_secs(30), wait).await;
        assert!(matches!(settled_at, Ok(Ok(Ok(())))), "the commit ended the pause: {settled_at:?}");
        assert_eq!(looks.load(Ordering::SeqCst), 2, "one look before the commit, one after");
    }

    #[tokio::test]
    async fn a_stream_of_commits_above_the_token_wakes_a_wait_a_bounded_number_of_times() {
        let (appended, commits) = watch::channel(LogPosition::START);
        let stop = Arc::new(AtomicBool::new(false));
        let writers = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut at = 1;
                while !stop.load(Ordering::SeqCst) {
                    appended.send_replace(LogPosition::new(at, at));
                    at += 1;
                    tokio::task::yield_now().await;
                }
            })
        };
        let looked = looks_until_given_up(Duration::from_millis(200), commits).await;
        stop.store(true, Ordering::SeqCst);
        writers.await.expect("writers");
        // The wakes, then one look per 20 ms pause of the 200 ms; without the
        // bound, one look per commit (thousands).
        assert!(looked > SETTLE_WAKES, "the commits woke the wait: {looked} looks");
        assert!(looked <= SETTLE_WAKES + 1 + 10, "{looked} looks");
    }

    #[tokio::test]
    async fn a_closed_commit_signal_falls_back_to_the_pauses() {
        let (appended, commits) = watch::channel(LogPosition::START);
        drop(appended);
        let looked = looks_until_given_up(Duration::from_millis(100), commits).await;
        assert!(looked <= 6, "no busy loop on a closed signal: {looked} looks");
    }
}
