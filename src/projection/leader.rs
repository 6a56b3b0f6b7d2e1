//! One runner per projection across instances (PostgreSQL).
//!
//! A runner holds a session-level advisory lock, keyed by the projection's
//! name, for as long as it runs the projection. All of a node's locks live on
//! ONE dedicated connection ([`Locks`]), so a node costs one connection for
//! leadership however many projections (and the exporter) it runs. When
//! that connection dies, every lock it held is gone at once; each runner
//! notices on its next [`Locks::hold`] (the lock generation moved) and must
//! take its projection over again, fence and all.
//!
//! The lock decides who *should* run; the checkpoint compare-and-set in each
//! batch (see `runtime`) is the fence that makes a runner that lost its lock
//! unnoticed harmless: it cannot move a checkpoint it did not read, so
//! nothing is applied twice or moved backwards.
//!
//! Hand-over: a runner that stops releases its lock and announces it
//! (`NOTIFY twofold_leadership`); standbys wake on that notice (see
//! `notice::postgres`) instead of waiting for their next periodic try.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

/// How often the lock connection is checked for liveness.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
pub use crate::notice::postgres::LEADERSHIP_CHANNEL;

/// The key every node running split views holds shared while its lock
/// connection lives: how many such nodes are alive, for the spread.
const PRESENCE: &str = "twofold.segments.presence";

/// How the segments of split views spread over the live nodes: nobody
/// holds more than its share, `ceil(units / nodes)`, and a node that holds
/// two more than the least-served node gives one up (so three nodes and
/// four segments end at 2, 1, 1 rather than 2, 2, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// This node may take one more.
    pub may_take: bool,
    /// This node should give one up.
    pub should_give: bool,
}

/// The spread for this node, from the segment counts of every live node
/// (`mine` is this node's; `others` the rest, zero for those holding none).
pub fn spread(units: usize, mine: usize, others: &[usize]) -> Spread {
    let share = units.div_ceil(others.len() + 1);
    Spread { may_take: mine < share, should_give: mine > share || others.iter().any(|n| n + 2 <= mine) }
}

/// Books a segment this node gave up as taken by the least-served node
/// (which takes first: it is furthest below its share), until the next
/// count says where it went, so the node does not give up more than the
/// spread needs on an old count.
fn handed_over(others: &mut [usize]) {
    if let Some(least) = others.iter_mut().min() {
        *least += 1;
    }
}

/// A stable 64-bit key for a projection name: every instance and release
/// must agree on it, since it is the advisory lock they contend for.
pub fn lock_key(name: &str) -> i64 {
    crate::stable_hash::of(&["twofold.projection.".as_bytes(), name.as_bytes()]) as i64
}

/// The result of [`Locks::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// This runner just took the lock.
    Acquired,
    /// This runner already held it.
    Kept,
    /// Another process holds it.
    No,
    /// The database cannot be reached for the lock: try again soon (the
    /// runner's outage back-off), not at the standby interval, so that the
    /// lock is claimed again as soon as the link returns.
    Unreachable,
}

/// A runner's claim on its lock: valid only in the generation it was taken in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lease {
    generation: Option<u64>,
}

struct Inner {
    conn: Option<PgConnection>,
    /// What the other live nodes hold of the segments, as last counted
    /// (this node's share is derived from `held`).
    others: Vec<usize>,
    /// Bumped whenever the lock connection is (re)opened: leases of older
    /// generations are void.
    generation: u64,
    held: HashSet<i64>,
    checked_at: Instant,
}

/// All of one node's advisory locks, on one connection.
pub struct Locks {
    url: String,
    inner: Mutex<Inner>,
    /// The lock keys of every segment of the split views this node runs
    /// (empty: nothing split, nothing spread).
    units: Vec<i64>,
}

