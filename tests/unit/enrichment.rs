//! The last-use enrichment in process: which `GetAccessKeyLastUsed` calls a
//! finding costs, and when they start. A key the event itself just created
//! (as IAM's listing confirms) is known never used without asking; the key
//! an event makes active is asked about while the listing is read, not
//! after it; what a created key taught is kept for the user's next events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Kept;
use keywatch::accounts::Accounts;
use keywatch::config::RunArgs;
use keywatch::finding::{Finding, Status};
use keywatch::inventory::cached::{CacheSettings, CachingInventory};
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::keys::{AccessKey, KeyLastUsed, KeyStatus, KeyUsage, Listing};
use keywatch::limit::RateLimiter;
use keywatch::message::{Disposition, Message};
use keywatch::processor::{Processor, ProcessorSettings};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

const ACCOUNT: &str = "111122223333";
/// The user's older key: created long ago, last used yesterday.
const OLD_KEY: &str = "AKIAEXAMPLEOLDKEY001";
const OLD_KEY_CREATED: OffsetDateTime = datetime!(2025-01-01 00:00:00 UTC);

/// IAM for one user with two active keys: `OLD_KEY` and the event's key,
/// created at `created_at`. Logs every call as it starts and ends.
struct Watched {
    event_key: String,
    created_at: Option<OffsetDateTime>,
    log: Mutex<Vec<String>>,
}

impl Watched {
    fn new(event_key: &str, created_at: Option<OffsetDateTime>) -> Self {
        Watched { event_key: event_key.into(), created_at, log: Mutex::new(Vec::new()) }
    }
    fn note(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn lookups(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| l.starts_with("last_used")).collect()
    }
}

