//! One runner per projection across instances (PostgreSQL).
//!
//! A runner holds a session-level advisory lock, keyed by the projection's
//! name, on a dedicated connection for as long as it runs the projection.
//! Standbys try to take the lock every second; when the holder dies its
//! connection closes, PostgreSQL releases the lock, and a standby takes over
//! within about a second. The lock decides who *should* run; the checkpoint
//! compare-and-set in each batch (see `runtime`) is the fence that makes a
//! runner that lost its lock unnoticed harmless: it cannot move a checkpoint
//! it did not read, so nothing is applied twice or moved backwards.
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// How often a holder checks that its lock connection is still alive.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

pub struct Leadership {
    url: String,
    key: i64,
    conn: Option<PgConnection>,
    checked_at: Instant,
}

/// A stable 64-bit key for a projection name (FNV-1a).
pub fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "twofold.projection.".bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The result of [`Leadership::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// This process just took the lock.
    Acquired,
    /// This process already held it.
    Kept,
    /// Another process holds it (or the database is unreachable).
    No,
}

impl Leadership {
    pub fn new(url: &str, projection: &str) -> Self {
        Self { url: url.to_owned(), key: lock_key(projection), conn: None, checked_at: Instant::now() }
    }

    /// Keeps or tries to take the lock.
    pub async fn hold(&mut self) -> Held {
        if let Some(conn) = &mut self.conn {
            if self.checked_at.elapsed() < LIVENESS_CHECK {
                return Held::Kept;
            }
            return match sqlx::query("SELECT 1").execute(&mut *conn).await {
                Ok(_) => {
                    self.checked_at = Instant::now();
                    Held::Kept
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the projection lock connection");
                    self.conn = None;
                    Held::No
                }
            };
        }
        let Ok(mut conn) = PgConnection::connect(&self.url).await else { return Held::No };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(self.key).fetch_one(&mut conn).await
        {
            Ok(true) => {
                self.conn = Some(conn);
                self.checked_at = Instant::now();
                Held::Acquired
            }
            _ => {
                let _ = conn.close().await;
                Held::No
            }
        }
    }

    /// Gives the lock up (also happens when the process dies).
    pub async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
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
