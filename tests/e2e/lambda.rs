//! The Lambda function (`bootstrap`) through the real Lambda runtime
//! protocol, against the emulator: the test stands in for the runtime API
//! (the emulator cannot run a function without Docker) and for the SQS
//! event source mapping (it receives the messages off the input queue and
//! hands them over as one SQS event). What the function answers is the
//! partial batch response: the records Lambda must leave on the queue.
//! Its metrics are CloudWatch EMF lines on standard output, each checked
//! against the EMF specification.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

trials! {
    multi a_second_key_is_published_and_no_record_is_reported,
    multi only_the_record_whose_finding_was_not_accepted_is_reported,
    multi a_forged_event_is_refused_and_reported_for_the_dead_letter_queue,
    multi a_scan_request_is_fanned_out_and_each_account_scanned_in_an_invocation,
    multi a_scan_that_outlasts_the_function_is_reported_before_its_deadline,
}

const T: Duration = Duration::from_secs(30);
/// The function's timeout in these tests (`Lambda-Runtime-Deadline-Ms`).
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(20);

async fn setup() -> (Moto, Pipeline, RuntimeApi) {
    let moto = Moto::start();
    let pipeline = Pipeline::create(&moto.sdk_config().await, 30).await;
    (moto, pipeline, RuntimeApi::start())
}

/// The `itemIdentifier`s of a partial batch response.
fn failures(answer: &Answer) -> Vec<String> {
    let Answer::Response(response) = answer else { panic!("the invocation failed: {answer:?}") };
    let items = response["batchItemFailures"].as_array().unwrap_or_else(|| panic!("no batchItemFailures: {response}"));
    items.iter().map(|i| i["itemIdentifier"].as_str().expect("itemIdentifier").to_string()).collect()
}

fn record_ids(event: &Value) -> Vec<String> {
    event["Records"].as_array().unwrap().iter().map(|r| r["messageId"].as_str().unwrap().to_string()).collect()
}

/// An EMF document's problems against the CloudWatch embedded metric
/// format specification: the `_aws` metadata with `Timestamp`
/// (milliseconds) and `CloudWatchMetrics`, each directive with a
/// `Namespace`, `Dimensions` (arrays of at most 30 dimension names, each a
/// string member of the root) and `Metrics` (at most 100 definitions, each
/// with a `Name` whose member at the root is a number or an array of at
/// most 100 numbers, and a valid `Unit`).
fn emf_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(p);
    let Some(aws) = doc["_aws"].as_object() else { return vec!["no _aws object".into()] };
    match aws.get("Timestamp").and_then(Value::as_u64) {
        Some(ms) if ms > 1_000_000_000_000 => {}
        other => problem(format!("Timestamp is not milliseconds since the epoch: {other:?}")),
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else { return vec!["no CloudWatchMetrics array".into()] };
    for d in directives {
        match d["Namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns.len() <= 1024 => {}
            _ => problem(format!("bad Namespace: {}", d["Namespace"])),
        }
        let Some(sets) = d["Dimensions"].as_array() else {
            problem("Dimensions is not an array".into());
            continue;
        };
        for set in sets {
            let Some(keys) = set.as_array() else {
                problem(format!("a dimension set is not an array: {set}"));
                continue;
            };
            if keys.len() > 30 {
                problem(format!("more than 30 dimensions: {set}"));
            }
            for k in keys {
                match k.as_str().map(|k| &doc[k]) {
                    Some(Value::String(v)) if !v.is_empty() && v.len() <= 1024 => {}
                    _ => problem(format!("dimension {k} is not a string member of the root")),
                }
            }
        }
        let Some(metrics) = d["Metrics"].as_array() else {
            problem("Metrics is not an array".into());
            continue;
        };
        if metrics.len() > 100 {
            problem("more than 100 metrics".into());
        }
        for m in metrics {
            let Some(name) = m["Name"].as_str() else {
                problem(format!("a metric without a Name: {m}"));
                continue;
            };
            match &doc[name] {
                Value::Number(_) => {}
                Value::Array(values) if !values.is_empty() && values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => problem(format!("{name}'s value is neither a number nor an array of at most 100 numbers: {other}")),
            }
            if let Some(unit) = m.get("Unit") {
                const UNITS: &[&str] = &["Seconds", "Microseconds", "Milliseconds", "Bytes", "Count", "Percent", "None"];
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    problem(format!("{name}: unit {unit} is not a CloudWatch unit"));
                }
            }
        }
    }
    problems
}

