//! The rotation grace, decided in process (`now` passed in): a second key
//! made by its own user or an allow-listed principal, younger than the
//! grace by IAM's CreateDate, is a `LOW` `FAILED` with
//! `rotation_in_progress` (or, quiet, nothing published); anyone else's,
//! or an older one, the normal severity; the re-check is due when the
//! grace ends, put back 15 minutes at a time, and escalates.

use std::collections::HashMap;
use std::time::Duration;

use keywatch::decide::{
    conclude, conclude_recheck, recheck_delay, recheck_when, wants_recheck, Iam, Outcome, RecheckWhen, Rotation, Rules,
};
use keywatch::event::KeyEvent;
use keywatch::exceptions::Exceptions;
use keywatch::finding::{Severity, Status};
use keywatch::keys::{AccessKey, KeyStatus, Listing};
use keywatch::message::Disposition;
use keywatch::telemetry::EventOutcome;
use time::OffsetDateTime;

use crate::common::*;

const GRACE: Duration = Duration::from_secs(15 * 60);

fn rules(principals: &[&str], quiet: bool) -> Rules {
    Rules {
        consistency_window: Duration::from_secs(120),
        rotation: Some(Rotation { grace: GRACE, principals: principals.iter().map(|p| p.to_string()).collect(), quiet }),
    }
}

/// The user's old key and the event's key, both active, the event's key
/// created `created_secs` after the event (IAM's CreateDate).
fn two_keys(ev: &KeyEvent, old: &str, created_secs: i64, observed_at: OffsetDateTime) -> Listing {
    let new = ev.access_key_id.clone().unwrap();
    Listing {
        user_name: None,
        keys: vec![
            AccessKey { access_key_id: old.into(), status: KeyStatus::Active, created_at: Some(after(ev, -86400 * 30)) },
            AccessKey { access_key_id: new, status: KeyStatus::Active, created_at: Some(after(ev, created_secs)) },
        ],
        observed_at,
    }
}

fn decide_at(ev: &KeyEvent, user: &str, listing: &Listing, secs: i64, rules: &Rules) -> Outcome {
    conclude(ev, Iam::Keys { user_name: user, listing }, &HashMap::new(), &Exceptions::default(), after(ev, secs), rules)
}

#[test]
fn a_self_made_second_key_within_the_grace_is_low_and_in_progress_and_asks_for_a_recheck() {
    let ev = event("create_access_key_self.json");
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", 0, after(&ev, 1));
    let f = published(decide_at(&ev, "bob", &keys, 60, &rules(&[], false)));
    assert_eq!((f.status, f.severity, f.rotation_in_progress), (Status::Failed, Severity::Low, true));
    assert!(wants_recheck(&f), "escalated by a re-check when the grace ends");
    assert_eq!(serde_json::to_value(&f).unwrap()["severity"], "LOW");
    // Without the grace: MEDIUM, as before.
    let off = Rules { rotation: None, ..rules(&[], false) };
    let f = published(decide_at(&ev, "bob", &keys, 60, &off));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Medium, false));
    assert!(!wants_recheck(&f));
}

#[test]
fn a_key_older_than_the_grace_by_iam_s_create_date_gets_none_whatever_the_event_says() {
    let ev = event("create_access_key_self.json");
    // Decided after the grace.
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", 0, after(&ev, 901));
    let f = published(decide_at(&ev, "bob", &keys, 901, &rules(&[], false)));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Medium, false));
    // A fresh event, but IAM says the key was made 20 minutes before it.
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", -1200, after(&ev, 1));
    let f = published(decide_at(&ev, "bob", &keys, 5, &rules(&[], false)));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Medium, false), "IAM's CreateDate, not the event alone");
    // IAM does not list the key yet (propagation): as young as its event.
    let only_old = Listing { keys: vec![keys.keys[0].clone()], ..keys.clone() };
    let f = published(decide_at(&ev, "bob", &only_old, 1, &rules(&[], false)));
    assert_eq!((f.severity, f.rotation_in_progress, f.event_state_assumed), (Severity::Low, true, true));
}

#[test]
fn only_the_user_itself_or_an_allow_listed_principal_gets_the_grace() {
    let ev = event("create_access_key_admin.json");
    let keys = two_keys(&ev, "AKIAEXAMPLEALICE0001", 0, after(&ev, 1));
    // An administrator: no grace, HIGH.
    let f = published(decide_at(&ev, "alice", &keys, 60, &rules(&[], false)));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::High, false));
    assert!(!wants_recheck(&f));
    let f = published(decide_at(
        &ev,
        "alice",
        &keys,
        60,
        &rules(&["arn:aws:iam::*:role/rotator", "arn:aws:iam::111122223333:user/adm"], false),
    ));
    assert_eq!(f.severity, Severity::High, "a glob must match the whole ARN");
    // The administrator allow-listed (a glob): LOW within the grace, and
    // HIGH (its normal severity) once it has ended.
    let allowed = rules(&["arn:aws:iam::111122223333:user/adm*"], false);
    let f = published(decide_at(&ev, "alice", &keys, 60, &allowed));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Low, true));
    let f = published(decide_at(&ev, "alice", &keys, 901, &allowed));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::High, false));
}

