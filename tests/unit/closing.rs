//! What closes a violation besides an event that IAM's listing confirms:
//! IAM's word that the user is gone and the re-check of an assumed FAILED
//! (pure, `now` passed in), and a scan's look at the root user's keys,
//! which closes nothing without IAM's answer.

use std::collections::HashMap;
use std::time::Duration;

use keywatch::aws::{AwsError, ErrorClass};
use keywatch::decide::{
    conclude, conclude_recheck, recheck_delay, recheck_when, wants_recheck, Iam, Ignored, Outcome, RecheckWhen, Rules, MAX_RECHECK_DELAY,
};
use keywatch::exceptions::Exceptions;
use keywatch::finding::{finding_id, Reason, Severity, Status, CONTROL_ID, ROOT_CONTROL_ID};
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::keys::{KeyLastUsed, KeyStatus, Listing};
use keywatch::message::Disposition;
use keywatch::scan::{Quiet, ScanSettings, Scanner};
use keywatch::telemetry::EventOutcome;
use time::OffsetDateTime;

use crate::common::*;

fn gone(account_id: &str, user_name: &str) -> Result<Listing, InventoryError> {
    Err(InventoryError::NoSuchUser { account_id: account_id.into(), user_name: user_name.into() })
}

/// Look-ups that failed, each in its own way.
fn failures() -> Vec<InventoryError> {
    vec![
        InventoryError::Deferred,
        InventoryError::Aws(AwsError {
            operation: "ListAccessKeys",
            class: ErrorClass::Throttled,
            code: Some("Throttling".into()),
            message: String::new(),
        }),
        InventoryError::Aws(AwsError { operation: "ListAccessKeys", class: ErrorClass::Transient, code: None, message: "timeout".into() }),
        InventoryError::Aws(AwsError {
            operation: "ListAccessKeys",
            class: ErrorClass::Permanent,
            code: Some("AccessDenied".into()),
            message: String::new(),
        }),
        InventoryError::Aws(AwsError {
            operation: "AssumeRole",
            class: ErrorClass::Permanent,
            code: Some("CredentialsError".into()),
            message: String::new(),
        }),
    ]
}

#[test]
fn a_deleted_user_gets_a_passed_for_its_finding_id_saying_why() {
    // Offboarding: frank's keys and then frank are deleted; the delete
    // event is handled after, and IAM answers NoSuchEntity.
    let ev = event("delete_access_key.json");
    let (asked_at, now) = (after(&ev, 3), after(&ev, 4));
    let answer = gone(&ev.account_id, "frank");
    let iam = Iam::listed("frank", &answer, asked_at);
    assert!(matches!(iam, Iam::UserGone { user_name: "frank", .. }), "{iam:?}");
    let outcome = conclude(&ev, iam, &HashMap::new(), &Exceptions::default(), now, &RULES);
    assert_eq!((outcome.disposition(), outcome.label()), (Disposition::Ack, Some(EventOutcome::Finding)));
    let f = published(outcome);
    assert_eq!(f.finding_id, finding_id(CONTROL_ID, &ev.account_id, "frank"), "the id of the FAILED it closes");
    assert_eq!((f.status, f.severity, f.reason), (Status::Passed, Severity::Informational, Some(Reason::UserDeleted)));
    assert_eq!((f.active_key_count, f.active_keys.len(), f.event_state_assumed), (0, 0, false));
    assert_eq!((f.observed_at, f.detected_at), (asked_at, now), "observed when the listing that said so was asked for");
    assert_eq!(f.trigger.event_id, ev.event_id);
    let doc = json(&f);
    assert_eq!((doc["status"].as_str(), doc["reason"].as_str()), (Some("PASSED"), Some("user_deleted")));
    assert!(json(&failed()).get("reason").is_none(), "no reason on a FAILED");
    assert!(json(&passed()).get("reason").is_none(), "nor on a PASSED its listing explains");
}

