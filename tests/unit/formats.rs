//! The finding as ASFF and as OCSF, in process: both mappings field by field
//! for a FAILED, a PASSED, a suppressed and a root-key finding. (The same
//! findings validated against the OCSF 1.6.0 JSON Schema are in
//! `tests/e2e/ocsf_schema.rs`: the validator is Python, from the venv.)

use crate::common::*;
use aws_sdk_securityhub::types::{ComplianceStatus, RecordState, SeverityLabel, WorkflowStatus};
use keywatch::exceptions::Exceptions;
use keywatch::finding::{rfc3339, Status, KEYWATCH_VERSION};
use keywatch::format::asff::{self, Target};
use keywatch::format::{epoch_ms, ocsf, FindingFormat, FINDING_TYPE};
use serde_json::Value;
use time::OffsetDateTime;

/// The worker's own account, where Security Hub findings are imported.
const OWN: &str = "999988887777";

// -------------------------------------------------------------------- ASFF

fn target() -> Target {
    Target::new(OWN, "us-east-1")
}

#[test]
fn asff_failed_finding_is_imported_into_the_workers_account_with_the_users_account_in_it() {
    let f = failed();
    let a = asff::finding(&f, &target());
    assert_eq!(a.schema_version(), Some("2018-10-08"));
    assert_eq!(a.id(), Some(f.finding_id.as_str()));
    assert_eq!(a.product_arn(), Some(format!("arn:aws:securityhub:us-east-1:{OWN}:product/{OWN}/default").as_str()));
    assert_eq!(a.aws_account_id(), Some(OWN), "Security Hub takes only the importing account's findings under its default product");
    assert_eq!(a.generator_id(), Some("keywatch/CIS-AWS-1.13"));
    assert_eq!(a.types(), [FINDING_TYPE]);
    assert_eq!(a.created_at(), Some(rfc3339(f.trigger.event_time).as_str()));
    assert_eq!(a.first_observed_at(), Some(rfc3339(f.trigger.event_time).as_str()));
    assert_eq!(a.updated_at(), Some(rfc3339(f.observed_at).as_str()));
    assert_eq!(a.last_observed_at(), Some(rfc3339(f.observed_at).as_str()));
    assert_eq!(a.severity().and_then(|s| s.label()), Some(&SeverityLabel::High));
    let provider = a.finding_provider_fields().unwrap();
    assert_eq!(provider.severity().and_then(|s| s.label()), Some(&SeverityLabel::High));
    assert_eq!(provider.types(), [FINDING_TYPE]);
    assert_eq!(a.title(), Some(f.control_title));
    let description = a.description().unwrap();
    assert!(description.contains("alice") && description.contains(MEMBER) && description.contains("2 active access keys"), "{description}");
    let recommendation = a.remediation().and_then(|r| r.recommendation()).unwrap();
    assert_eq!(recommendation.text(), f.remediation.as_deref());

    let resources = a.resources();
    assert_eq!(resources.len(), 3, "the user and its two active keys");
    assert_eq!((resources[0].r#type(), resources[0].id()), (Some("AwsIamUser"), Some(f.user_arn.as_str())));
    assert_eq!(resources[0].details().and_then(|d| d.aws_iam_user()).and_then(|u| u.user_name()), Some("alice"));
    for (r, k) in resources[1..].iter().zip(&f.active_keys) {
        assert_eq!((r.r#type(), r.id()), (Some("AwsIamAccessKey"), Some(k.access_key_id.as_str())));
        let details = r.details().and_then(|d| d.aws_iam_access_key()).unwrap();
        assert_eq!((details.principal_name(), details.account_id()), (Some("alice"), Some(MEMBER)));
    }

    let compliance = a.compliance().unwrap();
    assert_eq!(compliance.status(), Some(&ComplianceStatus::Failed));
    let requirements = compliance.related_requirements();
    assert_eq!(requirements.len(), 7);
    for r in [
        "CIS AWS Foundations Benchmark v1.4.0/1.13",
        "CIS AWS Foundations Benchmark v5.0.0/1.12",
        "CIS AWS Foundations Benchmark v6.0.0/2.12",
    ] {
        assert!(requirements.iter().any(|x| x == r), "{r} missing from {requirements:?}");
    }
    assert_eq!(a.workflow().and_then(|w| w.status()), Some(&WorkflowStatus::New));
    assert_eq!(a.record_state(), Some(&RecordState::Active));

    let fields = a.product_fields().unwrap();
    assert_eq!(fields["keywatch/account_id"], MEMBER);
    assert_eq!(fields["keywatch/user_arn"], f.user_arn);
    assert_eq!(fields["keywatch/finding_id"], f.finding_id);
    assert_eq!(fields["keywatch/trigger_event_id"], f.trigger.event_id);
    assert_eq!(Some(&fields["keywatch/recommended_key_to_deactivate"]), f.recommended_key_to_deactivate.as_ref());
    assert_eq!(fields["keywatch/keywatch_version"], KEYWATCH_VERSION);
    assert!(fields.len() <= 50 && fields.keys().all(|k| k.len() <= 128));
}

#[test]
fn asff_passed_finding_resolves_and_archives_the_same_id() {
    let (f, p) = (failed(), passed());
    let a = asff::finding(&p, &target());
    assert_eq!(a.id(), Some(p.finding_id.as_str()));
    assert_eq!(a.compliance().and_then(|c| c.status()), Some(&ComplianceStatus::Passed));
    assert_eq!(a.record_state(), Some(&RecordState::Archived));
    assert_eq!(a.workflow().and_then(|w| w.status()), Some(&WorkflowStatus::Resolved));
    assert_eq!(a.severity().and_then(|s| s.label()), Some(&SeverityLabel::Informational));
    assert!(a.remediation().is_none());
    assert_eq!(a.resources()[0].id(), Some(p.user_arn.as_str()));
    // The same user's FAILED and PASSED share the Id.
    assert_eq!(asff::finding(&f, &target()).id().unwrap(), f.finding_id);
}

#[test]
fn asff_suppressed_finding_is_suppressed_and_carries_the_exception() {
    let a = asff::finding(&suppressed(), &target());
    assert_eq!(a.workflow().and_then(|w| w.status()), Some(&WorkflowStatus::Suppressed));
    assert_eq!(a.compliance().and_then(|c| c.status()), Some(&ComplianceStatus::Failed), "still non-compliant");
    assert_eq!(a.record_state(), Some(&RecordState::Active));
    let fields = a.product_fields().unwrap();
    assert_eq!(fields["keywatch/suppressed"], "true");
    assert_eq!(fields["keywatch/exception_reason"], "vendor integration, CHG-1234");
    assert_eq!(fields["keywatch/exception_owner"], "platform@example.com");
    assert_eq!(fields["keywatch/exception_expires"], "2099-12-31");
    assert!(a.description().unwrap().contains("approved exception"));
}

#[test]
fn asff_root_key_finding_names_the_account_root() {
    let f = root();
    let a = asff::finding(&f, &target());
    assert_eq!(a.generator_id(), Some("keywatch/CIS-AWS-1.4"));
    assert_eq!(a.severity().and_then(|s| s.label()), Some(&SeverityLabel::Critical));
    assert_eq!(
        (a.resources()[0].r#type(), a.resources()[0].id()),
        (Some("AwsAccount"), Some(format!("arn:aws:iam::{MEMBER}:root").as_str()))
    );
    let requirements = a.compliance().unwrap().related_requirements();
    assert!(requirements.iter().any(|r| r == "CIS AWS Foundations Benchmark v5.0.0/1.3"), "{requirements:?}");
    assert!(requirements.iter().any(|r| r == "CIS AWS Foundations Benchmark v6.0.0/2.3"), "{requirements:?}");
}

#[test]
fn asff_updated_at_is_the_iam_answers_time_so_the_newer_answer_wins() {
    let t = |s: Option<&str>| OffsetDateTime::parse(s.unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    // UpdatedAt is observed_at, not when keywatch decided.
    let mut slow = failed_at(1, &Exceptions::default());
    slow.observed_at = slow.detected_at - time::Duration::seconds(30);
    let a = asff::finding(&slow, &target());
    assert_eq!(a.updated_at(), Some(rfc3339(slow.observed_at).as_str()));
    assert_eq!(a.last_observed_at(), Some(rfc3339(slow.observed_at).as_str()));
    // An older listing decided (or delivered) later still orders first.
    let newer = failed_at(5, &Exceptions::default());
    let mut older = failed_at(20, &Exceptions::default());
    older.observed_at = newer.observed_at - time::Duration::seconds(1);
    assert!(older.detected_at > newer.detected_at);
    let (older, newer) = (asff::finding(&older, &target()), asff::finding(&newer, &target()));
    assert!(t(newer.updated_at()) > t(older.updated_at()), "{:?} vs {:?}", newer.updated_at(), older.updated_at());
    // A clock behind CloudTrail's never makes UpdatedAt precede CreatedAt.
    let skewed = asff::finding(&failed_at(-3, &Exceptions::default()), &target());
    assert!(t(skewed.updated_at()) >= t(skewed.created_at()));
    assert_eq!(skewed.created_at(), skewed.first_observed_at());
}

#[test]
fn asff_product_arn_follows_the_workers_partition() {
    assert_eq!(
        Target::new("123456789012", "cn-north-1").product_arn(),
        "arn:aws-cn:securityhub:cn-north-1:123456789012:product/123456789012/default"
    );
    assert_eq!(
        Target::new("123456789012", "us-gov-west-1").product_arn(),
        "arn:aws-us-gov:securityhub:us-gov-west-1:123456789012:product/123456789012/default"
    );
}

// -------------------------------------------------------------------- OCSF

#[test]
fn ocsf_failed_finding_maps_every_fact() {
    let f = failed();
    let o = ocsf::compliance_finding(&f);
    assert_eq!((o["class_uid"].as_u64(), o["category_uid"].as_u64(), o["type_uid"].as_u64()), (Some(2003), Some(2), Some(200301)));
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["metadata"]["version"], "1.6.0");
    assert_eq!(o["metadata"]["product"]["name"], "keywatch");
    assert_eq!(o["metadata"]["product"]["vendor_name"], "keywatch");
    assert_eq!(o["metadata"]["product"]["version"], KEYWATCH_VERSION);
    assert_eq!(o["finding_info"]["uid"], f.finding_id.as_str());
    assert_eq!(o["finding_info"]["title"], f.control_title);
    assert_eq!(o["finding_info"]["types"][0], FINDING_TYPE);
    assert_eq!(o["finding_info"]["related_events"][0]["uid"], f.trigger.event_id.as_str());
    assert_eq!(o["compliance"]["control"], "CIS-AWS-1.13");
    assert_eq!(o["compliance"]["status_id"], 3, "Fail");
    assert_eq!(o["compliance"]["standards"][0], "CIS AWS Foundations Benchmark v1.4.0");
    assert_eq!(o["compliance"]["requirements"][5], "CIS AWS Foundations Benchmark v5.0.0/1.12");
    assert_eq!(o["status_id"], 1, "New");
    assert_eq!(o["severity_id"], 4, "High");
    assert_eq!(o["time"].as_i64(), Some(epoch_ms(f.detected_at)));
    assert_eq!(o["finding_info"]["created_time"].as_i64(), Some(epoch_ms(f.trigger.event_time)));
    assert_eq!(o["cloud"]["provider"], "AWS");
    assert_eq!(o["cloud"]["account"]["uid"], MEMBER);
    assert_eq!(o["resources"][0]["uid"], f.user_arn.as_str());
    assert_eq!(o["resources"][0]["name"], "alice");
    let keys: Vec<&str> = o["resources"].as_array().unwrap()[1..].iter().map(|r| r["uid"].as_str().unwrap()).collect();
    let want: Vec<&str> = f.active_keys.iter().map(|k| k.access_key_id.as_str()).collect();
    assert_eq!(keys, want, "the active keys");
    assert_eq!(o["resources"][1]["owner"]["uid"], f.user_arn.as_str());
    assert_eq!(o["remediation"]["desc"], f.remediation.as_deref().unwrap());
    assert_eq!(o["unmapped"]["recommended_key_to_deactivate"], f.recommended_key_to_deactivate.as_deref().unwrap());
    assert!(o["unmapped"].get("exception").is_none());
}

#[test]
fn ocsf_passed_suppressed_and_root_findings_say_so() {
    let p = ocsf::compliance_finding(&passed());
    assert_eq!((p["compliance"]["status_id"].as_u64(), p["status_id"].as_u64()), (Some(1), Some(4)), "Pass, Resolved");
    assert_eq!((p["activity_id"].as_u64(), p["type_uid"].as_u64()), (Some(3), Some(200303)), "Close");
    assert_eq!(p["severity_id"], 1);
    assert!(p.get("remediation").is_none());

    let s = ocsf::compliance_finding(&suppressed());
    assert_eq!((s["compliance"]["status_id"].as_u64(), s["status_id"].as_u64()), (Some(3), Some(3)), "Fail, Suppressed");
    assert_eq!(s["unmapped"]["exception"]["owner"], "platform@example.com");
    assert!(s["status_detail"].as_str().unwrap().contains("CHG-1234"));

    let r = ocsf::compliance_finding(&root());
    assert_eq!(r["severity_id"], 5, "Critical");
    assert_eq!(r["compliance"]["control"], "CIS-AWS-1.4");
    assert_eq!(r["resources"][0]["uid"], format!("arn:aws:iam::{MEMBER}:root"));
    assert_eq!(r["compliance"]["requirements"][6], "CIS AWS Foundations Benchmark v6.0.0/2.3");
}

#[test]
fn the_finding_format_renders_native_or_ocsf() {
    let f = failed();
    let native: Value = serde_json::from_str(&FindingFormat::Native.render(&f).unwrap()).unwrap();
    assert_eq!(native, json(&f));
    let ocsf: Value = serde_json::from_str(&FindingFormat::Ocsf.render(&f).unwrap()).unwrap();
    assert_eq!(ocsf, ocsf::compliance_finding(&f));
    assert_eq!(f.status, Status::Failed);
}
