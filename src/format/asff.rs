//! ASFF: a finding in the AWS Security Finding Format, as Security Hub's
//! `BatchImportFindings` takes it (the SDK's types are the format's model;
//! building them does no I/O).
//!
//! **Which account.** Findings are imported into the worker's own account
//! and region, under that account's default product
//! (`arn:<partition>:securityhub:<region>:<account>:product/<account>/default`).
//! Security Hub requires a caller using the default product to import only
//! findings whose `AwsAccountId` is its own account, so `AwsAccountId` is
//! the worker's account; the account whose IAM changed is in the user's
//! ARN (the first resource's `Id`) and in `ProductFields`
//! `keywatch/account_id`.
//!
//! **Updates.** `Id` is the native `finding_id`, so the `PASSED` updates
//! the `FAILED` in place. Security Hub keeps an import only when its
//! `UpdatedAt` is later than the stored one's: `UpdatedAt` (and
//! `LastObservedAt`) is the finding's `observed_at`, when the IAM answer the
//! verdict rests on started, so of two verdicts the one on the newer IAM
//! answer wins whichever was decided or delivered last (the rule
//! `last_word` applies in the worker). `CreatedAt` and
//! `FirstObservedAt` are the trigger's time (the CloudTrail event's, a
//! scan's read of the user), never after `observed_at`: keywatch keeps no
//! history, so an import that updates a finding carries its own trigger's
//! time there.
//!
//! **Workflow.** A resolution sets `Compliance.Status` `PASSED` and
//! `RecordState` `ARCHIVED`. `Workflow` is taken on creation only (later on
//! it is the security team's, changed with `BatchUpdateFindings`);
//! Security Hub itself moves a `NOTIFIED` or `RESOLVED` finding back to
//! `NEW` when it is `ACTIVE` and `FAILED` again, but never a `SUPPRESSED`
//! one. So after the import keywatch sets the workflow itself where its
//! own verdict changed it ([`workflow_update`]; the sink,
//! [`crate::aws::securityhub`], sends it with `BatchUpdateFindings`).
//! `Severity` and `Types` are also sent as `FindingProviderFields`, the
//! place for a provider's updates to them.

use std::collections::HashMap;

use aws_sdk_securityhub::types::{
    AwsIamAccessKeyDetails, AwsIamAccessKeyStatus, AwsIamUserDetails, AwsSecurityFinding, Compliance, ComplianceStatus,
    FindingProviderFields, FindingProviderSeverity, Partition, Recommendation, RecordState, Remediation, Resource, ResourceDetails,
    Severity, SeverityLabel, Workflow, WorkflowStatus,
};

use super::{describe, exception_expiry, partition, truncate, FINDING_TYPE, REMEDIATION_URL};
use crate::finding::{rfc3339, Finding, Severity as NativeSeverity, Status, ROOT_USER};

/// ASFF's schema version.
const SCHEMA_VERSION: &str = "2018-10-08";
/// Security Hub's limits on a few text fields.
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 1024;
const RECOMMENDATION_MAX: usize = 512;
const PRODUCT_FIELD_MAX: usize = 2048;
const NOTE_MAX: usize = 512;
/// `Note.UpdatedBy` of the notes keywatch writes.
pub const NOTE_AUTHOR: &str = "keywatch";

/// Where findings are imported: the worker's own account, region and
/// partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    account_id: String,
    region: String,
    partition: String,
}

impl Target {
    pub fn new(account_id: impl Into<String>, region: impl Into<String>) -> Target {
        let region = region.into();
        let partition = crate::finding::partition_of_region(&region).to_string();
        Target { account_id: account_id.into(), region, partition }
    }

    /// The account's default product: findings of a custom integration.
    pub fn product_arn(&self) -> String {
        format!("arn:{}:securityhub:{}:{}:product/{}/default", self.partition, self.region, self.account_id, self.account_id)
    }
}

fn severity_label(s: NativeSeverity) -> (SeverityLabel, &'static str) {
    match s {
        NativeSeverity::Informational => (SeverityLabel::Informational, "INFORMATIONAL"),
        NativeSeverity::Low => (SeverityLabel::Low, "LOW"),
        NativeSeverity::Medium => (SeverityLabel::Medium, "MEDIUM"),
        NativeSeverity::High => (SeverityLabel::High, "HIGH"),
        NativeSeverity::Critical => (SeverityLabel::Critical, "CRITICAL"),
    }
}

