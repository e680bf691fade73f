//! Evaluate and finding, pure: keys + event → verdict → document.

use keywatch::evaluate::{evaluate, listing_reflects, Verdict};
use keywatch::event::{parse, KeyEvent, KeyStatus, Parsed};
use keywatch::finding::{build, finding_id, Severity, Status, CONTROL_ID};
use keywatch::keys::AccessKey;
use time::macros::datetime;

fn fixture_event(name: &str) -> KeyEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match parse(&std::fs::read_to_string(path).unwrap()) {
        Ok(Parsed::Key(ev)) => *ev,
        other => panic!("{other:?}"),
    }
}

fn key(id: &str, status: KeyStatus) -> AccessKey {
    AccessKey { access_key_id: id.into(), status, created_at: Some(datetime!(2026-01-01 0:00 UTC)) }
}

fn no_usage() -> std::collections::HashMap<String, keywatch::keys::KeyUsage> {
    std::collections::HashMap::new()
}

/// IAM's answer for keys never used.
fn never_used(ids: &[&str]) -> std::collections::HashMap<String, keywatch::keys::KeyUsage> {
    ids.iter().map(|id| (id.to_string(), keywatch::keys::KeyUsage::default())).collect()
}

const NEW: &str = "AKIAEXAMPLEALICE0002";

#[test]
fn two_active_keys_are_a_violation() {
    let ev = fixture_event("create_access_key_admin.json");
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::Active), key(NEW, KeyStatus::Active)], true);
    assert_eq!(a.verdict, Verdict::Violation);
    assert_eq!(a.active_count(), 2);
    assert!(!a.assumed_event_state);
}

#[test]
fn one_active_key_is_compliant() {
    let ev = fixture_event("create_access_key_admin.json");
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::Inactive), key(NEW, KeyStatus::Active)], true);
    assert_eq!(a.verdict, Verdict::Compliant);
}

#[test]
fn more_than_two_keys_are_counted_not_assumed() {
    let ev = fixture_event("create_access_key_admin.json");
    let keys: Vec<AccessKey> = (0..8).map(|i| key(&format!("AKIA{i}"), KeyStatus::Active)).chain([key(NEW, KeyStatus::Active)]).collect();
    let a = evaluate(&ev, keys, true);
    assert_eq!(a.verdict, Verdict::Violation);
    assert_eq!(a.active_count(), 9);
}

#[test]
fn a_stale_listing_is_merged_with_the_event_when_fresh() {
    let ev = fixture_event("create_access_key_admin.json");
    let listed = vec![key("AKIAOLD", KeyStatus::Active)];
    assert!(!listing_reflects(&ev, &listed));
    let a = evaluate(&ev, listed.clone(), true);
    assert_eq!(a.verdict, Verdict::Violation);
    assert!(a.assumed_event_state);
    // An old event's listing is the truth: the key may be gone since.
    let a = evaluate(&ev, listed, false);
    assert_eq!(a.verdict, Verdict::Compliant);
    assert!(!a.assumed_event_state);
}

#[test]
fn a_stale_listing_of_a_deactivation_is_never_assumed() {
    let ev = fixture_event("update_access_key_inactive.json");
    let listed = vec![key("AKIAEXAMPLECAROL0001", KeyStatus::Active), key("AKIAOTHER", KeyStatus::Active)];
    assert!(!listing_reflects(&ev, &listed));
    let a = evaluate(&ev, listed, true);
    assert_eq!(a.verdict, Verdict::Unconfirmed, "neither FAILED nor PASSED until IAM shows it");
    assert!(!a.assumed_event_state);
    assert_eq!(a.active_count(), 2, "IAM's count, not the event's");
}

#[test]
fn deactivation_leaving_one_active_resolves_and_two_stay_failed() {
    let ev = fixture_event("update_access_key_inactive.json");
    let resolved = evaluate(&ev, vec![key("AKIAEXAMPLECAROL0001", KeyStatus::Inactive), key("AKIAB", KeyStatus::Active)], true);
    assert_eq!(resolved.verdict, Verdict::Resolved);
    let still = evaluate(
        &ev,
        vec![key("AKIAEXAMPLECAROL0001", KeyStatus::Inactive), key("AKIAB", KeyStatus::Active), key("AKIAC", KeyStatus::Active)],
        true,
    );
    assert_eq!(still.verdict, Verdict::Violation);
}

#[test]
fn delete_leaving_none_active_still_resolves() {
    let ev = fixture_event("delete_access_key.json");
    let listed = vec![key("AKIAEXAMPLEFRANK0001", KeyStatus::Active)];
    assert!(!listing_reflects(&ev, &listed), "the deleted key is still listed");
    let a = evaluate(&ev, listed, true);
    assert_eq!(a.verdict, Verdict::Resolved, "IAM lists at most one active key");
    assert_eq!(a.active_count(), 1, "the delete is not assumed");
    assert!(!a.assumed_event_state);
    assert!(listing_reflects(&ev, &[]));
}

