//! The native finding, in process: it keeps every field of schema 1.0 with
//! its type, and only adds the user's ARN, the control's number in each CIS
//! version and keywatch's version.

use std::collections::HashMap;

use crate::common::*;
use keywatch::decide::{conclude, Iam};
use keywatch::exceptions::Exceptions;
use keywatch::finding::{CIS_NO_ROOT_KEY, CIS_ONE_ACTIVE_KEY};
use keywatch::keys::KeyStatus;
use serde_json::Value;

// ------------------------------------------------------------------ native

/// Every field of the native finding as schema 1.0 defined it, with its
/// JSON type: consumers parse these, so none may go or change type.
const SCHEMA_1_0: &[(&str, &str)] = &[
    ("schema_version", "string"),
    ("finding_id", "string"),
    ("control_id", "string"),
    ("control_title", "string"),
    ("status", "string"),
    ("severity", "string"),
    ("account_id", "string"),
    ("user_name", "string"),
    ("active_key_count", "number"),
    ("active_keys", "array"),
    ("event_state_assumed", "bool"),
    ("trigger", "object"),
    ("detected_at", "string"),
    ("detection_latency_seconds", "number"),
    ("recommended_key_to_deactivate", "string"),
    ("remediation", "string"),
    ("suppressed", "bool"),
    ("exception", "object"),
];
const KEY_1_0: &[&str] =
    &["access_key_id", "status", "created_at", "last_used_at", "last_used_service", "last_used_region", "last_use_known"];
const TRIGGER_1_0: &[&str] = &["event_id", "event_name", "event_time", "actor_arn", "actor_type"];
const EXCEPTION_1_0: &[&str] = &["account", "user", "reason", "owner", "expires"];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn the_native_finding_keeps_every_field_of_schema_1_0_and_only_adds() {
    // Suppressed and with a recommended key: every optional field present.
    let d = json(&suppressed());
    let obj = d.as_object().unwrap();
    for (field, want) in SCHEMA_1_0 {
        let v = obj.get(*field).unwrap_or_else(|| panic!("schema 1.0 field `{field}` is gone: {d:#}"));
        assert_eq!(kind(v), *want, "`{field}` changed type: {v}");
    }
    for k in d["active_keys"].as_array().unwrap() {
        for field in KEY_1_0 {
            assert!(k.get(*field).is_some(), "active_keys[].{field} is gone: {k}");
        }
    }
    for field in TRIGGER_1_0 {
        assert!(d["trigger"].get(*field).is_some(), "trigger.{field} is gone");
    }
    for field in EXCEPTION_1_0 {
        assert!(d["exception"].get(*field).is_some(), "exception.{field} is gone");
    }
    assert_eq!(d["schema_version"], "1.0", "adding fields is a compatible change");
    // What 1.0 did not have: only additions.
    let old: Vec<&str> = SCHEMA_1_0.iter().map(|(f, _)| *f).collect();
    let mut added: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !old.contains(k)).collect();
    added.sort();
    assert_eq!(added, ["compliance", "keywatch_version", "observed_at", "rotation_in_progress", "user_arn"]);
}

#[test]
fn the_native_finding_names_the_user_by_arn() {
    assert_eq!(failed().user_arn, format!("arn:aws:iam::{MEMBER}:user/alice"));
    assert_eq!(passed().user_arn, format!("arn:aws:iam::{MEMBER}:user/carol"));
    assert_eq!(root().user_arn, format!("arn:aws:iam::{MEMBER}:root"));

    // A user acting on its own keys: its own ARN from the event, IAM path included.
    let mut ev = event("create_access_key_self.json");
    ev.actor.arn = Some(format!("arn:aws:iam::{MEMBER}:user/team/bob"));
    let now = after(&ev, 1);
    let new = ev.access_key_id.clone().unwrap();
    let two = listing(&[("AKIABOB1", KeyStatus::Active), (&new, KeyStatus::Active)], now);
    let f = published(conclude(&ev, Iam::Keys { user_name: "bob", listing: &two }, &HashMap::new(), &Exceptions::default(), now, &RULES));
    assert_eq!(f.user_arn, format!("arn:aws:iam::{MEMBER}:user/team/bob"));

    // The partition follows the event: the caller's ARN, else the region.
    let mut ev = event("create_access_key_admin.json");
    ev.actor.arn = Some(format!("arn:aws-cn:iam::{MEMBER}:user/admin"));
    assert_eq!(keywatch::finding::user_arn(&ev, "alice"), format!("arn:aws-cn:iam::{MEMBER}:user/alice"));
    ev.actor.arn = None;
    ev.region = Some("us-gov-west-1".into());
    assert_eq!(keywatch::finding::user_arn(&ev, "alice"), format!("arn:aws-us-gov:iam::{MEMBER}:user/alice"));
}

#[test]
fn the_native_finding_places_the_control_in_every_cis_version() {
    let numbering = |refs: &[keywatch::finding::ControlRef]| -> Vec<(String, String)> {
        refs.iter().map(|c| (c.version.to_string(), c.control.to_string())).collect()
    };
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> { pairs.iter().map(|(v, c)| (v.to_string(), c.to_string())).collect() };
    // As numbered in each version of the benchmark.
    let one_key = want(&[
        ("1.4.0", "1.13"),
        ("1.5.0", "1.13"),
        ("2.0.0", "1.13"),
        ("3.0.0", "1.13"),
        ("4.0.1", "1.13"),
        ("5.0.0", "1.12"),
        ("6.0.0", "2.12"),
    ]);
    let no_root_key = want(&[
        ("1.4.0", "1.4"),
        ("1.5.0", "1.4"),
        ("2.0.0", "1.4"),
        ("3.0.0", "1.4"),
        ("4.0.1", "1.4"),
        ("5.0.0", "1.3"),
        ("6.0.0", "2.3"),
    ]);
    assert_eq!(numbering(CIS_ONE_ACTIVE_KEY), one_key);
    assert_eq!(numbering(CIS_NO_ROOT_KEY), no_root_key);

    let d = json(&failed());
    assert_eq!(d["compliance"][0], serde_json::json!({"standard": "CIS AWS Foundations Benchmark", "version": "1.4.0", "control": "1.13"}));
    assert_eq!(d["compliance"][6]["control"], "2.12");
    assert_eq!(json(&root())["compliance"][5]["control"], "1.3");
    assert_eq!(d["keywatch_version"], env!("CARGO_PKG_VERSION"));
}
