//! One backoff for every retry loop of the services (consumer transient failures, the outbox
//! relay, the orchestrator's pipeline starts): exponential, capped, with jitter so replicas that
//! failed together do not retry together.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with "equal jitter": the delay before retry `n` lies between half and
/// all of `initial × 2^(n-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The longest delay before retry `attempt` (1-based): doubling from `initial`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt` (1-based): uniformly between half the ceiling and the
    /// ceiling.
    pub fn delay(&self, attempt: u32) -> Duration {
        Self::jittered(self.ceiling(attempt), unit_random())
    }

    /// [`Backoff::delay`], but never shorter than `floor` (a server's `Retry-After`).
    pub fn delay_at_least(&self, attempt: u32, floor: Duration) -> Duration {
        self.delay(attempt).max(floor)
    }

    /// Half of `ceiling` plus `r` (in `0..1`) of the other half.
    fn jittered(ceiling: Duration, r: f64) -> Duration {
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(r.clamp(0.0, 1.0))
    }
}

/// A random number in `0..1` (hashing a counter with the standard library's randomly keyed
/// hasher: good enough for jitter, no dependency).
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one(n);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(100), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        let c = Duration::from_millis(800);
        assert_eq!(Backoff::jittered(c, 0.0), Duration::from_millis(400));
        assert_eq!(Backoff::jittered(c, 1.0), c);
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(4)).collect();
        assert!(delays
            .iter()
            .all(|d| (Duration::from_millis(400)..=c).contains(d)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "the delays spread out: {}",
            distinct.len()
        );
    }

    #[test]
    fn a_retry_after_is_a_floor() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        assert_eq!(
            b.delay_at_least(1, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(b.delay_at_least(1, Duration::ZERO) <= Duration::from_millis(10));
    }
}
