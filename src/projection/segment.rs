//! Segments: one view's work split over several runners
//! (`--projection-segments order_summary=4`).
//!
//! Every event goes to one segment of a split view, by a stable hash of its
//! *partition key*: the customer it belongs to ([`DomainEvent::owner`]: a
//! customer's own events and its orders'), or its stream when it has none
//! (a product's). An order's customer never changes, so every event of one
//! stream goes to one segment, and a segment reads the log in its order.
//!
//! Why the customer and not the stream: `order_summary` writes a
//! customer's rename into every order row of that customer, and a row
//! keeps a newer customer version only. Were the rename in another segment
//! than the order, a segment ahead could apply the rename before the
//! order's segment had written the order's row; the row would then be
//! written later with the older name and keep it. Keyed by customer, a row's
//! events all come to one segment, in log order (see
//! [`crate::catalog::View::can_be_segmented`] for the views that fold many
//! customers into one row, which are never split).
//!
//! Each segment is a runner of its own: its own checkpoint row
//! ([`crate::catalog::segment_name`]), its own leadership lock (keyed by
//! that name) and fence. A segment reads the whole log after its
//! checkpoint, applies only its own events and moves its checkpoint past
//! the others too, so a view is at token T exactly when all of its
//! segments have passed T. The reader's horizon rules hold per segment as
//! they hold per view: a segment's checkpoint is a position of the whole
//! log, below the horizon.
//!
//! An event that does not decode has no partition key that can be read:
//! it is every segment's (each dead-letters it or stands down for it).
//!
//! A view split in N segments has the rows `view#k/N`, k in 0..N; its own
//! row `view` keeps its mode and status and stays at the position the
//! segments started from. A segment row is created at that position: every
//! event up to it is in the view (the unsplit runner, or a rebuild, put it
//! there), so the segments go on from there without replaying anything.
use uuid::Uuid;

use crate::domain::event::RecordedEvent;

/// Segment `index` of `count` of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub index: u32,
    pub count: u32,
}

impl Segment {
    /// The one segment of a view that is not split.
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// Every segment of a view split in `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Segment> {
        let count = count.max(1);
        (0..count).map(move |index| Segment { index, count })
    }

    /// Whether this is a part of a split view.
    pub fn is_split(self) -> bool {
        self.count > 1
    }

    /// Whether `event` is this segment's to apply.
    pub fn holds(self, event: &RecordedEvent) -> bool {
        !self.is_split() || index_of(key_of(event), self.count) == self.index
    }
}

/// The partition key of an event: its customer, or its stream without one.
pub fn key_of(event: &RecordedEvent) -> Uuid {
    event.event.owner().unwrap_or(event.stream_id)
}

/// The segment of `count` a partition key goes to: the same on every
/// instance and release (FNV-1a, see [`crate::stable_hash`]).
///
/// FNV mixes the last bytes of a key poorly (keys that differ in their
/// last byte only differ in few bits), so its hash goes through
/// MurmurHash3's 64-bit finalizer before it is reduced to `0..count`.
pub fn index_of(key: Uuid, count: u32) -> u32 {
    let mut h = crate::stable_hash::of(&[b"twofold.segment.", key.as_bytes()]);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Pinned: a release that moved keys between segments would split a
        // stream's events over two segments.
        let key = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(index_of(key, 4), index_of(key, 4));
        assert_eq!(index_of(key, 1), 0);
        let pinned: Vec<u32> = (0..8u128).map(|i| index_of(Uuid::from_u128(i), 4)).collect();
        assert_eq!(pinned, PINNED);
        let mut counts = [0u32; 4];
        for i in 0..4000u128 {
            counts[index_of(Uuid::from_u128(i), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    const PINNED: [u32; 8] = [0, 2, 2, 2, 2, 2, 3, 1];
}
