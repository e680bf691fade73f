//! What closes a violation on the emulator, with the real binary, when no
//! event that IAM's listing confirms ever comes: the user deleted, the
//! scheduled scan request of the central stack.

use std::time::{Duration, Instant};

use crate::common::*;
use keywatch::finding::{finding_id, CONTROL_ID};
use serde_json::Value;

trials! {
    multi offboarding_closes_the_finding_when_the_delete_events_find_the_user_gone,
    multi a_fix_whose_event_was_lost_is_closed_by_the_stacks_scheduled_scan_request,
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
