//! Finding: a verdict → the document keywatch publishes.
//!
//! The finding's `detail` is a public interface: SIEM pipelines and alert
//! rules parse it, so fields are added, never renamed (see
//! docs/findings.md). `finding_id` is stable for (control, account, user) so
//! that consumers update one alert instead of piling up new ones; the same id
//! carries the `FAILED` and the later `PASSED`.
//!
//! The other document keywatch publishes, a scan's summary of one account
//! ([`ScanSummary`]), lives here too: the sinks publish it, so it belongs
//! below them, not in the scan that fills it in.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use std::collections::HashMap;

use crate::evaluate::{Assessment, Verdict};
use crate::event::KeyEvent;
use crate::exceptions::Exception;
use crate::keys::{AccessKey, KeyUsage, User};

/// CIS AWS Foundations "Ensure there is only one active access key available
/// for any single IAM user" (1.13 in v1.4.0–v4.0.1, 1.12 in v5.0.0, 2.12 in
/// v6.0.0: see [`CIS_ONE_ACTIVE_KEY`]).
pub const CONTROL_ID: &str = "CIS-AWS-1.13";
pub const CONTROL_TITLE: &str = "Ensure there is only one active access key available for any single IAM user";
/// CIS AWS Foundations "Ensure no 'root' user account access key exists"
/// (1.4 in v1.4.0–v4.0.1, 1.3 in v5.0.0, 2.3 in v6.0.0: see
/// [`CIS_NO_ROOT_KEY`]): a root key event is judged against this, never
/// against 1.13.
pub const ROOT_CONTROL_ID: &str = "CIS-AWS-1.4";
pub const ROOT_CONTROL_TITLE: &str = "Ensure no 'root' user account access key exists";
/// `user_name` of root findings.
pub const ROOT_USER: &str = "<root>";
/// Version of the `detail` document; bumped only on incompatible change
/// (an added field is not one).
pub const SCHEMA_VERSION: &str = "1.0";
/// The benchmark's name in `compliance[].standard`.
pub const CIS_STANDARD: &str = "CIS AWS Foundations Benchmark";

/// Where a control sits in one version of a standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ControlRef {
    /// The standard's name, e.g. `CIS AWS Foundations Benchmark`.
    pub standard: &'static str,
    /// The standard's version, e.g. `1.4.0`.
    pub version: &'static str,
    /// The control's number in that version, e.g. `1.13`.
    pub control: &'static str,
}

impl ControlRef {
    /// `CIS AWS Foundations Benchmark v1.4.0/1.13`: the form Security Hub
    /// uses in `Compliance.RelatedRequirements`.
    pub fn requirement(&self) -> String {
        format!("{} v{}/{}", self.standard, self.version, self.control)
    }
    /// `CIS AWS Foundations Benchmark v1.4.0`.
    pub fn standard_version(&self) -> String {
        format!("{} v{}", self.standard, self.version)
    }
}

const fn cis(version: &'static str, control: &'static str) -> ControlRef {
    ControlRef { standard: CIS_STANDARD, version, control }
}

/// "Ensure there is only one active access key (available) for any single
/// IAM user" in each CIS AWS Foundations version that has it (numbering as
/// in the benchmark versions' requirement lists).
pub const CIS_ONE_ACTIVE_KEY: &[ControlRef] = &[
    cis("1.4.0", "1.13"),
    cis("1.5.0", "1.13"),
    cis("2.0.0", "1.13"),
    cis("3.0.0", "1.13"),
    cis("4.0.1", "1.13"),
    cis("5.0.0", "1.12"),
    cis("6.0.0", "2.12"),
];

/// "Ensure no 'root' user account access key exists" in each version.
pub const CIS_NO_ROOT_KEY: &[ControlRef] = &[
    cis("1.4.0", "1.4"),
    cis("1.5.0", "1.4"),
    cis("2.0.0", "1.4"),
    cis("3.0.0", "1.4"),
    cis("4.0.1", "1.4"),
    cis("5.0.0", "1.3"),
    cis("6.0.0", "2.3"),
];

/// The control's place in every CIS version, by keywatch's `control_id`.
pub fn compliance_of(control_id: &str) -> &'static [ControlRef] {
    match control_id {
        ROOT_CONTROL_ID => CIS_NO_ROOT_KEY,
        _ => CIS_ONE_ACTIVE_KEY,
    }
}

