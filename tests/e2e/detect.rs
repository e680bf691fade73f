//! End to end on a real AWS emulator (moto server): the real `keywatch`
//! binary, wired as in production — CloudTrail-shaped events on the default
//! bus, a rule into the input queue (DLQ after 2 receives), findings on their
//! own bus with a rule into a queue that the test reads like a SIEM would.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

trials! {
    multi second_active_key_yields_a_failed_finding,
    multi a_single_active_key_yields_no_finding,
    multi a_poison_message_reaches_the_dlq_while_the_worker_keeps_working,
    multi an_unknown_user_is_acknowledged_and_does_not_stop_the_worker,
    multi deactivating_the_second_key_emits_passed_with_the_same_finding_id,
    multi sigterm_finishes_in_flight_messages_and_exits_zero,
}

const T: Duration = Duration::from_secs(30);

async fn setup(visibility_secs: u32) -> (Moto, Pipeline) {
    let moto = Moto::start();
    let pipeline = Pipeline::create(&moto.sdk_config().await, visibility_secs).await;
    (moto, pipeline)
}

fn detail(envelope: &Value) -> &Value {
    &envelope["detail"]
}

async fn second_active_key_yields_a_failed_finding() {
    let (moto, p) = setup(5).await;
    let worker = Worker::start(&moto, &p, &[]);
    assert!(worker.wait_ready(T).await, "worker never became ready:\n{}", worker.logs());

    let keys = p.user_with_keys("alice", 2).await;
    p.put_cloudtrail(&create_key_event("evt-alice-2", "admin", "alice", &keys[1])).await;

    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "no finding:\n{}", worker.logs());
    let envelope = &found[0];
    assert_eq!(envelope["source"], "keywatch");
    assert_eq!(envelope["detail-type"], "IAM Access Key Finding");
    let d = detail(envelope);
    assert_eq!(d["control_id"], "CIS-AWS-1.13");
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["severity"], "HIGH");
    assert_eq!(d["account_id"], ACCOUNT);
    assert_eq!(d["user_name"], "alice");
    assert_eq!(d["active_key_count"], 2);
    let listed: HashSet<&str> = d["active_keys"].as_array().unwrap().iter().map(|k| k["access_key_id"].as_str().unwrap()).collect();
    assert_eq!(listed, keys.iter().map(String::as_str).collect());
    for k in d["active_keys"].as_array().unwrap() {
        assert_eq!(k["status"], "Active");
        assert!(k["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(d["trigger"]["event_id"], "evt-alice-2");
    assert_eq!(d["trigger"]["event_name"], "CreateAccessKey");
    assert_eq!(d["trigger"]["actor_arn"], format!("arn:aws:iam::{ACCOUNT}:user/admin"));
    assert_eq!(d["event_state_assumed"], false);
    assert_eq!(d["finding_id"].as_str().unwrap().len(), 32);
    let latency = d["detection_latency_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&latency), "latency {latency}");
    assert!(d["detected_at"].as_str().unwrap() >= d["trigger"]["event_time"].as_str().unwrap());

    // Acknowledged only after acceptance: the input queue is empty now.
    assert!(p.wait_drained(&p.queue_url, T).await, "message not deleted");
    assert!(worker.wait_metric(r#"keywatch_messages_total{result="deleted"}"#, 1.0, T).await);
    assert_eq!(worker.metric(r#"keywatch_findings_total{status="FAILED"}"#), 1.0);
    assert_eq!(worker.metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="finding"}"#), 1.0);

    // The lines logged for the message name it at the top level of their
    // JSON (from the message's span).
    let logs = worker.logs();
    let lines: Vec<Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let published: Vec<&Value> = lines.iter().filter(|l| l["message"] == "finding published").collect();
    assert_eq!(published.len(), 1, "{logs}");
    let message_id = published[0]["message_id"].as_str().expect("the line names the message");
    assert!(!message_id.is_empty() && published[0].get("spans").is_none(), "{logs}");
    for line in lines.iter().filter(|l| l["event_id"] == "evt-alice-2") {
        assert_eq!(line["message_id"], message_id, "{line}");
    }
}

async fn a_single_active_key_yields_no_finding() {
    let (moto, p) = setup(5).await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("bob", 1).await;
    p.put_cloudtrail(&create_key_event("evt-bob-1", "bob", "bob", &keys[0])).await;

    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="compliant"}"#, 1.0, T).await,
        "event not evaluated:\n{}",
        worker.logs()
    );
    assert!(p.wait_drained(&p.queue_url, T).await, "message not deleted");
    assert!(p.findings(1, Duration::from_secs(3)).await.is_empty(), "unexpected finding");
    assert_eq!(worker.metric(r#"keywatch_findings_total{status="FAILED"}"#), 0.0);
}

async fn a_poison_message_reaches_the_dlq_while_the_worker_keeps_working() {
    // Visibility 1 s, DLQ after 2 receives.
    let (moto, p) = setup(1).await;
    let worker = Worker::start(&moto, &p, &[]);
    p.send_raw("this is not an EventBridge envelope").await;
    p.send_raw(r#"{"detail": {"eventName": "CreateAccessKey", "eventTime": "yesterday"}}"#).await;

    let keys = p.user_with_keys("carol", 2).await;
    p.put_cloudtrail(&create_key_event("evt-carol-2", "carol", "carol", &keys[1])).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "worker stopped working:\n{}", worker.logs());
    assert_eq!(detail(&found[0])["user_name"], "carol");
    assert_eq!(detail(&found[0])["severity"], "MEDIUM");

    // Both poison messages end in the DLQ through redrive, not deleted.
    let deadline = std::time::Instant::now() + T;
    while p.depth(&p.dlq_url).await.0 < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(p.depth(&p.dlq_url).await.0, 2, "poison messages not in the DLQ:\n{}", worker.logs());
    assert!(worker.metric(r#"keywatch_messages_total{result="invalid"}"#) >= 2.0);
    assert!(worker.metric(r#"keywatch_events_total{event_name="unknown",outcome="invalid"}"#) >= 2.0);
    let logs = worker.logs();
    assert!(logs.contains("invalid message body"), "no log line for the poison message");
    // The second has no `source`: refused before anything else is read.
    assert!(logs.contains("\"reason\":\"not_json\"") && logs.contains("\"reason\":\"bad_source\""), "{logs}");
    assert!(worker.wait_metric(r#"keywatch_queue_messages{queue="dlq",state="visible"}"#, 2.0, T).await, "DLQ depth metric");
}

async fn an_unknown_user_is_acknowledged_and_does_not_stop_the_worker() {
    let (moto, p) = setup(5).await;
    let worker = Worker::start(&moto, &p, &[]);
    p.put_cloudtrail(&create_key_event("evt-ghost", "admin", "ghost", "AKIAGHOSTKEY00000001")).await;
    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="ignored"}"#, 1.0, T).await,
        "unknown user not handled:\n{}",
        worker.logs()
    );
    let keys = p.user_with_keys("dave", 2).await;
    p.put_cloudtrail(&create_key_event("evt-dave-2", "dave", "dave", &keys[1])).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(detail(&found[0])["user_name"], "dave");
    assert!(p.wait_drained(&p.queue_url, T).await, "a message was left behind");
    assert!(worker.logs().contains("user no longer exists"));
}

async fn deactivating_the_second_key_emits_passed_with_the_same_finding_id() {
    let (moto, p) = setup(5).await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("erin", 2).await;
    p.put_cloudtrail(&create_key_event("evt-erin-create", "admin", "erin", &keys[1])).await;
    let failed = p.findings(1, T).await;
    assert_eq!(failed.len(), 1, "{}", worker.logs());

    p.iam
        .update_access_key()
        .user_name("erin")
        .access_key_id(&keys[0])
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    p.put_cloudtrail(&update_key_event("evt-erin-off", "admin", "erin", &keys[0], "Inactive")).await;
    let passed = p.findings(1, T).await;
    assert_eq!(passed.len(), 1, "{}", worker.logs());
    let (f, r) = (detail(&failed[0]), detail(&passed[0]));
    assert_eq!(r["status"], "PASSED");
    assert_eq!(r["finding_id"], f["finding_id"]);
    assert_eq!(r["active_key_count"], 1);
    assert_eq!(r["trigger"]["event_id"], "evt-erin-off");
}

async fn sigterm_finishes_in_flight_messages_and_exits_zero() {
    let (moto, p) = setup(3).await;
    let mut users = Vec::new();
    for i in 0..12 {
        let user = format!("user{i}");
        let keys = p.user_with_keys(&user, 2).await;
        users.push((user, keys));
    }
    let worker_env = [("KEYWATCH_MAX_MESSAGES", "2")];
    let mut worker = Worker::start(&moto, &p, &worker_env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let mut sent = HashSet::new();
    for (user, keys) in &users {
        let id = format!("evt-{user}");
        p.put_cloudtrail(&create_key_event(&id, "admin", user, &keys[1])).await;
        sent.insert(id);
    }
    // Stop while the worker is busy with the backlog.
    assert!(worker.wait_metric(r#"keywatch_messages_total{result="deleted"}"#, 1.0, T).await, "{}", worker.logs());
    worker.signal("TERM");
    let code = worker.wait_exit(T).await;
    assert_eq!(code, Some(0), "exit code:\n{}", worker.logs());
    assert!(worker.logs().contains("all messages in flight handled"));

    // Every event is either published (and its message deleted) or still in
    // the queue, never both and never neither.
    let published: HashSet<String> = p
        .findings(sent.len(), Duration::from_secs(5))
        .await
        .iter()
        .map(|e| e["detail"]["trigger"]["event_id"].as_str().unwrap().to_string())
        .collect();
    let mut remaining = HashSet::new();
    let deadline = std::time::Instant::now() + T;
    while published.len() + remaining.len() < sent.len() && std::time::Instant::now() < deadline {
        let out = p.sqs.receive_message().queue_url(&p.queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        for m in out.messages.unwrap_or_default() {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            remaining.insert(body["detail"]["eventID"].as_str().unwrap().to_string());
            p.sqs.delete_message().queue_url(&p.queue_url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
    assert!(published.is_disjoint(&remaining), "published but not deleted: {:?}", published.intersection(&remaining).collect::<Vec<_>>());
    let all: HashSet<String> = published.union(&remaining).cloned().collect();
    assert_eq!(all, sent, "events lost");
    assert!(!published.is_empty());
}
