//! The caching inventory: a [`KeyInventory`] in front of another that
//! spares IAM calls without changing any answer that matters.
//!
//! - **Listings in flight are shared.** A burst brings several events for
//!   the same user together (a rotation creates a key, deactivates the old
//!   one, deletes it); one `ListAccessKeys` serves them all, provided it
//!   started after the event the caller asks for.
//! - **Recent listings are reused** for events that happened before they
//!   started: such a listing already shows those changes, and a change after
//!   it has an event of its own, which can never be served by it.
//! - **Last use is cached** (AWS itself updates it only every few hours),
//!   and a key's owner never changes.
//! - **Enrichment yields to detection.** A last-use look-up that is only
//!   enrichment ([`Need::Optional`]) is left out while the account's IAM
//!   budget is below half, so that listings get the budget under a burst.
//!
//! Every map here is keyed by event data and bounded (`cache`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{InventoryError, KeyInventory, Need};
use crate::cache::{BoundedCache, SingleFlight};
use crate::keys::{KeyLastUsed, Listing, User};
use crate::limit::RateLimiter;
use crate::telemetry::{self, Coalesced};

/// (account, user) or (account, key id).
type Key = (String, String);

/// Entries each cache holds at most.
pub const CACHE_CAPACITY: usize = 10_000;

/// How the caching inventory behaves.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// How long a user's listing may serve events that happened before it
    /// started; zero lists for every event.
    pub listing_reuse: Duration,
    /// How long a key's last-use answer is reused; zero asks every time.
    pub last_used_ttl: Duration,
}

pub struct CachingInventory<I> {
    inner: Arc<I>,
    /// The budget that decides whether enrichment can be afforded.
    limiter: Arc<RateLimiter>,
    listings: SingleFlight<Key, Result<Listing, InventoryError>>,
    recent: BoundedCache<Key, Listing>,
    last_used_calls: SingleFlight<Key, Result<Option<KeyLastUsed>, InventoryError>>,
    last_used: BoundedCache<Key, Option<KeyLastUsed>>,
}

impl<I: KeyInventory> CachingInventory<I> {
    pub fn new(inner: I, limiter: Arc<RateLimiter>, settings: &CacheSettings) -> Self {
        CachingInventory {
            inner: Arc::new(inner),
            limiter,
            listings: SingleFlight::default(),
            recent: BoundedCache::new(CACHE_CAPACITY, settings.listing_reuse),
            last_used_calls: SingleFlight::default(),
            last_used: BoundedCache::new(CACHE_CAPACITY, settings.last_used_ttl),
        }
    }

    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// Keeps a listing for the events that follow it, unless a later one
    /// is kept already; a failed listing forgets the user's.
    fn remember(&self, key: Key, listing: &Result<Listing, InventoryError>) {
        match listing {
            Ok(l) => self.recent.insert_unless(key, l.clone(), |kept| kept.observed_at > l.observed_at),
            Err(_) => self.recent.remove(&key),
        }
    }

    /// Entries kept: recent listings and last-use answers (for tests of
    /// the bound).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> (usize, usize) {
        (self.recent.len(), self.last_used.len())
    }
}

impl<I: KeyInventory> KeyInventory for CachingInventory<I> {
    async fn list_keys(&self, account_id: &str, user_name: &str, newer_than: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        let key = (account_id.to_string(), user_name.to_string());
        if let Some(after) = newer_than {
            if let Some(listing) = self.recent.get(&key).filter(|l| l.observed_at > after) {
                telemetry::coalesced_check(Coalesced::Recent);
                return Ok(listing);
            }
        }
        let inner = self.inner.clone();
        let (account, user) = key.clone();
        let (listing, joined) =
            self.listings.run(key.clone(), newer_than, move || async move { inner.list_keys(&account, &user, None).await }).await;
        if joined {
            telemetry::coalesced_check(Coalesced::InFlight);
        } else {
            self.remember(key, &listing);
        }
        listing
    }

    async fn list_user_keys(&self, account_id: &str, user: &User) -> Result<Listing, InventoryError> {
        // A scan lists each user once: nothing in flight to share, but the
        // listing is kept for the events that follow it.
        let key = (account_id.to_string(), user.name.clone());
        let listing = self.inner.list_user_keys(account_id, user).await;
        self.remember(key, &listing);
        listing
    }

