//! The control's whole truth on the emulator, with the real binary:
//! `keywatch scan` over two accounts against the seeded truth, its
//! publication and summaries, a scheduled scan request taken off the
//! worker's queue, `keywatch replay` of CloudTrail files and event exports,
//! and `run --once`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::common::*;
use keywatch::finding::{finding_id, CONTROL_ID, ROOT_CONTROL_ID};
use serde_json::{json, Value};

trials! {
    multi a_scan_of_two_accounts_reports_every_user_as_iam_shows_it,
    multi a_scan_publishes_its_findings_and_a_summary_per_account,
    multi a_scheduled_scan_request_is_fanned_out_per_account_and_scanned_by_the_worker,
    multi replay_takes_the_key_events_of_cloudtrail_files_and_exports_and_names_a_corrupt_file,
    multi run_once_drains_the_queue_and_exits_zero,
}

const T: Duration = Duration::from_secs(60);
const MEMBER: &str = "222233334444";

/// Users in every state, in the worker's own account and a member account:
/// (account, user) → the status a scan with --include-passed must report.
async fn seed(moto: &Moto, p: &Pipeline) -> BTreeMap<(String, String), &'static str> {
    let mut truth = BTreeMap::new();
    for (user, active, inactive, status) in [
        ("no-keys", 0, 0, "PASSED"),
        ("one-active", 1, 0, "PASSED"),
        ("two-active", 2, 0, "FAILED"),
        ("mixed", 1, 1, "PASSED"),
        ("two-inactive", 0, 2, "PASSED"),
        ("a+b=c,d.e@f", 2, 0, "FAILED"),
    ] {
        seed_user(&p.iam, user, active, inactive).await;
        truth.insert((ACCOUNT.to_string(), user.to_string()), status);
    }
    let member = member_iam(moto, MEMBER).await;
    for (user, active, status) in [("m-two", 2, "FAILED"), ("m-one", 1, "PASSED")] {
        seed_user(&member, user, active, 0).await;
        truth.insert((MEMBER.to_string(), user.to_string()), status);
    }
    truth
}

/// The statuses a scan with include_passed reports: the users', and each
/// account's root user's (the emulator's root users have no key).
fn with_root(truth: &BTreeMap<(String, String), &'static str>) -> BTreeMap<(String, String), String> {
    let mut all: BTreeMap<_, _> = truth.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    for account in [ACCOUNT, MEMBER] {
        all.insert((account.to_string(), "<root>".to_string()), "PASSED".to_string());
    }
    all
}

const MEMBER_ENV: [(&str, &str); 2] = [("KEYWATCH_ACCOUNTS", MEMBER), ("KEYWATCH_MEMBER_ROLE", "keywatch-member")];

fn lines(stdout: &str) -> Vec<Value> {
    stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

async fn a_scan_of_two_accounts_reports_every_user_as_iam_shows_it() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let truth = seed(&moto, &p).await;

    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run", "--include-passed"], &MEMBER_ENV);
    assert_eq!(code, Some(0), "{stderr}");
    let out = lines(&stdout);
    let mut seen = BTreeMap::new();
    for f in out.iter().filter(|v| v.get("finding_id").is_some()) {
        let (account, user) = (f["account_id"].as_str().unwrap().to_string(), f["user_name"].as_str().unwrap().to_string());
        let control = if user == "<root>" { ROOT_CONTROL_ID } else { CONTROL_ID };
        assert_eq!(
            (f["control_id"].as_str(), &f["finding_id"]),
            (Some(control), &json!(finding_id(control, &account, &user))),
            "the worker's"
        );
        assert_eq!(f["trigger"]["event_name"], "Scan");
        seen.insert((account, user), f["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, with_root(&truth), "{stderr}");

    let summaries: BTreeMap<String, Value> =
        out.iter().filter_map(|v| v.get("scan_summary")).map(|s| (s["account_id"].as_str().unwrap().to_string(), s.clone())).collect();
    assert_eq!(summaries.len(), 2, "{stdout}");
    let own = &summaries[ACCOUNT];
    assert_eq!((own["users_checked"].as_u64(), own["users_failing"].as_u64(), own["keys_active"].as_u64()), (Some(6), Some(2), Some(6)));
    assert_eq!((summaries[MEMBER]["users_checked"].as_u64(), summaries[MEMBER]["users_failing"].as_u64()), (Some(2), Some(1)));
    assert_eq!(own["errors"], 0);
    assert_eq!((own["root_access_keys"].as_u64(), summaries[MEMBER]["root_access_keys"].as_u64()), (Some(0), Some(0)));
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty(), "a dry run publishes nothing");

    // Without --include-passed only the failing users; --fail-on-findings exits 1.
    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run", "--fail-on-findings"], &MEMBER_ENV);
    assert_eq!(code, Some(1), "{stderr}");
    let failed: Vec<Value> = lines(&stdout).into_iter().filter(|v| v.get("finding_id").is_some()).collect();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|f| f["status"] == "FAILED" && f["recommended_key_to_deactivate"].is_string()));
}

