//! The pure decision, in process: every outcome `conclude` can reach, from
//! fixtures and hand-made IAM answers, with what becomes of the message
//! and its metric label. No emulator, no clock: `now` is passed in.

use std::collections::HashMap;
use std::time::Duration;

use keywatch::aws::{AwsError, ErrorClass};
use keywatch::decide::{
    conclude, just_created, owner, screen, superseded, triage, usage_to_prefetch, usage_wanted, Iam, Ignored, JustCreated, Outcome, Retry,
    Rules,
};
use keywatch::event::{parse, KeyEvent, Parsed, Target};
use keywatch::exceptions::{Exception, Exceptions};
use keywatch::finding::rfc3339;
use keywatch::finding::{finding_id, Status, CONTROL_ID, ROOT_CONTROL_ID};
use keywatch::inventory::InventoryError;
use keywatch::keys::{AccessKey, KeyLastUsed, KeyStatus, KeyUsage, Listing};
use keywatch::message::Disposition;
use keywatch::telemetry::EventOutcome;
use time::macros::{date, datetime};
use time::OffsetDateTime;

const RULES: Rules = Rules { consistency_window: Duration::from_secs(120), rotation: None };

fn body(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn event(name: &str) -> KeyEvent {
    match parse(&body(name)) {
        Ok(Parsed::Key(ev)) => *ev,
        other => panic!("{other:?}"),
    }
}

/// A moment `secs` after the event.
fn after(ev: &KeyEvent, secs: i64) -> OffsetDateTime {
    ev.event_time + time::Duration::seconds(secs)
}

fn listing(keys: &[(&str, KeyStatus)], observed_at: OffsetDateTime) -> Listing {
    Listing {
        user_name: None,
        keys: keys.iter().map(|(id, s)| AccessKey { access_key_id: id.to_string(), status: s.clone(), created_at: None }).collect(),
        observed_at,
    }
}

fn aws(class: ErrorClass, code: &str) -> InventoryError {
    InventoryError::Aws(AwsError { operation: "ListAccessKeys", class, code: Some(code.into()), message: code.into() })
}

fn none() -> HashMap<String, KeyUsage> {
    HashMap::new()
}

/// Asserts the disposition and label every outcome carries.
fn carries(outcome: &Outcome, disposition: Disposition, label: Option<EventOutcome>) {
    assert_eq!((outcome.disposition(), outcome.label()), (disposition, label), "{outcome:?}");
}

#[test]
fn an_unreadable_body_is_invalid_and_left_for_the_dead_letter_queue() {
    let outcome = triage(parse("not json")).unwrap_err();
    assert!(matches!(outcome, Outcome::Invalid(_)));
    carries(&outcome, Disposition::Invalid, Some(EventOutcome::Invalid));
}

#[test]
fn another_event_is_ignored_and_acknowledged() {
    let outcome = triage(parse(&body("other_event_create_user.json"))).unwrap_err();
    assert!(matches!(outcome, Outcome::Ignored(Ignored::NotKeyEvent { .. })));
    carries(&outcome, Disposition::Ack, Some(EventOutcome::Ignored));
}

#[test]
fn a_failed_call_is_screened_out_before_iam_is_asked() {
    let ev = triage(parse(&body("create_access_key_failed_limit.json"))).unwrap();
    let outcome = screen(&ev, after(&ev, 1), true).expect("screened out");
    assert!(matches!(&outcome, Outcome::FailedCall { code } if code.starts_with("LimitExceeded")));
    carries(&outcome, Disposition::Ack, Some(EventOutcome::FailedCall));
    let ok = event("create_access_key_admin.json");
    assert_eq!(screen(&ok, after(&ok, 1), true), None, "a successful call goes on");
}

#[test]
fn a_key_owner_is_found_ignored_or_retried() {
    let ev = event("delete_access_key_role_no_user.json");
    assert_eq!(ev.target, Target::Unresolved);
    let found = KeyLastUsed { user_name: Some("carol".into()), usage: KeyUsage::default() };
    assert_eq!(owner(&ev, Some(Ok(Some(found)))), Ok("carol".into()));

    let unknown = owner(&ev, Some(Ok(None))).unwrap_err();
    assert_eq!(unknown, Outcome::Ignored(Ignored::OwnerUnknown));
    carries(&unknown, Disposition::Ack, Some(EventOutcome::Ignored));
    assert_eq!(owner(&ev, None).unwrap_err(), Outcome::Ignored(Ignored::NoTarget), "no user and no key");

    // A deleted key whose owner IAM will never tell: acknowledged.
    let gone = owner(&ev, Some(Err(aws(ErrorClass::Permanent, "AccessDenied")))).unwrap_err();
    assert!(matches!(gone, Outcome::Ignored(Ignored::DeletedKeyOwner(_))));
    // Throttled: retried.
    let later = owner(&ev, Some(Err(aws(ErrorClass::Throttled, "Throttling")))).unwrap_err();
    assert!(matches!(later, Outcome::Retry(Retry::Lookup(_))));
    carries(&later, Disposition::Retry, None);

    // For an update, even a permanent error is retried: the key still exists.
    let update = event("update_access_key_role_no_user.json");
    assert!(matches!(owner(&update, Some(Err(aws(ErrorClass::Permanent, "AccessDenied")))), Err(Outcome::Retry(_))));
}

#[test]
fn iam_failures_are_retried_and_never_close_anything() {
    let ev = event("create_access_key_admin.json");
    let now = after(&ev, 1);
    let throttled = aws(ErrorClass::Throttled, "Throttling");
    let outcome = conclude(&ev, Iam::Failed(&throttled), &none(), &Exceptions::default(), now, &RULES);
    carries(&outcome, Disposition::Retry, None);
    // IAM's NoSuchEntity closes only as `Iam::UserGone` (tests/unit/closing.rs);
    // passed as a failure it publishes nothing.
    let gone = InventoryError::NoSuchUser { account_id: ev.account_id.clone(), user_name: "alice".into() };
    let outcome = conclude(&ev, Iam::Failed(&gone), &none(), &Exceptions::default(), now, &RULES);
    assert_eq!(outcome, Outcome::Ignored(Ignored::UserGone));
    carries(&outcome, Disposition::Ack, Some(EventOutcome::Ignored));
}

#[test]
fn one_active_key_is_compliant_and_two_publish_a_failed_finding_wanting_usage() {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let now = after(&ev, 1);
    let one = listing(&[("AKIAOLD", KeyStatus::Inactive), (&new, KeyStatus::Active)], now);
    let outcome = conclude(&ev, Iam::Keys { user_name: "alice", listing: &one }, &none(), &Exceptions::default(), now, &RULES);
    assert_eq!(outcome, Outcome::Compliant { active: 1 });
    carries(&outcome, Disposition::Ack, Some(EventOutcome::Compliant));

    let two = listing(&[("AKIAOLD", KeyStatus::Active), (&new, KeyStatus::Active)], now);
    let outcome = conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &none(), &Exceptions::default(), now, &RULES);
    carries(&outcome, Disposition::Ack, Some(EventOutcome::Finding));
    let Outcome::Publish(f) = &outcome else { panic!("{outcome:?}") };
    assert_eq!(
        (f.status, f.active_key_count, rfc3339(f.detected_at).as_str()),
        (Status::Failed, 2, "2026-11-20T14:03:10Z"),
        "detected at the `now` passed in"
    );
    assert!(f.active_keys.iter().all(|k| !k.last_use_known));
    let wanted = usage_wanted(&ev, Iam::Keys { user_name: "alice", listing: &two }, &none(), now, &RULES);
    assert_eq!(wanted, ["AKIAOLD".to_string(), new.clone()], "both keys' last use is worth asking for");
    let one_known = HashMap::from([(new.clone(), KeyUsage::default())]);
    let wanted = usage_wanted(&ev, Iam::Keys { user_name: "alice", listing: &two }, &one_known, now, &RULES);
    assert_eq!(wanted, ["AKIAOLD".to_string()], "a key whose last use is known is not asked about");
    assert!(usage_wanted(&ev, Iam::Keys { user_name: "alice", listing: &one }, &none(), now, &RULES).is_empty(), "compliant");

    // With usage, the same facts give an enriched finding that wants no more.
    let usage = HashMap::from([("AKIAOLD".to_string(), KeyUsage::default()), (new.clone(), KeyUsage::default())]);
    assert!(usage_wanted(&ev, Iam::Keys { user_name: "alice", listing: &two }, &usage, now, &RULES).is_empty());
    let enriched = conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &usage, &Exceptions::default(), now, &RULES);
    let Outcome::Publish(f) = &enriched else { panic!() };
    assert!(f.active_keys.iter().all(|k| k.last_use_known));
    assert!(f.recommended_key_to_deactivate.is_some());
}