/// keywatch's own version, in every finding.
pub const KEYWATCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The AWS partition of a region: `aws-cn` for `cn-*`, `aws-us-gov` for
/// `us-gov-*`, the ISO partitions for theirs, `aws` otherwise.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// The partition the event happened in: the caller's ARN says it
/// (`arn:aws-cn:…`); else the event's region; else `aws`.
pub fn partition_of(event: &KeyEvent) -> String {
    let from_arn = event.actor.arn.as_deref().and_then(|arn| {
        let mut parts = arn.split(':');
        (parts.next() == Some("arn")).then(|| parts.next()).flatten().filter(|p| !p.is_empty())
    });
    match (from_arn, event.region.as_deref()) {
        (Some(p), _) => p.to_string(),
        (None, Some(region)) => partition_of_region(region).to_string(),
        (None, None) => "aws".to_string(),
    }
}

/// The IAM user's ARN. When the caller is that user, its own ARN from the
/// event (which carries the user's IAM path); otherwise
/// `arn:<partition>:iam::<account>:user/<name>`, which assumes the default
/// path `/` (neither CloudTrail's record of the call nor ListAccessKeys
/// says the path). The root user's is `arn:<partition>:iam::<account>:root`.
pub fn user_arn(event: &KeyEvent, user_name: &str) -> String {
    let partition = partition_of(event);
    if user_name == ROOT_USER {
        return format!("arn:{partition}:iam::{}:root", event.account_id);
    }
    if actor_is_target(event, user_name) {
        if let Some(arn) = event.actor.arn.as_deref().filter(|a| a.contains(":user/") && a.ends_with(&format!("/{user_name}"))) {
            return arn.to_string();
        }
    }
    format!("arn:{partition}:iam::{}:user/{user_name}", event.account_id)
}

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
    Critical,
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
    /// The user's ARN (`arn:<partition>:iam::<account>:user/<name>`; the
    /// root user's `arn:<partition>:iam::<account>:root`).
    pub user_arn: String,
    pub active_key_count: usize,
    pub active_keys: Vec<KeyView>,
    /// True when IAM's listing did not show the event's change yet and the
    /// event's own key state was counted instead.
    pub event_state_assumed: bool,
    pub trigger: Trigger,
    pub detected_at: String,
    /// When the IAM listing (or account summary) this finding rests on
    /// started: of two findings with one `finding_id`, the one with the
    /// later `observed_at` is the truth.
    #[serde(serialize_with = "serialize_time")]
    pub observed_at: OffsetDateTime,
    pub detection_latency_seconds: f64,
    /// For a `FAILED` CIS-1.13 finding: the key to deactivate, the one
    /// never used or else the least recently used (of several never used,
    /// the newest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended_key_to_deactivate: Option<String>,
    /// What to do, for a `FAILED` finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// True when an unexpired approved exception covers this user: the
    /// finding is kept for the record, alerting should skip it.
    pub suppressed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Exception>,
    /// The control's number in each CIS AWS Foundations version.
    pub compliance: &'static [ControlRef],
    /// The keywatch version that made the finding.
    pub keywatch_version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub access_key_id: String,
    pub status: String,
    pub created_at: Option<String>,
    /// `GetAccessKeyLastUsed`; all three null for a key never used (or
    /// when the look-up failed).
    pub last_used_at: Option<String>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    /// False when the key's last use is unknown (the look-up failed or was
    /// left out under a burst): the three fields above are then null
    /// without meaning "never used".
    pub last_use_known: bool,
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

fn serialize_time<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn key_view(k: &AccessKey, usage: Option<&KeyUsage>) -> KeyView {
    KeyView {
        access_key_id: k.access_key_id.clone(),
        status: k.status.as_str().to_string(),
        created_at: k.created_at.map(rfc3339),
        last_used_at: usage.and_then(|u| u.last_used_at).map(rfc3339),
        last_used_service: usage.and_then(|u| u.service.clone()),
        last_used_region: usage.and_then(|u| u.region.clone()),
        last_use_known: usage.is_some(),
    }
}