#[test]
fn a_fresh_event_giving_an_unknown_user_a_key_closes_nothing_until_the_window_has_passed() {
    // IAM may not show a user created moments ago: within the window a
    // creation for an unknown user is acknowledged without a finding.
    let ev = event("create_access_key_admin.json");
    let answer = gone(&ev.account_id, "alice");
    let fresh = after(&ev, 1);
    let outcome = conclude(&ev, Iam::listed("alice", &answer, fresh), &HashMap::new(), &Exceptions::default(), fresh, &RULES);
    assert_eq!(outcome, Outcome::Ignored(Ignored::UserGone));
    assert_eq!((outcome.disposition(), outcome.label()), (Disposition::Ack, Some(EventOutcome::Ignored)));
    // Past the window IAM's answer stands.
    let late = after(&ev, 121);
    let f = published(conclude(&ev, Iam::listed("alice", &answer, late), &HashMap::new(), &Exceptions::default(), late, &RULES));
    assert_eq!((f.status, f.reason), (Status::Passed, Some(Reason::UserDeleted)));
    // A fresh deactivation of a gone user closes at once: it claims no key.
    let off = event("update_access_key_inactive.json");
    let answer = gone(&off.account_id, "carol");
    let now = after(&off, 1);
    let f = published(conclude(&off, Iam::listed("carol", &answer, now), &HashMap::new(), &Exceptions::default(), now, &RULES));
    assert_eq!((f.status, f.reason), (Status::Passed, Some(Reason::UserDeleted)));
}

#[test]
fn no_other_failure_ever_becomes_a_passed() {
    for name in ["delete_access_key.json", "update_access_key_inactive.json", "create_access_key_admin.json"] {
        let ev = event(name);
        for e in &failures() {
            let answer: Result<Listing, InventoryError> = Err(e.clone());
            for now in [after(&ev, 1), after(&ev, 3600)] {
                let iam = Iam::listed("someone", &answer, now);
                assert!(matches!(iam, Iam::Failed(_)), "{e}: {iam:?}");
                let outcome = conclude(&ev, iam, &HashMap::new(), &Exceptions::default(), now, &RULES);
                assert!(!matches!(outcome, Outcome::Publish(_)), "{name}, {e}: {outcome:?}");
                assert_eq!(outcome.disposition(), Disposition::Retry, "{name}, {e}");
            }
        }
    }
}

#[test]
fn the_reason_is_visible_in_asff_and_ocsf() {
    let f = user_deleted();
    let a = keywatch::format::asff::finding(&f, &keywatch::format::asff::Target::new("999988887777", "us-east-1"));
    assert_eq!(a.record_state(), Some(&aws_sdk_securityhub::types::RecordState::Archived));
    assert_eq!(a.compliance().and_then(|c| c.status()), Some(&aws_sdk_securityhub::types::ComplianceStatus::Passed));
    assert_eq!(a.product_fields().and_then(|p| p.get("keywatch/reason")).map(String::as_str), Some("user_deleted"));
    let description = a.description().unwrap();
    assert!(description.contains("frank") && description.ends_with("resolved; the IAM user was deleted."), "{description}");

    let o = keywatch::format::ocsf::compliance_finding(&f);
    assert_eq!((o["status_id"].as_u64(), o["status"].as_str()), (Some(4), Some("Resolved")));
    assert_eq!((o["activity_id"].as_u64(), o["compliance"]["status_id"].as_u64()), (Some(3), Some(1)));
    assert_eq!(o["status_detail"], "user_deleted: the IAM user was deleted");
    assert_eq!(o["unmapped"]["reason"], "user_deleted");
    assert!(keywatch::format::ocsf::compliance_finding(&passed()).get("status_detail").is_none());
}

/// An account without users whose summary cannot be read.
struct SummaryDenied;

impl KeyInventory for SummaryDenied {
    async fn list_keys(&self, _: &str, user_name: &str, _: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        Ok(Listing { user_name: Some(user_name.into()), keys: Vec::new(), observed_at: OffsetDateTime::now_utc() })
    }
    async fn last_used(&self, _: &str, _: &str, _: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        Ok(None)
    }
    async fn root_keys_present(&self, _: &str) -> Result<u32, InventoryError> {
        Err(InventoryError::Aws(AwsError {
            operation: "GetAccountSummary",
            class: ErrorClass::Permanent,
            code: Some("AccessDenied".into()),
            message: "denied".into(),
        }))
    }
}

