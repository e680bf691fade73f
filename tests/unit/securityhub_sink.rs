//! The Security Hub sink's answers that the emulator cannot produce (it
//! accepts every finding keywatch sends), through a mocked Security Hub
//! client (aws-smithy-mocks): a finding that `BatchImportFindings` rejects,
//! an answer that leaves a finding unaccounted for, a failed call, and how
//! findings are split into calls. A rejected finding's message stays for
//! redelivery while the rest of the batch is acknowledged. Then the
//! workflow: which `Workflow.Status` and note each finding calls for, the
//! `BatchUpdateFindings` calls that set them after the import (grouped by
//! change, only when one is needed), and an `UnprocessedFindings` entry
//! leaving its finding unaccepted.

use std::sync::{Arc, Mutex};

use aws_sdk_securityhub::operation::batch_import_findings::{BatchImportFindingsError, BatchImportFindingsOutput};
use aws_sdk_securityhub::operation::batch_update_findings::{BatchUpdateFindingsError, BatchUpdateFindingsOutput};
use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, BatchUpdateFindingsUnprocessedFinding, ImportFindingsError, WorkflowStatus,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use keywatch::accounts::Accounts;
use keywatch::aws::securityhub::SecurityHubSink;
use keywatch::config::RunArgs;
use keywatch::event::{parse, Parsed};
use keywatch::finding::{finding_id, Finding, CONTROL_ID};
use keywatch::format::asff::{self, Target, WorkflowUpdate};
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::keys::{AccessKey, KeyLastUsed, KeyStatus, Listing};
use keywatch::message::{Disposition, Message};
use keywatch::processor::{Processor, ProcessorSettings};
use keywatch::sink::{FindingSink, SinkError, Sinks};
use serde_json::json;
use time::OffsetDateTime;

const ACCOUNT: &str = "123456789012";

/// The EventBridge envelope of an admin creating `key` for `user`, now.
fn body(event_id: &str, user: &str, key: &str) -> String {
    let now = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    json!({
        "source": "aws.iam",
        "detail-type": "AWS API Call via CloudTrail",
        "account": ACCOUNT,
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/admin"), "accountId": ACCOUNT, "userName": "admin"},
            "eventTime": now,
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey",
            "awsRegion": "us-east-1",
            "requestParameters": {"userName": user},
            "responseElements": {"accessKey": {"accessKeyId": key, "status": "Active", "userName": user}},
            "eventID": event_id,
            "recipientAccountId": ACCOUNT,
        }
    })
    .to_string()
}

/// A FAILED finding for `user`, decided from that event.
fn finding(user: &str) -> Finding {
    let Ok(Parsed::Key(ev)) = parse(&body(&format!("evt-{user}"), user, "AKIAEXAMPLE000000002")) else { panic!() };
    let now = OffsetDateTime::now_utc();
    let listing = Listing {
        user_name: None,
        keys: ["AKIAEXAMPLE000000001", "AKIAEXAMPLE000000002"]
            .map(|id| AccessKey { access_key_id: id.into(), status: KeyStatus::Active, created_at: None })
            .to_vec(),
        observed_at: now,
    };
    let outcome = keywatch::decide::conclude(
        &ev,
        keywatch::decide::Iam::Keys { user_name: user, listing: &listing },
        &Default::default(),
        &Default::default(),
        now,
        &keywatch::decide::Rules { consistency_window: std::time::Duration::from_secs(120), rotation: None },
    );
    match outcome {
        keywatch::decide::Outcome::Publish(f) => *f,
        other => panic!("{other:?}"),
    }
}

fn id_of(user: &str) -> String {
    finding_id(CONTROL_ID, ACCOUNT, user)
}

fn sink(client: aws_sdk_securityhub::Client) -> SecurityHubSink {
    SecurityHubSink::new(client, Target::new(ACCOUNT, "us-east-1"))
}

fn rejected(id: &str) -> ImportFindingsError {
    ImportFindingsError::builder().id(id).error_code("InvalidInput").error_message("Finding is malformed").build()
}

