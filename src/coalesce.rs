//! Coalesce: one call in flight per key, shared by everyone who asks
//! meanwhile ([`SingleFlight`]), and recent answers kept with the time their
//! call started ([`Recent`]).
//!
//! During a burst, several events for the same user arrive together (a
//! rotation creates a key, deactivates the old one, deletes it). Their
//! re-checks would each list the same keys; instead, the first asks IAM and
//! the others await the same answer. From a backlog, a user's events come
//! spread over the drain: an answer is reused for an event only when its
//! call *started after the event happened*, so it already shows that change
//! and everything before it. A change after the call has an event of its
//! own, which that answer can never serve.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;

/// Calls in flight by key.
pub struct SingleFlight<K, V: Clone> {
    inflight: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// The answer of the call in flight for `key`, or of a new one made by
    /// `call`. The flag is true when an existing call was joined.
    pub async fn run<F>(&self, key: K, call: impl FnOnce() -> F) -> (V, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, joined) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(shared) => (shared.clone(), true),
                None => {
                    let shared = call().boxed().shared();
                    inflight.insert(key.clone(), shared.clone());
                    (shared, false)
                }
            }
        };
        // The caller that started the call forgets it when done, or when
        // dropped before the end: an entry left behind would hand its old
        // answer to every later caller.
        let _forget = (!joined).then(|| Forget { inflight: &self.inflight, key });
        (shared.await, joined)
    }
}

/// Removes a call from the in-flight map when dropped.
struct Forget<'a, K: Eq + Hash, V: Clone> {
    inflight: &'a Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
    key: K,
}

impl<K: Eq + Hash, V: Clone> Drop for Forget<'_, K, V> {
    fn drop(&mut self) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

/// Answers by key with the wall-clock time their call started, kept for
/// `ttl` (which bounds memory and how old a reused answer can be).
pub struct Recent<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, Kept<V>>>,
}

struct Kept<V> {
    /// Wall clock when the call started: compared with event times.
    started: OffsetDateTime,
    /// Monotonic time it was stored: its age.
    stored: Instant,
    value: V,
}

/// Entries kept before expired ones are swept.
const RECENT_SWEEP: usize = 10_000;

impl<K: Eq + Hash, V: Clone> Recent<K, V> {
    /// A store whose answers are reused for at most `ttl`; zero keeps none.
    pub fn new(ttl: Duration) -> Self {
        Recent { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The answer for `key` whose call started after `after`, if one is kept
    /// and younger than the TTL.
    pub fn get(&self, key: &K, after: OffsetDateTime) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let kept = entries.get(key)?;
        (kept.started > after && kept.stored.elapsed() < self.ttl).then(|| kept.value.clone())
    }

    /// Keeps `value`, from a call that started at `started`, unless the
    /// answer kept for `key` comes from a later call.
    pub fn put(&self, key: K, started: OffsetDateTime, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= RECENT_SWEEP {
            let ttl = self.ttl;
            entries.retain(|_, kept| kept.stored.elapsed() < ttl);
        }
        match entries.get(&key) {
            Some(kept) if kept.started > started => {}
            _ => {
                entries.insert(key, Kept { started, stored: Instant::now(), value });
            }
        }
    }

    /// Forgets the answer for `key` (it was found wrong, e.g. the user is gone).
    pub fn forget(&self, key: &K) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    #[tokio::test(start_paused = true)]
    async fn reused_only_for_events_before_the_call_and_within_the_ttl() {
        let recent = Recent::new(Duration::from_secs(60));
        recent.put("alice", T, 1);
        assert_eq!(recent.get(&"alice", T - Duration::from_millis(1)), Some(1), "event just before the call");
        assert_eq!(recent.get(&"alice", T), None, "event at the call's start: the call may predate it");
        assert_eq!(recent.get(&"alice", T + Duration::from_secs(1)), None, "event after the call");
        assert_eq!(recent.get(&"bob", T - Duration::from_secs(1)), None, "another key");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(recent.get(&"alice", T - Duration::from_secs(1)), Some(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(recent.get(&"alice", T - Duration::from_secs(1)), None, "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_call_wins_whatever_order_the_answers_arrive_in() {
        let recent = Recent::new(Duration::from_secs(60));
        recent.put("alice", T + Duration::from_secs(5), "newer");
        recent.put("alice", T, "older, finished last");
        assert_eq!(recent.get(&"alice", T - Duration::from_secs(1)), Some("newer"));
        recent.put("alice", T + Duration::from_secs(6), "newest");
        assert_eq!(recent.get(&"alice", T + Duration::from_secs(5)), Some("newest"));
        recent.forget(&"alice");
        assert_eq!(recent.get(&"alice", T - Duration::from_secs(1)), None);
    }

    #[tokio::test]
    async fn a_call_whose_starter_is_dropped_is_not_handed_to_later_callers() {
        let flight: SingleFlight<&str, u32> = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let started = flight.run("alice", move || async move { rx.await.unwrap_or(0) });
        // Start the call, then drop its starter before the answer comes.
        assert!(tokio::time::timeout(Duration::from_millis(10), started).await.is_err());
        drop(tx);
        let (value, joined) = flight.run("alice", || async { 7 }).await;
        assert_eq!((value, joined), (7, false), "a new call, not the abandoned one");
    }

    #[tokio::test]
    async fn callers_meanwhile_join_the_call_in_flight() {
        let flight: SingleFlight<&str, u32> = SingleFlight::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let first = flight.run("alice", move || async move { rx.await.unwrap() });
        let second = flight.run("alice", || async { unreachable!("joined instead") });
        let answer = async {
            tokio::task::yield_now().await;
            tx.send(5).unwrap();
        };
        let ((a, _), (b, joined), ()) = tokio::join!(first, second, answer);
        assert_eq!((a, b, joined), (5, 5, true));
        assert_eq!(flight.run("alice", || async { 6 }).await, (6, false), "nothing kept once done");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ttl_keeps_nothing() {
        let recent = Recent::new(Duration::ZERO);
        recent.put("alice", T, 1);
        assert_eq!(recent.get(&"alice", T - Duration::from_secs(1)), None);
    }
}
