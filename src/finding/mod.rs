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
//!
//! This file holds the document's types; `control.rs` the CIS numbering,
//! `arn.rs` the partition and user ARN, `build.rs` the builders,
//! `summary.rs` the scan summary. Callers name everything through
//! `finding::`, so where an item sits inside is not their concern.

mod arn;
mod build;
mod control;
mod quarantine;
mod summary;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::KeyEvent;
use crate::exceptions::Exception;

pub use self::arn::user_arn;
pub(crate) use self::arn::{actor_is_target, partition_of_arn, partition_of_region, ROOT_USER};
pub use self::build::{build, build_root, build_user_gone, recommend_key};
pub(crate) use self::build::{build_scan, build_scan_root, build_scan_user_gone};
pub(crate) use self::control::{compliance_of, CONTROL_TITLE, ROOT_CONTROL_TITLE};
pub use self::control::{ControlRef, CIS_NO_ROOT_KEY, CIS_ONE_ACTIVE_KEY, CONTROL_ID, ROOT_CONTROL_ID};
pub use self::quarantine::{Quarantine, Withheld};
pub use self::summary::ScanSummary;
pub(crate) use self::summary::SUMMARY_DETAIL_TYPE;

/// Version of the `detail` document; bumped only on incompatible change
/// (an added field is not one).
const SCHEMA_VERSION: &str = "1.0";
/// keywatch's own version, in every finding.
pub const KEYWATCH_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "PASSED")]
    Passed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Failed => "FAILED",
            Status::Passed => "PASSED",
        }
    }
}

/// Why a `PASSED` closes its finding when the listing alone does not say
/// it (the `reason` field; absent on every other finding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// IAM answered `NoSuchEntity` for the user: it was deleted, and its
    /// keys with it.
    UserDeleted,
    /// A re-check after the consistency window: IAM never listed as active
    /// the key a `FAILED` had counted from its event alone.
    AssumedKeyNotConfirmed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserDeleted => "user_deleted",
            Reason::AssumedKeyNotConfirmed => "assumed_key_not_confirmed",
        }
    }

    /// The reason in a few words, for a person (ASFF `Description`, OCSF
    /// `message` and `status_detail`).
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Reason::UserDeleted => "the IAM user was deleted",
            Reason::AssumedKeyNotConfirmed => "IAM never listed as active the key its event reported",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Informational,
    /// A self-made (or allow-listed) second key within the rotation grace
    /// (`rotation_in_progress`).
    Low,
    Medium,
    High,
    Critical,
}

/// The `detail` of a finding event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub(crate) schema_version: &'static str,
    pub finding_id: String,
    pub control_id: &'static str,
    pub control_title: &'static str,
    pub status: Status,
    /// For a `PASSED` that the listing alone does not explain, why it
    /// closes the finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub severity: Severity,
    pub(crate) account_id: String,
    pub user_name: String,
    /// The user's ARN (`arn:<partition>:iam::<account>:user/<name>`; the
    /// root user's `arn:<partition>:iam::<account>:root`).
    pub user_arn: String,
    pub active_key_count: usize,
    pub active_keys: Vec<KeyView>,
    /// True when IAM's listing did not show the event's change yet and the
    /// event's own key state was counted instead.
    pub event_state_assumed: bool,
    /// True for a `FAILED` whose second key its own user (or an
    /// allow-listed rotation principal) created less than the rotation
    /// grace ago: a rotation under way, `LOW` until the grace ends.
    pub rotation_in_progress: bool,
    pub trigger: Trigger,
    #[serde(serialize_with = "serialize_time")]
    pub detected_at: OffsetDateTime,
    /// When the IAM listing (or account summary) this finding rests on
    /// started: of two findings with one `finding_id`, the one with the
    /// later `observed_at` is the truth.
    #[serde(serialize_with = "serialize_time")]
    pub observed_at: OffsetDateTime,
    pub(crate) detection_latency_seconds: f64,
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
    /// What the worker's quarantine (`--quarantine-accounts`) did about a
    /// planted key: deactivated (when, and the command that undoes it), or
    /// withheld (why). Absent when the key was no candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
    /// The control's number in each CIS AWS Foundations version.
    pub(crate) compliance: &'static [ControlRef],
    /// The keywatch version that made the finding.
    pub(crate) keywatch_version: &'static str,
    /// Whether the ledger's last word on this `finding_id` was suppressed:
    /// set by the ledger before the sinks get the finding (so that the
    /// Security Hub sink lifts a suppression another process set), never
    /// published.
    #[serde(skip)]
    pub(crate) was_suppressed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub access_key_id: String,
    pub(crate) status: String,
    #[serde(serialize_with = "serialize_opt_time")]
    pub(crate) created_at: Option<OffsetDateTime>,
    /// `GetAccessKeyLastUsed`; all three null for a key never used (or
    /// when the look-up failed).
    #[serde(serialize_with = "serialize_opt_time")]
    pub last_used_at: Option<OffsetDateTime>,
    pub(crate) last_used_service: Option<String>,
    pub(crate) last_used_region: Option<String>,
    /// False when the key's last use is unknown (the look-up failed or was
    /// left out under a burst): the three fields above are then null
    /// without meaning "never used".
    pub last_use_known: bool,
}

/// The CloudTrail event that made keywatch look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub event_id: String,
    pub(crate) event_name: &'static str,
    #[serde(serialize_with = "serialize_time")]
    pub event_time: OffsetDateTime,
    pub(crate) actor_arn: Option<String>,
    pub(crate) actor_type: Option<String>,
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

// Times are kept typed and written as RFC 3339 only here, as the
// documents say (docs/findings.md); the formats read the typed values.
fn serialize_time<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn serialize_opt_time<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl Trigger {
    /// The CloudTrail event that made keywatch look.
    fn of(event: &KeyEvent) -> Trigger {
        Trigger {
            event_id: event.event_id.clone(),
            event_name: event.event_name.as_str(),
            event_time: event.event_time,
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
            event_time: started,
            actor_arn: None,
            actor_type: None,
        }
    }
}

/// `trigger.event_name` of findings a scan made.
const SCAN_TRIGGER: &str = "Scan";
/// `trigger.event_name` of findings a re-check made.
const RECHECK_TRIGGER: &str = "Recheck";

impl Finding {
    /// Says when the IAM answer the finding rests on was taken.
    pub(crate) fn observed(mut self, at: OffsetDateTime) -> Self {
        self.observed_at = at;
        self
    }

    /// The finding of a re-check of its trigger's event: `trigger.event_id`
    /// becomes `recheck:<event id>` and `event_name` `Recheck` (so that a
    /// consumer dropping repeats by `trigger.event_id` keeps it); the
    /// event's time and actor stay.
    pub(crate) fn rechecked(mut self) -> Self {
        self.trigger.event_id = format!("recheck:{}", self.trigger.event_id);
        self.trigger.event_name = RECHECK_TRIGGER;
        self
    }

    /// Marks a `FAILED` as a rotation under way: `LOW`, until the grace
    /// ends.
    pub(crate) fn rotating(mut self) -> Self {
        self.severity = Severity::Low;
        self.rotation_in_progress = true;
        self
    }

    /// Marks the finding as covered by an approved exception.
    pub(crate) fn suppress(&mut self, exception: &Exception) {
        self.suppressed = true;
        self.exception = Some(exception.clone());
    }
}
