//! The ledger of findings on the emulator's DynamoDB, with the real binary:
//! the last word across processes, identical replays published once, scans
//! that close the open violations no longer failing, `keywatch findings`,
//! and the open-violation metrics.

use std::time::{Duration, Instant};

use crate::common::*;
use keywatch::finding::{finding_id, CONTROL_ID};
use serde_json::Value;

trials! {
    multi an_older_answer_gives_way_to_a_newer_one_published_by_another_process,
    multi copies_of_one_event_answered_from_one_listing_publish_one_finding,
    multi a_scan_closes_the_open_violations_that_no_longer_fail_and_findings_says_who_fails_now,
    multi a_ledger_table_that_does_not_exist_stops_start_up_with_its_name,
}

const T: Duration = Duration::from_secs(30);

fn detail(envelope: &Value) -> &Value {
    &envelope["detail"]
}

/// Waits until the proxy has held back a listing.
async fn until_injected(proxy: &FaultProxy, n: usize) {
    let deadline = Instant::now() + T;
    while proxy.injected.load(std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One key event, a worker whose IAM listing is slow (3 s, through a
/// proxy: the emulator cannot be slow) and a `keywatch replay` of the same
/// event that lists IAM meanwhile: the replay's answer is the newer and is
/// published first; the worker's, older, arrives after it. With the ledger
/// the worker's finding is dropped as superseded; without it (the same run,
/// no table) both are published, the older last: what the ledger is for.
async fn an_older_answer_gives_way_to_a_newer_one_published_by_another_process() {
    for with_ledger in [true, false] {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let p = Pipeline::create(&config, 30).await;
        let table = create_ledger_table(&config, "keywatch-ledger").await;
        let ledger_env: Vec<(&str, &str)> = if with_ledger { vec![("KEYWATCH_LEDGER_TABLE", table.as_str())] } else { vec![] };
        let proxy = FaultProxy::start(moto.port);
        proxy.set(Fault::SlowListings);
        let mut env = ledger_env.clone();
        env.extend([("AWS_ENDPOINT_URL", proxy.url.as_str()), ("KEYWATCH_RELIST_BUDGET_MS", "0")]);
        let worker = Worker::start(&moto, &p, &env);
        assert!(worker.wait_ready(T).await, "{}", worker.logs());
        let keys = p.user_with_keys("quinn", 2).await;
        let event = create_key_event("evt-quinn-2", "admin", "quinn", &keys[1]);
        p.put_cloudtrail(&event).await;
        until_injected(&proxy, 1).await;

        // Another process decides on the same event while the worker waits
        // for IAM: its listing starts later, so its answer is the newer.
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(file.path(), serde_json::json!({ "Records": [event] }).to_string()).unwrap();
        let mut replay_env = ledger_env.clone();
        replay_env.push(("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS));
        let (code, _, err) = keywatch(&moto, &["replay", file.path().to_str().unwrap()], &replay_env);
        assert_eq!(code, Some(0), "{err}");

        assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
        let found = p.findings(3, Duration::from_secs(3)).await;
        let observed: Vec<&str> = found.iter().filter_map(|f| detail(f)["observed_at"].as_str()).collect();
        if with_ledger {
            assert_eq!(found.len(), 1, "the replay's finding alone: {found:?}\n{}", worker.logs());
            assert_eq!(worker.metric(r#"keywatch_findings_dropped_total{reason="superseded"}"#), 1.0, "{}", worker.metrics());
            let item = ledger_item(&config, &table, &finding_id(CONTROL_ID, ACCOUNT, "quinn")).await.expect("the ledger's item");
            let kept = item["observed_at"].as_n().unwrap().parse::<i128>().unwrap();
            let published = time::OffsetDateTime::parse(observed[0], &time::format_description::well_known::Rfc3339).unwrap();
            assert_eq!(kept, published.unix_timestamp_nanos(), "the ledger keeps the newer answer");
            assert_eq!(attr_s(&item, "status"), Some("FAILED"));
        } else {
            assert_eq!(found.len(), 2, "without a ledger both are published: {found:?}\n{}", worker.logs());
            assert!(observed[0] > observed[1], "the older answer published last: {observed:?}");
            assert!(worker.logs().contains("no ledger table"), "the mode is said at start-up:\n{}", worker.logs());
        }
    }
}

/// Three copies of one event: the first one's listing answers all three
/// (reused: it started after the event), so their findings say the same
/// thing on the same IAM answer; one is published. A copy that comes while
/// the first is being published (claimed, not yet marked published) is
/// left for redelivery, and is then dropped as identical.
async fn copies_of_one_event_answered_from_one_listing_publish_one_finding() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 3).await;
    let table = create_ledger_table(&config, "keywatch-ledger").await;
    let keys = p.user_with_keys("uma", 2).await;
    let event = create_key_event("evt-uma-2", "admin", "uma", &keys[1]);
    // The first copy alone, then two more once its finding is out: the
    // ledger, not the batch, drops them.
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_LEDGER_TABLE", table.as_str())]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    p.put_cloudtrail(&event).await;
    let first = p.findings(1, T).await;
    assert_eq!(first.len(), 1, "{}", worker.logs());
    p.put_cloudtrail(&event).await;
    p.put_cloudtrail(&event).await;
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    let again = p.findings(1, Duration::from_secs(3)).await;
    let brief = |v: &[Value]| {
        v.iter().map(|e| (detail(e)["observed_at"].to_string(), detail(e)["recommended_key_to_deactivate"].to_string())).collect::<Vec<_>>()
    };
    assert!(again.is_empty(), "a copy was published again: {:?}, first: {:?}\n{}", brief(&again), brief(&first), worker.logs());
    assert_eq!(worker.metric(r#"keywatch_findings_dropped_total{reason="identical"}"#), 2.0, "{}", worker.metrics());
    assert_eq!(worker.metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="identical"}"#), 2.0);
    assert_eq!(p.depth(&p.dlq_url).await, (0, 0), "nothing dead-lettered");
}

fn findings_cmd(moto: &Moto, table: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["findings", "--ledger-table", table];
    args.extend(extra);
    keywatch(moto, &args, &[])
}

async fn a_scan_closes_the_open_violations_that_no_longer_fail_and_findings_says_who_fails_now() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 30).await;
    let table = create_ledger_table(&config, "keywatch-ledger").await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_LEDGER_TABLE", table.as_str()), ("KEYWATCH_LEDGER_METRICS_SECS", "1")]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    assert!(worker.logs().contains("ledger: DynamoDB table"), "the mode is said at start-up:\n{}", worker.logs());
    let rita = p.user_with_keys("rita", 2).await;
    let sam = p.user_with_keys("sam", 2).await;
    p.user_with_keys("tess", 1).await;
    p.put_cloudtrail(&create_key_event("evt-rita-2", "admin", "rita", &rita[1])).await;
    p.put_cloudtrail(&create_key_event("evt-sam-2", "admin", "sam", &sam[1])).await;
    assert_eq!(p.findings(2, T).await.len(), 2, "{}", worker.logs());

    // Who fails now: both, oldest first, with the key to deactivate.
    let (code, out, err) = findings_cmd(&moto, &table, &["--json", "--fail-on-open"]);
    assert_eq!(code, Some(1), "--fail-on-open with open violations: {err}");
    let open: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let users: Vec<&str> = open.iter().filter_map(|v| v["user_name"].as_str()).collect();
    assert_eq!(users.len(), 2, "{out}");
    assert!(users.contains(&"rita") && users.contains(&"sam"), "{out}");
    assert!(open.iter().all(|v| v["age_seconds"].is_u64() && v["control_id"] == CONTROL_ID && v["suppressed"] == false), "{out}");
    assert!(err.contains("2 open violations in 1 account "), "{err}");
    let (code, table_out, _) = findings_cmd(&moto, &table, &[]);
    assert_eq!(code, Some(0), "without --fail-on-open");
    assert!(table_out.starts_with("ACCOUNT") && table_out.contains("rita") && table_out.contains("OPEN FOR"), "{table_out}");
    let (code, none, _) = findings_cmd(&moto, &table, &["--account", "999999999999", "--fail-on-open"]);
    assert_eq!((code, none.as_str()), (Some(0), ""), "another account has none");
    assert!(worker.wait_metric(r#"keywatch_open_violations{suppressed="false"}"#, 2.0, T).await, "{}", worker.metrics());

    // Fixed and offboarded without a word: no event reaches keywatch.
    p.iam
        .update_access_key()
        .user_name("rita")
        .access_key_id(&rita[0])
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    for key in &sam {
        p.iam.delete_access_key().user_name("sam").access_key_id(key).send().await.unwrap();
    }
    p.iam.delete_user().user_name("sam").send().await.unwrap();
    // A scan request that does not ask for PASSED findings still closes
    // what the ledger holds open.
    p.send_raw(r#"{"keywatch": "scan-request"}"#).await;
    let mut closing = Vec::new();
    let deadline = Instant::now() + T;
    while closing.len() < 2 && Instant::now() < deadline {
        closing.extend(p.findings(1, Duration::from_secs(1)).await.into_iter().filter(|e| e["detail-type"] == "IAM Access Key Finding"));
    }
    closing.extend(p.findings(5, Duration::from_secs(2)).await.into_iter().filter(|e| e["detail-type"] == "IAM Access Key Finding"));
    let by_user = |u: &str| closing.iter().map(detail).filter(|d| d["user_name"] == u).cloned().collect::<Vec<Value>>();
    let (rita_f, sam_f, tess_f) = (by_user("rita"), by_user("sam"), by_user("tess"));
    assert_eq!(rita_f.len(), 1, "{closing:?}\n{}", worker.logs());
    assert_eq!((rita_f[0]["status"].as_str(), rita_f[0].get("reason")), (Some("PASSED"), None));
    assert_eq!(sam_f.len(), 1, "{closing:?}\n{}", worker.logs());
    assert_eq!((sam_f[0]["status"].as_str(), sam_f[0]["reason"].as_str()), (Some("PASSED"), Some("user_deleted")));
    assert!(tess_f.is_empty(), "a user never failing gets no PASSED without include_passed: {tess_f:?}");

    let (code, out, err) = findings_cmd(&moto, &table, &["--json", "--fail-on-open"]);
    assert_eq!((code, out.as_str()), (Some(0), ""), "nobody fails now: {err}");
    assert!(worker.wait_metric(r#"keywatch_violation_open_duration_seconds_count"#, 2.0, T).await, "{}", worker.metrics());
    let deadline = Instant::now() + T;
    while worker.metric(r#"keywatch_open_violations{suppressed="false"}"#) != 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(worker.metric(r#"keywatch_open_violations{suppressed="false"}"#), 0.0, "{}", worker.metrics());
    assert_eq!(worker.metric("keywatch_oldest_open_violation_age_seconds"), 0.0);
    assert_eq!(worker.metric("keywatch_violation_sla_seconds"), 72.0 * 3600.0, "the default SLA");
    let item = ledger_item(&config, &table, &finding_id(CONTROL_ID, ACCOUNT, "sam")).await.unwrap();
    assert_eq!((attr_s(&item, "status"), attr_s(&item, "reason")), (Some("PASSED"), Some("user_deleted")));
    assert!(item.contains_key("closed_at") && item.contains_key("opened_at") && !item.contains_key("open_account"), "{item:?}");
}

async fn a_ledger_table_that_does_not_exist_stops_start_up_with_its_name() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 30).await;
    let mut worker = Worker::start(&moto, &p, &[("KEYWATCH_LEDGER_TABLE", "no-such-ledger")]);
    assert_eq!(worker.wait_exit(T).await, Some(2), "{}", worker.logs());
    let logs = worker.logs();
    assert!(logs.contains("no-such-ledger") && logs.contains("KEYWATCH_LEDGER_TABLE"), "{logs}");
    let (code, _, err) = keywatch(&moto, &["findings", "--ledger-table", "no-such-ledger"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no-such-ledger") && err.contains("KEYWATCH_LEDGER_TABLE"), "{err}");
}
