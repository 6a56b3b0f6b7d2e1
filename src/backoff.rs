//! One exponential back-off with jitter, used by every retry loop: the
//! projection runners, the leadership connection, LISTEN, start-up.
//!
//! Written here rather than taken from a crate because what the loops need
//! is small and specific: the first retry can be immediate (a cut link that
//! is back already costs nothing), each pause doubles up to a ceiling,
//! "full jitter" spreads instances that failed together, and success resets
//! it. A leaf: it imports nothing of the crate.
use std::time::Duration;

/// Exponential back-off with jitter and reset.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    immediate_first: bool,
    /// Failures since the last reset.
    failures: u32,
}

impl Backoff {
    /// Pauses from `first`, doubling up to `ceiling`.
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self { first, ceiling: ceiling.max(first), immediate_first: false, failures: 0 }
    }

    /// The first failure after a success is retried at once.
    pub fn immediate_first(mut self) -> Self {
        self.immediate_first = true;
        self
    }

    /// The pause before the next try, after one more failure.
    pub fn next_pause(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.immediate_first && self.failures == 1 {
            return Duration::ZERO;
        }
        let steps = self.failures - if self.immediate_first { 2 } else { 1 };
        let nominal = self.first.saturating_mul(1u32 << steps.min(20)).min(self.ceiling);
        // Between half the nominal pause and all of it: spread, never zero.
        let half = nominal / 2;
        half + nominal.saturating_sub(half).mul_f64(fastrand::f64())
    }

    /// A success: the next failure starts over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_doubles_up_to_its_ceiling_with_jitter_and_starts_over_on_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).immediate_first();
        assert_eq!(b.next_pause(), Duration::ZERO, "the first retry is immediate");
        let second = b.next_pause();
        assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&second), "{second:?}");
        for _ in 0..10 {
            assert!(b.next_pause() <= Duration::from_secs(1));
        }
        let late = b.next_pause();
        assert!(late >= Duration::from_millis(500), "near the ceiling: {late:?}");
        b.reset();
        assert_eq!(b.next_pause(), Duration::ZERO);
        let mut plain = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert!(plain.next_pause() >= Duration::from_millis(50));
    }
}
