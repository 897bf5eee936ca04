//! [`Recent`]: a process's bounded copies of recently used values, for the store's state cache
//! and the orchestrator's decoded states.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Recently used values by key: least recently used out first, bounded by count and by a total
/// weight (bytes, essay references: the caller's measure), each usable for `max_age` after it
/// was put. Copies too old to be used leave on the next `get` or `put`, so a burst of heavy
/// values does not stay in memory while only others are used.
#[derive(Debug)]
pub struct Recent<V> {
    entries: LruCache<String, Slot<V>>,
    weight: usize,
    max_weight: usize,
    max_age: Duration,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    weight: usize,
    at: Instant,
}

impl<V> Recent<V> {
    /// At most `max_entries` values weighing `max_weight` in all; one value may weigh a quarter
    /// of that.
    pub fn new(max_entries: usize, max_weight: usize, max_age: Duration) -> Self {
        Self {
            entries: LruCache::new(NonZeroUsize::new(max_entries).expect("a positive bound")),
            weight: 0,
            max_weight,
            max_age,
        }
    }

    /// The value of `key` if it is young enough to be used (a use: it becomes the most recent).
    pub fn get(&mut self, key: &str) -> Option<&V> {
        self.drop_expired();
        let max_age = self.max_age;
        self.entries
            .get(key)
            .filter(|s| s.at.elapsed() < max_age)
            .map(|s| &s.value)
    }

    /// The value of `key`, whatever its age, without using it.
    pub fn peek(&self, key: &str) -> Option<&V> {
        self.entries.peek(key).map(|s| &s.value)
    }

    /// Forget `key`.
    pub fn remove(&mut self, key: &str) {
        if let Some(s) = self.entries.pop(key) {
            self.weight -= s.weight;
        }
    }

    /// Keep `value` under `key`, replacing what was there, unless it weighs more than a quarter
    /// of the bound (then `key` is only forgotten). Makes room by letting the least recently
    /// used values go.
    pub fn put(&mut self, key: &str, value: V, weight: usize) {
        self.remove(key);
        if weight > self.max_weight / 4 {
            return;
        }
        self.drop_expired();
        while self.entries.len() >= self.entries.cap().get()
            || self.weight + weight > self.max_weight
        {
            match self.entries.pop_lru() {
                Some((_, s)) => self.weight -= s.weight,
                None => break,
            }
        }
        self.weight += weight;
        let slot = Slot {
            value,
            weight,
            at: Instant::now(),
        };
        self.entries.put(key.to_owned(), slot);
    }

    /// Values kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Their total weight.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// Let the least recently used values go while they are too old to be used.
    fn drop_expired(&mut self) {
        while self
            .entries
            .peek_lru()
            .is_some_and(|(_, s)| s.at.elapsed() >= self.max_age)
        {
            if let Some((_, s)) = self.entries.pop_lru() {
                self.weight -= s.weight;
            }
        }
    }

    /// Make `key`'s value look `by` older (tests of expiry).
    #[doc(hidden)]
    pub fn backdate(&mut self, key: &str, by: Duration) {
        if let Some(s) = self.entries.peek_mut(key) {
            s.at -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_within_count_and_weight() {
        let mut r = Recent::new(3, 100, Duration::from_secs(60));
        r.put("a", 1, 10);
        r.put("b", 2, 10);
        r.put("c", 3, 10);
        assert_eq!(r.get("a"), Some(&1));
        r.put("d", 4, 10);
        assert!(r.peek("b").is_none() && r.peek("a").is_some());
        r.put("e", 5, 25); // one value may weigh a quarter of the bound
        r.put("f", 6, 26);
        assert!(r.peek("f").is_none(), "too heavy to keep");
        r.put("g", 7, 25);
        assert!(r.weight() <= 100 && r.len() <= 3);
    }

    #[test]
    fn values_too_old_to_use_leave_on_the_next_use() {
        let mut r = Recent::new(10, 100, Duration::from_secs(60));
        r.put("old", 1, 20);
        r.backdate("old", Duration::from_secs(60));
        assert_eq!(r.peek("old"), Some(&1));
        assert_eq!(r.get("new"), None);
        assert!(r.peek("old").is_none() && r.weight() == 0);
    }
}