#[test]
fn unknown_statuses_never_count_as_active() {
    let ev = fixture_event("create_access_key_admin.json");
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::parse("active")), key(NEW, KeyStatus::Active)], true);
    assert_eq!(a.verdict, Verdict::Compliant);
}

#[test]
fn finding_carries_the_public_fields() {
    let ev = fixture_event("create_access_key_admin.json");
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::Active), key(NEW, KeyStatus::Active)], true);
    let detected = datetime!(2026-11-20 14:03:12.5 UTC);
    let f = build(&ev, "alice", &a, &never_used(&["AKIAOLD", NEW]), detected).expect("a finding");
    assert_eq!(f.status, Status::Failed);
    // An administrator made the key for alice: severity rises.
    assert_eq!(f.severity, Severity::High);
    let doc: serde_json::Value = serde_json::to_value(&f).unwrap();
    assert_eq!(doc["control_id"], "CIS-AWS-1.13");
    assert_eq!(doc["status"], "FAILED");
    assert_eq!(doc["severity"], "HIGH");
    assert_eq!(doc["account_id"], "111122223333");
    assert_eq!(doc["user_name"], "alice");
    assert_eq!(doc["active_key_count"], 2);
    assert_eq!(doc["active_keys"][1]["access_key_id"], NEW);
    assert_eq!(doc["active_keys"][1]["status"], "Active");
    assert_eq!(doc["active_keys"][1]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(doc["trigger"]["event_id"], "a1b2c3d4-0001-4000-8000-000000000001");
    assert_eq!(doc["trigger"]["event_name"], "CreateAccessKey");
    assert_eq!(doc["trigger"]["event_time"], "2026-11-20T14:03:09Z");
    assert_eq!(doc["trigger"]["actor_arn"], "arn:aws:iam::111122223333:user/admin");
    assert_eq!(doc["detected_at"], "2026-11-20T14:03:12.5Z");
    assert_eq!(doc["detection_latency_seconds"], 3.5);
    assert_eq!(doc["finding_id"], finding_id(CONTROL_ID, "111122223333", "alice"));
    assert!(doc["remediation"].as_str().unwrap().contains("aws iam update-access-key --user-name alice --access-key-id AKIA"));
    assert_eq!(doc["suppressed"], false);
}

#[test]
fn self_made_second_key_is_medium() {
    let ev = fixture_event("create_access_key_self.json");
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::Active), key("AKIAEXAMPLEBOB000002", KeyStatus::Active)], true);
    let f = build(&ev, "bob", &a, &no_usage(), datetime!(2026-11-20 14:03:10 UTC)).unwrap();
    assert_eq!(f.severity, Severity::Medium);
}

#[test]
fn resolution_reuses_the_finding_id_and_compliance_emits_nothing() {
    let failed_ev = fixture_event("create_access_key_no_account.json");
    let failed = build(
        &failed_ev,
        "alice",
        &evaluate(&failed_ev, vec![key("A", KeyStatus::Active), key("AKIAEXAMPLEALICE0003", KeyStatus::Active)], true),
        &no_usage(),
        datetime!(2026-11-20 14:05:01 UTC),
    )
    .unwrap();
    let mut ev = fixture_event("update_access_key_inactive.json");
    ev.target = keywatch::event::Target::User { name: "alice".into(), from: keywatch::event::TargetSource::RequestParameters };
    let passed = build(
        &ev,
        "alice",
        &evaluate(&ev, vec![key("AKIAEXAMPLECAROL0001", KeyStatus::Inactive), key("A", KeyStatus::Active)], true),
        &no_usage(),
        datetime!(2026-11-20 14:06:00 UTC),
    )
    .unwrap();
    assert_eq!(passed.status, Status::Passed);
    assert_eq!(passed.finding_id, failed.finding_id);
    assert!(passed.remediation.is_none());

    let create = fixture_event("create_access_key_self.json");
    let compliant = evaluate(&create, vec![key("AKIAEXAMPLEBOB000002", KeyStatus::Active)], true);
    assert!(build(&create, "bob", &compliant, &no_usage(), datetime!(2026-11-20 14:03:10 UTC)).is_none());
}

#[test]
fn finding_ids_differ_per_account_and_user() {
    let a = finding_id(CONTROL_ID, "111122223333", "alice");
    assert_eq!(a, finding_id(CONTROL_ID, "111122223333", "alice"));
    assert_eq!(a.len(), 32);
    assert_ne!(a, finding_id(CONTROL_ID, "111122223334", "alice"));
    assert_ne!(a, finding_id(CONTROL_ID, "111122223333", "alicf"));
    // The separator keeps ("1", "23") and ("12", "3") apart.
    assert_ne!(finding_id(CONTROL_ID, "1", "23"), finding_id(CONTROL_ID, "12", "3"));
}

