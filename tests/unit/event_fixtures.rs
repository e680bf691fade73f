//! The parser against CloudTrail-shaped fixtures: every shape the reference
//! describes resolves to the right target user, key and state, and every
//! malformed body is rejected with a bounded reason instead of a panic.

use keywatch::event::{parse, EventName, KeyEvent, KeyStatus, ParseError, Parsed, Target, TargetSource};
use time::macros::datetime;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key_event(name: &str) -> KeyEvent {
    match parse(&fixture(name)) {
        Ok(Parsed::Key(ev)) => *ev,
        other => panic!("{name}: expected a key event, got {other:?}"),
    }
}

fn user(ev: &KeyEvent) -> (&str, TargetSource) {
    match &ev.target {
        Target::User { name, from } => (name.as_str(), *from),
        other => panic!("expected a user target, got {other:?}"),
    }
}

#[test]
fn admin_created_key_targets_the_user_in_the_response() {
    let ev = key_event("create_access_key_admin.json");
    assert_eq!(ev.event_name, EventName::CreateAccessKey);
    assert_eq!(ev.event_id, "a1b2c3d4-0001-4000-8000-000000000001");
    assert_eq!(ev.account_id, "111122223333");
    assert_eq!(ev.event_time, datetime!(2026-11-20 14:03:09 UTC));
    assert_eq!(user(&ev), ("alice", TargetSource::ResponseElements));
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLEALICE0002"));
    assert_eq!(ev.key_status, Some(KeyStatus::Active));
    assert_eq!(ev.actor.arn.as_deref(), Some("arn:aws:iam::111122223333:user/admin"));
    assert_eq!(ev.actor.user_name.as_deref(), Some("admin"));
    assert!(ev.failed.is_none());
}

#[test]
fn self_service_key_with_null_request_parameters() {
    let ev = key_event("create_access_key_self.json");
    assert_eq!(user(&ev), ("bob", TargetSource::ResponseElements));
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLEBOB000002"));
    assert_eq!(ev.key_status, Some(KeyStatus::Active));
}

#[test]
fn update_names_user_key_and_new_status() {
    let ev = key_event("update_access_key_inactive.json");
    assert_eq!(ev.event_name, EventName::UpdateAccessKey);
    assert_eq!(user(&ev), ("carol", TargetSource::RequestParameters));
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLECAROL0001"));
    assert_eq!(ev.key_status, Some(KeyStatus::Inactive));
}

#[test]
fn update_without_user_by_an_iam_user_targets_the_caller() {
    let ev = key_event("update_access_key_self_no_user.json");
    assert_eq!(user(&ev), ("dave", TargetSource::CallerIdentity));
    assert_eq!(ev.key_status, Some(KeyStatus::Active));
}

#[test]
fn update_without_user_by_a_role_is_unresolved_but_keeps_the_key() {
    let ev = key_event("update_access_key_role_no_user.json");
    assert_eq!(ev.target, Target::Unresolved);
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLEERIN00001"));
    assert_eq!(ev.actor.identity_type.as_deref(), Some("AssumedRole"));
}

#[test]
fn delete_names_user_and_key_and_no_status() {
    let ev = key_event("delete_access_key.json");
    assert_eq!(ev.event_name, EventName::DeleteAccessKey);
    assert_eq!(user(&ev), ("frank", TargetSource::RequestParameters));
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLEFRANK0001"));
    assert_eq!(ev.key_status, None);
}

#[test]
fn delete_without_user_by_a_role_is_unresolved() {
    let ev = key_event("delete_access_key_role_no_user.json");
    assert_eq!(ev.target, Target::Unresolved);
    assert_eq!(ev.access_key_id.as_deref(), Some("AKIAEXAMPLEGRACE0001"));
}

