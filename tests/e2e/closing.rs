//! What closes a violation on the emulator, with the real binary, when no
//! event that IAM's listing confirms ever comes: the user deleted.

use std::time::Duration;

use crate::common::*;
use keywatch::finding::{finding_id, CONTROL_ID};
use serde_json::Value;

trials! {
    multi offboarding_closes_the_finding_when_the_delete_events_find_the_user_gone,
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
