//! The sinks end to end on the emulator (moto server), with the real
//! `keywatch` binary: Security Hub (a FAILED then the PASSED for one user is
//! one finding in Security Hub, resolved and archived), EventBridge and
//! Security Hub at once with OCSF on the bus, and the stdout sink (JSON
//! lines, native and OCSF, with the logs on stderr). Every OCSF finding
//! produced here is validated against the OCSF 1.6.0 schema.
//!
//! The Security Hub workflow (`BatchUpdateFindings` after the import): the
//! emulator has no `BatchUpdateFindings`, so there the worker goes through
//! the fault proxy of `tests/common/faults.rs`, which answers that one
//! operation itself and records its requests, and forwards everything else
//! to the emulator (the imports included, read back with `GetFindings`).

use std::time::{Duration, Instant};

use crate::common::*;
use aws_sdk_securityhub::types::{AwsSecurityFinding, ComplianceStatus, RecordState, WorkflowStatus};
use serde_json::{json, Value};

trials! {
    multi security_hub_gets_the_failed_then_the_passed_as_one_finding,
    multi eventbridge_and_security_hub_at_once_with_ocsf_on_the_bus,
    multi the_stdout_sink_writes_one_json_line_per_finding_and_logs_go_to_stderr,
    multi the_stdout_sink_in_ocsf_writes_valid_failed_passed_and_root_findings,
    multi a_scan_imports_into_security_hub_and_prints_ocsf_on_a_dry_run,
    multi security_hub_updated_at_is_observed_at_and_the_workflow_follows_the_exception,
    multi an_unprocessed_workflow_update_leaves_the_message_for_redelivery,
    multi with_the_ledger_a_suppression_set_before_a_restart_is_lifted_after_it,
}

const T: Duration = Duration::from_secs(30);

async fn setup() -> (Moto, Pipeline, aws_sdk_securityhub::Client) {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let pipeline = Pipeline::create(&config, 5).await;
    let hub = aws_sdk_securityhub::Client::new(&config);
    hub.enable_security_hub().send().await.unwrap();
    (moto, pipeline, hub)
}

/// Every finding in Security Hub. The SDK's GetFindings deserializer needs
/// more stack than a test's runtime thread has in a debug build, so the call
/// runs on a thread of its own.
async fn hub_findings(hub: &aws_sdk_securityhub::Client) -> Vec<AwsSecurityFinding> {
    let hub = hub.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let found = rt.block_on(hub.get_findings().send()).unwrap().findings.unwrap_or_default();
            let _ = tx.send(found);
        })
        .unwrap();
    rx.await.unwrap()
}