#[tokio::test]
async fn a_scan_that_cannot_read_the_root_users_keys_is_incomplete_and_closes_nothing() {
    let sink = std::sync::Arc::new(Kept::default());
    let settings = ScanSettings { include_passed: true, last_use: true, users_in_flight: 1 };
    let scanner = Scanner::new(std::sync::Arc::new(SummaryDenied), sink.clone(), settings);
    let summary = scanner.scan_account("111122223333", &Exceptions::default(), &Quiet).await;
    assert!(!summary.complete(), "{summary:?}");
    assert_eq!((summary.root_access_keys, summary.errors), (None, 1));
    assert!(summary.error_samples[0].contains("GetAccountSummary"), "{summary:?}");
    assert!(sink.0.lock().unwrap().is_empty(), "no root PASSED without IAM's answer");
}

// ------------------------------------------------------------ re-checks

/// Alice's fresh key, not listed yet, beside an old active key: the
/// assumed FAILED.
fn assumed_failed() -> (keywatch::event::KeyEvent, keywatch::finding::Finding) {
    let ev = event("create_access_key_admin.json");
    let now = after(&ev, 1);
    let old = listing(&[("AKIAEXAMPLEALICE0001", KeyStatus::Active)], now);
    let f = published(conclude(&ev, Iam::Keys { user_name: "alice", listing: &old }, &HashMap::new(), &Exceptions::default(), now, &RULES));
    (ev, f)
}

#[test]
fn only_a_failed_resting_on_its_events_own_key_state_asks_for_a_recheck() {
    let (_, f) = assumed_failed();
    assert!(f.event_state_assumed && f.status == Status::Failed);
    assert!(wants_recheck(&f));
    assert!(!wants_recheck(&failed()), "a FAILED IAM's listing shows");
    assert!(!wants_recheck(&passed()) && !wants_recheck(&user_deleted()));
    assert!(!wants_recheck(&root()), "a root key the summary shows");
    let ev = event("create_access_key_root.json");
    let now = after(&ev, 1);
    let f = published(conclude(&ev, Iam::RootKeys { present: 0, observed_at: now }, &HashMap::new(), &Exceptions::default(), now, &RULES));
    assert!(wants_recheck(&f), "a fresh root key the summary does not show yet");
}

#[test]
fn a_recheck_is_due_once_the_window_has_passed_and_only_of_an_event_that_made_a_key_active() {
    let ev = event("create_access_key_admin.json");
    assert_eq!(recheck_when(&ev, after(&ev, 1), &RULES), Ok(RecheckWhen::Later(Duration::from_secs(120))));
    assert_eq!(recheck_delay(&ev, after(&ev, 100), &RULES), Duration::from_secs(21), "the rest of the window and a second");
    assert_eq!(recheck_when(&ev, after(&ev, 121), &RULES), Ok(RecheckWhen::Now));
    assert_eq!(recheck_delay(&ev, after(&ev, 500), &RULES), Duration::from_secs(1), "at least a second");
    let long = Rules { consistency_window: Duration::from_secs(3600), rotation: None };
    assert_eq!(recheck_delay(&ev, after(&ev, 1), &long), MAX_RECHECK_DELAY, "SQS delays 15 minutes at most: a longer window takes several");
    // A re-check of anything but a key made active is refused (forged).
    for name in ["delete_access_key.json", "update_access_key_inactive.json"] {
        let other = event(name);
        let refused = recheck_when(&other, after(&other, 500), &RULES).unwrap_err();
        assert!(matches!(&refused, Outcome::Invalid(e) if e.reason() == "bad_recheck"), "{refused:?}");
        assert_eq!(refused.disposition(), Disposition::Invalid, "left for the dead-letter queue");
    }
}

