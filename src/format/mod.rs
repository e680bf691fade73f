//! Format: a [`Finding`] in the shapes that security teams' tools read.
//!
//! - **native**: the finding as keywatch defines it ([`crate::finding`]),
//!   the default on the EventBridge and stdout sinks;
//! - **OCSF** ([`ocsf`]): an OCSF 1.6.0 Compliance Finding (class 2003),
//!   for SIEMs that normalise to OCSF (Security Lake, Splunk, Elastic,
//!   Sentinel), on the EventBridge and stdout sinks with
//!   `--finding-format ocsf`;
//! - **ASFF** ([`asff`]): the AWS Security Finding Format, the only shape
//!   Security Hub imports, used by the Security Hub sink.
//!
//! Every mapping here is pure: a finding in, a document out, no I/O and no
//! clock, so that each one is tested field by field without AWS.

#[cfg(feature = "aws")]
pub mod asff;
pub mod ocsf;

use time::OffsetDateTime;

use crate::finding::{Finding, Status, ROOT_USER};

/// The document the EventBridge and stdout sinks publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "aws", derive(clap::ValueEnum))]
pub enum FindingFormat {
    /// keywatch's own finding (see docs/findings.md).
    #[default]
    Native,
    /// An OCSF 1.6.0 Compliance Finding (class_uid 2003).
    Ocsf,
}

impl FindingFormat {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FindingFormat::Native => "native",
            FindingFormat::Ocsf => "ocsf",
        }
    }

    /// The finding as one line of JSON in this format.
    pub fn render(self, finding: &Finding) -> Result<String, serde_json::Error> {
        match self {
            FindingFormat::Native => serde_json::to_string(finding),
            FindingFormat::Ocsf => serde_json::to_string(&ocsf::compliance_finding(finding)),
        }
    }
}

/// The Security Hub finding type of every keywatch finding (ASFF `Types`,
/// OCSF `finding_info.types`).
pub const FINDING_TYPE: &str = "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark";

/// Where the user's access keys are documented, for remediation.
const REMEDIATION_URL: &str = "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html";

/// Milliseconds since the Unix epoch (OCSF's timestamps).
pub fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The partition in the user's ARN (`arn:<partition>:iam::…`).
fn partition(finding: &Finding) -> &str {
    finding.user_arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws")
}

/// One or two sentences saying what the finding found, for a person:
/// ASFF `Description`, OCSF `message` and `finding_info.desc`.
fn describe(f: &Finding) -> String {
    let n = f.active_key_count;
    let keys = |n: usize| if n == 1 { "1 active access key".to_string() } else { format!("{n} active access keys") };
    let mut text = if f.user_name == ROOT_USER {
        match f.status {
            Status::Failed => format!(
                "The root user of account {} has {} access key{}; CIS AWS Foundations asks for none.",
                f.account_id,
                n,
                if n == 1 { "" } else { "s" }
            ),
            Status::Passed => format!("The root user of account {} has no access key now.", f.account_id),
        }
    } else {
        match f.status {
            Status::Failed => {
                format!("IAM user {} in account {} has {}; CIS AWS Foundations allows one per user.", f.user_name, f.account_id, keys(n))
            }
            Status::Passed => format!("IAM user {} in account {} has {} now: resolved.", f.user_name, f.account_id, keys(n)),
        }
    };
    if let Some(reason) = f.reason {
        text.pop();
        text.push_str(&format!("; {}.", reason.describe()));
    }
    if let Some(e) = f.exception.as_ref().filter(|_| f.suppressed) {
        text.push_str(&format!(" Covered by an approved exception (owner {}, until {}): {}.", e.owner, exception_expiry(e), e.reason));
    }
    text
}

/// An exception's last day, `YYYY-MM-DD`.
fn exception_expiry(e: &crate::exceptions::Exception) -> String {
    let d = e.expires;
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Cuts `s` to at most `max` bytes on a character boundary (ASFF limits
/// its text fields).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