#[test]
fn a_fresh_event_is_assumed_over_a_stale_listing_and_an_old_one_is_not() {
    let ev = event("create_access_key_admin.json");
    let stale = listing(&[("AKIAOLD", KeyStatus::Active)], ev.event_time);
    let fresh = conclude(&ev, Iam::Keys { user_name: "alice", listing: &stale }, &none(), &Exceptions::default(), after(&ev, 60), &RULES);
    let Outcome::Publish(f) = &fresh else { panic!("{fresh:?}") };
    assert!(f.event_state_assumed);
    let old = conclude(&ev, Iam::Keys { user_name: "alice", listing: &stale }, &none(), &Exceptions::default(), after(&ev, 121), &RULES);
    assert_eq!(old, Outcome::Compliant { active: 1 }, "past the window the listing is the truth");
}

#[test]
fn a_deactivation_leaving_one_active_publishes_passed() {
    let ev = event("update_access_key_inactive.json");
    let key = ev.access_key_id.clone().unwrap();
    let now = after(&ev, 1);
    let l = listing(&[(&key, KeyStatus::Inactive), ("AKIAB", KeyStatus::Active)], now);
    let user = match &ev.target {
        Target::User { name, .. } => name.clone(),
        other => panic!("{other:?}"),
    };
    let outcome = conclude(&ev, Iam::Keys { user_name: &user, listing: &l }, &none(), &Exceptions::default(), now, &RULES);
    let Outcome::Publish(f) = &outcome else { panic!("{outcome:?}") };
    assert_eq!(f.status, Status::Passed);
    assert!(
        usage_wanted(&ev, Iam::Keys { user_name: &user, listing: &l }, &none(), now, &RULES).is_empty(),
        "a PASSED finding is not enriched"
    );
}

