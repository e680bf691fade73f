//! What closes a violation on the emulator, with the real binary, when no
//! event that IAM's listing confirms ever comes: the user deleted, the
//! scheduled scan request of the central stack, a scan's look at the root
//! user's keys, the delayed re-check of a key IAM never listed.

use std::time::{Duration, Instant};

use crate::common::*;
use keywatch::finding::{finding_id, CONTROL_ID, ROOT_CONTROL_ID};
use serde_json::{json, Value};

trials! {
    multi offboarding_closes_the_finding_when_the_delete_events_find_the_user_gone,
    multi a_fix_whose_event_was_lost_is_closed_by_the_stacks_scheduled_scan_request,
    multi a_scan_checks_the_root_users_keys_failed_critical_while_one_exists_and_passed_once_gone,
    multi a_phantom_creation_is_assumed_then_closed_by_its_delayed_recheck_even_across_a_restart,
    multi a_forged_recheck_is_refused_or_acknowledged_like_any_message_and_closes_nothing,
}

const T: Duration = Duration::from_secs(30);

fn detail(envelope: &Value) -> &Value {
    &envelope["detail"]
}

async fn offboarding_closes_the_finding_when_the_delete_events_find_the_user_gone() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start(&moto, &p, &[]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let keys = p.user_with_keys("olivia", 2).await;
    p.put_cloudtrail(&create_key_event("evt-olivia-2", "admin", "olivia", &keys[1])).await;
    let failed = p.findings(1, T).await;
    assert_eq!(failed.len(), 1, "{}", worker.logs());
    let id = finding_id(CONTROL_ID, ACCOUNT, "olivia");
    assert_eq!((detail(&failed[0])["status"].as_str(), detail(&failed[0])["finding_id"].as_str()), (Some("FAILED"), Some(id.as_str())));

    // Offboarding: the keys go, then the user; their events reach the
    // worker after both, and IAM answers NoSuchEntity.
    for key in &keys {
        p.iam.delete_access_key().user_name("olivia").access_key_id(key).send().await.unwrap();
    }
    p.iam.delete_user().user_name("olivia").send().await.unwrap();
    for (i, key) in keys.iter().enumerate() {
        p.put_cloudtrail(&delete_key_event(&format!("evt-olivia-off-{i}"), "admin", "olivia", key)).await;
    }
    let mut closed = p.findings(1, T).await;
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    // The second delete closes it again, unless the first one's answer
    // was the later and this one gave way (same batch).
    closed.extend(p.findings(1, Duration::from_secs(2)).await);
    assert!(!closed.is_empty(), "no closing finding:\n{}", worker.logs());
    for c in &closed {
        let d = detail(c);
        assert_eq!((d["status"].as_str(), d["reason"].as_str()), (Some("PASSED"), Some("user_deleted")), "{d}");
        assert_eq!(d["finding_id"], id, "the FAILED's finding_id");
        assert_eq!((d["severity"].as_str(), d["active_key_count"].as_u64()), (Some("INFORMATIONAL"), Some(0)));
        assert!(d["trigger"]["event_id"].as_str().unwrap().starts_with("evt-olivia-off-"), "{d}");
    }
    assert!(worker.metric(r#"keywatch_events_total{event_name="DeleteAccessKey",outcome="finding"}"#) >= 1.0, "{}", worker.metrics());
}

/// Findings and summaries until a scan summary has arrived (and what
/// follows it for a moment: delivery order is not publication order).
async fn until_summary(p: &Pipeline) -> Vec<Value> {
    let mut found = Vec::new();
    let deadline = Instant::now() + T;
    while !found.iter().any(|e: &Value| e["detail-type"] == "IAM Access Key Scan Summary") && Instant::now() < deadline {
        found.extend(p.findings(1, Duration::from_secs(1)).await);
    }
    found.extend(p.findings(10, Duration::from_secs(2)).await);
    found
}

async fn a_fix_whose_event_was_lost_is_closed_by_the_stacks_scheduled_scan_request() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 30).await;
    let worker = Worker::start(&moto, &p, &[]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let keys = p.user_with_keys("pat", 2).await;
    p.put_cloudtrail(&create_key_event("evt-pat-2", "admin", "pat", &keys[1])).await;
    let failed = p.findings(1, T).await;
    assert_eq!(failed.len(), 1, "{}", worker.logs());
    assert_eq!(detail(&failed[0])["status"], "FAILED");

    // The fix: the second key is deactivated, and its event never arrives.
    p.iam
        .update_access_key()
        .user_name("pat")
        .access_key_id(&keys[1])
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    // What the schedule rule of infra/central.yaml delivers: its Input, as
    // the raw message body.
    p.send_raw(&scheduled_scan_request()).await;
    let found = until_summary(&p).await;
    let pat: Vec<&Value> =
        found.iter().filter(|e| e["detail-type"] == "IAM Access Key Finding" && e["detail"]["user_name"] == "pat").collect();
    assert_eq!(pat.len(), 1, "{found:?}\n{}", worker.logs());
    let d = detail(pat[0]);
    assert_eq!((d["status"].as_str(), d["active_key_count"].as_u64()), (Some("PASSED"), Some(1)), "{d}");
    assert_eq!(d["finding_id"], detail(&failed[0])["finding_id"], "the FAILED's finding_id");
    assert_eq!(d["trigger"]["event_name"], "Scan");
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
}

/// The JSON lines of `keywatch scan --dry-run`.
fn lines(stdout: &str) -> Vec<Value> {
    stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

async fn a_scan_checks_the_root_users_keys_failed_critical_while_one_exists_and_passed_once_gone() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    seed_user(&p.iam, "one-active", 1, 0).await;
    // The emulator cannot give the root user a key: the proxy answers
    // GetAccountSummary as IAM would for an account that has one.
    let proxy = FaultProxy::start(moto.port);
    let through_proxy = [("AWS_ENDPOINT_URL", proxy.url.as_str())];
    let root_id = finding_id(ROOT_CONTROL_ID, ACCOUNT, "<root>");
    let root_of = |out: &[Value]| out.iter().filter(|v| v["finding_id"] == root_id).cloned().collect::<Vec<Value>>();
    let summary_of = |out: &[Value]| out.iter().find_map(|v| v.get("scan_summary").cloned()).expect("a summary");

    proxy.set(Fault::RootKeyPresent);
    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run", "--fail-on-findings"], &through_proxy);
    assert_eq!(code, Some(1), "a root key fails the scan:\n{stderr}");
    assert!(proxy.injected.load(std::sync::atomic::Ordering::Relaxed) >= 1, "GetAccountSummary was asked");
    let out = lines(&stdout);
    let root = root_of(&out);
    assert_eq!(root.len(), 1, "{stdout}");
    let f = &root[0];
    assert_eq!(
        (f["control_id"].as_str(), f["status"].as_str(), f["severity"].as_str()),
        (Some("CIS-AWS-1.4"), Some("FAILED"), Some("CRITICAL"))
    );
    assert_eq!((f["user_name"].as_str(), f["active_key_count"].as_u64()), (Some("<root>"), Some(1)));
    assert_eq!(f["user_arn"], format!("arn:aws:iam::{ACCOUNT}:root"));
    assert_eq!(f["trigger"]["event_name"], "Scan");
    assert!(f["remediation"].as_str().unwrap().contains("root user"), "{f}");
    let summary = summary_of(&out);
    assert_eq!((summary["root_access_keys"].as_u64(), summary["users_failing"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!(summary["findings_published"], 1);
    assert!(stderr.contains("1 with a root access key (CIS 1.4)"), "{stderr}");

    // The root key deleted (the emulator's own answer): the scan of the
    // stack's schedule, with include_passed, closes the CRITICAL.
    proxy.set(Fault::None);
    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run", "--include-passed", "--fail-on-findings"], &through_proxy);
    assert_eq!(code, Some(0), "{stderr}");
    let out = lines(&stdout);
    let root = root_of(&out);
    assert_eq!(root.len(), 1, "{stdout}");
    assert_eq!((root[0]["status"].as_str(), root[0]["severity"].as_str()), (Some("PASSED"), Some("INFORMATIONAL")));
    assert_eq!(summary_of(&out)["root_access_keys"], 0);

    // Without include_passed a root user without keys is not reported.
    let (code, stdout, stderr) = keywatch(&moto, &["scan", "--dry-run"], &through_proxy);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(root_of(&lines(&stdout)).is_empty(), "{stdout}");
}

/// A short consistency window, so that a re-check is due in seconds.
const SHORT_WINDOW: [(&str, &str); 2] = [("KEYWATCH_CONSISTENCY_WINDOW_SECS", "3"), ("KEYWATCH_RELIST_BUDGET_MS", "300")];

async fn a_phantom_creation_is_assumed_then_closed_by_its_delayed_recheck_even_across_a_restart() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let mut worker = Worker::start(&moto, &p, &SHORT_WINDOW);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    p.user_with_keys("quinn", 1).await;
    // A creation IAM never lists (created and deleted out of order, or an
    // event that lies): counted from the event while it is fresh.
    p.put_cloudtrail(&create_key_event("evt-quinn-phantom", "admin", "quinn", "AKIAPHANTOMKEY000001")).await;
    let failed = p.findings(1, T).await;
    assert_eq!(failed.len(), 1, "{}", worker.logs());
    let f = detail(&failed[0]);
    assert_eq!(
        (f["status"].as_str(), f["event_state_assumed"].as_bool(), f["active_key_count"].as_u64()),
        (Some("FAILED"), Some(true), Some(2))
    );
    // The re-check is a message on the queue, delayed, not a timer in the
    // worker: it survives the worker's stop.
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(T).await, Some(0), "{}", worker.logs());
    assert!(worker.logs().contains("re-check put on the queue"), "{}", worker.logs());
    let worker = Worker::start(&moto, &p, &SHORT_WINDOW);

    let passed = p.findings(1, T).await;
    assert_eq!(passed.len(), 1, "no closing finding:\n{}", worker.logs());
    let d = detail(&passed[0]);
    assert_eq!((d["status"].as_str(), d["reason"].as_str()), (Some("PASSED"), Some("assumed_key_not_confirmed")), "{d}");
    assert_eq!(d["finding_id"], f["finding_id"], "the FAILED's finding_id");
    assert_eq!((d["active_key_count"].as_u64(), d["event_state_assumed"].as_bool()), (Some(1), Some(false)));
    assert_eq!(
        (d["trigger"]["event_id"].as_str(), d["trigger"]["event_name"].as_str()),
        (Some("recheck:evt-quinn-phantom"), Some("Recheck"))
    );
    assert!(d["detection_latency_seconds"].as_f64().unwrap() >= 3.0, "not before the window has passed: {d}");
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    assert_eq!(worker.metric(r#"keywatch_events_total{event_name="recheck",outcome="finding"}"#), 1.0, "{}", worker.metrics());
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty(), "nothing more");
}

/// The EventBridge envelope a CloudTrail record arrives in.
fn envelope(detail: Value) -> Value {
    let account = detail["recipientAccountId"].clone();
    json!({"version": "0", "id": "forged", "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "account": account,
           "time": detail["eventTime"], "region": "us-east-1", "resources": [], "detail": detail})
}

async fn a_forged_recheck_is_refused_or_acknowledged_like_any_message_and_closes_nothing() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 1).await;
    let worker = Worker::start(&moto, &p, &SHORT_WINDOW);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let keys = p.user_with_keys("rex", 2).await;
    let old = |mut d: Value| {
        d["eventTime"] = json!("2026-01-01T00:00:00Z");
        d
    };
    // Of a delete (no assumed FAILED rests on one), in another shape, with
    // a source no rule delivers: refused, left for the dead-letter queue.
    let delete = envelope(old(delete_key_event("evt-forged-1", "admin", "rex", &keys[1])));
    p.send_raw(&json!({"keywatch": "recheck", "event": delete}).to_string()).await;
    p.send_raw(r#"{"keywatch": "recheck", "event": "AKIAPHANTOMKEY000001"}"#).await;
    let mut elsewhere = envelope(old(create_key_event("evt-forged-2", "admin", "rex", "AKIAPHANTOMKEY000002")));
    elsewhere["source"] = json!("evil.source");
    p.send_raw(&json!({"keywatch": "recheck", "event": elsewhere}).to_string()).await;
    // In an account keywatch does not act in: acknowledged, nothing listed.
    let foreign = envelope(in_account(old(create_key_event("evt-forged-3", "admin", "rex", "AKIAPHANTOMKEY000003")), "999999999999"));
    p.send_raw(&json!({"keywatch": "recheck", "event": foreign}).to_string()).await;

    let deadline = Instant::now() + T;
    while p.depth(&p.dlq_url).await.0 < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(p.depth(&p.dlq_url).await.0, 3, "{}", worker.logs());
    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="foreign_account"}"#, 1.0, T).await,
        "{}",
        worker.metrics()
    );
    assert!(worker.logs().contains("bad_recheck"), "{}", worker.logs());
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty(), "a forged re-check publishes nothing here");
    let iam = worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#);
    assert_eq!(iam, 0.0, "nothing was listed: {}", worker.metrics());
}