/// The function's EMF documents, each checked against the specification.
fn emf(f: &Function) -> Vec<Value> {
    let docs: Vec<Value> =
        f.stdout_lines().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|d| d.get("_aws").is_some()).collect();
    for doc in &docs {
        let problems = emf_problems(doc);
        assert!(problems.is_empty(), "not EMF: {problems:?}\n{doc}");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "keywatch");
    }
    docs
}

/// The value of `metric` in the EMF document whose dimensions are `labels`.
fn emf_value(docs: &[Value], metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
    docs.iter().find_map(|d| {
        let dims = d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0].as_array()?;
        let same = dims.len() == labels.len() && labels.iter().all(|(k, v)| d[*k] == *v);
        same.then(|| d.get(metric).cloned()).flatten()
    })
}

async fn a_second_key_is_published_and_no_record_is_reported() {
    let (moto, p, api) = setup().await;
    let f = Function::start(&api, &moto.url, &p, &[]);
    let keys = p.user_with_keys("lambda-alice", 2).await;
    p.put_cloudtrail(&create_key_event("evt-lambda-1", "admin", "lambda-alice", &keys[1])).await;
    let event = sqs_event(&p, 1, T).await;

    let answer = api.invoke(&event, FUNCTION_TIMEOUT);
    assert_eq!(failures(&answer), Vec::<String>::new(), "{}", f.logs());
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", f.logs());
    assert_eq!(found[0]["detail"]["status"], "FAILED");
    assert_eq!(found[0]["detail"]["user_name"], "lambda-alice");

    let docs = emf(&f);
    let latency = emf_value(&docs, "keywatch_detection_latency_seconds", &[("status", "FAILED")]).expect("detection latency in EMF");
    assert!(latency.as_array().is_some_and(|v| v.len() == 1 && v[0].as_f64().unwrap() >= 0.0), "{latency}");
    assert_eq!(emf_value(&docs, "keywatch_findings_total", &[("status", "FAILED")]), Some(json!(1)), "{docs:?}");
    assert_eq!(emf_value(&docs, "keywatch_events_total", &[("event_name", "CreateAccessKey"), ("outcome", "finding")]), Some(json!(1)));
    assert_eq!(emf_value(&docs, "keywatch_messages_total", &[("result", "deleted")]), Some(json!(1)), "{docs:?}");
    // The function's logs are JSON lines.
    assert!(f.logs().lines().filter(|l| !l.trim().is_empty()).all(|l| serde_json::from_str::<Value>(l).is_ok()), "{}", f.logs());
}

/// The fault proxy answers the one PutEvents with its first entry failed:
/// the emulator always accepts every entry.
async fn only_the_record_whose_finding_was_not_accepted_is_reported() {
    let (moto, p, api) = setup().await;
    let proxy = FaultProxy::start(moto.port);
    let f = Function::start(&api, &proxy.url, &p, &[]);
    for (i, user) in ["lambda-bob", "lambda-carol"].into_iter().enumerate() {
        let keys = p.user_with_keys(user, 2).await;
        p.put_cloudtrail(&create_key_event(&format!("evt-lambda-sink-{i}"), "admin", user, &keys[1])).await;
    }
    let event = sqs_event(&p, 2, T).await;
    let ids = record_ids(&event);

    proxy.set(Fault::PutEventsPartial);
    let answer = api.invoke(&event, FUNCTION_TIMEOUT);
    proxy.set(Fault::None);
    assert_eq!(failures(&answer), vec![ids[0].clone()], "the first entry was refused, the second accepted: {}", f.logs());
    assert_eq!(emf_value(&emf(&f), "keywatch_messages_total", &[("result", "retried")]), Some(json!(1)));
}