impl Locks {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            inner: Mutex::new(Inner {
                conn: None,
                generation: 0,
                held: HashSet::new(),
                checked_at: Instant::now(),
                others: Vec::new(),
            }),
            units: Vec::new(),
        }
    }

    /// Spreads the segments named `segments` (every segment of the split
    /// views this node runs) over the live nodes that run them.
    pub fn spreading(mut self, segments: &[String]) -> Self {
        self.units = segments.iter().map(|name| lock_key(name)).collect();
        self
    }

    /// Counts the live nodes and what each holds of the segments (on the lock connection).
    /// (What the other live nodes hold, as counted.)
    async fn count(&self, conn: &mut PgConnection) -> Result<Vec<usize>, sqlx::Error> {
        let rows: Vec<(bool, i64)> = sqlx::query_as(
            "WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database()), \
             presence AS (SELECT l.pid FROM pg_locks l, here WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = here.oid AND l.objsubid = 1 \
               AND l.classid::bigint = (($1::bigint >> 32) & 4294967295) AND l.objid::bigint = ($1::bigint & 4294967295)), \
             held AS (SELECT l.pid, count(*) AS n FROM pg_locks l CROSS JOIN here \
               JOIN unnest($2::bigint[]) AS k ON l.classid::bigint = ((k >> 32) & 4294967295) AND l.objid::bigint = (k & 4294967295) \
               WHERE l.locktype = 'advisory' AND l.granted AND l.database = here.oid AND l.objsubid = 1 GROUP BY l.pid) \
             SELECT p.pid = pg_backend_pid() AS me, COALESCE(h.n, 0) AS n FROM presence p LEFT JOIN held h ON h.pid = p.pid",
        )
        .bind(lock_key(PRESENCE))
        .bind(&self.units)
        .fetch_all(conn)
        .await?;
        Ok(rows.iter().filter(|(me, _)| !*me).map(|(_, n)| *n as usize).collect())
    }

    /// Keeps or tries to take the lock for `name`.
    pub async fn hold(&self, name: &str, lease: &mut Lease) -> Held {
        let key = lock_key(name);
        let mut inner = self.inner.lock().await;
        if inner.conn.is_some() && inner.checked_at.elapsed() >= LIVENESS_CHECK {
            // With segments to spread, the check counts the live nodes too.
            let alive = match inner.conn.as_mut() {
                Some(conn) if !self.units.is_empty() => match self.count(conn).await {
                    Ok(others) => {
                        inner.others = others;
                        true
                    }
                    Err(_) => false,
                },
                Some(conn) => sqlx::query("SELECT 1").execute(conn).await.is_ok(),
                None => false,
            };
            if alive {
                inner.checked_at = Instant::now();
            } else {
                tracing::warn!("lost the leadership connection; every projection here must be taken over again");
                inner.conn = None;
                inner.held.clear();
            }
        }
        let segment = self.units.contains(&key);
        let mine = inner.held.iter().filter(|k| self.units.contains(k)).count();
        let spread = spread(self.units.len(), mine, &inner.others);
        if inner.conn.is_some() && inner.held.contains(&key) {
            if segment && spread.should_give {
                // More than its share: give this one up, for a node with fewer.
                handed_over(&mut inner.others);
                lease.generation = Some(inner.generation);
                drop(inner);
                tracing::info!(projection = name, "handing a segment over to spread them across the live nodes");
                self.release(name, lease).await;
                return Held::No;
            }
            // Held by this node's connection: kept, or adopted by a runner
            // that was restarted (session advisory locks stack, so it must
            // not take it a second time).
            let kept = lease.generation == Some(inner.generation);
            lease.generation = Some(inner.generation);
            return if kept { Held::Kept } else { Held::Acquired };
        }
        if segment && inner.conn.is_some() && !spread.may_take {
            lease.generation = None;
            return Held::No;
        }
        lease.generation = None;
        if inner.conn.is_none() {
            let options =
                self.url.parse::<sqlx::postgres::PgConnectOptions>().map(|o| o.application_name("twofold-locks"));
            let connected = match options {
                Ok(options) => PgConnection::connect_with(&options).await,
                Err(e) => Err(e),
            };
            match connected {
                Ok(mut conn) => {
                    // A node that runs segments says it is alive (see [`spread`]).
                    if !self.units.is_empty() {
                        let counted = async {
                            sqlx::query("SELECT pg_advisory_lock_shared($1)")
                                .bind(lock_key(PRESENCE))
                                .execute(&mut conn)
                                .await?;
                            self.count(&mut conn).await
                        };
                        match counted.await {
                            Ok(others) => inner.others = others,
                            Err(e) => {
                                tracing::debug!(error = %e, "leadership connection unavailable");
                                return Held::Unreachable;
                            }
                        }
                    }
                    inner.conn = Some(conn);
                    inner.generation += 1;
                    inner.checked_at = Instant::now();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "leadership connection unavailable");
                    return Held::Unreachable;
                }
            }
        }
        let generation = inner.generation;
        let Some(conn) = inner.conn.as_mut() else {
            return Held::Unreachable;
        };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(conn).await {
            Ok(true) => {
                inner.held.insert(key);
                lease.generation = Some(generation);
                Held::Acquired
            }
            Ok(false) => Held::No,
            Err(e) => {
                tracing::warn!(error = %e, "leadership connection failed");
                inner.conn = None;
                inner.held.clear();
                Held::Unreachable
            }
        }
    }

    /// Gives the lock for `name` up and tells the standbys at once.
    pub async fn release(&self, name: &str, lease: &mut Lease) {
        let key = lock_key(name);
        let mut inner = self.inner.lock().await;
        if lease.generation.take() != Some(inner.generation) || !inner.held.remove(&key) {
            return;
        }
        if let Some(conn) = inner.conn.as_mut() {
            let released = sqlx::query("SELECT pg_advisory_unlock($1), pg_notify($2, $3)")
                .bind(key)
                .bind(LEADERSHIP_CHANNEL)
                .bind(name)
                .execute(&mut *conn)
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, projection = name, "could not release leadership; closing the lock connection");
                if let Some(conn) = inner.conn.take() {
                    if let Err(e) = conn.close().await {
                        tracing::debug!(error = %e, "closing the lock connection failed; dropping it releases the locks");
                    }
                }
                inner.held.clear();
            }
        }
    }

    /// Closes the lock connection (every lock goes with it).
    pub async fn close(&self) {
        let mut inner = self.inner.lock().await;
        inner.held.clear();
        if let Some(conn) = inner.conn.take() {
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the lock connection failed; dropping it releases the locks");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(super::lock_key("order_summary"), super::lock_key("order_summary"));
        assert_ne!(super::lock_key("order_summary"), super::lock_key("customer_view"));
    }

    #[test]
    fn segments_spread_to_every_live_node() {
        use super::{spread, Spread};
        // Alone: take them all.
        assert_eq!(spread(4, 3, &[]), Spread { may_take: true, should_give: false });
        assert_eq!(spread(4, 4, &[]), Spread { may_take: false, should_give: false });
        // A second node joins: give up to the share, and it takes.
        assert_eq!(spread(4, 4, &[0]), Spread { may_take: false, should_give: true });
        assert_eq!(spread(4, 2, &[2]), Spread { may_take: false, should_give: false });
        assert_eq!(spread(4, 0, &[4]), Spread { may_take: true, should_give: false });
        // Three nodes, four segments: 2, 1, 1 rather than 2, 2, 0.
        assert_eq!(spread(4, 2, &[2, 0]), Spread { may_take: false, should_give: true });
        assert_eq!(spread(4, 2, &[1, 1]), Spread { may_take: false, should_give: false });
        assert_eq!(spread(4, 1, &[2, 1]), Spread { may_take: true, should_give: false });
    }

    #[test]
    fn a_node_gives_up_what_the_spread_needs_before_it_counts_again() {
        // One node held all twelve; one or two join (counted holding none).
        for (joined, settles_at) in [(1, 6), (2, 4)] {
            let (mut mine, mut others) = (12, vec![0; joined]);
            while super::spread(12, mine, &others).should_give {
                super::handed_over(&mut others);
                mine -= 1;
            }
            assert_eq!(mine, settles_at, "{joined} joined: {others:?}");
            assert!(others.iter().all(|n| *n == settles_at), "{others:?}");
        }
    }
}
