//! Coalesce: one call in flight per key, shared by everyone who asks
//! meanwhile.
//!
//! During a burst, several events for the same user arrive together (a
//! rotation creates a key, deactivates the old one, deletes it). Their
//! re-checks would each list the same keys; instead, the first asks IAM and
//! the others await the same answer. Nothing is kept once the call ends: a
//! later check asks again, so no answer outlives the moment it was true.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

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
        let value = shared.await;
        if !joined {
            self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
        (value, joined)
    }
}
