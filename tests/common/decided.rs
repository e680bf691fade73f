//! Findings decided in process from the fixtures, for the tests of the
//! finding's fields and formats: a FAILED (with recommended key), the same
//! suppressed by an exception, a PASSED, a PASSED for a deleted user and a
//! root-key finding.

use std::collections::HashMap;
use std::time::Duration;

use keywatch::decide::{conclude, Iam, Outcome, Rules};
use keywatch::event::{parse, KeyEvent, Parsed};
use keywatch::exceptions::{Exception, Exceptions};
use keywatch::finding::Finding;
use keywatch::keys::{AccessKey, KeyStatus, KeyUsage, Listing};
use serde_json::Value;
use time::OffsetDateTime;

pub const RULES: Rules = Rules { consistency_window: Duration::from_secs(120), rotation: None };
/// The account fixtures happen in.
pub const MEMBER: &str = "111122223333";

pub fn event(name: &str) -> KeyEvent {
    let body = std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    match parse(&body) {
        Ok(Parsed::Key(ev)) => *ev,
        other => panic!("{other:?}"),
    }
}

pub fn after(ev: &KeyEvent, secs: i64) -> OffsetDateTime {
    ev.event_time + time::Duration::seconds(secs)
}

pub fn listing(keys: &[(&str, KeyStatus)], observed_at: OffsetDateTime) -> Listing {
    Listing {
        user_name: None,
        keys: keys.iter().map(|(id, s)| AccessKey { access_key_id: id.to_string(), status: s.clone(), created_at: None }).collect(),
        observed_at,
    }
}

pub fn published(outcome: Outcome) -> Finding {
    match outcome {
        Outcome::Publish(f) => *f,
        other => panic!("no finding: {other:?}"),
    }
}

/// Alice gets a second key from an administrator (HIGH), with both keys'
/// last use known (so a key is recommended), decided `secs` after the event.
pub fn failed_at(secs: i64, exceptions: &Exceptions) -> Finding {
    let ev = event("create_access_key_admin.json");
    let new = ev.access_key_id.clone().unwrap();
    let now = after(&ev, secs);
    let two = listing(&[("AKIAEXAMPLEALICE0001", KeyStatus::Active), (&new, KeyStatus::Active)], now);
    let usage: HashMap<String, KeyUsage> = HashMap::from([
        (
            "AKIAEXAMPLEALICE0001".to_string(),
            KeyUsage {
                last_used_at: Some(ev.event_time - time::Duration::days(1)),
                service: Some("s3".into()),
                region: Some("us-east-1".into()),
            },
        ),
        (new.clone(), KeyUsage::default()),
    ]);
    published(conclude(&ev, Iam::Keys { user_name: "alice", listing: &two }, &usage, exceptions, now, &RULES))
}

pub fn failed() -> Finding {
    failed_at(1, &Exceptions::default())
}

pub fn exception() -> Exceptions {
    let expires = time::macros::date!(2099 - 12 - 31);
    Exceptions {
        source: None,
        entries: vec![Exception {
            account: "*".into(),
            user: "ali*".into(),
            reason: "vendor integration, CHG-1234".into(),
            owner: "platform@example.com".into(),
            expires,
        }],
    }
}

pub fn suppressed() -> Finding {
    failed_at(1, &exception())
}

/// Carol's second key is deactivated: one active key left.
pub fn passed() -> Finding {
    let ev = event("update_access_key_inactive.json");
    let now = after(&ev, 1);
    let keys = listing(&[("AKIAEXAMPLECAROL0001", KeyStatus::Inactive), ("AKIAEXAMPLECAROL0002", KeyStatus::Active)], now);
    published(conclude(&ev, Iam::Keys { user_name: "carol", listing: &keys }, &HashMap::new(), &Exceptions::default(), now, &RULES))
}

/// Frank's keys and then frank are deleted; his delete event is handled
/// after, and IAM answers `NoSuchEntity`: the closing PASSED.
pub fn user_deleted() -> Finding {
    let ev = event("delete_access_key.json");
    let answer = Err(keywatch::inventory::InventoryError::NoSuchUser { account_id: MEMBER.into(), user_name: "frank".into() });
    let now = after(&ev, 2);
    published(conclude(&ev, Iam::listed("frank", &answer, now), &HashMap::new(), &Exceptions::default(), now, &RULES))
}

/// The root user makes itself an access key.
pub fn root() -> Finding {
    let ev = event("create_access_key_root.json");
    published(conclude(
        &ev,
        Iam::RootKeys { present: 1, observed_at: after(&ev, 1) },
        &HashMap::new(),
        &Exceptions::default(),
        after(&ev, 1),
        &RULES,
    ))
}

pub fn json(f: &Finding) -> Value {
    serde_json::to_value(f).unwrap()
}

/// The date `days` from today (UTC), as an exceptions document writes it:
/// expiries in test documents stay within the cap on expiry whenever the
/// tests run.
pub fn in_days(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}