/// The key a responder should deactivate: a never-used key (the newest of
/// several, a key of unknown age counting as newest), else the least
/// recently used. `usage` holds each key's last use as IAM answered it (a
/// never-used key with all fields `None`); `None` with fewer than two active
/// keys or when any active key is missing from `usage` (its look-up failed).
pub fn recommend_key(active: &[&AccessKey], usage: &HashMap<String, KeyUsage>) -> Option<String> {
    // A key whose last use could not be read may be the one in use: no
    // advice rather than advice that could cut off a working application.
    if active.len() < 2 || active.iter().any(|k| !usage.contains_key(&k.access_key_id)) {
        return None;
    }
    let last_used = |k: &AccessKey| usage.get(&k.access_key_id).and_then(|u| u.last_used_at);
    let never_used = active.iter().filter(|k| last_used(k).is_none()).max_by_key(|k| {
        // None (unknown creation, e.g. a key only the event knows) sorts
        // as the newest.
        (k.created_at.is_none(), k.created_at)
    });
    never_used.or_else(|| active.iter().min_by_key(|k| last_used(k))).map(|k| k.access_key_id.clone())
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

/// Builds the CIS-1.13 finding for a verdict; `None` when the verdict needs
/// none. `usage` holds `GetAccessKeyLastUsed` per key id, where known.
pub fn build(
    event: &KeyEvent,
    user_name: &str,
    assessment: &Assessment,
    usage: &HashMap<String, KeyUsage>,
    detected_at: OffsetDateTime,
) -> Option<Finding> {
    let (status, severity) = match assessment.verdict {
        Verdict::Compliant | Verdict::Unconfirmed => return None,
        Verdict::Resolved => (Status::Passed, Severity::Informational),
        Verdict::Violation if actor_is_target(event, user_name) => (Status::Failed, Severity::Medium),
        Verdict::Violation => (Status::Failed, Severity::High),
    };
    let active: Vec<&AccessKey> = assessment.active_keys().collect();
    let active_keys: Vec<KeyView> = active.iter().map(|k| key_view(k, usage.get(&k.access_key_id))).collect();
    let recommended = if status == Status::Failed { recommend_key(&active, usage) } else { None };
    let remediation = (status == Status::Failed).then(|| remediation(&event.account_id, user_name, recommended.as_deref()));
    Some(Finding {
        recommended_key_to_deactivate: recommended,
        remediation,
        ..base(
            &event.account_id,
            Trigger::of(event),
            event.event_time,
            CONTROL_ID,
            CONTROL_TITLE,
            user_name,
            user_arn(event, user_name),
            status,
            severity,
            active_keys,
            assessment.assumed_event_state,
            detected_at,
        )
    })
}

/// Builds the CIS-1.4 finding for a root access-key event: `FAILED` while
/// the root user has keys (`present`), `PASSED` once it has none; `None`
/// while a delete is not confirmed.
pub fn build_root(event: &KeyEvent, verdict: Verdict, present: u32, assumed: bool, detected_at: OffsetDateTime) -> Option<Finding> {
    let (status, severity) = match verdict {
        Verdict::Violation => (Status::Failed, Severity::Critical),
        Verdict::Resolved | Verdict::Compliant => (Status::Passed, Severity::Informational),
        Verdict::Unconfirmed => return None,
    };
    let mut f = base(
        &event.account_id,
        Trigger::of(event),
        event.event_time,
        ROOT_CONTROL_ID,
        ROOT_CONTROL_TITLE,
        ROOT_USER,
        user_arn(event, ROOT_USER),
        status,
        severity,
        Vec::new(),
        assumed,
        detected_at,
    );
    f.active_key_count = present as usize;
    if status == Status::Failed {
        f.remediation = Some(format!(
            "Sign in as the root user of account {} and delete its access keys (Security credentials → Access keys); \
             use IAM roles or users instead",
            event.account_id
        ));
    }
    Some(f)
}

#[allow(clippy::too_many_arguments)]
fn base(
    account_id: &str,
    trigger: Trigger,
    trigger_time: OffsetDateTime,
    control_id: &'static str,
    control_title: &'static str,
    user_name: &str,
    user_arn: String,
    status: Status,
    severity: Severity,
    active_keys: Vec<KeyView>,
    assumed: bool,
    detected_at: OffsetDateTime,
) -> Finding {
    let latency = (detected_at - trigger_time).as_seconds_f64();
    Finding {
        schema_version: SCHEMA_VERSION,
        finding_id: finding_id(control_id, account_id, user_name),
        control_id,
        control_title,
        status,
        severity,
        account_id: account_id.to_string(),
        user_name: user_name.to_string(),
        user_arn,
        active_key_count: active_keys.len(),
        active_keys,
        event_state_assumed: assumed,
        trigger,
        detected_at: rfc3339(detected_at),
        observed_at: detected_at,
        detection_latency_seconds: latency,
        recommended_key_to_deactivate: None,
        remediation: None,
        suppressed: false,
        exception: None,
        compliance: compliance_of(control_id),
        keywatch_version: KEYWATCH_VERSION,
    }
}

impl Trigger {
    /// The CloudTrail event that made keywatch look.
    pub fn of(event: &KeyEvent) -> Trigger {
        Trigger {
            event_id: event.event_id.clone(),
            event_name: event.event_name.as_str(),
            event_time: rfc3339(event.event_time),
            actor_arn: event.actor.arn.clone(),
            actor_type: event.actor.identity_type.clone(),
        }
    }

    /// A scan that started at `started`: `event_name` is `Scan`, the id
    /// names the account and the scan's start.
    pub fn scan(account_id: &str, started: OffsetDateTime) -> Trigger {
        Trigger {
            event_id: format!("scan:{account_id}:{}", rfc3339(started)),
            event_name: SCAN_TRIGGER,
            event_time: rfc3339(started),
            actor_arn: None,
            actor_type: None,
        }
    }
}

/// `trigger.event_name` of findings a scan made.
pub const SCAN_TRIGGER: &str = "Scan";

/// The command that deactivates `key` (or a placeholder).
fn remediation(account_id: &str, user_name: &str, key: Option<&str>) -> String {
    format!(
        "Deactivate the access key not in use (in account {account_id}): \
         aws iam update-access-key --user-name {user_name} --access-key-id {} --status Inactive",
        key.unwrap_or("<KEY_ID>")
    )
}

/// The CIS-1.13 finding for a user a scan listed: `FAILED` with more than
/// one active key; with `include_passed`, `PASSED` for the others (a
/// baseline that closes stale alerts); `None` otherwise. Who made the keys
/// is unknown to a scan: a violation is `MEDIUM`. The user's name and ARN
/// are as `ListUsers` gave them (IAM's own spelling, the path and
/// partition in the ARN).
pub fn build_scan(
    account_id: &str,
    user: &User,
    keys: &[AccessKey],
    usage: &HashMap<String, KeyUsage>,
    started: OffsetDateTime,
    include_passed: bool,
    detected_at: OffsetDateTime,
) -> Option<Finding> {
    let active: Vec<&AccessKey> = keys.iter().filter(|k| k.is_active()).collect();
    let (status, severity) = match active.len() {
        0 | 1 if include_passed => (Status::Passed, Severity::Informational),
        0 | 1 => return None,
        _ => (Status::Failed, Severity::Medium),
    };
    let active_keys = active.iter().map(|k| key_view(k, usage.get(&k.access_key_id))).collect();
    let mut f = base(
        account_id,
        Trigger::scan(account_id, started),
        started,
        CONTROL_ID,
        CONTROL_TITLE,
        &user.name,
        user.arn.clone(),
        status,
        severity,
        active_keys,
        false,
        detected_at,
    );
    if status == Status::Failed {
        f.recommended_key_to_deactivate = recommend_key(&active, usage);
        f.remediation = Some(remediation(account_id, &user.name, f.recommended_key_to_deactivate.as_deref()));
    }
    Some(f)
}

impl Finding {
    /// Says when the IAM answer the finding rests on was taken.
    pub fn observed(mut self, at: OffsetDateTime) -> Self {
        self.observed_at = at;
        self
    }

    /// Marks the finding as covered by an approved exception.
    pub fn suppress(&mut self, exception: &Exception) {
        self.suppressed = true;
        self.exception = Some(exception.clone());
    }
}

/// `DetailType` of the summary event a scan publishes per account.
pub const SUMMARY_DETAIL_TYPE: &str = "IAM Access Key Scan Summary";

/// What one account's scan found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanSummary {
    pub account_id: String,
    pub users_checked: usize,
    pub users_failing: usize,
    pub keys_active: usize,
    pub findings_published: usize,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    /// Look-ups and publications that failed; the scan is complete only
    /// when this is 0.
    pub errors: usize,
    pub error_samples: Vec<String>,
}

impl ScanSummary {
    pub fn complete(&self) -> bool {
        self.errors == 0
    }
}