/// `Workflow.Status`: NEW, RESOLVED, or SUPPRESSED for a finding under an
/// approved exception.
fn workflow_status(f: &Finding) -> WorkflowStatus {
    match f.status {
        Status::Failed if f.suppressed => WorkflowStatus::Suppressed,
        Status::Failed => WorkflowStatus::New,
        Status::Passed => WorkflowStatus::Resolved,
    }
}

/// A change keywatch makes to an imported finding's `Workflow` (and
/// `Note`) with `BatchUpdateFindings`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowUpdate {
    pub status: WorkflowStatus,
    /// The note's text, when the change writes one (`UpdatedBy`
    /// [`NOTE_AUTHOR`]).
    pub note: Option<String>,
}

/// The workflow change that `f`'s import calls for, if any:
/// - a `FAILED` under an approved exception: `SUPPRESSED`, with a note
///   naming the exception (owner, expiry, reason), every time (an
///   exception added after the finding was created suppresses it);
/// - a `FAILED` without one that keywatch had suppressed
///   (`suppressed_before`: the exception was removed or expired): `NEW`,
///   with a note saying so;
/// - any other `FAILED`: none, so a workflow the security team set
///   (`NOTIFIED`, or a `SUPPRESSED` of its own) stays; Security Hub itself
///   moves a `RESOLVED` finding that is `FAILED` again back to `NEW`;
/// - a `PASSED`: `RESOLVED` (the keys were fixed; Security Hub does the
///   same for its own controls' findings), no note.
pub fn workflow_update(f: &Finding, suppressed_before: bool) -> Option<WorkflowUpdate> {
    match (f.status, &f.exception) {
        (Status::Failed, Some(e)) if f.suppressed => Some(WorkflowUpdate {
            status: WorkflowStatus::Suppressed,
            note: Some(truncate(
                &format!(
                    "keywatch: suppressed by the approved exception of {} (expires {}, end of day UTC): {}",
                    e.owner,
                    exception_expiry(e),
                    e.reason
                ),
                NOTE_MAX,
            )),
        }),
        (Status::Failed, _) if suppressed_before => Some(WorkflowUpdate {
            status: WorkflowStatus::New,
            note: Some("keywatch: no approved exception covers this user any more (removed or expired); the finding is open again".into()),
        }),
        (Status::Failed, _) => None,
        (Status::Passed, _) => Some(WorkflowUpdate { status: WorkflowStatus::Resolved, note: None }),
    }
}

/// keywatch's own fields, `keywatch/<name>` → value (at most 50, values at
/// most 2 KiB).
fn product_fields(f: &Finding) -> HashMap<String, String> {
    let mut fields: Vec<(&str, Option<String>)> = vec![
        ("finding_id", Some(f.finding_id.clone())),
        ("control_id", Some(f.control_id.to_string())),
        ("account_id", Some(f.account_id.clone())),
        ("user_name", Some(f.user_name.clone())),
        ("user_arn", Some(f.user_arn.clone())),
        ("status", Some(f.status.as_str().to_string())),
        ("reason", f.reason.map(|r| r.as_str().to_string())),
        ("active_key_count", Some(f.active_key_count.to_string())),
        (
            "active_keys",
            Some(f.active_keys.iter().map(|k| k.access_key_id.as_str()).collect::<Vec<_>>().join(",")).filter(|s| !s.is_empty()),
        ),
        ("recommended_key_to_deactivate", f.recommended_key_to_deactivate.clone()),
        ("event_state_assumed", Some(f.event_state_assumed.to_string())),
        ("rotation_in_progress", Some(f.rotation_in_progress.to_string())),
        ("detection_latency_seconds", Some(format!("{:.3}", f.detection_latency_seconds))),
        ("trigger_event_id", Some(f.trigger.event_id.clone())),
        ("trigger_event_name", Some(f.trigger.event_name.to_string())),
        ("trigger_event_time", Some(rfc3339(f.trigger.event_time))),
        ("actor_arn", f.trigger.actor_arn.clone()),
        ("actor_type", f.trigger.actor_type.clone()),
        ("suppressed", Some(f.suppressed.to_string())),
        ("schema_version", Some(f.schema_version.to_string())),
        ("keywatch_version", Some(f.keywatch_version.to_string())),
    ];
    if let Some(e) = &f.exception {
        fields.push(("exception_reason", Some(e.reason.clone())));
        fields.push(("exception_owner", Some(e.owner.clone())));
        fields.push(("exception_expires", Some(exception_expiry(e))));
    }
    fields.into_iter().filter_map(|(k, v)| v.map(|v| (format!("keywatch/{k}"), truncate(&v, PRODUCT_FIELD_MAX)))).collect()
}

