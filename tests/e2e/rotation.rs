//! The rotation grace on the emulator, with the real binary: a user that
//! rotates its own key gets a LOW finding with rotation_in_progress, and
//! the delayed re-check on the queue raises it to MEDIUM once the grace
//! ends with two keys still active; a rotation finished within the grace
//! closes with PASSED and is never raised; a key an administrator made
//! gets no grace; quiet publishes nothing until the grace ends.

use std::time::Duration;

use crate::common::*;
use aws_sdk_iam::types::StatusType;
use serde_json::Value;

trials! {
    multi a_self_rotation_is_low_in_progress_then_medium_once_the_grace_ends_with_two_keys_active,
    multi a_rotation_finished_within_the_grace_closes_passed_and_is_never_raised,
    multi quiet_publishes_nothing_within_the_grace_and_medium_after_it,
}

const T: Duration = Duration::from_secs(30);

/// A short consistency window and a 3 s grace, so that the re-check is due
/// in seconds.
const GRACE: [(&str, &str); 3] =
    [("KEYWATCH_CONSISTENCY_WINDOW_SECS", "1"), ("KEYWATCH_RELIST_BUDGET_MS", "300"), ("KEYWATCH_ROTATION_GRACE", "3s")];

fn detail(envelope: &Value) -> &Value {
    &envelope["detail"]
}

fn verdict(d: &Value) -> (Option<&str>, Option<&str>, Option<bool>) {
    (d["status"].as_str(), d["severity"].as_str(), d["rotation_in_progress"].as_bool())
}

async fn a_self_rotation_is_low_in_progress_then_medium_once_the_grace_ends_with_two_keys_active() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start(&moto, &p, &GRACE);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    p.user_with_keys("rosa", 1).await;
    let new = p.create_key("rosa").await;
    p.put_cloudtrail(&create_key_event("evt-rosa-2", "rosa", "rosa", &new)).await;
    let low = p.findings(1, T).await;
    assert_eq!(low.len(), 1, "{}", worker.logs());
    let d = detail(&low[0]);
    assert_eq!(verdict(d), (Some("FAILED"), Some("LOW"), Some(true)), "{d}");
    assert_eq!(d["trigger"]["event_id"], "evt-rosa-2");

    // The grace ends with both keys active: the re-check raises it.
    let raised = p.findings(1, T).await;
    assert_eq!(raised.len(), 1, "no re-check:\n{}", worker.logs());
    let r = detail(&raised[0]);
    assert_eq!(verdict(r), (Some("FAILED"), Some("MEDIUM"), Some(false)), "{r}");
    assert_eq!((r["trigger"]["event_id"].as_str(), r["finding_id"].as_str()), (Some("recheck:evt-rosa-2"), d["finding_id"].as_str()));
    assert!(r["detection_latency_seconds"].as_f64().unwrap() >= 3.0, "not before the grace has ended: {r}");
    assert!(p.findings(1, Duration::from_secs(5)).await.is_empty(), "nothing after the escalation:\n{}", worker.logs());

    // An administrator's key gets no grace: HIGH at once.
    p.user_with_keys("sam", 1).await;
    let planted = p.create_key("sam").await;
    p.put_cloudtrail(&create_key_event("evt-sam-2", "admin", "sam", &planted)).await;
    let high = p.findings(1, T).await;
    assert_eq!(high.len(), 1, "{}", worker.logs());
    assert_eq!(verdict(detail(&high[0])), (Some("FAILED"), Some("HIGH"), Some(false)));
    assert!(p.findings(1, Duration::from_secs(5)).await.is_empty(), "no re-check of a key IAM listed:\n{}", worker.logs());
}

async fn a_rotation_finished_within_the_grace_closes_passed_and_is_never_raised() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start(&moto, &p, &GRACE);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let old = p.user_with_keys("tara", 1).await.remove(0);
    let new = p.create_key("tara").await;
    p.put_cloudtrail(&create_key_event("evt-tara-2", "tara", "tara", &new)).await;
    let low = p.findings(1, T).await;
    assert_eq!(low.len(), 1, "{}", worker.logs());
    assert_eq!(verdict(detail(&low[0])), (Some("FAILED"), Some("LOW"), Some(true)));

    // The rotation ends within the grace: the old key deactivated.
    p.iam.update_access_key().user_name("tara").access_key_id(&old).status(StatusType::Inactive).send().await.unwrap();
    p.put_cloudtrail(&update_key_event("evt-tara-old-off", "tara", "tara", &old, "Inactive")).await;
    // The PASSED, then (the re-check when the grace ends) nothing else
    // but a PASSED again: never a FAILED.
    let mut after = p.findings(1, T).await;
    after.extend(p.findings(10, Duration::from_secs(8)).await);
    assert!(!after.is_empty(), "{}", worker.logs());
    for f in &after {
        let d = detail(f);
        assert_eq!(
            (d["status"].as_str(), d["severity"].as_str(), d["active_key_count"].as_u64()),
            (Some("PASSED"), Some("INFORMATIONAL"), Some(1)),
            "{d}"
        );
    }
    assert_eq!(detail(&after[0])["trigger"]["event_id"], "evt-tara-old-off");
    assert!(worker.logs().contains("re-check put on the queue"), "the grace's re-check was scheduled:\n{}", worker.logs());
}

async fn quiet_publishes_nothing_within_the_grace_and_medium_after_it() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let quiet: Vec<(&str, &str)> = GRACE.iter().copied().chain([("KEYWATCH_ROTATION_GRACE_QUIET", "true")]).collect();
    let worker = Worker::start(&moto, &p, &quiet);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    p.user_with_keys("uma", 1).await;
    let new = p.create_key("uma").await;
    p.put_cloudtrail(&create_key_event("evt-uma-2", "uma", "uma", &new)).await;
    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="rotation_in_progress"}"#, 1.0, T).await,
        "{}",
        worker.metrics()
    );
    let raised = p.findings(1, T).await;
    assert_eq!(raised.len(), 1, "{}", worker.logs());
    let r = detail(&raised[0]);
    assert_eq!(verdict(r), (Some("FAILED"), Some("MEDIUM"), Some(false)), "the first finding is the escalation: {r}");
    assert_eq!(r["trigger"]["event_id"], "recheck:evt-uma-2");
}