#[test]
fn failed_calls_carry_their_error_code() {
    let ev = key_event("create_access_key_failed_limit.json");
    let failed = ev.failed.expect("failed call");
    assert_eq!(failed.code, "LimitExceededException");
    assert_eq!(failed.message.as_deref(), Some("Cannot exceed quota for AccessKeysPerUser: 2"));
    assert_eq!(ev.access_key_id, None);

    let ev = key_event("create_access_key_failed_denied.json");
    assert_eq!(ev.failed.as_ref().expect("failed call").code, "AccessDenied");
    // No request parameters, no response: the caller is the only name.
    assert_eq!(user(&ev), ("mallory", TargetSource::CallerIdentity));
}

#[test]
fn envelope_without_account_takes_the_recipient_account() {
    let ev = key_event("create_access_key_no_account.json");
    assert_eq!(ev.account_id, "111122223333");
    assert_eq!(user(&ev), ("alice", TargetSource::ResponseElements));
}

#[test]
fn an_envelope_account_that_differs_from_the_record_is_refused() {
    let body = fixture("create_access_key_admin.json").replace("\"account\": \"111122223333\"", "\"account\": \"444455556666\"");
    let e = parse(&body).unwrap_err();
    assert_eq!(e.reason(), "account_mismatch", "{e}");
}

#[test]
fn root_key_creation_is_a_root_target_never_a_user() {
    let ev = key_event("create_access_key_root.json");
    assert_eq!(ev.target, Target::Root);
    assert!(ev.actor.is_root());
}

#[test]
fn other_iam_events_are_ignored_not_invalid() {
    match parse(&fixture("other_event_create_user.json")) {
        Ok(Parsed::Ignored { event_name, event_id }) => {
            assert_eq!(event_name.as_deref(), Some("CreateUser"));
            assert_eq!(event_id.as_deref(), Some("a1b2c3d4-0012-4000-8000-000000000012"));
        }
        other => panic!("expected ignored, got {other:?}"),
    }
}

/// What an IAM CloudTrail rule cannot deliver is refused with its own
/// reason, whatever the event: forged or misrouted input.
#[test]
fn claims_no_iam_rule_can_deliver_are_refused() {
    let admin = fixture("create_access_key_admin.json");
    let long_name = "a".repeat(10_000);
    let cases = [
        (admin.replace("iam.amazonaws.com", "s3.amazonaws.com"), "bad_event_source"),
        (admin.replace("\"source\": \"aws.iam\"", "\"source\": \"aws.s3\""), "bad_source"),
        (admin.replace("\"source\": \"aws.iam\"", "\"source\": \"my.app\""), "bad_source"),
        (admin.replace("AWS API Call via CloudTrail", "Object Created"), "bad_detail_type"),
        (admin.replace("111122223333", "1111-2222-3333"), "bad_account"),
        (admin.replace("\"alice\"", &format!("{long_name:?}")), "bad_user_name"),
        (admin.replace("\"alice\"", "\"al ice\""), "bad_user_name"),
        (admin.replace("AKIAEXAMPLEALICE0002", "AKIA/../x"), "bad_access_key_id"),
        (fixture("other_event_create_user.json").replace("iam.amazonaws.com", "s3.amazonaws.com"), "bad_event_source"),
    ];
    for (body, reason) in cases {
        match parse(&body) {
            Err(e) => {
                assert_eq!(e.reason(), reason, "{e}");
                assert!(e.to_string().chars().count() < 200, "logged values are truncated: {e}");
            }
            Ok(p) => panic!("{reason}: expected a refusal, got {p:?}"),
        }
    }
    // The replay source and IAM's whole user name alphabet are fine.
    let replayed = admin.replace("\"source\": \"aws.iam\"", "\"source\": \"keywatch.replay\"");
    assert!(matches!(parse(&replayed), Ok(Parsed::Key(_))));
    let named = admin.replace("\"alice\"", "\"a+l=i,c.e@x_y-z\"");
    assert!(matches!(parse(&named), Ok(Parsed::Key(_))));
}

#[test]
fn a_bad_time_is_quoted_truncated() {
    let body = fixture("create_access_key_admin.json").replace("2026-11-20T14:03:09Z", &"9".repeat(5_000));
    let e = parse(&body).unwrap_err();
    assert_eq!(e.reason(), "bad_time");
    assert!(e.to_string().len() < 200, "{e}");
}