/// Waits until Security Hub holds a finding that `done` accepts; all of
/// them then.
async fn hub_until(hub: &aws_sdk_securityhub::Client, done: impl Fn(&[AwsSecurityFinding]) -> bool) -> Vec<AwsSecurityFinding> {
    let deadline = Instant::now() + T;
    loop {
        let found = hub_findings(hub).await;
        if done(&found) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn compliance(f: &AwsSecurityFinding) -> Option<&ComplianceStatus> {
    f.compliance().and_then(|c| c.status())
}

async fn deactivate(p: &Pipeline, user: &str, key: &str, event_id: &str) {
    p.iam.update_access_key().user_name(user).access_key_id(key).status(aws_sdk_iam::types::StatusType::Inactive).send().await.unwrap();
    p.put_cloudtrail(&update_key_event(event_id, "admin", user, key, "Inactive")).await;
}

/// Through the fault proxy, which answers `BatchUpdateFindings` (the
/// emulator has none): the PASSED sets the workflow `RESOLVED`.
async fn security_hub_gets_the_failed_then_the_passed_as_one_finding() {
    let (moto, p, hub) = setup().await;
    let proxy = FaultProxy::start(moto.port);
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_SINKS", "securityhub"), ("AWS_ENDPOINT_URL", proxy.url.as_str())]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let keys = p.user_with_keys("erin", 2).await;
    p.put_cloudtrail(&create_key_event("evt-erin-2", "admin", "erin", &keys[1])).await;
    let found = hub_until(&hub, |f| f.iter().any(|x| compliance(x) == Some(&ComplianceStatus::Failed))).await;
    assert_eq!(found.len(), 1, "{found:?}\n{}", worker.logs());
    let failed = &found[0];
    let user_arn = format!("arn:aws:iam::{ACCOUNT}:user/erin");
    assert_eq!(failed.aws_account_id(), Some(ACCOUNT));
    assert_eq!(failed.product_arn(), Some(format!("arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default").as_str()));
    assert_eq!(failed.record_state(), Some(&RecordState::Active));
    assert_eq!(failed.workflow().and_then(|w| w.status()), Some(&WorkflowStatus::New));
    assert_eq!((failed.resources()[0].r#type(), failed.resources()[0].id()), (Some("AwsIamUser"), Some(user_arn.as_str())));
    let mut key_ids: Vec<&str> = failed.resources()[1..].iter().filter_map(|r| r.id()).collect();
    key_ids.sort();
    let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(key_ids, want, "the active keys");
    assert!(failed.compliance().unwrap().related_requirements().iter().any(|r| r == "CIS AWS Foundations Benchmark v1.4.0/1.13"));
    let id = failed.id().unwrap().to_string();
    assert!(p.wait_drained(&p.queue_url, T).await, "message not deleted after the import");

    deactivate(&p, "erin", &keys[0], "evt-erin-off").await;
    let found = hub_until(&hub, |f| f.iter().any(|x| compliance(x) == Some(&ComplianceStatus::Passed))).await;
    assert_eq!(found.len(), 1, "the PASSED updated the FAILED in place: {found:?}\n{}", worker.logs());
    let passed = &found[0];
    assert_eq!(passed.id(), Some(id.as_str()));
    assert_eq!(compliance(passed), Some(&ComplianceStatus::Passed));
    assert_eq!(passed.record_state(), Some(&RecordState::Archived));
    assert_eq!(passed.resources()[0].id(), Some(user_arn.as_str()));
    assert_eq!(passed.resources().len(), 2, "the user and its one active key");
    assert_eq!(passed.product_fields().unwrap()["keywatch/trigger_event_id"], "evt-erin-off");
    let updates = wait_updates(&proxy, &id, 1).await;
    assert_eq!(updates.len(), 1, "the FAILED needed no workflow change, the PASSED one: {updates:?}");
    assert_eq!((updates[0]["Workflow"]["Status"].as_str(), updates[0].get("Note")), (Some("RESOLVED"), None));

    assert!(p.wait_drained(&p.queue_url, T).await);
    assert!(
        worker
            .wait_metric(r#"keywatch_aws_requests_total{service="securityhub",operation="BatchImportFindings",outcome="ok"}"#, 2.0, T)
            .await,
        "every import through the counted call path"
    );
    assert_eq!(worker.metric(r#"keywatch_findings_total{status="PASSED"}"#), 1.0);
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty(), "the eventbridge sink was not selected");
}

/// Through the fault proxy, which answers `BatchUpdateFindings` (the
/// emulator has none).
async fn eventbridge_and_security_hub_at_once_with_ocsf_on_the_bus() {
    let (moto, p, hub) = setup().await;
    let proxy = FaultProxy::start(moto.port);
    let env =
        [("KEYWATCH_SINKS", "eventbridge,securityhub"), ("KEYWATCH_FINDING_FORMAT", "ocsf"), ("AWS_ENDPOINT_URL", proxy.url.as_str())];
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let keys = p.user_with_keys("frank", 2).await;
    p.put_cloudtrail(&create_key_event("evt-frank-2", "admin", "frank", &keys[1])).await;
    let on_bus = p.findings(1, T).await;
    assert_eq!(on_bus.len(), 1, "{}", worker.logs());
    let envelope = &on_bus[0];
    let user_arn = format!("arn:aws:iam::{ACCOUNT}:user/frank");
    assert_eq!(envelope["detail-type"], "IAM Access Key Finding");
    assert_eq!(envelope["resources"], json!([user_arn]), "the entry's Resources");
    let doc = &envelope["detail"];
    assert_eq!(doc["class_uid"], 2003);
    assert_eq!(doc["metadata"]["version"], "1.6.0");
    assert_eq!(doc["compliance"]["status_id"], 3);
    assert_eq!(doc["resources"][0]["uid"], user_arn.as_str());
    let detected = doc["time"].as_i64().unwrap() / 1000;
    let time = time::OffsetDateTime::parse(envelope["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    assert!((time.unix_timestamp() - detected).abs() <= 1, "the entry's Time is when keywatch decided");

    let in_hub = hub_until(&hub, |f| !f.is_empty()).await;
    assert_eq!(in_hub.len(), 1, "{}", worker.logs());
    assert_eq!(in_hub[0].id(), doc["finding_info"]["uid"].as_str(), "one finding_id in both");
    assert!(p.wait_drained(&p.queue_url, T).await, "acknowledged once both sinks accepted");

    deactivate(&p, "frank", &keys[0], "evt-frank-off").await;
    let resolved = p.findings(1, T).await;
    assert_eq!(resolved.len(), 1, "{}", worker.logs());
    assert_eq!(resolved[0]["detail"]["status_id"], 4, "Resolved");
    let in_hub = hub_until(&hub, |f| f.iter().any(|x| x.record_state() == Some(&RecordState::Archived))).await;
    assert_eq!(in_hub.len(), 1);
    assert!(p.wait_drained(&p.queue_url, T).await, "the PASSED accepted by both sinks: {}", worker.logs());

    assert_valid_ocsf(&[doc.clone(), resolved[0]["detail"].clone()]);
}

/// The CloudTrail record of the root user creating a root access key.
fn root_key_event(event_id: &str) -> Value {
    let mut detail = create_key_event(event_id, "root", "root", "AKIAROOTKEY000000001");
    detail["userIdentity"] = json!({
        "type": "Root",
        "principalId": ACCOUNT,
        "arn": format!("arn:aws:iam::{ACCOUNT}:root"),
        "accountId": ACCOUNT,
        "accessKeyId": "ASIAROOTSESSION",
    });
    detail["requestParameters"] = Value::Null;
    detail["responseElements"]["accessKey"]["userName"] = Value::Null;
    detail
}

/// Reads the worker's stdout until `n` lines are there.
async fn stdout_lines(worker: &Worker, n: usize) -> Vec<String> {
    let deadline = Instant::now() + T;
    loop {
        let lines = worker.stdout_lines();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_stdout_sink_writes_one_json_line_per_finding_and_logs_go_to_stderr() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start_with_stdout(&moto, &p, &[("KEYWATCH_SINKS", "stdout"), ("KEYWATCH_FINDINGS_BUS", "")]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let keys = p.user_with_keys("gina", 2).await;
    p.put_cloudtrail(&create_key_event("evt-gina-2", "admin", "gina", &keys[1])).await;
    let lines = stdout_lines(&worker, 1).await;
    assert_eq!(lines.len(), 1, "stdout: {lines:?}\nlog: {}", worker.logs());
    let f: Value = serde_json::from_str(&lines[0]).expect("stdout carries findings only");
    assert_eq!(f["status"], "FAILED");
    assert_eq!(f["user_arn"], format!("arn:aws:iam::{ACCOUNT}:user/gina"));
    assert_eq!(f["compliance"][0]["control"], "1.13");
    assert_eq!(f["keywatch_version"], env!("CARGO_PKG_VERSION"));
    assert!(worker.logs().contains("keywatch started"), "the logs are on stderr");
    assert!(p.wait_drained(&p.queue_url, T).await);
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty(), "nothing on the bus");
}

async fn the_stdout_sink_in_ocsf_writes_valid_failed_passed_and_root_findings() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start_with_stdout(&moto, &p, &[("KEYWATCH_SINKS", "stdout"), ("KEYWATCH_FINDING_FORMAT", "ocsf")]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let keys = p.user_with_keys("hana", 2).await;
    p.put_cloudtrail(&create_key_event("evt-hana-2", "admin", "hana", &keys[1])).await;
    assert_eq!(stdout_lines(&worker, 1).await.len(), 1, "{}", worker.logs());
    deactivate(&p, "hana", &keys[0], "evt-hana-off").await;
    assert_eq!(stdout_lines(&worker, 2).await.len(), 2, "{}", worker.logs());
    p.put_cloudtrail(&root_key_event("evt-root-key")).await;
    let lines = stdout_lines(&worker, 3).await;
    assert_eq!(lines.len(), 3, "{}", worker.logs());

    let docs: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<(i64, i64)> =
        docs.iter().map(|d| (d["compliance"]["status_id"].as_i64().unwrap(), d["status_id"].as_i64().unwrap())).collect();
    assert_eq!(statuses, [(3, 1), (1, 4), (3, 1)], "Fail/New, Pass/Resolved, Fail/New");
    assert_eq!(docs[2]["compliance"]["control"], "CIS-AWS-1.4");
    assert_eq!(docs[2]["resources"][0]["uid"], format!("arn:aws:iam::{ACCOUNT}:root"));
    assert_valid_ocsf(&docs);
}

async fn a_scan_imports_into_security_hub_and_prints_ocsf_on_a_dry_run() {
    let (moto, p, hub) = setup().await;
    seed_user(&p.iam, "scan-two", 2, 0).await;
    seed_user(&p.iam, "scan-one", 1, 0).await;

    // A dry run in OCSF: one valid Compliance Finding per user and one for
    // the root user (with --include-passed), the user's ARN as ListUsers
    // gives it.
    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run", "--include-passed", "--finding-format", "ocsf"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let docs: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v.get("class_uid").is_some()).collect();
    assert_eq!(docs.len(), 3, "{stdout}");
    assert_valid_ocsf(&docs);
    let root = docs.iter().find(|d| d["resources"][0]["type"] == "AWS::IAM::Root").expect("the root user's finding");
    assert_eq!((root["compliance"]["control"].as_str(), root["compliance"]["status_id"].as_u64()), (Some("CIS-AWS-1.4"), Some(1)));
    let two = docs.iter().find(|d| d["resources"][0]["name"] == "scan-two").expect("scan-two's finding");
    assert_eq!(two["compliance"]["status_id"], 3, "Fail: {two}");
    assert_eq!(two["resources"][0]["uid"], format!("arn:aws:iam::{ACCOUNT}:user/scan-two"), "{two}");

    // The same scan into Security Hub: the failing user only.
    let (code, _, stderr) = keywatch(&moto, &["scan", "--sink", "securityhub"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let found = hub_until(&hub, |f| !f.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(compliance(&found[0]), Some(&ComplianceStatus::Failed));
    let resource = &found[0].resources()[0];
    assert_eq!(resource.id(), Some(format!("arn:aws:iam::{ACCOUNT}:user/scan-two").as_str()));
}

/// An exceptions file for `users` (and `keep`, so the set is never empty).
fn write_exceptions(path: &std::path::Path, users: &[&str]) {
    let mut text = format!("exceptions:\n  - {{account: \"*\", user: keep, reason: r, owner: \"@platform\", expires: {}}}\n", in_days(30));
    for u in users {
        text.push_str(&format!(
            "  - {{account: \"{ACCOUNT}\", user: \"{u}\", reason: \"vendor sync CHG-7\", owner: \"platform@example.com\", expires: {}}}\n",
            in_days(90)
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// The `BatchUpdateFindings` requests the proxy answered that name `id`.
fn updates_for(proxy: &FaultProxy, id: &str) -> Vec<Value> {
    proxy
        .updates
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u["FindingIdentifiers"].as_array().is_some_and(|ids| ids.iter().any(|i| i["Id"] == id)))
        .cloned()
        .collect()
}

/// Waits until the proxy answered `n` `BatchUpdateFindings` for `id`.
async fn wait_updates(proxy: &FaultProxy, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + T;
    loop {
        let found = updates_for(proxy, id);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

/// (a) ASFF `UpdatedAt` is the native finding's `observed_at`; (b) a
/// suppressed finding is set `SUPPRESSED` with a note naming the exception,
/// and once the exception is removed (the file reloaded) the user's next
/// finding sets it back to `NEW`. `BatchUpdateFindings` is answered by the
/// fault proxy (the emulator has none); the imports reach the emulator.
async fn security_hub_updated_at_is_observed_at_and_the_workflow_follows_the_exception() {
    let (moto, p, hub) = setup().await;
    let proxy = FaultProxy::start(moto.port);
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    write_exceptions(exceptions.path(), &["ivy"]);
    let path = exceptions.path().to_str().unwrap().to_string();
    let env = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("KEYWATCH_SINKS", "securityhub,stdout"),
        ("KEYWATCH_EXCEPTIONS_FILE", path.as_str()),
        ("KEYWATCH_EXCEPTIONS_POLL_SECS", "1"),
    ];
    let worker = Worker::start_with_stdout(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let keys = p.user_with_keys("ivy", 2).await;
    p.put_cloudtrail(&create_key_event("evt-ivy-2", "admin", "ivy", &keys[1])).await;
    let lines = stdout_lines(&worker, 1).await;
    assert_eq!(lines.len(), 1, "{}", worker.logs());
    let native: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(native["suppressed"], true, "{native}");
    let id = native["finding_id"].as_str().unwrap().to_string();
    let found = hub_until(&hub, |f| !f.is_empty()).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    let imported = &found[0];
    assert_eq!(imported.id(), Some(id.as_str()));
    assert_eq!(rfc3339(imported.updated_at().unwrap()), rfc3339(native["observed_at"].as_str().unwrap()), "UpdatedAt is observed_at");
    assert!(rfc3339(imported.created_at().unwrap()) <= rfc3339(imported.updated_at().unwrap()));

    let updates = wait_updates(&proxy, &id, 1).await;
    assert_eq!(updates.len(), 1, "{}", worker.logs());
    let u = &updates[0];
    assert_eq!(u["Workflow"]["Status"], "SUPPRESSED", "{u}");
    assert_eq!(u["FindingIdentifiers"][0]["ProductArn"], format!("arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default"));
    assert_eq!(u["Note"]["UpdatedBy"], "keywatch");
    let note = u["Note"]["Text"].as_str().unwrap();
    assert!(note.contains("platform@example.com") && note.contains(&in_days(90)) && note.contains("CHG-7"), "{note}");
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());

    // The exception removed: once the worker reloaded the file, ivy's next
    // finding opens the finding again.
    write_exceptions(exceptions.path(), &[]);
    // From two entries to one (wait_metric waits for "at least").
    let deadline = Instant::now() + T;
    while worker.metric("keywatch_loaded_exceptions") != 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(worker.metric("keywatch_loaded_exceptions"), 1.0, "{}", worker.logs());
    p.put_cloudtrail(&create_key_event("evt-ivy-3", "admin", "ivy", &keys[1])).await;
    let lines = stdout_lines(&worker, 2).await;
    assert_eq!(lines.len(), 2, "{}", worker.logs());
    let native: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(native["suppressed"], false, "{native}");
    let updates = wait_updates(&proxy, &id, 2).await;
    assert_eq!(updates.len(), 2, "{}", worker.logs());
    assert_eq!(updates[1]["Workflow"]["Status"], "NEW", "{}", updates[1]);
    assert!(updates[1]["Note"]["Text"].as_str().unwrap().contains("no approved exception"), "{}", updates[1]);
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    let found = hub_until(&hub, |f| f.iter().any(|x| x.product_fields().is_some_and(|pf| pf["keywatch/suppressed"] == "false"))).await;
    assert_eq!(
        rfc3339(found[0].updated_at().unwrap()),
        rfc3339(native["observed_at"].as_str().unwrap()),
        "the newer import replaced the first"
    );

    // A further FAILED leaves the workflow alone (a NOTIFIED set meanwhile
    // would stay).
    p.put_cloudtrail(&create_key_event("evt-ivy-4", "admin", "ivy", &keys[1])).await;
    assert_eq!(stdout_lines(&worker, 3).await.len(), 3, "{}", worker.logs());
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    assert_eq!(updates_for(&proxy, &id).len(), 2, "no third BatchUpdateFindings");
}

/// (c) A `BatchUpdateFindings` that leaves the finding among its
/// `UnprocessedFindings` (answered by the fault proxy: the emulator has no
/// such call) keeps the message: it is received again and the update
/// repeated until it goes through.
async fn an_unprocessed_workflow_update_leaves_the_message_for_redelivery() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    // Redelivery after 2 s; the DLQ only after 8 receives.
    let p = Pipeline::create_with_redrive(&config, 2, 8).await;
    aws_sdk_securityhub::Client::new(&config).enable_security_hub().send().await.unwrap();
    let proxy = FaultProxy::start(moto.port);
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    write_exceptions(exceptions.path(), &["jade"]);
    let path = exceptions.path().to_str().unwrap().to_string();
    let env = [("AWS_ENDPOINT_URL", proxy.url.as_str()), ("KEYWATCH_SINKS", "securityhub"), ("KEYWATCH_EXCEPTIONS_FILE", path.as_str())];
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    proxy.set(Fault::UpdatesUnprocessed);
    let keys = p.user_with_keys("jade", 2).await;
    p.put_cloudtrail(&create_key_event("evt-jade-2", "admin", "jade", &keys[1])).await;
    let id = keywatch::finding::finding_id(keywatch::finding::CONTROL_ID, ACCOUNT, "jade");
    let updates = wait_updates(&proxy, &id, 2).await;
    assert!(updates.len() >= 2, "the message came back and the update was sent again: {updates:?}\n{}", worker.logs());
    assert!(!p.wait_drained(&p.queue_url, Duration::from_secs(1)).await, "the message is not deleted while its update fails");

    proxy.set(Fault::None);
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    assert_eq!(p.depth(&p.dlq_url).await.0, 0, "nothing in the DLQ");
    let last = updates_for(&proxy, &id).last().cloned().unwrap();
    assert_eq!(last["Workflow"]["Status"], "SUPPRESSED");
    assert!(worker.metric(r#"keywatch_aws_requests_total{service="securityhub",operation="BatchUpdateFindings",outcome="ok"}"#) >= 3.0);
}

/// With the ledger, the suppression one worker set in Security Hub is lifted
/// by another (here: the next process, after a restart) once the exception
/// is gone: the ledger's last word says it was suppressed, which the new
/// process's own memory cannot. `BatchUpdateFindings` is answered by the
/// fault proxy (the emulator has none).
async fn with_the_ledger_a_suppression_set_before_a_restart_is_lifted_after_it() {
    let (moto, p, _hub) = setup().await;
    let table = create_ledger_table(&moto.sdk_config().await, "keywatch-ledger").await;
    let proxy = FaultProxy::start(moto.port);
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    write_exceptions(exceptions.path(), &["jon"]);
    let path = exceptions.path().to_str().unwrap().to_string();
    let env = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("KEYWATCH_SINKS", "securityhub"),
        ("KEYWATCH_EXCEPTIONS_FILE", path.as_str()),
        ("KEYWATCH_LEDGER_TABLE", table.as_str()),
    ];
    let mut first = Worker::start(&moto, &p, &env);
    assert!(first.wait_ready(T).await, "{}", first.logs());
    let keys = p.user_with_keys("jon", 2).await;
    p.put_cloudtrail(&create_key_event("evt-jon-2", "admin", "jon", &keys[1])).await;
    let id = keywatch::finding::finding_id(keywatch::finding::CONTROL_ID, ACCOUNT, "jon");
    let updates = wait_updates(&proxy, &id, 1).await;
    assert_eq!(updates.first().map(|u| u["Workflow"]["Status"].clone()), Some(Value::from("SUPPRESSED")), "{}", first.logs());
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", first.logs());
    first.signal("TERM");
    assert_eq!(first.wait_exit(T).await, Some(0), "{}", first.logs());

    // The exception removed while no worker ran; a new one starts.
    write_exceptions(exceptions.path(), &[]);
    let second = Worker::start(&moto, &p, &env);
    assert!(second.wait_ready(T).await, "{}", second.logs());
    p.put_cloudtrail(&create_key_event("evt-jon-3", "admin", "jon", &keys[1])).await;
    let updates = wait_updates(&proxy, &id, 2).await;
    assert_eq!(updates.len(), 2, "the new process lifts the suppression:\n{}", second.logs());
    assert_eq!(updates[1]["Workflow"]["Status"], "NEW", "{}", updates[1]);
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", second.logs());
}