#[tokio::test]
async fn a_finding_security_hub_rejects_is_not_accepted_and_the_others_are() {
    let bob = id_of("bob");
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .then_output(move || BatchImportFindingsOutput::builder().failed_count(1).success_count(1).failed_findings(rejected(&bob)).build());
    let client = mock_client!(aws_sdk_securityhub, [&rule]);
    let results = sink(client).publish(&[finding("alice"), finding("bob")]).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(SinkError::Rejected { sink: "securityhub", code, .. }) if code == "InvalidInput"), "{results:?}");
    assert_eq!(rule.num_calls(), 1, "one call for both");
}

#[tokio::test]
async fn an_answer_that_leaves_a_finding_unaccounted_for_accepts_none() {
    // Two sent, one counted as imported, none listed as failed: which one
    // went in cannot be told.
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .then_output(|| BatchImportFindingsOutput::builder().failed_count(0).success_count(1).build());
    let client = mock_client!(aws_sdk_securityhub, [&rule]);
    let results = sink(client).publish(&[finding("alice"), finding("bob")]).await;
    for r in &results {
        assert!(matches!(r, Err(SinkError::Rejected { code, .. }) if code == "ResultCountMismatch"), "{results:?}");
    }

    // A failure that names no Id leaves every finding of the call unaccepted.
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings).then_output(|| {
        BatchImportFindingsOutput::builder()
            .failed_count(1)
            .success_count(1)
            .failed_findings(ImportFindingsError::builder().error_code("InternalError").build())
            .build()
    });
    let client = mock_client!(aws_sdk_securityhub, [&rule]);
    let results = sink(client).publish(&[finding("alice"), finding("bob")]).await;
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
}

#[tokio::test]
async fn a_failed_call_accepts_no_finding() {
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings).then_error(|| {
        BatchImportFindingsError::generic(
            aws_sdk_securityhub::error::ErrorMetadata::builder().code("InvalidAccessException").message("not subscribed").build(),
        )
    });
    let client = mock_client!(aws_sdk_securityhub, [&rule]);
    let results = sink(client).publish(&[finding("alice"), finding("bob")]).await;
    for r in &results {
        assert!(matches!(r, Err(SinkError::Call(e)) if e.code.as_deref() == Some("InvalidAccessException")), "{results:?}");
    }
}

#[tokio::test]
async fn findings_go_100_a_call_and_one_id_never_twice_in_a_call() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.findings().iter().map(|f| f.id().unwrap_or_default().to_string()).collect::<Vec<_>>());
            true
        })
        .then_output(|| BatchImportFindingsOutput::builder().failed_count(0).success_count(0).build());
    let client = mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&rule]);
    let sink = sink(client);

    // 150 users: 100 then 50 (the mock counts none as imported, so none is
    // accepted, but the split is what this test is about).
    let many: Vec<Finding> = (0..150).map(|i| finding(&format!("user{i}"))).collect();
    sink.publish(&many).await;
    let calls: Vec<usize> = sizes.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(calls, [100, 50]);

    // The same user twice (a FAILED and a later PASSED in one batch): two
    // calls, in order.
    sizes.lock().unwrap().clear();
    sink.publish(&[finding("alice"), finding("bob"), finding("alice")]).await;
    let calls = sizes.lock().unwrap().clone();
    assert_eq!(calls, [vec![id_of("alice"), id_of("bob")], vec![id_of("alice")]]);
}

/// Two active keys for every user.
struct TwoKeys;