mod enrichment_and_root {
    use std::collections::HashMap;

    use super::*;
    use keywatch::evaluate::evaluate_root;
    use keywatch::finding::{build_root, recommend_key, ROOT_CONTROL_ID};
    use keywatch::keys::KeyUsage;
    use keywatch::telemetry::failed_call_label;

    fn aged(id: &str, created: time::OffsetDateTime) -> AccessKey {
        AccessKey { access_key_id: id.into(), status: KeyStatus::Active, created_at: Some(created) }
    }

    fn used(at: time::OffsetDateTime) -> KeyUsage {
        KeyUsage { last_used_at: Some(at), service: Some("s3".into()), region: Some("eu-west-1".into()) }
    }

    #[test]
    fn the_never_used_key_is_recommended() {
        let old = aged("OLD", datetime!(2025-01-01 0:00 UTC));
        let new = aged("NEW", datetime!(2026-11-20 0:00 UTC));
        let never = KeyUsage::default;
        let usage = HashMap::from([("OLD".to_string(), used(datetime!(2026-11-27 0:00 UTC))), ("NEW".to_string(), never())]);
        assert_eq!(recommend_key(&[&old, &new], &usage).as_deref(), Some("NEW"));
        // Both used: the least recently used.
        let usage = HashMap::from([
            ("OLD".to_string(), used(datetime!(2026-11-27 0:00 UTC))),
            ("NEW".to_string(), used(datetime!(2026-11-01 0:00 UTC))),
        ]);
        assert_eq!(recommend_key(&[&old, &new], &usage).as_deref(), Some("NEW"));
        let usage = HashMap::from([
            ("OLD".to_string(), used(datetime!(2026-10-01 0:00 UTC))),
            ("NEW".to_string(), used(datetime!(2026-11-01 0:00 UTC))),
        ]);
        assert_eq!(recommend_key(&[&old, &new], &usage).as_deref(), Some("OLD"));
        // Neither used: the newer; a key of unknown age counts as newest.
        let usage = HashMap::from([("OLD".to_string(), never()), ("NEW".to_string(), never()), ("EVENT".to_string(), never())]);
        assert_eq!(recommend_key(&[&old, &new], &usage).as_deref(), Some("NEW"));
        let unknown = AccessKey { access_key_id: "EVENT".into(), status: KeyStatus::Active, created_at: None };
        assert_eq!(recommend_key(&[&old, &unknown, &new], &usage).as_deref(), Some("EVENT"));
        // One key: nothing to recommend.
        assert_eq!(recommend_key(&[&old], &usage), None);
    }

    #[test]
    fn no_key_is_recommended_while_one_keys_last_use_is_unknown() {
        let old = aged("OLD", datetime!(2025-01-01 0:00 UTC));
        let new = aged("NEW", datetime!(2026-11-20 0:00 UTC));
        // OLD's look-up failed: it may be the key in use, so NEW (never
        // used) is not named either way.
        let usage = HashMap::from([("NEW".to_string(), KeyUsage::default())]);
        assert_eq!(recommend_key(&[&old, &new], &usage), None);
        assert_eq!(recommend_key(&[&old, &new], &HashMap::new()), None);
        let ev = fixture_event("create_access_key_admin.json");
        let a = evaluate(&ev, vec![old, new], true);
        let f = build(&ev, "alice", &a, &usage, datetime!(2026-11-20 14:03:10 UTC)).unwrap();
        assert_eq!(f.recommended_key_to_deactivate, None);
        assert!(f.remediation.as_deref().unwrap().contains("--access-key-id <KEY_ID>"), "{:?}", f.remediation);
        let known: Vec<(&str, bool)> = f.active_keys.iter().map(|k| (k.access_key_id.as_str(), k.last_use_known)).collect();
        // The event's own key (NEW, assumed: the listing did not show it)
        // was not looked up either.
        assert_eq!(known, [("OLD", false), ("NEW", true), (NEW, false)]);
    }