#[test]
fn a_recheck_closes_the_finding_when_iam_never_listed_the_key_and_says_so() {
    let (ev, failed) = assumed_failed();
    let now = after(&ev, 125);
    let old = listing(&[("AKIAEXAMPLEALICE0001", KeyStatus::Active)], after(&ev, 124));
    let outcome = conclude_recheck(&ev, Iam::Keys { user_name: "alice", listing: &old }, &HashMap::new(), &Exceptions::default(), now);
    assert_eq!((outcome.disposition(), outcome.label()), (Disposition::Ack, Some(EventOutcome::Finding)));
    let f = published(outcome);
    assert_eq!(
        (f.status, f.reason, f.finding_id.as_str()),
        (Status::Passed, Some(Reason::AssumedKeyNotConfirmed), failed.finding_id.as_str())
    );
    assert_eq!((f.active_key_count, f.event_state_assumed, f.observed_at), (1, false, after(&ev, 124)));
    let t = json(&f)["trigger"].clone();
    assert_eq!((t["event_id"].as_str(), t["event_name"].as_str()), (Some(format!("recheck:{}", ev.event_id).as_str()), Some("Recheck")));
    assert_ne!(f.trigger.event_id, failed.trigger.event_id, "not dropped as a repeat of the FAILED's event");
    assert!(!wants_recheck(&f));

    // IAM lists the key, and it is the only active one: a plain PASSED.
    let only = listing(&[("AKIAEXAMPLEALICE0001", KeyStatus::Inactive), (ev.access_key_id.as_deref().unwrap(), KeyStatus::Active)], now);
    let f =
        published(conclude_recheck(&ev, Iam::Keys { user_name: "alice", listing: &only }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.reason), (Status::Passed, None));
    // The user is gone meanwhile.
    let answer = gone(&ev.account_id, "alice");
    let f = published(conclude_recheck(&ev, Iam::listed("alice", &answer, now), &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.reason), (Status::Passed, Some(Reason::UserDeleted)));
}

#[test]
fn a_recheck_that_still_finds_two_active_keys_is_a_failed_again_resting_on_iam_alone() {
    let (ev, failed) = assumed_failed();
    let now = after(&ev, 125);
    let two = listing(&[("AKIAEXAMPLEALICE0001", KeyStatus::Active), (ev.access_key_id.as_deref().unwrap(), KeyStatus::Active)], now);
    let f = published(conclude_recheck(&ev, Iam::Keys { user_name: "alice", listing: &two }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.severity, f.active_key_count), (Status::Failed, failed.severity, 2));
    assert_eq!((f.event_state_assumed, f.reason, f.finding_id.as_str()), (false, None, failed.finding_id.as_str()));
    assert!(!wants_recheck(&f), "nothing assumed: no further re-check");
    // Under an approved exception it is suppressed, as any FAILED.
    let f = published(conclude_recheck(&ev, Iam::Keys { user_name: "alice", listing: &two }, &HashMap::new(), &exception(), now));
    assert!(f.suppressed);
}

#[test]
fn a_recheck_never_passes_without_iams_answer() {
    let (ev, _) = assumed_failed();
    let now = after(&ev, 125);
    for e in failures() {
        let answer: Result<Listing, InventoryError> = Err(e);
        let outcome = conclude_recheck(&ev, Iam::listed("alice", &answer, now), &HashMap::new(), &Exceptions::default(), now);
        assert_eq!(outcome.disposition(), Disposition::Retry, "{outcome:?}");
    }
}

#[test]
fn a_recheck_of_a_root_key_closes_it_when_the_summary_never_showed_it() {
    let ev = event("create_access_key_root.json");
    let now = after(&ev, 125);
    let f = published(conclude_recheck(&ev, Iam::RootKeys { present: 0, observed_at: now }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.control_id, f.status, f.reason), (ROOT_CONTROL_ID, Status::Passed, Some(Reason::AssumedKeyNotConfirmed)));
    assert_eq!(f.finding_id, root().finding_id);
    let f = published(conclude_recheck(&ev, Iam::RootKeys { present: 1, observed_at: now }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.severity, f.event_state_assumed), (Status::Failed, Severity::Critical, false));
}
