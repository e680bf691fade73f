//! Two building blocks for sparing IAM calls: one call in flight per key,
//! shared by everyone who asks meanwhile ([`SingleFlight`]), and a map of
//! recent answers with a size cap and a time to live ([`BoundedCache`]).
//!
//! Both are keyed by data from events (accounts, users, key ids), so both
//! are bounded: `SingleFlight` holds only calls in flight (at most the
//! checks running at once), `BoundedCache` at most its capacity, evicting
//! expired entries first and then the oldest.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use time::OffsetDateTime;
use tokio::time::Instant;

type InFlight<V> = (OffsetDateTime, Shared<BoxFuture<'static, V>>);

/// Calls in flight by key, each with the wall-clock time it started.
pub(crate) struct SingleFlight<K, V: Clone> {
    inflight: Mutex<HashMap<K, InFlight<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// The answer of the call in flight for `key` if it started after
    /// `after` (any, with `None`), or of a new one made by `call`. The flag
    /// is true when an existing call was joined.
    pub(crate) async fn run<F>(&self, key: K, after: Option<OffsetDateTime>, call: impl FnOnce() -> F) -> (V, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, joined, registered) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some((started, shared)) if after.is_none_or(|a| *started > a) => (shared.clone(), true, false),
                // A call that started too early cannot answer: make one of
                // our own, unregistered, so that the other call's starter
                // still forgets only its own entry.
                Some(_) => (call().boxed().shared(), false, false),
                None => {
                    let shared = call().boxed().shared();
                    inflight.insert(key.clone(), (OffsetDateTime::now_utc(), shared.clone()));
                    (shared, false, true)
                }
            }
        };
        // The caller that started the call forgets it when done, or when
        // dropped before the end: an entry left behind would hand its old
        // answer to every later caller.
        let _forget = registered.then(|| Forget { inflight: &self.inflight, key });
        (shared.await, joined)
    }
}

/// Removes a call from the in-flight map when dropped.
struct Forget<'a, K: Eq + Hash, V: Clone> {
    inflight: &'a Mutex<HashMap<K, InFlight<V>>>,
    key: K,
}

impl<K: Eq + Hash, V: Clone> Drop for Forget<'_, K, V> {
    fn drop(&mut self) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

/// A map with a size cap and a time to live. Time is tokio's clock, so
/// tests can move it.
pub(crate) struct BoundedCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    /// Holds at most `capacity` entries, each for at most `ttl`; a zero
    /// `ttl` or `capacity` keeps nothing.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        BoundedCache { ttl, capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The value kept for `key`, if younger than the TTL.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (stored, value) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Keeps `value` for `key`, unless `keep_old` says the fresh value kept
    /// now should stay.
    pub(crate) fn insert_unless(&self, key: K, value: V, keep_old: impl FnOnce(&V) -> bool) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((stored, old)) = entries.get(&key) {
            if stored.elapsed() < self.ttl && keep_old(old) {
                return;
            }
        } else if entries.len() >= self.capacity {
            self.evict(&mut entries);
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Keeps `value` for `key`.
    pub(crate) fn insert(&self, key: K, value: V) {
        self.insert_unless(key, value, |_| false);
    }

    pub(crate) fn remove(&self, key: &K) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Makes room: drops the expired entries and, if that is not enough,
    /// the oldest eighth (so that a full cache evicts in batches, not on
    /// every insert).
    fn evict(&self, entries: &mut HashMap<K, (Instant, V)>) {
        let ttl = self.ttl;
        entries.retain(|_, (stored, _)| stored.elapsed() < ttl);
        if entries.len() < self.capacity {
            return;
        }
        let mut ages: Vec<Instant> = entries.values().map(|(stored, _)| *stored).collect();
        let cut = (ages.len() / 8).max(1);
        let (_, threshold, _) = ages.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        let mut left = cut;
        entries.retain(|_, (stored, _)| {
            if left > 0 && *stored <= threshold {
                left -= 1;
                false
            } else {
                true
            }
        });
        // Rebuilt at its new size: the removed entries would otherwise stay
        // as tombstones until the table, found full of them, is doubled
        // once more than half its slots are live, which at the cap is
        // always: a one-time jump of the whole table's size.
        entries.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = BoundedCache::new(10, Duration::from_secs(60));
        cache.insert("alice", 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.get(&"alice"), Some(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get(&"alice"), None, "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_evicts_the_oldest_and_never_grows_past_its_capacity() {
        let cache = BoundedCache::new(100, Duration::from_secs(3600));
        for i in 0..10_000 {
            cache.insert(i, i);
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.get(&9_999), Some(9_999), "the newest is kept");
        assert_eq!(cache.get(&0), None, "the oldest went first");
    }

    #[tokio::test(start_paused = true)]
    async fn insert_unless_keeps_a_fresh_old_value_when_asked() {
        let cache = BoundedCache::new(10, Duration::from_secs(60));
        cache.insert("alice", 5);
        cache.insert_unless("alice", 3, |old| *old > 3);
        assert_eq!(cache.get(&"alice"), Some(5));
        cache.insert_unless("alice", 7, |old| *old > 7);
        assert_eq!(cache.get(&"alice"), Some(7));
        cache.remove(&"alice");
        assert_eq!(cache.get(&"alice"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ttl_keeps_nothing() {
        let cache = BoundedCache::new(10, Duration::ZERO);
        cache.insert("alice", 1);
        assert_eq!(cache.get(&"alice"), None);
    }

    #[tokio::test]
    async fn a_call_whose_starter_is_dropped_is_not_handed_to_later_callers() {
        let flight: SingleFlight<&str, u32> = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let started = flight.run("alice", None, move || async move { rx.await.unwrap_or(0) });
        // Start the call, then drop its starter before the answer comes.
        assert!(tokio::time::timeout(Duration::from_millis(10), started).await.is_err());
        drop(tx);
        let (value, joined) = flight.run("alice", None, || async { 7 }).await;
        assert_eq!((value, joined), (7, false), "a new call, not the abandoned one");
    }

    #[tokio::test]
    async fn callers_meanwhile_join_the_call_in_flight() {
        let flight: SingleFlight<&str, u32> = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let first = flight.run("alice", None, move || async move { rx.await.unwrap() });
        let second = flight.run("alice", None, || async { unreachable!("joined instead") });
        let answer = async {
            tokio::task::yield_now().await;
            tx.send(5).unwrap();
        };
        let ((a, _), (b, joined), ()) = tokio::join!(first, second, answer);
        assert_eq!((a, b, joined), (5, 5, true));
        assert_eq!(flight.run("alice", None, || async { 6 }).await, (6, false), "nothing kept once done");
    }

    #[tokio::test]
    async fn a_call_that_started_too_early_is_not_joined() {
        let flight: SingleFlight<&str, u32> = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let first = flight.run("alice", None, move || async move { rx.await.unwrap() });
        let later = datetime!(2999-01-01 0:00 UTC);
        let second = flight.run("alice", Some(later), || async { 9 });
        let answer = async {
            tokio::task::yield_now().await;
            tx.send(5).unwrap();
        };
        let ((a, _), (b, joined), ()) = tokio::join!(first, second, answer);
        assert_eq!((a, b, joined), (5, 9, false), "the later caller made its own call");
    }
}
