//! A bounded cache whose entries expire.
//!
//! `lru` bounds memory (the least recently used entry goes first when the
//! cache is full); each entry also carries its own expiry, because hits and
//! misses age at different rates and feeds change over a day. Time comes from
//! the caller, so tests can move it and the cache does no clock reads.
//!
//! An expired entry is kept for a while longer (`keep_expired`), because while
//! MISP is failing a slightly old answer is better than none; [`TtlCache::get`]
//! never returns it, [`TtlCache::get_stale`] does.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;

/// A least-recently-used cache with per-entry expiry.
pub struct TtlCache<K: Hash + Eq, V> {
    entries: LruCache<K, (V, Duration)>,
    keep_expired: Duration,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A cache of at most `capacity` entries that keeps expired ones for
    /// `keep_expired` more.
    pub fn new(capacity: NonZeroUsize, keep_expired: Duration) -> Self {
        TtlCache { entries: LruCache::new(capacity), keep_expired }
    }

    /// The live value for `key` at time `now`.
    pub fn get(&mut self, key: &K, now: Duration) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                self.drop_if_past_keeping(key, now);
                None
            }
            None => None,
        }
    }

    /// An expired value for `key` that is still within `keep_expired`.
    pub fn get_stale(&mut self, key: &K, now: Duration) -> Option<V> {
        match self.entries.peek(key) {
            Some((_, expires)) if *expires > now => None,
            Some((value, expires)) if *expires + self.keep_expired > now => Some(value.clone()),
            Some(_) => {
                self.entries.pop(key);
                None
            }
            None => None,
        }
    }

    fn drop_if_past_keeping(&mut self, key: &K, now: Duration) {
        let past = |(_, expires): &(V, Duration)| *expires + self.keep_expired <= now;
        if self.entries.peek(key).is_some_and(past) {
            self.entries.pop(key);
        }
    }

    /// Stores `value` until `now + ttl`. A zero TTL stores nothing.
    pub fn insert(&mut self, key: K, value: V, now: Duration, ttl: Duration) {
        if !ttl.is_zero() {
            self.entries.put(key, (value, now + ttl));
        }
    }

    /// Entries held, live or expired.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let mut cache = TtlCache::new(NonZeroUsize::new(4).unwrap(), Duration::ZERO);
        cache.insert("a", 1, secs(100), secs(10));
        assert_eq!(cache.get(&"a", secs(109)), Some(1));
        assert_eq!(cache.get(&"a", secs(110)), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_evicts_the_least_recently_used() {
        let mut cache = TtlCache::new(NonZeroUsize::new(2).unwrap(), Duration::ZERO);
        cache.insert("a", 1, secs(0), secs(60));
        cache.insert("b", 2, secs(0), secs(60));
        assert_eq!(cache.get(&"a", secs(1)), Some(1));
        cache.insert("c", 3, secs(1), secs(60));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"b", secs(2)), None);
        assert_eq!(cache.get(&"a", secs(2)), Some(1));
    }

    #[test]
    fn expired_entries_are_kept_for_stale_use_only() {
        let mut cache = TtlCache::new(NonZeroUsize::new(4).unwrap(), secs(50));
        cache.insert("a", 1, secs(0), secs(10));
        assert_eq!(cache.get_stale(&"a", secs(5)), None, "not stale while fresh");
        assert_eq!(cache.get(&"a", secs(20)), None);
        assert_eq!(cache.get_stale(&"a", secs(59)), Some(1));
        assert_eq!(cache.get_stale(&"a", secs(60)), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let mut cache = TtlCache::new(NonZeroUsize::new(2).unwrap(), Duration::ZERO);
        cache.insert("a", 1, secs(0), Duration::ZERO);
        assert_eq!(cache.get(&"a", secs(0)), None);
    }
}
