//! Finding: a verdict → the document keywatch publishes.
//!
//! The finding's `detail` is a public interface: SIEM pipelines and alert
//! rules parse it, so fields are added, never renamed (see the README's
//! "Finding schema"). `finding_id` is stable for (control, account, user) so
//! that consumers update one alert instead of piling up new ones; the same id
//! carries the `FAILED` and the later `PASSED`.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::evaluate::{AccessKey, Assessment, Verdict};
use crate::event::KeyEvent;

/// CIS AWS Foundations "Ensure there is only one active access key available
/// for any single IAM user" (1.13 in v1.4–v4.0).
pub const CONTROL_ID: &str = "CIS-AWS-1.13";
pub const CONTROL_TITLE: &str = "Ensure there is only one active access key available for any single IAM user";
/// Version of the `detail` document; bumped only on incompatible change.
pub const SCHEMA_VERSION: &str = "1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "PASSED")]
    Passed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Failed => "FAILED",
            Status::Passed => "PASSED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Informational,
    Medium,
    High,
}

/// The `detail` of a finding event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub schema_version: &'static str,
    pub finding_id: String,
    pub control_id: &'static str,
    pub control_title: &'static str,
    pub status: Status,
    pub severity: Severity,
    pub account_id: String,
    pub user_name: String,
    pub active_key_count: usize,
    pub active_keys: Vec<KeyView>,
    /// True when IAM's listing did not show the event's change yet and the
    /// event's own key state was counted instead.
    pub event_state_assumed: bool,
    pub trigger: Trigger,
    pub detected_at: String,
    pub detection_latency_seconds: f64,
    /// What to do, for a `FAILED` finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub access_key_id: String,
    pub status: String,
    pub created_at: Option<String>,
}

/// The CloudTrail event that made keywatch look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub event_id: String,
    pub event_name: &'static str,
    pub event_time: String,
    pub actor_arn: Option<String>,
    pub actor_type: Option<String>,
}

/// `finding_id` for (control, account, user): 32 hex digits of SHA-256.
pub fn finding_id(control_id: &str, account_id: &str, user_name: &str) -> String {
    let mut h = Sha256::new();
    h.update(control_id.as_bytes());
    h.update([0]);
    h.update(account_id.as_bytes());
    h.update([0]);
    h.update(user_name.as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn key_view(k: &AccessKey) -> KeyView {
    KeyView {
        access_key_id: k.access_key_id.clone(),
        status: k.status.as_str().to_string(),
        created_at: k.created_at.map(rfc3339),
    }
}

/// True when the caller acted on its own keys (an IAM user in the same
/// account managing itself). Anything else, an administrator or a role
/// creating a key for someone, raises a violation's severity: a second key
/// that its owner did not make is how persistence is planted.
pub fn actor_is_target(event: &KeyEvent, user_name: &str) -> bool {
    event.actor.is_iam_user()
        && event.actor.user_name.as_deref() == Some(user_name)
        && event.actor.account_id.as_deref().is_none_or(|a| a == event.account_id)
}

/// Builds the finding for a verdict; `None` when the verdict needs none.
pub fn build(event: &KeyEvent, user_name: &str, assessment: &Assessment, detected_at: OffsetDateTime) -> Option<Finding> {
    let (status, severity) = match assessment.verdict {
        Verdict::Compliant => return None,
        Verdict::Resolved => (Status::Passed, Severity::Informational),
        Verdict::Violation if actor_is_target(event, user_name) => (Status::Failed, Severity::Medium),
        Verdict::Violation => (Status::Failed, Severity::High),
    };
    let active_keys: Vec<KeyView> = assessment.active_keys().map(key_view).collect();
    let remediation = (status == Status::Failed).then(|| {
        format!(
            "Deactivate every access key of {user_name} but the one in use: \
             aws iam update-access-key --user-name {user_name} --access-key-id <KEY_ID> --status Inactive"
        )
    });
    let latency = (detected_at - event.event_time).as_seconds_f64();
    Some(Finding {
        schema_version: SCHEMA_VERSION,
        finding_id: finding_id(CONTROL_ID, &event.account_id, user_name),
        control_id: CONTROL_ID,
        control_title: CONTROL_TITLE,
        status,
        severity,
        account_id: event.account_id.clone(),
        user_name: user_name.to_string(),
        active_key_count: active_keys.len(),
        active_keys,
        event_state_assumed: assessment.assumed_event_state,
        trigger: Trigger {
            event_id: event.event_id.clone(),
            event_name: event.event_name.as_str(),
            event_time: rfc3339(event.event_time),
            actor_arn: event.actor.arn.clone(),
            actor_type: event.actor.identity_type.clone(),
        },
        detected_at: rfc3339(detected_at),
        detection_latency_seconds: latency,
        remediation,
    })
}