#[test]
fn an_unexpired_exception_suppresses_a_failed_finding_and_an_expired_one_does_not() {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let now = after(&ev, 1);
    let two = listing(&[("AKIAOLD", KeyStatus::Active), (&new, KeyStatus::Active)], now);
    let exception = |expires| Exceptions {
        source: None,
        entries: vec![Exception { account: "*".into(), user: "ali*".into(), reason: "rotation".into(), owner: "platform".into(), expires }],
    };
    let suppressed = conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &none(), &exception(now.date()), now, &RULES);
    let Outcome::Publish(f) = &suppressed else { panic!() };
    assert!(f.suppressed && f.exception.is_some(), "the last day still applies");
    let expired = conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &none(), &exception(date!(2026 - 01 - 01)), now, &RULES);
    let Outcome::Publish(f) = &expired else { panic!() };
    assert!(!f.suppressed);
}

#[test]
fn a_root_key_is_judged_against_cis_1_4() {
    let ev = event("create_access_key_root.json");
    assert_eq!(ev.target, Target::Root);
    let outcome =
        conclude(&ev, Iam::RootKeys { present: 1, observed_at: after(&ev, 1) }, &none(), &Exceptions::default(), after(&ev, 1), &RULES);
    let Outcome::Publish(f) = &outcome else { panic!("{outcome:?}") };
    assert_eq!((f.control_id, f.status), (ROOT_CONTROL_ID, Status::Failed));
    let iam = Iam::RootKeys { present: 1, observed_at: after(&ev, 1) };
    assert!(usage_wanted(&ev, iam, &none(), after(&ev, 1), &RULES).is_empty(), "root findings are not enriched");
    // Not reflected yet, fresh: assumed; later: resolved.
    let assumed =
        conclude(&ev, Iam::RootKeys { present: 0, observed_at: after(&ev, 1) }, &none(), &Exceptions::default(), after(&ev, 1), &RULES);
    assert!(matches!(&assumed, Outcome::Publish(f) if f.status == Status::Failed && f.event_state_assumed));
    let resolved = conclude(
        &ev,
        Iam::RootKeys { present: 0, observed_at: after(&ev, 1) },
        &none(),
        &Exceptions::default(),
        datetime!(2030-01-01 0:00 UTC),
        &RULES,
    );
    assert!(matches!(&resolved, Outcome::Publish(f) if f.status == Status::Passed));
}

// ---- integrity: what a forged or reordered event cannot make keywatch say

#[test]
fn an_event_from_the_future_is_refused_and_one_within_the_skew_is_not() {
    let ev = event("create_access_key_admin.json");
    let before = ev.event_time - time::Duration::minutes(6);
    let outcome = screen(&ev, before, true).expect("refused");
    assert!(matches!(&outcome, Outcome::Invalid(e) if e.reason() == "future_time"), "{outcome:?}");
    carries(&outcome, Disposition::Invalid, Some(EventOutcome::Invalid));
    assert_eq!(screen(&ev, ev.event_time - time::Duration::minutes(4), true), None, "clock skew within 5 minutes");
}