    #[test]
    fn a_failed_finding_names_the_key_and_its_usage() {
        let ev = fixture_event("create_access_key_admin.json");
        let old = aged("AKIAOLD", datetime!(2025-01-01 0:00 UTC));
        let new = aged(NEW, datetime!(2026-11-20 14:03:09 UTC));
        let a = evaluate(&ev, vec![old, new], true);
        let usage = HashMap::from([("AKIAOLD".to_string(), used(datetime!(2026-11-19 8:00 UTC))), (NEW.to_string(), KeyUsage::default())]);
        let f = build(&ev, "alice", &a, &usage, datetime!(2026-11-20 14:03:10 UTC)).unwrap();
        assert_eq!(f.recommended_key_to_deactivate.as_deref(), Some(NEW));
        assert_eq!(
            f.remediation.as_deref(),
            Some(&*format!(
                "Deactivate the access key not in use (in account 111122223333): aws iam update-access-key --user-name alice --access-key-id {NEW} --status Inactive"
            ))
        );
        let doc = serde_json::to_value(&f).unwrap();
        assert_eq!(doc["active_keys"][0]["last_used_at"], "2026-11-19T08:00:00Z");
        assert_eq!(doc["active_keys"][0]["last_used_service"], "s3");
        assert_eq!(doc["active_keys"][0]["last_used_region"], "eu-west-1");
        assert_eq!(doc["active_keys"][1]["last_used_at"], serde_json::Value::Null);
        assert_eq!(doc["active_keys"][1]["last_use_known"], true, "never used, and known to be");
        assert_eq!(doc["suppressed"], false);
    }

    #[test]
    fn root_keys_are_judged_against_cis_1_4() {
        let ev = fixture_event("create_access_key_root.json");
        // The summary does not show the new key yet: the fresh event counts.
        assert_eq!(evaluate_root(&ev, 0, true), (Verdict::Violation, 1, true));
        // An old event with no root key left: resolved.
        assert_eq!(evaluate_root(&ev, 0, false), (Verdict::Resolved, 0, false));
        assert_eq!(evaluate_root(&ev, 1, false), (Verdict::Violation, 1, false));

        let f = build_root(&ev, Verdict::Violation, 1, true, datetime!(2026-11-20 14:03:10 UTC)).unwrap();
        assert_eq!(f.control_id, ROOT_CONTROL_ID);
        assert_eq!(f.status, Status::Failed);
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.user_name, "<root>");
        assert_eq!(f.active_key_count, 1);
        assert!(f.event_state_assumed);
        assert_ne!(f.finding_id, finding_id(CONTROL_ID, "111122223333", "<root>"));
        let passed = build_root(&ev, Verdict::Resolved, 0, false, datetime!(2026-11-20 14:03:10 UTC)).unwrap();
        assert!(build_root(&ev, Verdict::Unconfirmed, 1, false, datetime!(2026-11-20 14:03:10 UTC)).is_none(), "never PASSED");
        assert_eq!(passed.status, Status::Passed);
        assert_eq!(passed.finding_id, f.finding_id);
    }

    #[test]
    fn failed_call_codes_map_to_a_bounded_set() {
        assert_eq!(failed_call_label("LimitExceededException"), "LimitExceeded");
        assert_eq!(failed_call_label("AccessDenied"), "AccessDenied");
        assert_eq!(failed_call_label("NoSuchEntityException"), "NoSuchEntity");
        assert_eq!(failed_call_label("SomethingNew"), "other");
        assert_eq!(failed_call_label("Client.UnauthorizedOperation: arn:aws:iam::1:user/x"), "other");
    }
}

#[test]
fn dead_letter_queue_urls_are_derived_from_the_input_queue() {
    use keywatch::aws::sqs::sibling_url;
    assert_eq!(
        sibling_url("https://sqs.us-east-1.amazonaws.com/111122223333/keywatch-events", "111122223333", "keywatch-events-dlq").as_deref(),
        Some("https://sqs.us-east-1.amazonaws.com/111122223333/keywatch-events-dlq")
    );
    assert_eq!(
        sibling_url("http://127.0.0.1:5000/123456789012/in", "444455556666", "dlq").as_deref(),
        Some("http://127.0.0.1:5000/444455556666/dlq")
    );
    assert_eq!(sibling_url("https://example.com/queue", "1", "dlq"), None);
    assert_eq!(sibling_url("not a url", "1", "dlq"), None);
}

#[test]
fn an_actor_arn_of_another_account_is_not_the_users_arn() {
    // bob acting on his own keys, but the record's ARN names another
    // account (and partition): the finding's ARN is built from the event's
    // account and the user name.
    let mut ev = fixture_event("create_access_key_self.json");
    ev.actor.arn = Some("arn:aws-cn:iam::999988887777:user/team/bob".into());
    let a = evaluate(&ev, vec![key("AKIAOLD", KeyStatus::Active), key("AKIAEXAMPLEBOB000002", KeyStatus::Active)], true);
    let f = build(&ev, "bob", &a, &no_usage(), datetime!(2026-11-20 14:03:10 UTC)).unwrap();
    assert_eq!(f.user_arn, "arn:aws:iam::111122223333:user/bob");
    // The same ARN in the event's account is used, path included.
    ev.actor.arn = Some("arn:aws:iam::111122223333:user/team/bob".into());
    assert_eq!(keywatch::finding::user_arn(&ev, "bob"), "arn:aws:iam::111122223333:user/team/bob");
}
