//! Builders: a verdict on an event, or a scan's listing of one user, → the
//! [`Finding`] to publish, with the key to deactivate and how.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::{
    actor_is_target, compliance_of, finding_id, user_arn, Finding, KeyView, Reason, Severity, Status, Trigger, CONTROL_ID, CONTROL_TITLE,
    KEYWATCH_VERSION, ROOT_CONTROL_ID, ROOT_CONTROL_TITLE, ROOT_USER, SCHEMA_VERSION,
};
use crate::evaluate::{Assessment, Verdict};
use crate::event::KeyEvent;
use crate::keys::{AccessKey, KeyUsage, User};

fn key_view(k: &AccessKey, usage: Option<&KeyUsage>) -> KeyView {
    KeyView {
        access_key_id: k.access_key_id.clone(),
        status: k.status.as_str().to_string(),
        created_at: k.created_at,
        last_used_at: usage.and_then(|u| u.last_used_at),
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
        ..Base {
            control_id: CONTROL_ID,
            control_title: CONTROL_TITLE,
            account_id: &event.account_id,
            user_name,
            user_arn: user_arn(event, user_name),
            status,
            severity,
            active_keys,
            event_state_assumed: assessment.assumed_event_state,
            trigger: Trigger::of(event),
            trigger_time: event.event_time,
            detected_at,
        }
        .finding()
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
    let mut f = Base {
        control_id: ROOT_CONTROL_ID,
        control_title: ROOT_CONTROL_TITLE,
        account_id: &event.account_id,
        user_name: ROOT_USER,
        user_arn: user_arn(event, ROOT_USER),
        status,
        severity,
        active_keys: Vec::new(),
        event_state_assumed: assumed,
        trigger: Trigger::of(event),
        trigger_time: event.event_time,
        detected_at,
    }
    .finding();
    f.active_key_count = present as usize;
    if status == Status::Failed {
        f.remediation = Some(root_remediation(&event.account_id));
    }
    Some(f)
}

/// What to do about a root access key.
fn root_remediation(account_id: &str) -> String {
    format!(
        "Sign in as the root user of account {account_id} and delete its access keys (Security credentials → Access keys); \
         use IAM roles or users instead"
    )
}

/// The CIS-1.13 `PASSED` for a user IAM no longer has (`NoSuchEntity`):
/// deleted, and its keys with it, so a violation open for it is closed.
/// The name is the event's (IAM cannot spell a user it no longer has).
pub fn build_user_gone(event: &KeyEvent, user_name: &str, detected_at: OffsetDateTime) -> Finding {
    let mut f = Base {
        control_id: CONTROL_ID,
        control_title: CONTROL_TITLE,
        account_id: &event.account_id,
        user_name,
        user_arn: user_arn(event, user_name),
        status: Status::Passed,
        severity: Severity::Informational,
        active_keys: Vec::new(),
        event_state_assumed: false,
        trigger: Trigger::of(event),
        trigger_time: event.event_time,
        detected_at,
    }
    .finding();
    f.reason = Some(Reason::UserDeleted);
    f
}

/// The CIS-1.13 `PASSED` a scan makes for a user the ledger holds a
/// violation open for and IAM no longer has: deleted, and its keys with it.
/// The ARN is built in `partition` (IAM cannot give the path of a user it
/// no longer has).
pub(crate) fn build_scan_user_gone(
    account_id: &str,
    user_name: &str,
    partition: &str,
    started: OffsetDateTime,
    detected_at: OffsetDateTime,
) -> Finding {
    let mut f = Base {
        control_id: CONTROL_ID,
        control_title: CONTROL_TITLE,
        account_id,
        user_name,
        user_arn: format!("arn:{partition}:iam::{account_id}:user/{user_name}"),
        status: Status::Passed,
        severity: Severity::Informational,
        active_keys: Vec::new(),
        event_state_assumed: false,
        trigger: Trigger::scan(account_id, started),
        trigger_time: started,
        detected_at,
    }
    .finding();
    f.reason = Some(Reason::UserDeleted);
    f
}

/// What every finding is made of, whichever builder makes it. The fields
/// left out (the recommended key, the remediation, an exception) start
/// empty for the builders to fill in.
struct Base<'a> {
    control_id: &'static str,
    control_title: &'static str,
    account_id: &'a str,
    user_name: &'a str,
    user_arn: String,
    status: Status,
    severity: Severity,
    active_keys: Vec<KeyView>,
    event_state_assumed: bool,
    trigger: Trigger,
    /// When the trigger happened (the event, or the scan's start): the
    /// detection latency is measured from it.
    trigger_time: OffsetDateTime,
    detected_at: OffsetDateTime,
}

