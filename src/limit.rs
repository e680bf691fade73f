//! Limit: client-side rate limiting and retries for IAM, per account.
//!
//! IAM throttles each account with a token bucket whose size AWS does not
//! publish. A burst (a key-rotation job touching hundreds of users) must not
//! turn into a storm of `Throttling` errors, so every IAM call first takes a
//! token from its account's bucket. The bucket adapts: a throttle halves the
//! account's rate, each success wins a little of it back, up to the
//! configured rate. Throttled and transient failures are retried with
//! exponential backoff and full jitter; every attempt goes through
//! `aws::call`, so each throttle is counted in the metrics.
//!
//! Detection comes first. Work that can wait (a scan taken off the queue)
//! runs [`in_background`]: in each account its calls take a token only while
//! no detection call waits for one, and leave a reserve in the bucket, so
//! that a key event arriving during a scan finds a token at once instead of
//! queueing behind the scan's calls. The scan still gets the account's whole
//! rate while no event needs it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{AwsError, ErrorClass};

/// Retry policy for IAM calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base: Duration::from_millis(100), cap: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform pause in [0, min(cap, base·2^attempt)).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        ceiling.mul_f64(jitter())
    }
}

/// A number in [0, 1) from the clock's low bits: enough to spread retries,
/// no cryptographic use.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

tokio::task_local! {
    /// Set while a task does work that can wait (see [`in_background`]).
    static BACKGROUND: ();
}

/// Runs `work` with its IAM calls behind detection's: in each account they
/// take a token only while no other call waits for one, and only above a
/// reserve kept for the calls that detection needs.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

fn in_the_background() -> bool {
    BACKGROUND.try_with(|_| ()).is_ok()
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// Current rate (tokens per second), adapted on throttling.
    rate: f64,
    last: Instant,
    /// Calls that are not in the background waiting for a token: while
    /// there are any, background calls take none.
    waiting: usize,
}

impl Bucket {
    /// Tokens at `now`: refilled at the current rate since `last`, up to
    /// the burst (the rate, at least one token).
    fn tokens_at(&self, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst())
    }

    fn burst(&self) -> f64 {
        self.rate.max(1.0)
    }

    /// Tokens background calls leave in the bucket: a quarter of the burst,
    /// at least one where the burst has room for it.
    fn reserve(&self) -> f64 {
        (self.burst() / 4.0).max(1.0).min(self.burst() - 1.0)
    }
}

/// A call counted in its bucket's `waiting` until it takes a token, or
/// until it is given up (its future dropped).
struct Waiting<'a> {
    limiter: &'a RateLimiter,
    account: &'a str,
    counted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut buckets = self.limiter.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = buckets.get_mut(self.account) {
                b.waiting = b.waiting.saturating_sub(1);
            }
        }
    }
}

/// Accounts whose buckets are kept at most. A bucket that is full and at
/// the configured rate is the same as a new one, so those go first; past
/// that, the longest idle.
pub const MAX_BUCKETS: usize = 4_096;

/// Per-account adaptive token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    /// Configured rate per account (requests per second); also the burst.
    max_rate: f64,
    /// Lowest rate a throttle can bring an account to.
    min_rate: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests per second per account, with a burst of as many.
    /// A rate of 0 turns limiting off.
    pub fn new(rate: f64) -> Self {
        RateLimiter { max_rate: rate, min_rate: (rate / 16.0).max(0.5), buckets: Mutex::new(HashMap::new()) }
    }

    fn enabled(&self) -> bool {
        self.max_rate > 0.0
    }

    /// Takes a token for `account`, waiting as long as the bucket needs; in
    /// the background ([`in_background`]), also while another call waits and
    /// until the bucket holds more than its reserve.
    pub async fn acquire(&self, account: &str) {
        if !self.enabled() {
            return;
        }
        let background = in_the_background();
        let mut waiting = Waiting { limiter: self, account, counted: false };
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if !buckets.contains_key(account) && buckets.len() >= MAX_BUCKETS {
                    self.evict(&mut buckets, now);
                }
                let b = buckets.entry(account.to_string()).or_insert(Bucket {
                    tokens: self.max_rate,
                    rate: self.max_rate,
                    last: now,
                    waiting: 0,
                });
                b.tokens = b.tokens_at(now);
                b.last = now;
                // What the bucket must hold for this call to take a token.
                let needed = if background { 1.0 + b.reserve() + b.waiting as f64 } else { 1.0 };
                if b.tokens >= needed {
                    b.tokens -= 1.0;
                    if waiting.counted {
                        b.waiting -= 1;
                        waiting.counted = false;
                    }
                    return;
                }
                if !background && !waiting.counted {
                    b.waiting += 1;
                    waiting.counted = true;
                }
                Duration::from_secs_f64((needed - b.tokens) / b.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Makes room for a new bucket.
    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        buckets.retain(|_, b| !(b.rate >= self.max_rate && b.tokens_at(now) >= b.burst() && b.waiting == 0));
        while buckets.len() >= MAX_BUCKETS {
            let idle = buckets.iter().filter(|(_, b)| b.waiting == 0).min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone());
            let Some(idle) = idle else { break };
            buckets.remove(&idle);
        }
    }

    /// Accounts with a bucket now (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True while `account`'s bucket is at least half full: room for calls
    /// that can wait or be done without (enrichment), leaving the rest of
    /// the budget to the calls detection needs. Takes no token.
    pub(crate) fn has_headroom(&self, account: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = buckets.get(account) else { return true };
        b.tokens_at(Instant::now()) >= b.burst() / 2.0
    }

    /// The account was throttled: halve its rate.
    pub fn throttled(&self, account: &str) {
        if !self.enabled() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(account) {
            b.rate = (b.rate / 2.0).max(self.min_rate);
            b.tokens = b.tokens.min(0.0);
        }
    }

    /// A call succeeded: win back a little of the rate.
    pub fn succeeded(&self, account: &str) {
        if !self.enabled() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(account) {
            if b.rate < self.max_rate {
                b.rate = (b.rate + self.max_rate / 32.0).min(self.max_rate);
            }
        }
    }

    /// The current rate for `account` (for tests).
    #[cfg(test)]
    pub(crate) fn rate(&self, account: &str) -> f64 {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.get(account).map_or(self.max_rate, |b| b.rate)
    }

    /// Runs `call` for `account` under the limiter, retrying throttled and
    /// transient failures per `policy`.
    pub async fn run<T, F, Fut>(&self, account: &str, policy: &RetryPolicy, mut call: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 0;
        loop {
            self.acquire(account).await;
            match call().await {
                Ok(v) => {
                    self.succeeded(account);
                    return Ok(v);
                }
                Err(e) => {
                    if e.class == ErrorClass::Throttled {
                        self.throttled(account);
                    }
                    attempt += 1;
                    if !e.is_retryable() || attempt >= policy.max_attempts {
                        return Err(e);
                    }
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_and_success_wins_it_back() {
        let limiter = RateLimiter::new(16.0);
        limiter.acquire("a").await;
        limiter.throttled("a");
        assert_eq!(limiter.rate("a"), 8.0);
        limiter.throttled("a");
        limiter.throttled("a");
        limiter.throttled("a");
        limiter.throttled("a");
        assert_eq!(limiter.rate("a"), 1.0, "floored at a sixteenth");
        for _ in 0..100 {
            limiter.succeeded("a");
        }
        assert_eq!(limiter.rate("a"), 16.0, "never above the configured rate");
    }
}
