//! The processor in process, with an IAM whose answers the test scripts:
//! the last word wins — a finding resting on an older IAM answer than one
//! already published for the same user is dropped and counted, never
//! published after it.

use std::sync::{Arc, Mutex};

use crate::common::Kept;
use keywatch::accounts::Accounts;
use keywatch::config::RunArgs;
use keywatch::finding::Status;
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::keys::{AccessKey, KeyLastUsed, KeyStatus, Listing};
use keywatch::ledger::RecordedSinks;
use keywatch::message::{Disposition, Message};
use keywatch::processor::{Processor, ProcessorSettings};
use time::OffsetDateTime;

/// Answers listings in the order given: (observed_at offset in seconds,
/// active keys).
struct Scripted(Mutex<Vec<(i64, usize)>>);

impl KeyInventory for Scripted {
    async fn list_keys(&self, _: &str, user_name: &str, _: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        let (offset, active) = self.0.lock().unwrap().remove(0);
        let keys = (0..2)
            .map(|i| AccessKey {
                access_key_id: format!("AKIAEXAMPLEALICE000{}", i + 1),
                status: if i < active { KeyStatus::Active } else { KeyStatus::Inactive },
                created_at: None,
            })
            .collect();
        let observed_at = OffsetDateTime::now_utc() + time::Duration::seconds(offset);
        Ok(Listing { user_name: Some(user_name.to_string()), keys, observed_at })
    }
    async fn last_used(&self, _: &str, _: &str, _: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        Ok(Some(KeyLastUsed::default()))
    }
    async fn root_keys_present(&self, _: &str) -> Result<u32, InventoryError> {
        Ok(0)
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A fixture with a fresh `eventTime` and the given event id.
fn fresh(name: &str, event_id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
    let now = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    v["detail"]["eventTime"] = now.into();
    v["detail"]["eventID"] = event_id.into();
    v.to_string()
}

fn processor(script: Vec<(i64, usize)>) -> (Processor<Scripted>, Arc<Kept>) {
    let sink = Arc::new(Kept::default());
    let defaults = RunArgs::from_flags("http://queue", "bus", &["--relist-budget-ms", "0"]).unwrap();
    let accounts = Arc::new(Accounts::only("111122223333"));
    // Behind the ledger the worker keeps without a table: the last word is
    // the sink's decorator's.
    let recorded = Arc::new(RecordedSinks::in_memory(sink.clone()));
    (Processor::new(Scripted(Mutex::new(script)), recorded, accounts, ProcessorSettings::from(&defaults)), sink)
}

#[tokio::test]
async fn a_decision_on_an_older_listing_is_dropped_after_a_newer_one_was_published() {
    // The create is listed at +10 s (two active), then a re-delivered
    // create is checked on a listing that started earlier (+5 s).
    let (p, sink) = processor(vec![(10, 2), (5, 2)]);
    let create = fresh("create_access_key_admin.json", "evt-1");
    assert_eq!(p.handle_batch(&[Message::new("m1", create.clone())]).await, [Disposition::Ack]);
    assert_eq!(p.handle_batch(&[Message::new("m2", fresh("create_access_key_admin.json", "evt-2"))]).await, [Disposition::Ack]);
    let kept = sink.0.lock().unwrap().clone();
    assert_eq!(kept.len(), 1, "the older decision is not published: {kept:?}");
    assert_eq!(kept[0].trigger.event_id, "evt-1");
}

#[tokio::test]
async fn in_one_batch_only_the_decision_on_the_latest_listing_goes_out() {
    // Two events of one user in a batch, each with its own listing (the
    // first event's started at +1 s, the second's at +2 s).
    let (p, sink) = processor(vec![(1, 2), (2, 2)]);
    let batch = [
        Message::new("m1", fresh("create_access_key_admin.json", "evt-a")),
        Message::new("m2", fresh("create_access_key_admin.json", "evt-b")),
    ];
    assert_eq!(p.handle_batch(&batch).await, [Disposition::Ack, Disposition::Ack], "both done");
    let kept = sink.0.lock().unwrap().clone();
    assert_eq!(kept.len(), 1, "one answer for one user from one batch: {kept:?}");
    assert_eq!((kept[0].trigger.event_id.as_str(), kept[0].status), ("evt-b", Status::Failed), "the later listing's");
}

/// The organisation as Organizations lists it: one member account.
struct OneMember;

impl keywatch::accounts::AccountLister for OneMember {
    fn active_accounts(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<String>, keywatch::aws::AwsError>> {
        Box::pin(std::future::ready(Ok(vec!["111122223333".to_string()])))
    }
}

/// An event of `age` seconds for an account the organisation's list does
/// not hold.
fn unlisted(age: i64, event_id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&fresh("create_access_key_admin.json", event_id)).unwrap();
    let at = OffsetDateTime::now_utc() - time::Duration::seconds(age);
    v["detail"]["eventTime"] = at.format(&time::format_description::well_known::Rfc3339).unwrap().into();
    v["account"] = "444455556666".into();
    v["detail"]["recipientAccountId"] = "444455556666".into();
    v.to_string()
}

#[tokio::test]
async fn in_organisation_mode_an_event_of_an_account_listed_before_it_happened_is_left_for_redelivery() {
    use keywatch::accounts::{AccountLister, Scope};
    let lister: Arc<dyn AccountLister> = Arc::new(OneMember);
    let accounts = Arc::new(Accounts::new("999999999999".into(), Scope::Organization, Some(lister)).await.unwrap());
    let defaults = RunArgs::from_flags("http://queue", "bus", &["--relist-budget-ms", "0"]).unwrap();
    let sink = Arc::new(Kept::default());
    let p = Processor::new(Scripted(Mutex::new(vec![])), sink.clone(), accounts, ProcessorSettings::from(&defaults));
    let recent = Message::new("m1", unlisted(5, "evt-new-account"));
    assert_eq!(p.handle_batch(&[recent]).await, [Disposition::Retry], "the account may have joined after the list was taken");
    let old = Message::new("m2", unlisted(3600, "evt-old"));
    assert_eq!(p.handle_batch(&[old]).await, [Disposition::Ack], "listed after the event: a foreign account");
    assert!(sink.0.lock().unwrap().is_empty());
}