impl KeyInventory for TwoKeys {
    async fn list_keys(&self, _account_id: &str, _user_name: &str, _newer_than: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        let keys = ["AKIAEXAMPLE000000001", "AKIAEXAMPLE000000002"]
            .map(|id| AccessKey { access_key_id: id.into(), status: KeyStatus::Active, created_at: None })
            .to_vec();
        Ok(Listing { user_name: None, keys, observed_at: OffsetDateTime::now_utc() })
    }
    async fn last_used(&self, _account_id: &str, _access_key_id: &str, _need: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        Ok(None)
    }
    async fn root_keys_present(&self, _account_id: &str) -> Result<u32, InventoryError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_rejected_finding_leaves_its_message_for_redelivery() {
    let bob = id_of("bob");
    let rule = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .then_output(move || BatchImportFindingsOutput::builder().failed_count(1).success_count(1).failed_findings(rejected(&bob)).build());
    let client = mock_client!(aws_sdk_securityhub, [&rule]);
    let sinks = Sinks(vec![Arc::new(sink(client))]);
    let settings = RunArgs::from_flags("http://127.0.0.1:1/q", "bus", &[]).unwrap();
    let processor = Processor::new(TwoKeys, Arc::new(sinks), Arc::new(Accounts::only(ACCOUNT)), ProcessorSettings::from(&settings.check));
    let batch = [
        Message::new("m-alice", body("evt-alice", "alice", "AKIAEXAMPLE000000002")),
        Message::new("m-bob", body("evt-bob", "bob", "AKIAEXAMPLE000000002")),
    ];
    let dispositions = processor.handle_batch(&batch).await;
    assert_eq!(dispositions, [Disposition::Ack, Disposition::Retry], "bob's message stays in the queue");
}

// ---------------------------------------------------------------- workflow

#[test]
fn the_workflow_each_finding_calls_for() {
    let suppressed = crate::common::suppressed();
    let update = asff::workflow_update(&suppressed, false).expect("a suppressed FAILED is suppressed in Security Hub");
    assert_eq!(update.status, WorkflowStatus::Suppressed);
    let note = update.note.unwrap();
    assert!(note.contains("platform@example.com") && note.contains("2099-12-31") && note.contains("CHG-1234"), "{note}");
    assert_eq!(asff::workflow_update(&suppressed, true).map(|u| u.status), Some(WorkflowStatus::Suppressed));

    // Without an exception: NEW only where keywatch had suppressed it, so a
    // NOTIFIED set by the security team stays.
    let failed = crate::common::failed();
    assert_eq!(asff::workflow_update(&failed, false), None);
    let reopened = asff::workflow_update(&failed, true).unwrap();
    assert_eq!(reopened.status, WorkflowStatus::New);
    assert!(reopened.note.unwrap().contains("no approved exception"));

    let passed = crate::common::passed();
    assert_eq!(asff::workflow_update(&passed, false), Some(WorkflowUpdate { status: WorkflowStatus::Resolved, note: None }));
}

/// How many findings the last import sent (for its answer).
static SENT: Mutex<i32> = Mutex::new(0);

/// Each `BatchUpdateFindings`: (workflow status, note text and author, ids).
type Updates = Arc<Mutex<Vec<(WorkflowStatus, Option<(String, String)>, Vec<String>)>>>;

/// A `BatchUpdateFindings` that records its requests and processes every
/// finding but `unprocessed`.
fn updated(seen: &Updates, unprocessed: Option<String>) -> aws_smithy_mocks::Rule {
    let seen = seen.clone();
    let last: Arc<Mutex<Vec<String>>> = Arc::default();
    let answer = last.clone();
    mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .match_requests(move |r| {
            let ids: Vec<String> = r.finding_identifiers().iter().map(|i| i.id().unwrap_or_default().to_string()).collect();
            let status = r.workflow().and_then(|w| w.status()).cloned().unwrap();
            let note = r.note().map(|n| (n.text().unwrap_or_default().to_string(), n.updated_by().unwrap_or_default().to_string()));
            seen.lock().unwrap().push((status, note, ids.clone()));
            *last.lock().unwrap() = ids;
            true
        })
        .then_output(move || {
            let ident = |id: &str| AwsSecurityFindingIdentifier::builder().id(id).product_arn("p").build();
            let mut out = BatchUpdateFindingsOutput::builder();
            for id in answer.lock().unwrap().iter() {
                if Some(id) == unprocessed.as_ref() {
                    out = out.unprocessed_findings(
                        BatchUpdateFindingsUnprocessedFinding::builder()
                            .finding_identifier(ident(id))
                            .error_code("FindingNotFound")
                            .error_message("no such finding")
                            .build(),
                    );
                } else {
                    out = out.processed_findings(ident(id));
                }
            }
            out.build()
        })
}

fn with_user(mut f: Finding, user: &str) -> Finding {
    f.finding_id = finding_id(CONTROL_ID, "111122223333", user);
    f
}

#[tokio::test]
async fn workflow_changes_go_out_after_the_import_one_call_per_change_and_none_when_none_is_needed() {
    let seen = Updates::default();
    // Two suppressed (one exception), one plain FAILED, one PASSED.
    let batch = [
        with_user(crate::common::suppressed(), "s1"),
        with_user(crate::common::suppressed(), "s2"),
        with_user(crate::common::failed(), "f1"),
        with_user(crate::common::passed(), "p1"),
    ];
    // Every import counts all it was sent as imported.
    let import = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .match_requests(|r| {
            *SENT.lock().unwrap() = r.findings().len() as i32;
            true
        })
        .then_output(|| BatchImportFindingsOutput::builder().failed_count(0).success_count(*SENT.lock().unwrap()).build());
    let update = updated(&seen, None);
    let client = mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&import, &update]);
    let sink = sink(client);
    let results = sink.publish(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "SUPPRESSED for both, RESOLVED; nothing for the plain FAILED: {calls:?}");
    let (status, note, ids) = &calls[0];
    assert_eq!(*status, WorkflowStatus::Suppressed);
    let (text, author) = note.clone().unwrap();
    assert!(text.contains("platform@example.com") && text.contains("2099-12-31"), "{text}");
    assert_eq!(author, "keywatch");
    assert_eq!(ids, &[batch[0].finding_id.clone(), batch[1].finding_id.clone()]);
    assert_eq!(calls[1], (WorkflowStatus::Resolved, None, vec![batch[3].finding_id.clone()]));

    // The exception gone: s1's next FAILED is NEW again (keywatch had
    // suppressed it), f1's repeat changes nothing.
    seen.lock().unwrap().clear();
    let results = sink.publish(&[with_user(crate::common::failed(), "s1"), with_user(crate::common::failed(), "f1")]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((&calls[0].0, &calls[0].2), (&WorkflowStatus::New, &vec![batch[0].finding_id.clone()]));
    assert!(calls[0].1.as_ref().unwrap().0.contains("no approved exception"));

    // Once open again, a further FAILED leaves the workflow to the team.
    seen.lock().unwrap().clear();
    sink.publish(&[with_user(crate::common::failed(), "s1")]).await;
    assert!(seen.lock().unwrap().is_empty(), "a NOTIFIED set meanwhile is not overwritten");
}