async fn a_forged_event_is_refused_and_reported_for_the_dead_letter_queue() {
    let (moto, p, api) = setup().await;
    let f = Function::start(&api, &moto.url, &p, &[]);
    let keys = p.user_with_keys("lambda-mallory", 2).await;
    let mut ev = update_key_event("evt-lambda-2099", "admin", "lambda-mallory", &keys[1], "Inactive");
    ev["eventTime"] = json!("2099-01-01T00:00:00Z");
    p.put_cloudtrail(&ev).await;
    let event = sqs_event(&p, 1, T).await;

    let answer = api.invoke(&event, FUNCTION_TIMEOUT);
    assert_eq!(failures(&answer), record_ids(&event), "refused: left for the queue's redrive to the DLQ: {}", f.logs());
    assert!(f.logs().contains("\"reason\":\"future_time\""), "{}", f.logs());
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty(), "nothing published");
    let docs = emf(&f);
    assert_eq!(emf_value(&docs, "keywatch_messages_total", &[("result", "invalid")]), Some(json!(1)), "{docs:?}");
    assert_eq!(emf_value(&docs, "keywatch_events_total", &[("event_name", "UpdateAccessKey"), ("outcome", "invalid")]), Some(json!(1)));
}

async fn a_scan_request_is_fanned_out_and_each_account_scanned_in_an_invocation() {
    let (moto, p, api) = setup().await;
    let f = Function::start(&api, &moto.url, &p, &[]);
    p.user_with_keys("lambda-dave", 2).await;
    p.user_with_keys("lambda-erin", 1).await;

    // As the stack's schedule puts it on the queue: fanned out, a request
    // per account, onto the same queue.
    p.send_raw(&scheduled_scan_request()).await;
    let event = sqs_event(&p, 1, T).await;
    assert_eq!(failures(&api.invoke(&event, FUNCTION_TIMEOUT)), Vec::<String>::new(), "{}", f.logs());
    let per_account = sqs_event(&p, 1, T).await;
    let body: Value = serde_json::from_str(per_account["Records"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["account_id"], ACCOUNT, "{body}");

    // The account's scan runs inside the invocation.
    assert_eq!(failures(&api.invoke(&per_account, FUNCTION_TIMEOUT)), Vec::<String>::new(), "{}", f.logs());
    let found = p.findings(3, T).await;
    let status =
        |user: &str| found.iter().find(|e| e["detail"]["user_name"] == user).map(|e| e["detail"]["status"].as_str().unwrap().to_string());
    assert_eq!(status("lambda-dave").as_deref(), Some("FAILED"), "{found:?}");
    assert_eq!(found.iter().filter(|e| e["detail-type"] == "IAM Access Key Scan Summary").count(), 1, "{found:?}");
    let docs = emf(&f);
    assert!(emf_value(&docs, "keywatch_scan_users_checked_total", &[]).is_some_and(|v| v.as_u64() >= Some(2)), "{docs:?}");
}

/// The fault proxy holds each `ListAccessKeys` answer back 3 s (the
/// emulator answers at once): a scan longer than the function's time.
async fn a_scan_that_outlasts_the_function_is_reported_before_its_deadline() {
    let (moto, p, api) = setup().await;
    let proxy = FaultProxy::start(moto.port);
    let f = Function::start(&api, &proxy.url, &p, &[]);
    p.user_with_keys("lambda-slow", 2).await;
    p.send_raw(&json!({"keywatch": "scan-request", "account_id": ACCOUNT}).to_string()).await;
    let event = sqs_event(&p, 1, T).await;

    proxy.set(Fault::SlowListings);
    let timeout = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let answer = api.invoke(&event, timeout);
    let took = started.elapsed();
    assert_eq!(failures(&answer), record_ids(&event), "the unfinished scan's message is reported: {}", f.logs());
    assert!(took < timeout, "answered {took:?} after the invocation began, past its {timeout:?} deadline");
    assert!(p.findings(1, Duration::from_secs(1)).await.is_empty(), "no scan summary for a scan that did not end");
}
