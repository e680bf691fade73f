//! A finding stream that cannot be forged or reordered into a lie, on the
//! emulator with the real binary: what an event claims is validated before
//! anything is asked or assumed, a `PASSED` rests only on what IAM shows,
//! and events for accounts keywatch was not told about change nothing.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

trials! {
    multi a_deactivation_dated_in_the_future_is_refused_not_passed,
    multi a_deactivation_iam_never_shows_is_never_passed,
    multi a_deactivate_reactivate_flap_ends_on_failed,
    multi claims_no_iam_rule_can_deliver_are_refused_before_iam_is_asked,
    multi an_event_for_an_account_keywatch_was_not_told_about_changes_nothing,
    multi a_member_role_without_accounts_stops_start_up_naming_both_settings,
}

const T: Duration = Duration::from_secs(30);

async fn setup(visibility_secs: u32) -> (Moto, Pipeline) {
    let moto = Moto::start();
    let pipeline = Pipeline::create(&moto.sdk_config().await, visibility_secs).await;
    (moto, pipeline)
}

fn statuses(found: &[Value]) -> Vec<String> {
    found.iter().map(|f| f["detail"]["status"].as_str().unwrap_or("?").to_string()).collect()
}

/// Waits until `n` messages sit in the dead-letter queue.
async fn dead_letters(p: &Pipeline, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + T;
    while p.depth(&p.dlq_url).await.0 < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    p.depth(&p.dlq_url).await.0
}

async fn a_deactivation_dated_in_the_future_is_refused_not_passed() {
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("mallory", 2).await;
    let mut ev = update_key_event("evt-2099", "admin", "mallory", &keys[1], "Inactive");
    ev["eventTime"] = json!("2099-01-01T00:00:00Z");
    p.put_cloudtrail(&ev).await;

    assert_eq!(dead_letters(&p, 1).await, 1, "refused, left for the DLQ:\n{}", worker.logs());
    assert!(worker.logs().contains("\"reason\":\"future_time\""), "{}", worker.logs());
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty(), "nothing published");
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
}

async fn a_deactivation_iam_never_shows_is_never_passed() {
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_RELIST_BUDGET_MS", "200")]);
    // IAM keeps both keys active; only the event says one was deactivated.
    let keys = p.user_with_keys("niaj", 2).await;
    p.put_cloudtrail(&update_key_event("evt-forged", "admin", "niaj", &keys[1], "Inactive")).await;

    assert!(worker.wait_metric(r#"keywatch_messages_total{result="retried"}"#, 2.0, T).await, "retried:\n{}", worker.logs());
    assert!(worker.logs().contains("IAM does not show this deactivation or delete yet"), "{}", worker.logs());
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty(), "no PASSED from the event alone");
    // Redrive takes it to the DLQ after its receives: nothing lost, nothing said.
    assert_eq!(dead_letters(&p, 1).await, 1, "{}", worker.logs());
}

async fn a_deactivate_reactivate_flap_ends_on_failed() {
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_RELIST_BUDGET_MS", "200")]);
    let keys = p.user_with_keys("olivia", 2).await;
    // In IAM: deactivated and re-activated within a second; two active keys.
    for status in ["Inactive", "Active"] {
        p.iam.update_access_key().user_name("olivia").access_key_id(&keys[1]).status(status.into()).send().await.unwrap();
    }
    p.put_cloudtrail(&update_key_event("evt-off", "admin", "olivia", &keys[1], "Inactive")).await;
    p.put_cloudtrail(&update_key_event("evt-on", "admin", "olivia", &keys[1], "Active")).await;

    let found = p.findings(1, T).await;
    // Give the deactivation its relist budget and a redelivery or two.
    let later = p.findings(10, Duration::from_secs(4)).await;
    let all: Vec<Value> = found.into_iter().chain(later).collect();
    let seen = statuses(&all);
    assert!(!seen.is_empty(), "{}", worker.logs());
    assert!(seen.iter().all(|s| s == "FAILED"), "the user has two active keys; findings: {seen:?}\n{}", worker.logs());
    assert_eq!(all.last().unwrap()["detail"]["active_key_count"], 2);
}

async fn claims_no_iam_rule_can_deliver_are_refused_before_iam_is_asked() {
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[]);
    p.user_with_keys("peggy", 2).await;

    // A malformed account id.
    p.put_cloudtrail(&in_account(create_key_event("evt-acct", "admin", "peggy", "AKIAEXAMPLEPEGGY0002"), "12345")).await;
    // A user name of 10,000 characters.
    let long = "p".repeat(10_000);
    p.put_cloudtrail(&create_key_event("evt-long", "admin", &long, "AKIAEXAMPLEPEGGY0003")).await;
    // The envelope's account differs from the record's.
    let mut detail = create_key_event("evt-mismatch", "admin", "peggy", "AKIAEXAMPLEPEGGY0004");
    detail["recipientAccountId"] = json!(ACCOUNT);
    let envelope = json!({
        "version": "0", "id": "forged-1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
        "account": "999988887777", "time": detail["eventTime"], "region": "us-east-1", "resources": [], "detail": detail,
    });
    p.send_raw(&envelope.to_string()).await;

    assert_eq!(dead_letters(&p, 3).await, 3, "all three refused and left for the DLQ:\n{}", worker.logs());
    let logs = worker.logs();
    for reason in ["bad_account", "bad_user_name", "account_mismatch"] {
        assert!(logs.contains(&format!("\"reason\":\"{reason}\"")), "{reason}:\n{logs}");
    }
    assert!(!logs.contains(&long[..200]), "the long name is not logged whole");
    assert!(worker.metric(r#"keywatch_events_total{event_name="unknown",outcome="invalid"}"#) >= 3.0);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty());
}

async fn an_event_for_an_account_keywatch_was_not_told_about_changes_nothing() {
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("quinn", 2).await;
    p.put_cloudtrail(&in_account(create_key_event("evt-foreign", "admin", "quinn", &keys[1]), "999988887777")).await;

    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="foreign_account"}"#, 1.0, T).await,
        "{}",
        worker.logs()
    );
    assert!(p.wait_drained(&p.queue_url, T).await, "acknowledged");
    assert_eq!(p.depth(&p.dlq_url).await.0, 0);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty());
}

async fn a_member_role_without_accounts_stops_start_up_naming_both_settings() {
    let (moto, p) = setup(1).await;
    let mut worker = Worker::start(&moto, &p, &[("KEYWATCH_MEMBER_ROLE", "keywatch-member")]);
    assert_eq!(worker.wait_exit(T).await, Some(2));
    let logs = worker.logs();
    assert!(logs.contains("KEYWATCH_MEMBER_ROLE") && logs.contains("KEYWATCH_ACCOUNTS"), "{logs}");
}