    async fn last_used(&self, account_id: &str, access_key_id: &str, need: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        let key = (account_id.to_string(), access_key_id.to_string());
        if let Some(cached) = self.last_used.get(&key) {
            return Ok(cached);
        }
        if need == Need::Optional && !self.limiter.has_headroom(account_id) {
            telemetry::enrichment_skipped();
            return Err(InventoryError::Deferred);
        }
        let inner = self.inner.clone();
        let (account, id) = key.clone();
        let (answer, _) =
            self.last_used_calls.run(key.clone(), None, move || async move { inner.last_used(&account, &id, need).await }).await;
        let answer = answer?;
        self.last_used.insert(key, answer.clone());
        Ok(answer)
    }

    fn remember_last_used(&self, account_id: &str, access_key_id: &str, last: KeyLastUsed) {
        // Kept like an answer from IAM, and for as long.
        self.last_used.insert((account_id.to_string(), access_key_id.to_string()), Some(last));
    }

    async fn root_keys_present(&self, account_id: &str) -> Result<u32, InventoryError> {
        self.inner.root_keys_present(account_id).await
    }

    async fn list_users(&self, account_id: &str) -> Result<Vec<User>, InventoryError> {
        self.inner.list_users(account_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AccessKey, KeyStatus};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::macros::datetime;

    /// Counts listings; each is observed at the next second from T.
    #[derive(Default)]
    struct Counting {
        listings: AtomicUsize,
        lookups: AtomicUsize,
    }

    const T: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    impl KeyInventory for Counting {
        async fn list_keys(&self, _: &str, _: &str, _: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
            let n = self.listings.fetch_add(1, Ordering::SeqCst) as i64 + 1;
            let key = AccessKey { access_key_id: format!("K{n}"), status: KeyStatus::Active, created_at: None };
            Ok(Listing { user_name: None, keys: vec![key], observed_at: T + time::Duration::seconds(n) })
        }
        async fn last_used(&self, _: &str, _: &str, _: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(Some(KeyLastUsed::default()))
        }
        async fn root_keys_present(&self, _: &str) -> Result<u32, InventoryError> {
            Ok(0)
        }
    }

    fn cached(limiter: RateLimiter) -> CachingInventory<Counting> {
        let settings = CacheSettings { listing_reuse: Duration::from_secs(60), last_used_ttl: Duration::from_secs(60) };
        CachingInventory::new(Counting::default(), Arc::new(limiter), &settings)
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_serves_older_events_only() {
        let inv = cached(RateLimiter::new(0.0));
        let first = inv.list_keys("1", "alice", Some(T)).await.unwrap();
        assert_eq!(first.observed_at, T + time::Duration::seconds(1));
        let older = inv.list_keys("1", "alice", Some(T)).await.unwrap();
        assert_eq!(older, first, "an event before the listing reuses it");
        let newer = inv.list_keys("1", "alice", Some(first.observed_at)).await.unwrap();
        assert_ne!(newer, first, "an event at or after the listing's start lists again");
        assert_eq!(inv.inner().listings.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(61)).await;
        inv.list_keys("1", "alice", Some(T)).await.unwrap();
        assert_eq!(inv.inner().listings.load(Ordering::SeqCst), 3, "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn optional_look_ups_wait_for_headroom_and_cached_answers_are_free() {
        let limiter = RateLimiter::new(2.0);
        limiter.acquire("1").await;
        limiter.acquire("1").await;
        let inv = cached(limiter);
        assert_eq!(inv.last_used("1", "K1", Need::Optional).await, Err(InventoryError::Deferred));
        assert!(inv.last_used("1", "K1", Need::Required).await.is_ok(), "required look-ups are never left out");
        assert!(inv.last_used("1", "K1", Need::Optional).await.is_ok(), "answered from the cache");
        assert_eq!(inv.inner().lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remembered_last_use_is_answered_like_iam_s_own_and_expires_like_it() {
        let inv = cached(RateLimiter::new(0.0));
        let last = KeyLastUsed { user_name: Some("alice".into()), usage: Default::default() };
        inv.remember_last_used("1", "K9", last.clone());
        assert_eq!(inv.last_used("1", "K9", Need::Required).await, Ok(Some(last)));
        assert_eq!(inv.inner().lookups.load(Ordering::SeqCst), 0, "answered without IAM");
        assert!(inv.last_used("2", "K9", Need::Required).await.is_ok());
        assert_eq!(inv.inner().lookups.load(Ordering::SeqCst), 1, "kept per account");
        tokio::time::advance(Duration::from_secs(61)).await;
        inv.last_used("1", "K9", Need::Required).await.unwrap();
        assert_eq!(inv.inner().lookups.load(Ordering::SeqCst), 2, "expired with the last-use TTL");
    }
}
