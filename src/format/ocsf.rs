//! OCSF: a finding as an OCSF 1.6.0 Compliance Finding (class_uid 2003,
//! category 2 "Findings"), with the `cloud` profile.
//!
//! | native | OCSF |
//! |---|---|
//! | `finding_id` | `finding_info.uid` |
//! | `control_title` | `finding_info.title` |
//! | `control_id`, `compliance[]` | `compliance.control`, `compliance.standards[]`, `compliance.requirements[]` |
//! | `status` | `compliance.status_id` (Fail 3, Pass 1); `status_id` New 1, Resolved 4 |
//! | `suppressed`, `exception` | `status_id` Suppressed 3, `status_detail`; `unmapped.exception` |
//! | `reason` (a `PASSED`'s) | `status_detail` (`<reason>: <why>`), `unmapped.reason` |
//! | `severity` | `severity_id` (Informational 1, Medium 3, High 4, Critical 5) |
//! | `detected_at` | `time` (epoch ms), `finding_info.last_seen_time`, `finding_info.modified_time` |
//! | `trigger.event_time` | `finding_info.created_time`, `finding_info.first_seen_time` |
//! | `trigger` | `finding_info.related_events[0]` (`uid`, `type`); the actor in `unmapped.trigger` |
//! | `account_id` | `cloud.account.uid` (`cloud.provider` "AWS") |
//! | `user_arn`, `user_name` | `resources[0].uid`, `resources[0].name` |
//! | `active_keys[]` | `resources[1..]` (`uid` the key id, `owner` the user, last use in `data`) |
//! | `remediation` | `remediation.desc` |
//! | `keywatch_version` | `metadata.product.version` |
//!
//! What has no OCSF place (`recommended_key_to_deactivate`,
//! `event_state_assumed`, `detection_latency_seconds`, the trigger's actor,
//! the exception, the native `schema_version`) is under `unmapped`.

use serde_json::{json, Map, Value};

use super::{describe, epoch_ms, partition, FINDING_TYPE, REMEDIATION_URL};
use crate::finding::{rfc3339, Finding, Severity, Status, ROOT_USER};

/// The OCSF schema version the documents follow.
const OCSF_VERSION: &str = "1.6.0";
/// Compliance Finding.
const CLASS_UID: u32 = 2003;
const CLASS_NAME: &str = "Compliance Finding";
/// Findings.
const CATEGORY_UID: u32 = 2;
const CATEGORY_NAME: &str = "Findings";
/// The profiles the documents use (`cloud`: the `cloud` object).
const PROFILES: &[&str] = &["cloud"];

/// (activity_id, activity name): a `FAILED` creates (or updates) the
/// finding, a `PASSED` closes it.
fn activity(f: &Finding) -> (u32, &'static str) {
    match f.status {
        Status::Failed => (1, "Create"),
        Status::Passed => (3, "Close"),
    }
}

/// (status_id, status): New, Resolved, or Suppressed for a finding under
/// an approved exception.
fn status(f: &Finding) -> (u32, &'static str) {
    match f.status {
        Status::Failed if f.suppressed => (3, "Suppressed"),
        Status::Failed => (1, "New"),
        Status::Passed => (4, "Resolved"),
    }
}

/// (compliance.status_id, compliance.status).
fn compliance_status(f: &Finding) -> (u32, &'static str) {
    match f.status {
        Status::Failed => (3, "Fail"),
        Status::Passed => (1, "Pass"),
    }
}

fn severity(f: &Finding) -> (u32, &'static str) {
    match f.severity {
        Severity::Informational => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// Inserts `key: value` unless `value` is null.
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        map.insert(key.to_string(), value);
    }
}