/// The resources: the user (`AwsIamUser`, the root user as `AwsAccount`),
/// then each active key (`AwsIamAccessKey`).
fn resources(f: &Finding, target: &Target) -> Vec<Resource> {
    let partition = Partition::from(partition(f));
    let user = if f.user_name == ROOT_USER {
        Resource::builder().r#type("AwsAccount").id(&f.user_arn)
    } else {
        Resource::builder()
            .r#type("AwsIamUser")
            .id(&f.user_arn)
            .details(ResourceDetails::builder().aws_iam_user(AwsIamUserDetails::builder().user_name(&f.user_name).build()).build())
    };
    let mut out = vec![user.partition(partition.clone()).region(&target.region).build()];
    for k in &f.active_keys {
        let mut details = AwsIamAccessKeyDetails::builder()
            .access_key_id(&k.access_key_id)
            .principal_name(&f.user_name)
            .principal_type("IAMUser")
            .account_id(&f.account_id)
            .status(AwsIamAccessKeyStatus::from(k.status.as_str()));
        if let Some(created) = k.created_at {
            details = details.created_at(rfc3339(created));
        }
        out.push(
            Resource::builder()
                .r#type("AwsIamAccessKey")
                .id(&k.access_key_id)
                .partition(partition.clone())
                .region(&target.region)
                .details(ResourceDetails::builder().aws_iam_access_key(details.build()).build())
                .build(),
        );
    }
    out
}

/// The ASFF finding for `f`, to import into `target`.
pub fn finding(f: &Finding, target: &Target) -> AwsSecurityFinding {
    let (label, original) = severity_label(f.severity);
    // UpdatedAt orders imports: the time of the IAM answer the verdict
    // rests on. CreatedAt is the trigger's time, never after it.
    let observed = rfc3339(f.observed_at);
    let created = rfc3339(f.trigger.event_time.min(f.observed_at));
    let (compliance_status, record_state) = match f.status {
        Status::Failed => (ComplianceStatus::Failed, RecordState::Active),
        Status::Passed => (ComplianceStatus::Passed, RecordState::Archived),
    };
    let mut b = AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(&f.finding_id)
        .product_arn(target.product_arn())
        .product_name("keywatch")
        .company_name("keywatch")
        .generator_id(format!("keywatch/{}", f.control_id))
        .aws_account_id(&target.account_id)
        .types(FINDING_TYPE)
        .created_at(&created)
        .first_observed_at(created)
        .updated_at(&observed)
        .last_observed_at(observed)
        .severity(Severity::builder().label(label.clone()).original(original).build())
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(FindingProviderSeverity::builder().label(label).original(original).build())
                .types(FINDING_TYPE)
                .build(),
        )
        .title(truncate(f.control_title, TITLE_MAX))
        .description(truncate(&describe(f), DESCRIPTION_MAX))
        .compliance(
            Compliance::builder()
                .status(compliance_status)
                .set_related_requirements(Some(f.compliance.iter().map(|c| c.requirement()).collect()))
                .build(),
        )
        .workflow(Workflow::builder().status(workflow_status(f)).build())
        .record_state(record_state)
        .set_product_fields(Some(product_fields(f)))
        .set_resources(Some(resources(f, target)));
    if let Some(text) = &f.remediation {
        b = b.remediation(
            Remediation::builder()
                .recommendation(Recommendation::builder().text(truncate(text, RECOMMENDATION_MAX)).url(REMEDIATION_URL).build())
                .build(),
        );
    }
    b.build()
}