impl KeyInventory for Watched {
    async fn list_keys(&self, _: &str, user_name: &str, _: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        let observed_at = OffsetDateTime::now_utc();
        self.note("list:start".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.note("list:end".into());
        let keys = vec![
            AccessKey { access_key_id: OLD_KEY.into(), status: KeyStatus::Active, created_at: Some(OLD_KEY_CREATED) },
            AccessKey { access_key_id: self.event_key.clone(), status: KeyStatus::Active, created_at: self.created_at },
        ];
        Ok(Listing { user_name: Some(user_name.to_string()), keys, observed_at })
    }
    async fn last_used(&self, _: &str, access_key_id: &str, _: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        self.note(format!("last_used:{access_key_id}"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let yesterday = OffsetDateTime::now_utc() - time::Duration::days(1);
        let usage = KeyUsage { last_used_at: Some(yesterday), service: Some("s3".into()), region: Some("eu-west-1".into()) };
        Ok(Some(KeyLastUsed { user_name: Some("alice".into()), usage }))
    }
    async fn root_keys_present(&self, _: &str) -> Result<u32, InventoryError> {
        Ok(0)
    }
}

fn fixture(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `CreateAccessKey` of `AKIAEXAMPLEALICE0002` for alice, at `event_time`.
fn create(event_time: OffsetDateTime) -> String {
    let mut v = fixture("create_access_key_admin.json");
    v["detail"]["eventTime"] = event_time.format(&Rfc3339).unwrap().into();
    v.to_string()
}

/// `UpdateAccessKey` of carol's `AKIAEXAMPLECAROL0001` to `status`, now.
fn update(status: &str) -> String {
    let mut v = fixture("update_access_key_inactive.json");
    v["detail"]["eventTime"] = OffsetDateTime::now_utc().format(&Rfc3339).unwrap().into();
    v["detail"]["requestParameters"]["status"] = status.into();
    v.to_string()
}

fn settings() -> ProcessorSettings {
    ProcessorSettings::from(&RunArgs::from_flags("http://queue", "bus", &["--relist-budget-ms", "0"]).unwrap())
}

async fn check<I: KeyInventory>(inventory: I, body: String) -> (Processor<I>, Finding) {
    let sink = Arc::new(Kept::default());
    let p = Processor::new(inventory, sink.clone(), Arc::new(Accounts::only(ACCOUNT)), settings());
    assert_eq!(p.handle_batch(&[Message::new("m1", body)]).await, [Disposition::Ack]);
    let finding = sink.0.lock().unwrap().pop().expect("a finding");
    assert_eq!(finding.status, Status::Failed);
    (p, finding)
}

fn key<'a>(f: &'a Finding, id: &str) -> &'a keywatch::finding::KeyView {
    f.active_keys.iter().find(|k| k.access_key_id == id).unwrap_or_else(|| panic!("{id} in {f:?}"))
}

#[tokio::test]
async fn a_key_the_event_just_created_is_known_unused_without_asking_iam() {
    let now = OffsetDateTime::now_utc();
    // IAM's CreateDate a second after CloudTrail's eventTime: the same call.
    let (p, f) = check(Watched::new("AKIAEXAMPLEALICE0002", Some(now + time::Duration::seconds(1))), create(now)).await;
    assert_eq!(p.inventory().lookups(), [format!("last_used:{OLD_KEY}")], "only the older key is asked about");
    let new = key(&f, "AKIAEXAMPLEALICE0002");
    assert!(new.last_use_known && new.last_used_at.is_none(), "known never used: {new:?}");
    assert!(key(&f, OLD_KEY).last_used_at.is_some());
    assert_eq!(f.recommended_key_to_deactivate.as_deref(), Some("AKIAEXAMPLEALICE0002"), "the unused new key");
}

#[tokio::test]
async fn a_listed_key_created_at_another_time_is_asked_about() {
    // The event says the key was made now; IAM says an hour ago: the event's
    // word does not stand in for IAM's answer.
    let now = OffsetDateTime::now_utc();
    let (p, f) = check(Watched::new("AKIAEXAMPLEALICE0002", Some(now - time::Duration::hours(1))), create(now)).await;
    let mut asked = p.inventory().lookups();
    asked.sort();
    assert_eq!(asked, ["last_used:AKIAEXAMPLEALICE0002".to_string(), format!("last_used:{OLD_KEY}")]);
    assert!(key(&f, "AKIAEXAMPLEALICE0002").last_used_at.is_some(), "IAM's answer");
}

#[tokio::test]
async fn an_old_creation_is_asked_about_and_while_the_listing_is_read() {
    // Past the consistency window, the key may have been used since.
    let then = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let (p, f) = check(Watched::new("AKIAEXAMPLEALICE0002", Some(then)), create(then)).await;
    let log = p.inventory().log();
    assert_eq!(log[..3], ["list:start", "last_used:AKIAEXAMPLEALICE0002", "list:end"], "{log:?}");
    assert!(key(&f, "AKIAEXAMPLEALICE0002").last_use_known);
}

#[tokio::test]
async fn a_reactivated_key_is_asked_about_while_the_listing_is_read() {
    let (p, f) = check(Watched::new("AKIAEXAMPLECAROL0001", Some(OLD_KEY_CREATED)), update("Active")).await;
    let log = p.inventory().log();
    assert_eq!(log[..3], ["list:start", "last_used:AKIAEXAMPLECAROL0001", "list:end"], "{log:?}");
    assert_eq!(log[3..], [format!("last_used:{OLD_KEY}")], "the other key once the listing names it");
    assert!(f.active_keys.iter().all(|k| k.last_use_known), "{f:?}");
    assert!(f.recommended_key_to_deactivate.is_some());
}

#[tokio::test]
async fn what_the_created_key_taught_serves_the_user_s_next_events() {
    let now = OffsetDateTime::now_utc();
    let inner = Watched::new("AKIAEXAMPLEALICE0002", Some(now));
    let cache = CacheSettings { listing_reuse: Duration::ZERO, last_used_ttl: Duration::from_secs(600) };
    let inventory = CachingInventory::new(inner, Arc::new(RateLimiter::new(0.0)), &cache);
    let (p, _) = check(inventory, create(now)).await;
    // An event that names the created key and no user (its owner is asked
    // for) finds the answer kept: never used, owned by alice.
    let owner = p.inventory().last_used(ACCOUNT, "AKIAEXAMPLEALICE0002", Need::Required).await.unwrap().unwrap();
    assert_eq!((owner.user_name.as_deref(), owner.usage), (Some("alice"), KeyUsage::default()));
    assert_eq!(p.inventory().inner().lookups(), [format!("last_used:{OLD_KEY}")], "no call for the created key");
}

#[tokio::test]
async fn a_deactivation_asks_for_nothing_ahead_of_the_listing() {
    // Carol deactivated a key but IAM lists both active (an old event, so
    // the listing is the truth): a violation, and neither look-up started
    // before the listing ended.
    let mut v = fixture("update_access_key_inactive.json");
    v["detail"]["eventTime"] = (OffsetDateTime::now_utc() - time::Duration::hours(2)).format(&Rfc3339).unwrap().into();
    let (p, _) = check(Watched::new("AKIAEXAMPLECAROL0001", Some(OLD_KEY_CREATED)), v.to_string()).await;
    let log = p.inventory().log();
    assert_eq!(log[..2], ["list:start", "list:end"], "{log:?}");
    assert_eq!(p.inventory().lookups().len(), 2);
}