#[tokio::test]
async fn an_unprocessed_workflow_update_leaves_its_finding_unaccepted() {
    let seen = Updates::default();
    let s2 = finding_id(CONTROL_ID, "111122223333", "s2");
    let import = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .then_output(|| BatchImportFindingsOutput::builder().failed_count(0).success_count(2).build());
    let update = updated(&seen, Some(s2));
    let client = mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&import, &update]);
    let results = sink(client).publish(&[with_user(crate::common::suppressed(), "s1"), with_user(crate::common::suppressed(), "s2")]).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(SinkError::Rejected { code, .. }) if code == "FindingNotFound"), "{results:?}");

    // A failed call: no finding of the change is accepted.
    let import = mock!(aws_sdk_securityhub::Client::batch_import_findings)
        .then_output(|| BatchImportFindingsOutput::builder().failed_count(0).success_count(1).build());
    let update = mock!(aws_sdk_securityhub::Client::batch_update_findings).then_error(|| {
        BatchUpdateFindingsError::generic(
            aws_sdk_securityhub::error::ErrorMetadata::builder().code("AccessDeniedException").message("no").build(),
        )
    });
    let client = mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&import, &update]);
    let results = sink(client).publish(&[crate::common::passed()]).await;
    assert!(matches!(&results[0], Err(SinkError::Call(e)) if e.code.as_deref() == Some("AccessDeniedException")), "{results:?}");
}