#[test]
fn quiet_publishes_nothing_within_the_grace_and_the_normal_finding_after_it() {
    let ev = event("create_access_key_self.json");
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", 0, after(&ev, 1));
    let quiet = rules(&[], true);
    let outcome = decide_at(&ev, "bob", &keys, 60, &quiet);
    assert_eq!((outcome.disposition(), outcome.label()), (Disposition::Ack, Some(EventOutcome::RotationInProgress)));
    let Outcome::RotationInProgress(f) = outcome else { panic!("{outcome:?}") };
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Low, true));
    let f = published(decide_at(&ev, "bob", &keys, 901, &quiet));
    assert_eq!((f.severity, f.rotation_in_progress), (Severity::Medium, false));
    // Someone else's key is published at once, quiet or not.
    let admin = event("create_access_key_admin.json");
    let keys = two_keys(&admin, "AKIAEXAMPLEALICE0001", 0, after(&admin, 1));
    assert_eq!(published(decide_at(&admin, "alice", &keys, 60, &quiet)).severity, Severity::High);
}

#[test]
fn the_recheck_is_due_when_the_grace_ends_put_back_at_most_15_minutes_at_a_time() {
    let ev = event("create_access_key_self.json");
    let long = Rules {
        rotation: Some(Rotation { grace: Duration::from_secs(10 * 86400), principals: vec![], quiet: false }),
        ..rules(&[], false)
    };
    assert_eq!(recheck_when(&ev, after(&ev, 1), &long), Ok(RecheckWhen::Later(Duration::from_secs(900))), "SQS's longest delay");
    assert_eq!(recheck_when(&ev, after(&ev, 10 * 86400 - 100), &long), Ok(RecheckWhen::Later(Duration::from_secs(101))));
    assert_eq!(recheck_when(&ev, after(&ev, 10 * 86400 + 1), &long), Ok(RecheckWhen::Now));
    assert_eq!(recheck_delay(&ev, after(&ev, 300), &rules(&[], false)), Duration::from_secs(601), "the grace, not the window");
    // Someone else's key: the consistency window alone.
    let admin = event("create_access_key_admin.json");
    assert_eq!(recheck_when(&admin, after(&admin, 121), &long), Ok(RecheckWhen::Now));
}

#[test]
fn the_due_recheck_escalates_two_active_keys_and_closes_a_finished_rotation() {
    let ev = event("create_access_key_self.json");
    let now = after(&ev, 901);
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", 0, now);
    let f = published(conclude_recheck(&ev, Iam::Keys { user_name: "bob", listing: &keys }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.severity, f.rotation_in_progress), (Status::Failed, Severity::Medium, false));
    assert!(!wants_recheck(&f), "no further re-check");
    let mut done = keys.clone();
    done.keys[0].status = KeyStatus::Inactive;
    let f = published(conclude_recheck(&ev, Iam::Keys { user_name: "bob", listing: &done }, &HashMap::new(), &Exceptions::default(), now));
    assert_eq!((f.status, f.severity, f.rotation_in_progress), (Status::Passed, Severity::Informational, false));
}

#[test]
fn a_rotation_in_progress_is_low_in_asff_and_ocsf_and_says_so() {
    use aws_sdk_securityhub::types::SeverityLabel;
    use keywatch::format::{asff, ocsf};
    let ev = event("create_access_key_self.json");
    let keys = two_keys(&ev, "AKIAEXAMPLEBOB000001", 0, after(&ev, 1));
    let f = published(decide_at(&ev, "bob", &keys, 60, &rules(&[], false)));
    let a = asff::finding(&f, &asff::Target::new("999988887777", "us-east-1"));
    assert_eq!(a.severity().and_then(|s| s.label()), Some(&SeverityLabel::Low));
    assert_eq!(a.severity().and_then(|s| s.original()), Some("LOW"));
    assert_eq!(a.product_fields().and_then(|p| p.get("keywatch/rotation_in_progress")).map(String::as_str), Some("true"));
    let o = ocsf::compliance_finding(&f);
    assert_eq!((o["severity_id"].as_u64(), o["severity"].as_str()), (Some(2), Some("Low")));
    assert_eq!(o["unmapped"]["rotation_in_progress"], true);
}
