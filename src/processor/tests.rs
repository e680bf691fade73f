//! The processor under a flood of distinct users and accounts: every map
//! keyed by event data stays at its cap.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;

use super::*;
use crate::accounts::Scope;
use crate::config::RunArgs;
use crate::error::AwsError;
use crate::inventory::cached::{CacheSettings, CachingInventory, CACHE_CAPACITY};
use crate::inventory::{InventoryError, Need};
use crate::keys::{AccessKey, KeyLastUsed, KeyStatus, Listing};
use crate::ledger::sink::RecordedSinks;
use crate::ledger::MemoryLedger;
use crate::limit::{RateLimiter, RetryPolicy, MAX_BUCKETS};
use crate::sink::SinkError;

const USERS: usize = 100_000;
const ACCOUNTS: usize = 10_000;

/// Two active keys for everyone, each call through the per-account limiter.
struct Instant {
    limiter: Arc<RateLimiter>,
}

impl Instant {
    async fn take(&self, account: &str) {
        let _ = self.limiter.run(account, &RetryPolicy::default(), || async { Ok::<_, AwsError>(()) }).await;
    }
}

impl KeyInventory for Instant {
    async fn list_keys(&self, account_id: &str, user_name: &str, _: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        self.take(account_id).await;
        let keys =
            (1..=2).map(|n| AccessKey { access_key_id: key_id(user_name, n), status: KeyStatus::Active, created_at: None }).collect();
        Ok(Listing { user_name: Some(user_name.to_string()), keys, observed_at: OffsetDateTime::now_utc() })
    }
    async fn last_used(&self, account_id: &str, _: &str, _: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        self.take(account_id).await;
        Ok(Some(KeyLastUsed::default()))
    }
    async fn root_keys_present(&self, _: &str) -> Result<u32, InventoryError> {
        Ok(0)
    }
}

#[derive(Default)]
struct Counting(AtomicUsize);

impl FindingSink for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        self.0.fetch_add(findings.len(), Ordering::Relaxed);
        Box::pin(std::future::ready(findings.iter().map(|_| Ok(())).collect()))
    }
}

fn key_id(user: &str, n: u32) -> String {
    format!("AKIA{:0>12}{n:04}", user.trim_start_matches('u'))
}

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000 + i % ACCOUNTS)
}

fn body(template: &serde_json::Value, i: usize) -> String {
    let mut v = template.clone();
    let (user, account) = (format!("u{i}"), account(i));
    v["account"] = account.clone().into();
    v["detail"]["recipientAccountId"] = account.into();
    v["detail"]["requestParameters"]["userName"] = user.clone().into();
    v["detail"]["responseElements"]["accessKey"]["userName"] = user.clone().into();
    v["detail"]["responseElements"]["accessKey"]["accessKeyId"] = key_id(&user, 2).into();
    v["detail"]["eventTime"] = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap().into();
    v.to_string()
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

/// Every map keyed by event data is bounded: 100,000 distinct users in
/// 10,000 distinct accounts go through the processor (in process, with
/// an IAM that answers at once through the real rate limiter), and every
/// map stays at or under its cap while the process's memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_map_keyed_by_event_data_stays_bounded() {
    let template: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/create_access_key_admin.json").unwrap()).unwrap();
    let ids: BTreeSet<String> = (0..ACCOUNTS).map(account).collect();
    let accounts = Arc::new(Accounts::new("999999999999".into(), Scope::List(ids), None).await.unwrap());
    let limiter = Arc::new(RateLimiter::new(1_000_000.0));
    let defaults = RunArgs::from_flags("http://queue", "bus", &[]).unwrap();
    let inventory = CachingInventory::new(Instant { limiter: limiter.clone() }, limiter.clone(), &CacheSettings::from(&defaults));
    let sink = Arc::new(Counting::default());
    let ledger = Arc::new(MemoryLedger::default());
    let recorded = Arc::new(RecordedSinks::new(ledger.clone(), sink.clone()));
    let processor = Processor::new(inventory, recorded, accounts, ProcessorSettings::from(&defaults));

    let mut samples = Vec::new();
    for start in (0..USERS).step_by(10) {
        let batch: Vec<Message> = (start..start + 10).map(|i| Message::new(format!("m{i}"), body(&template, i))).collect();
        assert!(processor.handle_batch(&batch).await.iter().all(|d| *d == Disposition::Ack));
        if (start + 10) % 20_000 == 0 {
            samples.push((start + 10, rss_kb()));
        }
    }
    assert_eq!(sink.0.load(Ordering::Relaxed), USERS, "a finding per user");
    let (listings, last_used) = processor.inventory().cached();
    assert!(listings <= CACHE_CAPACITY && last_used <= CACHE_CAPACITY, "caches: {listings}, {last_used}");
    assert!(ledger.len() <= 50_000, "ledger in memory: {}", ledger.len());
    assert!(limiter.buckets() <= MAX_BUCKETS, "limiter buckets: {}", limiter.buckets());
    // Once every map is full (by 60,000 users), memory stays flat.
    let at = |n: usize| samples.iter().find(|(m, _)| *m == n).map(|(_, kb)| *kb).unwrap();
    let growth = at(100_000) as i64 - at(60_000) as i64;
    assert!(growth < 8 * 1024, "RSS grew {growth} kB from 60,000 to 100,000 users: {samples:?}");
}