#[test]
fn an_event_for_an_account_outside_the_scope_is_acknowledged_under_its_own_outcome() {
    let ev = event("create_access_key_admin.json");
    let outcome = screen(&ev, after(&ev, 1), false).expect("screened out");
    assert_eq!(outcome, Outcome::Ignored(Ignored::ForeignAccount));
    carries(&outcome, Disposition::Ack, Some(EventOutcome::ForeignAccount));
}

#[test]
fn an_unconfirmed_deactivation_is_retried_never_passed() {
    let ev = event("update_access_key_inactive.json");
    let key = ev.access_key_id.clone().unwrap();
    // IAM still lists the key active beside another: the event alone says
    // the user is down to one.
    let stale = listing(&[(&key, KeyStatus::Active), ("AKIAB", KeyStatus::Active)], after(&ev, 1));
    let iam = Iam::Keys { user_name: "carol", listing: &stale };
    let fresh = conclude(&ev, iam, &none(), &Exceptions::default(), after(&ev, 2), &RULES);
    assert_eq!(fresh, Outcome::Retry(Retry::Unconfirmed));
    carries(&fresh, Disposition::Retry, None);
    // Once past the window, IAM's listing is the truth: still two active.
    let old = conclude(&ev, iam, &none(), &Exceptions::default(), after(&ev, 121), &RULES);
    assert!(matches!(&old, Outcome::Publish(f) if f.status == Status::Failed), "{old:?}");
    // A delete the same.
    let delete = event("delete_access_key.json");
    let key = delete.access_key_id.clone().unwrap();
    let stale = listing(&[(&key, KeyStatus::Active), ("AKIAB", KeyStatus::Active)], after(&delete, 1));
    let iam = Iam::Keys { user_name: "dave", listing: &stale };
    assert_eq!(conclude(&delete, iam, &none(), &Exceptions::default(), after(&delete, 2), &RULES), Outcome::Retry(Retry::Unconfirmed));
}

#[test]
fn a_passed_rests_only_on_a_listing_with_at_most_one_active_key() {
    let ev = event("update_access_key_inactive.json");
    let key = ev.access_key_id.clone().unwrap();
    // IAM does not show the deactivation yet, but lists one active key: that
    // is already what IAM shows.
    let one = listing(&[(&key, KeyStatus::Active), ("AKIAB", KeyStatus::Inactive)], after(&ev, 1));
    let outcome = conclude(&ev, Iam::Keys { user_name: "carol", listing: &one }, &none(), &Exceptions::default(), after(&ev, 2), &RULES);
    let Outcome::Publish(f) = &outcome else { panic!("{outcome:?}") };
    assert_eq!((f.status, f.event_state_assumed, f.active_key_count), (Status::Passed, false, 1));
}

#[test]
fn a_fresh_reactivation_iam_does_not_list_yet_still_alerts() {
    let mut ev = event("update_access_key_inactive.json");
    ev.key_status = Some(KeyStatus::Active);
    let key = ev.access_key_id.clone().unwrap();
    let stale = listing(&[(&key, KeyStatus::Inactive), ("AKIAB", KeyStatus::Active)], after(&ev, 1));
    let outcome = conclude(&ev, Iam::Keys { user_name: "carol", listing: &stale }, &none(), &Exceptions::default(), after(&ev, 2), &RULES);
    let Outcome::Publish(f) = &outcome else { panic!("{outcome:?}") };
    assert_eq!((f.status, f.event_state_assumed), (Status::Failed, true), "assumed in the alerting direction");
}

#[test]
fn a_root_key_delete_the_summary_does_not_show_yet_is_retried() {
    let mut ev = event("create_access_key_root.json");
    ev.event_name = keywatch::event::EventName::DeleteAccessKey;
    ev.key_status = None;
    let outcome =
        conclude(&ev, Iam::RootKeys { present: 1, observed_at: after(&ev, 1) }, &none(), &Exceptions::default(), after(&ev, 1), &RULES);
    assert_eq!(outcome, Outcome::Retry(Retry::Unconfirmed));
}

