//! Figure 2, read (c) beside writes: the GraphQL `orders` page of (c), from
//! the same 16 keep-alive connections for the same time, measured right
//! after (c) while `placeOrder` runs beside it at a steady 200 commands/s
//! through the real mutation (an open loop, paced as the lag phase paces
//! its commands: [`crate::pace`]).
//!
//! Why: (c) reads views that never move, so after the first request of a
//! batch interval the server may answer from its kept answers. In service
//! the page is read while commands land: every projection batch moves the
//! view the page is read from (200 new PLACED orders a second also change
//! the page itself), so kept answers live only between two batches, and the
//! readers share the CPU, the database and its connections with the
//! commands and the projector. This row shows how much of (c) is left:
//! the page's requests/s as a share of (c)'s measured just before (target
//! ≥ 80%) and its p99 (target < 15 ms), and, as its baseline, the write
//! rate that actually ran beside it.
//!
//! The writer starts [`WARM_UP`] before the readers (so they start into a
//! running projector, not an idle one) and its schedule ends with their
//! time; its achieved rate is over its own window. The target is met only
//! when both conditions hold, no page failed, and the load really ran: no
//! command failed or was skipped and at least 95% of the rate went through.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::Scale;
use crate::gql::Gql;
use crate::load::wait_caught_up;
use crate::pace::{place_orders, Schedule, Writes};
use crate::progress;
use crate::reads::{graphql_orders, HTTP_READERS};
use crate::report::Report;
use crate::stats::LoopResult;
use crate::workload::Catalog;

/// `placeOrder` per second beside the readers.
pub const WRITE_RATE: u64 = 200;
/// How long the writer runs before the readers start.
pub const WARM_UP: Duration = Duration::from_millis(500);
/// Commands allowed in flight at once; beyond that a scheduled command is
/// skipped (and counted). At 200/s only a server stalled for seconds gets
/// near it.
const MAX_IN_FLIGHT: usize = 1_000;
/// Seeds of the orders placed here (apart from every other phase's).
const SALT: u64 = 0x3_1ED0_0000_0000;

/// What the phase measured.
#[derive(Debug, Clone)]
pub struct ReadBesideWrites {
    pub reads: LoopResult,
    /// Orders on the page as the phase began.
    pub page_orders: usize,
    pub writes: Writes,
    /// The server's kept answers during the phase (reads and warm-up):
    /// how many pages were computed, how many sent from memory.
    pub cache: crate::scrape::CacheCounters,
}

impl ReadBesideWrites {
    /// The load ran as scheduled: nothing failed or skipped, ≥ 95% of the rate achieved.
    pub fn writes_ran(&self) -> bool {
        self.writes.failed == 0
            && self.writes.skipped == 0
            && self.writes.achieved_rate() >= 0.95 * self.writes.target_rate as f64
    }
}

/// `gql` sends the commands (a pool apart from the readers' 16 connections).
pub async fn measure(
    gql: &Gql,
    base_url: &str,
    catalog: &Catalog,
    scale: &Scale,
    report: &mut Report,
) -> anyhow::Result<()> {
    let readers = Gql::new(base_url, HTTP_READERS)?;
    let page_orders = readers.orders_page().await.context("GraphQL orders page before the writes")?;
    let catalog = Arc::new(catalog.clone());
    progress!(
        "read c_graphql_orders beside {WRITE_RATE} placeOrder/s: writes start, {HTTP_READERS} readers {} ms later",
        WARM_UP.as_millis()
    );
    let cache_before = crate::scrape::CacheCounters::read(base_url).await?;
    let schedule = Schedule::new(WRITE_RATE, WARM_UP + scale.read_time, Instant::now());
    let writer = place_orders(gql, &catalog, &schedule, MAX_IN_FLIGHT, SALT);
    let reader = async {
        // The writers' warm-up is the schedule of this phase, not a wait for a state.
        tokio::time::sleep(WARM_UP).await;
        graphql_orders("graphql orders beside writes", &readers, scale.read_time).await
    };
    let (writes, reads) = tokio::join!(writer, reader);
    let cache = crate::scrape::CacheCounters::read(base_url).await?.since(&cache_before);
    progress!("read c_graphql_orders beside {WRITE_RATE} placeOrder/s ({HTTP_READERS} connections): {}", reads.brief());
    progress!("  the writes beside it: {}", writes.brief());
    progress!(
        "  kept answers meanwhile: {:.0} computed ({:.1}% of answers, {:.0}/s), {:.0} sent from memory, {:.0} shared with a twin, {:.0} the previous answer while a twin computed (no token)",
        cache.miss,
        cache.computed_share() * 100.0,
        cache.miss / (WARM_UP + scale.read_time).as_secs_f64(),
        cache.hit,
        cache.shared,
        cache.stale
    );
    let caught_up = wait_caught_up(gql, scale.catch_up_timeout).await.context("catch up after the writes")?;
    progress!("  projections caught up {:.1} s after the phase", caught_up.as_secs_f64());
    report.set_read_beside_writes(ReadBesideWrites { reads, page_orders, writes, cache });
    Ok(())
}