#[test]
fn malformed_bodies_are_rejected_with_a_reason() {
    let cases = [
        ("invalid_garbage.txt", "not_json"),
        ("invalid_no_detail.json", "no_detail"),
        ("invalid_bad_event_time.json", "bad_time"),
        ("invalid_missing_event_id.json", "missing_field"),
    ];
    for (name, reason) in cases {
        match parse(&fixture(name)) {
            Err(e) => assert_eq!(e.reason(), reason, "{name}: {e}"),
            Ok(p) => panic!("{name}: expected an error, got {p:?}"),
        }
    }
    assert_eq!(parse("").unwrap_err().reason(), "not_json");
    assert_eq!(parse("[1,2]").unwrap_err().reason(), "not_json");
    assert_eq!(parse("{}").unwrap_err(), ParseError::NoDetail);
}

#[test]
fn missing_account_everywhere_is_invalid() {
    let body = fixture("create_access_key_no_account.json").replace("\"recipientAccountId\": \"111122223333\",", "");
    assert_eq!(parse(&body).unwrap_err(), ParseError::MissingField("account or recipientAccountId"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap fuzz over truncations of every fixture: each prefix parses or
    // fails cleanly.
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let body = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for cut in (0..body.len()).step_by(7) {
            if body.is_char_boundary(cut) {
                let _ = parse(&body[..cut]);
            }
        }
    }
}

#[test]
fn an_event_id_is_a_bounded_token_of_safe_characters() {
    let admin = fixture("create_access_key_admin.json");
    let id = "a1b2c3d4-0001-4000-8000-000000000001";
    for bad in ["a1b2\\u001b[31mred", "line\\nforged INFO line", "has space", "quote\\\"d", &"a".repeat(129), "ü-nicode"] {
        let e = parse(&admin.replace(id, bad)).unwrap_err();
        assert_eq!(e.reason(), "bad_event_id", "{bad}: {e}");
        assert!(e.to_string().len() < 200, "{e}");
    }
    // CloudTrail's UUIDs, and ids of other safe characters (a replay's
    // `replay:`-style ids), up to 128 characters.
    for good in ["replay:a1b2c3d4-0001", "evt_1.2", &"a".repeat(128)] {
        assert_eq!(key_event_from(&admin.replace(id, good)).event_id, good);
    }
    // An ignored event's id is reported only when it is such a token.
    let other = fixture("other_event_create_user.json");
    match parse(&other.replace("a1b2c3d4-0012-4000-8000-000000000012", "forged\\nline")) {
        Ok(Parsed::Ignored { event_id, .. }) => assert_eq!(event_id, None),
        other => panic!("{other:?}"),
    }
    // So is its name: one with control characters is left out of the log.
    match parse(&other.replace("\"CreateUser\"", "\"CreateUser\\u001b[31m\\nforged INFO line\"")) {
        Ok(Parsed::Ignored { event_name, .. }) => assert_eq!(event_name, None),
        other => panic!("{other:?}"),
    }
    match parse(&other) {
        Ok(Parsed::Ignored { event_name, .. }) => assert_eq!(event_name.as_deref(), Some("CreateUser")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_error_code_that_is_not_a_bounded_token_is_other() {
    let denied = fixture("create_access_key_failed_denied.json");
    for bad in ["Access\\u001b[0mDenied", "Denied\\nforged line", &"E".repeat(129)] {
        let ev = key_event_from(&denied.replace("\"AccessDenied\"", &format!("\"{bad}\"")));
        assert_eq!(ev.failed.expect("still a failed call").code, "other", "{bad}");
    }
    for good in ["AccessDenied", "Client.UnauthorizedOperation", "iam:Throttling_1-x"] {
        let ev = key_event_from(&denied.replace("\"AccessDenied\"", &format!("\"{good}\"")));
        assert_eq!(ev.failed.expect("failed call").code, good);
    }
}

fn key_event_from(body: &str) -> KeyEvent {
    match parse(body) {
        Ok(Parsed::Key(ev)) => *ev,
        other => panic!("expected a key event, got {other:?}"),
    }
}