async fn a_scan_publishes_its_findings_and_a_summary_per_account() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    seed_user(&p.iam, "two-active", 2, 0).await;
    seed_user(&p.iam, "one-active", 1, 0).await;

    let (code, _, stderr) = keywatch(&moto, &["scan"], &[("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS)]);
    assert_eq!(code, Some(0), "{stderr}");
    let found = p.findings(2, T).await;
    let kinds: Vec<&str> = found.iter().map(|e| e["detail-type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"IAM Access Key Finding") && kinds.contains(&"IAM Access Key Scan Summary"), "{kinds:?}");
    let finding = found.iter().find(|e| e["detail-type"] == "IAM Access Key Finding").unwrap();
    assert_eq!((finding["detail"]["user_name"].as_str(), finding["detail"]["status"].as_str()), (Some("two-active"), Some("FAILED")));
    let summary = found.iter().find(|e| e["detail-type"] == "IAM Access Key Scan Summary").unwrap();
    assert_eq!((summary["detail"]["users_checked"].as_u64(), summary["detail"]["users_failing"].as_u64()), (Some(2), Some(1)));

    // No bus and no dry run: one line saying what to set.
    let (code, _, stderr) = keywatch(&moto, &["scan"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("KEYWATCH_FINDINGS_BUS") && stderr.contains("--dry-run"), "{stderr}");
}

async fn a_scheduled_scan_request_is_fanned_out_per_account_and_scanned_by_the_worker() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 30).await;
    let truth = seed(&moto, &p).await;
    let worker = Worker::start(&moto, &p, &MEMBER_ENV);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    // As the stack's schedule puts it on the queue: every user's finding,
    // the compliant ones' PASSED included.
    p.send_raw(&scheduled_scan_request()).await;
    let found = p.findings(truth.len() + 4, T).await;
    let findings: Vec<&Value> = found.iter().filter(|e| e["detail-type"] == "IAM Access Key Finding").collect();
    let seen: BTreeMap<(String, String), String> = findings
        .iter()
        .map(|f| {
            let d = &f["detail"];
            assert_eq!(d["trigger"]["event_name"], "Scan");
            (
                (d["account_id"].as_str().unwrap().to_string(), d["user_name"].as_str().unwrap().to_string()),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, with_root(&truth), "{}", worker.logs());
    assert_eq!(found.iter().filter(|e| e["detail-type"] == "IAM Access Key Scan Summary").count(), 2, "a summary per account");
    assert!(p.wait_drained(&p.queue_url, T).await, "the request and its per-account requests acknowledged");
    assert!(worker.wait_metric("keywatch_scan_users_checked_total", truth.len() as f64, T).await, "{}", worker.metrics());
    assert!(worker.metric("keywatch_scan_last_success_timestamp_seconds") > 0.0);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="sqs",operation="SendMessageBatch",outcome="ok"}"#), 1.0);
    // One listing a user; ListUsers already spelled the names of the users
    // without keys, so none is asked for.
    let iam = |op: &str| worker.metric(&format!(r#"keywatch_aws_requests_total{{service="iam",operation="{op}",outcome="ok"}}"#));
    assert_eq!(iam("ListAccessKeys"), truth.len() as f64, "{}", worker.metrics());
    assert_eq!(iam("GetUser"), 0.0, "{}", worker.metrics());
    assert_eq!(iam("GetAccountSummary"), 2.0, "the root user's keys, once an account: {}", worker.metrics());
}

/// A CloudTrail record as CloudTrail writes it to S3.
fn record(event_name: &str, event_id: &str, time: &str, user: &str, key: &str, status: Option<&str>) -> Value {
    let mut request = json!({"userName": user, "accessKeyId": key});
    if let Some(s) = status {
        request["status"] = json!(s);
    }
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/admin"), "accountId": ACCOUNT, "userName": "admin"},
        "eventTime": time, "eventSource": "iam.amazonaws.com", "eventName": event_name, "awsRegion": "us-east-1",
        "requestParameters": request, "responseElements": null, "eventID": event_id, "recipientAccountId": ACCOUNT,
    })
}

async fn replay_takes_the_key_events_of_cloudtrail_files_and_exports_and_names_a_corrupt_file() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let two = seed_user(&p.iam, "two-active", 2, 0).await;
    let mixed = seed_user(&p.iam, "mixed", 1, 1).await;

    let dir = tempfile::tempdir().unwrap();
    // A gzipped CloudTrail file: a user created (not a key event), a key
    // update that left "mixed" with one active key.
    let records = json!({"Records": [
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "eventTime": "2026-11-01T10:00:00Z", "eventID": "evt-user", "recipientAccountId": ACCOUNT},
        record("UpdateAccessKey", "evt-mixed", "2026-11-01T10:05:00Z", "mixed", &mixed[1], Some("Inactive")),
    ]});
    let gz = std::fs::File::create(dir.path().join("111122223333_CloudTrail_us-east-1_20261101T1005Z_abc.json.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
    enc.write_all(records.to_string().as_bytes()).unwrap();
    enc.finish().unwrap();
    // An export of EventBridge envelopes, one a line.
    let envelope = json!({
        "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "account": ACCOUNT,
        "time": "2026-11-01T10:01:00Z", "region": "us-east-1", "resources": [],
        "detail": record("UpdateAccessKey", "evt-two", "2026-11-01T10:01:00Z", "two-active", &two[1], Some("Active")),
    });
    std::fs::write(dir.path().join("export.jsonl"), format!("{envelope}\n")).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"Records\": [").unwrap();

    let dir_arg = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = keywatch(&moto, &["replay", "--dry-run", dir_arg], &[]);
    assert_eq!(code, Some(1), "a file could not be read:\n{stderr}");
    assert!(stderr.contains("broken.json"), "the corrupt file is named:\n{stderr}");
    assert!(
        stderr.contains("3 files (1 unreadable)") && stderr.contains("2 key events") && stderr.contains("2 findings published"),
        "{stderr}"
    );
    let found = lines(&stdout);
    let by_user: BTreeMap<String, String> =
        found.iter().map(|f| (f["user_name"].as_str().unwrap().to_string(), f["status"].as_str().unwrap().to_string())).collect();
    assert_eq!(by_user, BTreeMap::from([("mixed".into(), "PASSED".into()), ("two-active".into(), "FAILED".into())]), "{stderr}");
    // In eventTime order: the export's 10:01 event before the file's 10:05.
    assert_eq!(found[0]["user_name"], "two-active");
}

async fn run_once_drains_the_queue_and_exits_zero() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let keys = p.user_with_keys("rita", 2).await;
    p.put_cloudtrail(&create_key_event("evt-once", "admin", "rita", &keys[1])).await;
    let mut worker = Worker::start(&moto, &p, &[("KEYWATCH_ONCE", "true")]);
    assert_eq!(worker.wait_exit(T).await, Some(0), "{}", worker.logs());
    assert_eq!(p.depth(&p.queue_url).await, (0, 0));
    assert_eq!(p.findings(1, T).await.len(), 1);
}