#[test]
fn findings_carry_when_iam_was_asked_and_the_older_answer_gives_way() {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let observed = after(&ev, 1);
    let two = listing(&[("AKIAOLD", KeyStatus::Active), (&new, KeyStatus::Active)], observed);
    let outcome = conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &none(), &Exceptions::default(), after(&ev, 3), &RULES);
    let Outcome::Publish(f) = &outcome else { panic!() };
    assert_eq!(f.observed_at, observed, "the listing's start, not the decision's time");
    assert!(superseded(observed, Some(observed + time::Duration::milliseconds(1))));
    assert!(!superseded(observed, Some(observed)), "the same answer is not superseded");
    assert!(!superseded(observed, None));
    assert!(!superseded(observed, Some(observed - time::Duration::seconds(1))));
}

#[test]
fn the_user_name_and_finding_id_come_from_iams_spelling() {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let mut two = listing(&[("AKIAOLD", KeyStatus::Active), (&new, KeyStatus::Active)], after(&ev, 1));
    two.user_name = Some("Alice".into());
    let outcome = conclude(&ev, Iam::Keys { user_name: "ALICE", listing: &two }, &none(), &Exceptions::default(), after(&ev, 2), &RULES);
    let Outcome::Publish(f) = &outcome else { panic!() };
    assert_eq!(f.user_name, "Alice");
    assert_eq!(f.finding_id, finding_id(CONTROL_ID, &ev.account_id, "Alice"));
}

#[test]
fn a_fresh_creation_s_key_is_just_created_only_when_iam_agrees() {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let with_created = |created: Option<OffsetDateTime>| {
        let mut l = listing(&[("AKIAOLD", KeyStatus::Active), (&new, KeyStatus::Active)], after(&ev, 1));
        l.keys[1].created_at = created;
        l
    };
    let now = after(&ev, 2);
    let listed = JustCreated { access_key_id: &new, listed: true };
    assert_eq!(just_created(&ev, &with_created(Some(after(&ev, 1))), now, &RULES), Some(listed), "IAM's CreateDate a second later");
    assert_eq!(just_created(&ev, &with_created(Some(after(&ev, -5))), now, &RULES), Some(listed), "within the match");
    assert_eq!(just_created(&ev, &with_created(Some(after(&ev, -6))), now, &RULES), None, "created at another time");
    assert_eq!(just_created(&ev, &with_created(Some(after(&ev, 3600))), now, &RULES), None);
    assert_eq!(just_created(&ev, &with_created(None), now, &RULES), None, "no CreateDate: not taken on the event's word");
    let stale = listing(&[("AKIAOLD", KeyStatus::Active)], after(&ev, 1));
    assert_eq!(just_created(&ev, &stale, now, &RULES), Some(JustCreated { access_key_id: &new, listed: false }), "not listed yet");
    assert_eq!(just_created(&ev, &with_created(Some(after(&ev, 1))), after(&ev, 121), &RULES), None, "past the window");
    let mut failed = ev.clone();
    failed.failed = Some(keywatch::event::FailedCall { code: "LimitExceeded".into(), message: None });
    assert_eq!(just_created(&failed, &stale, now, &RULES), None, "a failed call created nothing");
    let update = event("update_access_key_inactive.json");
    let theirs = listing(&[("AKIAEXAMPLECAROL0001", KeyStatus::Active)], after(&update, 1));
    assert_eq!(just_created(&update, &theirs, after(&update, 2), &RULES), None, "not a creation");
}

#[test]
fn the_key_an_event_makes_active_is_looked_up_ahead_unless_just_created() {
    let create = event("create_access_key_admin.json");
    assert_eq!(usage_to_prefetch(&create, after(&create, 2), &RULES), None, "fresh: will be known without asking");
    assert_eq!(usage_to_prefetch(&create, after(&create, 121), &RULES), create.access_key_id.as_deref(), "old: may have been used");
    let mut update = event("update_access_key_inactive.json");
    assert_eq!(usage_to_prefetch(&update, after(&update, 1), &RULES), None, "a deactivated key is not active after");
    update.key_status = Some(KeyStatus::Active);
    assert_eq!(usage_to_prefetch(&update, after(&update, 1), &RULES), Some("AKIAEXAMPLECAROL0001"), "a reactivation");
    update.failed = Some(keywatch::event::FailedCall { code: "AccessDenied".into(), message: None });
    assert_eq!(usage_to_prefetch(&update, after(&update, 1), &RULES), None, "nothing changed");
    let delete = event("delete_access_key.json");
    assert_eq!(usage_to_prefetch(&delete, after(&delete, 1), &RULES), None);
}