/// The OCSF 1.6.0 Compliance Finding for `f`.
pub fn compliance_finding(f: &Finding) -> Value {
    let (activity_id, activity_name) = activity(f);
    let (status_id, status_name) = status(f);
    let (compliance_status_id, compliance_status_name) = compliance_status(f);
    let (severity_id, severity_name) = severity(f);
    let time = epoch_ms(f.detected_at);
    let event_time = epoch_ms(f.trigger.event_time);
    let partition = partition(f);
    let root = f.user_name == ROOT_USER;

    let mut finding_info = Map::new();
    finding_info.insert("uid".into(), json!(f.finding_id));
    finding_info.insert("title".into(), json!(f.control_title));
    finding_info.insert("desc".into(), json!(describe(f)));
    finding_info.insert("types".into(), json!([FINDING_TYPE]));
    put(&mut finding_info, "created_time", json!(event_time));
    put(&mut finding_info, "first_seen_time", json!(event_time));
    finding_info.insert("last_seen_time".into(), json!(time));
    finding_info.insert("modified_time".into(), json!(time));
    finding_info.insert(
        "related_events".into(),
        json!([{
            "uid": f.trigger.event_id,
            "type": f.trigger.event_name,
            "title": format!("CloudTrail {}", f.trigger.event_name),
            "product": {"name": "CloudTrail", "vendor_name": "AWS"},
        }]),
    );

    let mut user = Map::new();
    user.insert("uid".into(), json!(f.user_arn));
    user.insert("name".into(), json!(f.user_name));
    user.insert("type".into(), json!(if root { "AWS::IAM::Root" } else { "AWS::IAM::User" }));
    user.insert("cloud_partition".into(), json!(partition));
    user.insert("data".into(), json!({"active_key_count": f.active_key_count}));
    let mut resources = vec![Value::Object(user)];
    for k in &f.active_keys {
        let mut key = Map::new();
        key.insert("uid".into(), json!(k.access_key_id));
        key.insert("type".into(), json!("AWS::IAM::AccessKey"));
        key.insert("cloud_partition".into(), json!(partition));
        put(&mut key, "created_time", json!(k.created_at.map(epoch_ms)));
        key.insert("owner".into(), json!({"uid": f.user_arn, "name": f.user_name}));
        key.insert(
            "data".into(),
            json!({
                "status": k.status,
                "last_used_at": k.last_used_at.map(rfc3339),
                "last_used_service": k.last_used_service,
                "last_used_region": k.last_used_region,
                "last_use_known": k.last_use_known,
            }),
        );
        resources.push(Value::Object(key));
    }

    let mut unmapped = Map::new();
    unmapped.insert("schema_version".into(), json!(f.schema_version));
    unmapped.insert("event_state_assumed".into(), json!(f.event_state_assumed));
    unmapped.insert("rotation_in_progress".into(), json!(f.rotation_in_progress));
    unmapped.insert("detection_latency_seconds".into(), json!(f.detection_latency_seconds));
    unmapped.insert(
        "trigger".into(),
        json!({
            "event_id": f.trigger.event_id,
            "event_name": f.trigger.event_name,
            "event_time": rfc3339(f.trigger.event_time),
            "actor_arn": f.trigger.actor_arn,
            "actor_type": f.trigger.actor_type,
        }),
    );
    put(&mut unmapped, "recommended_key_to_deactivate", json!(f.recommended_key_to_deactivate));
    put(&mut unmapped, "exception", json!(f.exception));
    put(&mut unmapped, "reason", json!(f.reason));

    let mut doc = Map::new();
    doc.insert("class_uid".into(), json!(CLASS_UID));
    doc.insert("class_name".into(), json!(CLASS_NAME));
    doc.insert("category_uid".into(), json!(CATEGORY_UID));
    doc.insert("category_name".into(), json!(CATEGORY_NAME));
    doc.insert("activity_id".into(), json!(activity_id));
    doc.insert("activity_name".into(), json!(activity_name));
    doc.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    doc.insert("type_name".into(), json!(format!("{CLASS_NAME}: {activity_name}")));
    doc.insert("time".into(), json!(time));
    doc.insert("severity_id".into(), json!(severity_id));
    doc.insert("severity".into(), json!(severity_name));
    doc.insert("status_id".into(), json!(status_id));
    doc.insert("status".into(), json!(status_name));
    if let Some(e) = f.exception.as_ref().filter(|_| f.suppressed) {
        doc.insert("status_detail".into(), json!(format!("approved exception: {} (owner {})", e.reason, e.owner)));
    } else if let Some(reason) = f.reason {
        doc.insert("status_detail".into(), json!(format!("{}: {}", reason.as_str(), reason.describe())));
    }
    doc.insert("message".into(), json!(describe(f)));
    doc.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "profiles": PROFILES,
            "uid": format!("{}:{}", f.finding_id, f.trigger.event_id),
            "correlation_uid": f.finding_id,
            "original_time": rfc3339(f.trigger.event_time),
            "product": {
                "name": "keywatch",
                "vendor_name": "keywatch",
                "version": f.keywatch_version,
            },
        }),
    );
    doc.insert("finding_info".into(), Value::Object(finding_info));
    doc.insert(
        "compliance".into(),
        json!({
            "control": f.control_id,
            "standards": f.compliance.iter().map(|c| c.standard_version()).collect::<Vec<_>>(),
            "requirements": f.compliance.iter().map(|c| c.requirement()).collect::<Vec<_>>(),
            "status_id": compliance_status_id,
            "status": compliance_status_name,
            "status_detail": format!("{} active access key{}", f.active_key_count, if f.active_key_count == 1 { "" } else { "s" }),
        }),
    );
    doc.insert(
        "cloud".into(),
        json!({
            "provider": "AWS",
            "cloud_partition": partition,
            "account": {"uid": f.account_id, "type_id": 10, "type": "AWS Account"},
        }),
    );
    doc.insert("resources".into(), Value::Array(resources));
    if let Some(text) = &f.remediation {
        doc.insert("remediation".into(), json!({"desc": text, "references": [REMEDIATION_URL]}));
    }
    doc.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(doc)
}
