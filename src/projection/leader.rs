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
}

impl Locks {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            inner: Mutex::new(Inner { conn: None, generation: 0, held: HashSet::new(), checked_at: Instant::now() }),
        }
    }

    /// Keeps or tries to take the lock for `name`.
    pub async fn hold(&self, name: &str, lease: &mut Lease) -> Held {
        let key = lock_key(name);
        let mut inner = self.inner.lock().await;
        if inner.conn.is_some() && inner.checked_at.elapsed() >= LIVENESS_CHECK {
            let alive = match inner.conn.as_mut() {
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
        if inner.conn.is_some() && inner.held.contains(&key) {
            // Held by this node's connection: kept, or adopted by a runner
            // that was restarted (session advisory locks stack, so it must
            // not take it a second time).
            let kept = lease.generation == Some(inner.generation);
            lease.generation = Some(inner.generation);
            return if kept { Held::Kept } else { Held::Acquired };
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
                Ok(conn) => {
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
}