impl Base<'_> {
    fn finding(self) -> Finding {
        let latency = (self.detected_at - self.trigger_time).as_seconds_f64();
        Finding {
            schema_version: SCHEMA_VERSION,
            finding_id: finding_id(self.control_id, self.account_id, self.user_name),
            control_id: self.control_id,
            control_title: self.control_title,
            status: self.status,
            reason: None,
            severity: self.severity,
            account_id: self.account_id.to_string(),
            user_name: self.user_name.to_string(),
            user_arn: self.user_arn,
            active_key_count: self.active_keys.len(),
            active_keys: self.active_keys,
            event_state_assumed: self.event_state_assumed,
            rotation_in_progress: false,
            trigger: self.trigger,
            detected_at: self.detected_at,
            observed_at: self.detected_at,
            detection_latency_seconds: latency,
            recommended_key_to_deactivate: None,
            remediation: None,
            suppressed: false,
            exception: None,
            quarantine: None,
            compliance: compliance_of(self.control_id),
            keywatch_version: KEYWATCH_VERSION,
            was_suppressed: false,
        }
    }
}

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
pub(crate) fn build_scan(
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
    let mut f = Base {
        control_id: CONTROL_ID,
        control_title: CONTROL_TITLE,
        account_id,
        user_name: &user.name,
        user_arn: user.arn.clone(),
        status,
        severity,
        active_keys,
        event_state_assumed: false,
        trigger: Trigger::scan(account_id, started),
        trigger_time: started,
        detected_at,
    }
    .finding();
    if status == Status::Failed {
        f.recommended_key_to_deactivate = recommend_key(&active, usage);
        f.remediation = Some(remediation(account_id, &user.name, f.recommended_key_to_deactivate.as_deref()));
    }
    Some(f)
}

/// The CIS-1.4 finding a scan makes of an account's root user from
/// `AccountAccessKeysPresent` (`present`): `FAILED` (`CRITICAL`) while the
/// root user has a key; with `include_passed`, `PASSED` when it has none;
/// `None` otherwise. The same `finding_id` as a root key event's finding;
/// the ARN in `partition`.
pub(crate) fn build_scan_root(
    account_id: &str,
    partition: &str,
    present: u32,
    started: OffsetDateTime,
    include_passed: bool,
    detected_at: OffsetDateTime,
) -> Option<Finding> {
    let (status, severity) = match present {
        0 if include_passed => (Status::Passed, Severity::Informational),
        0 => return None,
        _ => (Status::Failed, Severity::Critical),
    };
    let mut f = Base {
        control_id: ROOT_CONTROL_ID,
        control_title: ROOT_CONTROL_TITLE,
        account_id,
        user_name: ROOT_USER,
        user_arn: format!("arn:{partition}:iam::{account_id}:root"),
        status,
        severity,
        active_keys: Vec::new(),
        event_state_assumed: false,
        trigger: Trigger::scan(account_id, started),
        trigger_time: started,
        detected_at,
    }
    .finding();
    f.active_key_count = present as usize;
    if status == Status::Failed {
        f.remediation = Some(root_remediation(account_id));
    }
    Some(f)
}
