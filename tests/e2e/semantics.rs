//! Detection semantics on the emulator: every event shape, IAM eventual
//! consistency, enrichment, root keys, approved exceptions, member accounts
//! and duplicate delivery — each through the real binary and real rules.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

trials! {
    multi a_role_without_user_name_is_resolved_through_the_key_owner,
    multi a_deleted_key_of_unknowable_owner_is_acknowledged_and_counted,
    multi failed_calls_are_acknowledged_and_counted_by_error_code,
    multi a_root_key_is_a_cis_1_4_finding_never_a_user_finding,
    multi a_stale_listing_counts_the_event_and_says_so,
    multi a_failed_finding_is_enriched_for_the_responder,
    multi an_approved_exception_suppresses_until_it_expires,
    multi a_malformed_exceptions_file_stops_start_up_naming_the_entry,
    multi member_accounts_are_read_through_the_member_role,
    multi a_duplicate_delivery_is_published_once,
    multi exceptions_reload_on_sighup_and_a_broken_reload_keeps_the_old_ones,
    multi exceptions_from_ssm_are_reloaded_when_the_parameter_changes,
    multi events_for_one_user_arriving_together_share_one_listing,
    multi a_listing_serves_the_users_older_events_never_a_newer_one,
}

const T: Duration = Duration::from_secs(30);

async fn setup() -> (Moto, Pipeline) {
    let moto = Moto::start();
    let pipeline = Pipeline::create(&moto.sdk_config().await, 5).await;
    (moto, pipeline)
}

async fn one_finding(p: &Pipeline, worker: &Worker) -> Value {
    let mut found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "expected one finding:\n{}", worker.logs());
    found.remove(0)["detail"].take()
}

async fn a_role_without_user_name_is_resolved_through_the_key_owner() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("frank", 2).await;
    let mut ev = by_role(update_key_event("evt-role-upd", "x", "frank", &keys[1], "Active"));
    ev["requestParameters"].as_object_mut().unwrap().remove("userName");
    p.put_cloudtrail(&ev).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["user_name"], "frank");
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["severity"], "HIGH", "a role acted on someone's keys");
    assert_eq!(d["trigger"]["actor_type"], "AssumedRole");
    assert!(
        worker.wait_metric(r#"keywatch_aws_requests_total{service="iam",operation="GetAccessKeyLastUsed",outcome="ok"}"#, 1.0, T).await
    );
}

async fn a_deleted_key_of_unknowable_owner_is_acknowledged_and_counted() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    let mut ev = by_role(delete_key_event("evt-role-del", "x", "gone", "AKIADELETEDKEY000001"));
    ev["requestParameters"].as_object_mut().unwrap().remove("userName");
    p.put_cloudtrail(&ev).await;
    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="DeleteAccessKey",outcome="ignored"}"#, 1.0, T).await,
        "{}",
        worker.logs()
    );
    assert!(p.wait_drained(&p.queue_url, T).await, "message left behind");
    assert!(worker.logs().contains("owner of the key is unknown"), "{}", worker.logs());
}

async fn failed_calls_are_acknowledged_and_counted_by_error_code() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    p.user_with_keys("gina", 2).await;
    let mut ev = create_key_event("evt-failed", "admin", "gina", "AKIANEVERCREATED0001");
    ev["responseElements"] = Value::Null;
    ev["errorCode"] = json!("LimitExceededException");
    ev["errorMessage"] = json!("Cannot exceed quota for AccessKeysPerUser: 2");
    p.put_cloudtrail(&ev).await;
    assert!(
        worker.wait_metric(r#"keywatch_failed_calls_total{event_name="CreateAccessKey",error_code="LimitExceeded"}"#, 1.0, T).await,
        "{}",
        worker.logs()
    );
    assert_eq!(worker.metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="failed_call"}"#), 1.0);
    assert!(p.wait_drained(&p.queue_url, T).await);
    // No re-check was made, so no finding although gina has two keys.
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
    assert!(p.findings(1, Duration::from_secs(2)).await.is_empty());
}

async fn a_root_key_is_a_cis_1_4_finding_never_a_user_finding() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    let mut ev = create_key_event("evt-root", "x", "x", "AKIAROOTKEY000000001");
    ev["userIdentity"] = json!({"type": "Root", "arn": format!("arn:aws:iam::{ACCOUNT}:root"), "accountId": ACCOUNT});
    ev["requestParameters"] = Value::Null;
    ev["responseElements"]["accessKey"].as_object_mut().unwrap().remove("userName");
    p.put_cloudtrail(&ev).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["control_id"], "CIS-AWS-1.4");
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["severity"], "CRITICAL");
    assert_eq!(d["user_name"], "<root>");
    // The emulator's account summary shows no root key: the fresh event's
    // own state was counted, and the finding says so.
    assert_eq!(d["event_state_assumed"], true);
    assert!(worker.wait_metric(r#"keywatch_aws_requests_total{service="iam",operation="GetAccountSummary",outcome="ok"}"#, 1.0, T).await);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
}

async fn a_stale_listing_counts_the_event_and_says_so() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_RELIST_BUDGET_MS", "300")]);
    let keys = p.user_with_keys("hana", 1).await;
    // IAM "has not caught up": the event's key is missing from the listing.
    p.put_cloudtrail(&create_key_event("evt-stale", "hana", "hana", "AKIANOTLISTEDYET0001")).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["event_state_assumed"], true);
    assert_eq!(d["active_key_count"], 2);
    let ids: Vec<&str> = d["active_keys"].as_array().unwrap().iter().map(|k| k["access_key_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&keys[0].as_str()) && ids.contains(&"AKIANOTLISTEDYET0001"));
    // It re-listed before assuming: more than one ListAccessKeys.
    assert!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#) >= 2.0);
    // The unlisted key is the one to deactivate (never used, newest).
    assert_eq!(d["recommended_key_to_deactivate"], "AKIANOTLISTEDYET0001");
}

async fn a_failed_finding_is_enriched_for_the_responder() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("ivan", 2).await;
    p.put_cloudtrail(&create_key_event("evt-enrich", "ivan", "ivan", &keys[1])).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["severity"], "MEDIUM", "ivan made his own key");
    let recommended = d["recommended_key_to_deactivate"].as_str().expect("a recommendation");
    assert!(keys.contains(&recommended.to_string()));
    assert!(d["remediation"]
        .as_str()
        .unwrap()
        .contains(&format!("aws iam update-access-key --user-name ivan --access-key-id {recommended} --status Inactive")));
    for k in d["active_keys"].as_array().unwrap() {
        for field in ["last_used_at", "last_used_service", "last_used_region"] {
            assert!(k.get(field).is_some(), "{field} missing in {k}");
        }
        assert_eq!(k["last_use_known"], true, "{k}");
    }
    // The key the event created (IAM lists it created at the event's time)
    // is known never used without asking; only the older key is asked about.
    let created = d["active_keys"].as_array().unwrap().iter().find(|k| k["access_key_id"] == keys[1].as_str()).unwrap();
    assert!(created["last_used_at"].is_null(), "{created}");
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="GetAccessKeyLastUsed",outcome="ok"}"#), 1.0);
}

async fn an_approved_exception_suppresses_until_it_expires() {
    let (moto, p) = setup().await;
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    // Lapses within the 14 days of KEYWATCH_EXCEPTIONS_WARN_DAYS.
    let soon = in_days(10);
    std::fs::write(
        exceptions.path(),
        format!(
            "exceptions:\n  - {{account: \"{ACCOUNT}\", user: \"svc-*\", reason: \"rotation CHG-1\", owner: \"@platform\", expires: {soon}}}\n  - {{account: \"*\", user: \"old-*\", reason: \"expired\", owner: \"nobody@example.com\", expires: 2020-01-01}}\n"
        ),
    )
    .unwrap();
    let path = exceptions.path().to_str().unwrap().to_string();
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_EXCEPTIONS_FILE", &path)]);
    let svc = p.user_with_keys("svc-deploy", 2).await;
    p.put_cloudtrail(&create_key_event("evt-exc-1", "admin", "svc-deploy", &svc[1])).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["suppressed"], true);
    assert_eq!(d["exception"]["owner"], "@platform");
    assert_eq!(d["exception"]["expires"], soon);
    assert_eq!(worker.metric("keywatch_expiring_exceptions"), 1.0, "lapses within the warning days; the expired one is not counted");
    assert!(worker.logs().contains("approved exception lapses soon"), "{}", worker.logs());

    let old = p.user_with_keys("old-job", 2).await;
    p.put_cloudtrail(&create_key_event("evt-exc-2", "admin", "old-job", &old[1])).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["suppressed"], false, "an expired exception no longer applies");
    assert!(d.get("exception").is_none());
}

async fn a_malformed_exceptions_file_stops_start_up_naming_the_entry() {
    let (moto, p) = setup().await;
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(exceptions.path(), "exceptions:\n  - {account: \"123456789012\", user: bob, reason: r, expires: 2030-01-01}\n").unwrap();
    let path = exceptions.path().to_str().unwrap().to_string();
    let mut worker = Worker::start(&moto, &p, &[("KEYWATCH_EXCEPTIONS_FILE", &path)]);
    assert_eq!(worker.wait_exit(T).await, Some(2));
    let logs = worker.logs();
    assert!(logs.contains("KEYWATCH_EXCEPTIONS_FILE") && logs.contains("entry 1") && logs.contains("owner"), "{logs}");
}

async fn member_accounts_are_read_through_the_member_role() {
    const MEMBER: &str = "222233334444";
    let (moto, p) = setup().await;
    // A user with two keys inside the member account.
    let keys = seed_user(&member_iam(&moto, MEMBER).await, "judy", 2, 0).await;
    // Not visible with the worker's own credentials.
    assert!(p.iam.list_access_keys().user_name("judy").send().await.is_err());

    let worker = Worker::start(&moto, &p, &[("KEYWATCH_MEMBER_ROLE", "keywatch-member"), ("KEYWATCH_ACCOUNTS", MEMBER)]);
    p.put_cloudtrail(&in_account(create_key_event("evt-member", "admin", "judy", &keys[1]), MEMBER)).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["account_id"], MEMBER);
    assert_eq!(d["user_name"], "judy");
    assert_eq!(d["active_key_count"], 2);
    // The worker's own account still works without the role.
    let own = p.user_with_keys("kate", 2).await;
    p.put_cloudtrail(&create_key_event("evt-own", "admin", "kate", &own[1])).await;
    let d = one_finding(&p, &worker).await;
    assert_eq!(d["account_id"], ACCOUNT);
    // STS is counted like every AWS call: the worker's own account once at
    // start-up, the member role once (its credentials are cached).
    let sts = |op: &str| worker.metric(&format!(r#"keywatch_aws_requests_total{{service="sts",operation="{op}",outcome="ok"}}"#));
    assert_eq!(sts("GetCallerIdentity"), 1.0, "{}", worker.metrics());
    assert_eq!(sts("AssumeRole"), 1.0, "{}", worker.metrics());
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="sts",operation="AssumeRole",outcome="error"}"#), 0.0);
    // Its message deleted before the next worker starts.
    assert!(p.wait_drained(&p.queue_url, T).await);
    drop(worker);

    // Without KEYWATCH_ACCOUNTS the member account is foreign: acknowledged
    // and counted, nothing listed or assumed there.
    let worker = Worker::start(&moto, &p, &[]);
    p.put_cloudtrail(&in_account(create_key_event("evt-member-2", "admin", "judy", &keys[1]), MEMBER)).await;
    assert!(
        worker.wait_metric(r#"keywatch_events_total{event_name="CreateAccessKey",outcome="foreign_account"}"#, 1.0, T).await,
        "{}",
        worker.logs()
    );
    assert!(p.wait_drained(&p.queue_url, T).await);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#), 0.0);
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="sts",operation="AssumeRole",outcome="ok"}"#), 0.0);
}

/// Two deliveries of one event are answered by one listing (the second
/// reuses the first's, which started after the event): their findings
/// would be identical, and the second is dropped, without a ledger table
/// too (the last word of this process).
async fn a_duplicate_delivery_is_published_once() {
    let (moto, p) = setup().await;
    let worker = Worker::start(&moto, &p, &[]);
    let keys = p.user_with_keys("liam", 2).await;
    let ev = create_key_event("evt-dup", "admin", "liam", &keys[1]);
    p.put_cloudtrail(&ev).await;
    p.put_cloudtrail(&ev).await;
    let found = p.findings(2, Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(found[0]["detail"]["trigger"]["event_id"], "evt-dup");
    assert!(p.wait_drained(&p.queue_url, T).await, "both deliveries acknowledged");
    assert_eq!(worker.metric(r#"keywatch_findings_dropped_total{reason="identical"}"#), 1.0, "{}", worker.metrics());
}

async fn exceptions_reload_on_sighup_and_a_broken_reload_keeps_the_old_ones() {
    let (moto, p) = setup().await;
    let exceptions = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(exceptions.path(), "exceptions: []\n").unwrap();
    let path = exceptions.path().to_str().unwrap().to_string();
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_EXCEPTIONS_FILE", &path)]);
    assert!(worker.wait_ready(T).await);
    let keys = p.user_with_keys("mia", 2).await;
    p.put_cloudtrail(&create_key_event("evt-hup-1", "admin", "mia", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], false);

    std::fs::write(
        exceptions.path(),
        format!("exceptions:\n  - {{account: \"{ACCOUNT}\", user: mia, reason: r, owner: o@example.com, expires: {}}}\n", in_days(30)),
    )
    .unwrap();
    worker.signal("HUP");
    let deadline = std::time::Instant::now() + T;
    while !worker.logs().contains("exceptions reloaded") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.put_cloudtrail(&create_key_event("evt-hup-2", "admin", "mia", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], true, "{}", worker.logs());

    std::fs::write(exceptions.path(), "exceptions: [\n").unwrap();
    worker.signal("HUP");
    let deadline = std::time::Instant::now() + T;
    while !worker.logs().contains("exceptions not reloaded") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.put_cloudtrail(&create_key_event("evt-hup-3", "admin", "mia", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], true, "the previous exceptions stay");
}

async fn exceptions_from_ssm_are_reloaded_when_the_parameter_changes() {
    let (moto, p) = setup().await;
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let put = |text: String| {
        let ssm = ssm.clone();
        async move {
            let put = ssm.put_parameter().name("/keywatch/exceptions").value(text).overwrite(true);
            put.r#type(aws_sdk_ssm::types::ParameterType::String).send().await.unwrap();
        }
    };
    put("exceptions: []\n".into()).await;
    let worker =
        Worker::start(&moto, &p, &[("KEYWATCH_EXCEPTIONS_FILE", "ssm:/keywatch/exceptions"), ("KEYWATCH_EXCEPTIONS_POLL_SECS", "1")]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let keys = p.user_with_keys("nils", 2).await;
    p.put_cloudtrail(&create_key_event("evt-ssm-1", "admin", "nils", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], false);

    // The entry names the user in another case: IAM names match in any case.
    put(format!("exceptions:\n  - {{account: \"{ACCOUNT}\", user: NILS, reason: r, owner: o@example.com, expires: {}}}\n", in_days(30)))
        .await;
    assert!(worker.wait_metric("keywatch_loaded_exceptions", 1.0, T).await, "{}", worker.logs());
    p.put_cloudtrail(&create_key_event("evt-ssm-2", "admin", "nils", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], true, "{}", worker.logs());
    assert!(worker.wait_metric("keywatch_suppressed_findings_total", 1.0, T).await);

    put("exceptions: [\n".into()).await;
    assert!(worker.wait_metric(r#"keywatch_exceptions_reload_failures_total{reason="invalid"}"#, 1.0, T).await, "{}", worker.logs());
    assert_eq!(worker.metric("keywatch_loaded_exceptions"), 1.0, "the previous exceptions stay");
    p.put_cloudtrail(&create_key_event("evt-ssm-3", "admin", "nils", &keys[1])).await;
    assert_eq!(one_finding(&p, &worker).await["suppressed"], true, "the previous exceptions stay");
    assert_eq!(worker.metric(r#"keywatch_exceptions_reload_failures_total{reason="invalid"}"#), 1.0, "a broken version is reported once");
    assert!(worker.metric(r#"keywatch_aws_requests_total{service="ssm",operation="GetParameter",outcome="ok"}"#) >= 3.0);
}

async fn events_for_one_user_arriving_together_share_one_listing() {
    let (moto, p) = setup().await;
    let keys = p.user_with_keys("olga", 2).await;
    for i in 0..5 {
        p.put_cloudtrail(&create_key_event(&format!("evt-burst-{i}"), "admin", "olga", &keys[1])).await;
    }
    // The burst waits in the queue; the worker takes it in one receive.
    let worker = Worker::start(&moto, &p, &[]);
    let found = p.findings(5, T).await;
    assert_eq!(found.len(), 5, "each message still gets its finding:\n{}", worker.logs());
    assert!(p.wait_drained(&p.queue_url, T).await, "each message acknowledged on its own");
    let lists = worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#);
    let coalesced = worker.metric(r#"keywatch_coalesced_checks_total{how="in_flight"}"#)
        + worker.metric(r#"keywatch_coalesced_checks_total{how="recent"}"#);
    assert_eq!(lists + coalesced, 5.0, "every check either listed or joined a listing");
    assert!(lists < 5.0 && coalesced >= 1.0, "lists {lists}, coalesced {coalesced}");
    // Last use is asked once per key, not once per event, and not at all
    // for the key the events report created (IAM agrees on when).
    assert_eq!(worker.metric(r#"keywatch_aws_requests_total{service="iam",operation="GetAccessKeyLastUsed",outcome="ok"}"#), 1.0);
}

async fn a_listing_serves_the_users_older_events_never_a_newer_one() {
    let (moto, p) = setup().await;
    let keys = p.user_with_keys("pia", 2).await;
    for i in 0..3 {
        p.put_cloudtrail(&create_key_event(&format!("evt-backlog-{i}"), "admin", "pia", &keys[1])).await;
    }
    // One message per receive: at most two of the three are checked at
    // once, so the third starts after a listing has finished.
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_MAX_MESSAGES", "1")]);
    let found = p.findings(3, T).await;
    assert_eq!(found.len(), 3, "{}", worker.logs());
    assert!(found.iter().all(|f| f["detail"]["active_key_count"] == 2));
    assert!(p.wait_drained(&p.queue_url, T).await);
    let lists = r#"keywatch_aws_requests_total{service="iam",operation="ListAccessKeys",outcome="ok"}"#;
    let recent = r#"keywatch_coalesced_checks_total{how="recent"}"#;
    assert_eq!(worker.metric(lists), 1.0, "the first event's listing started after all three happened");
    let in_flight = r#"keywatch_coalesced_checks_total{how="in_flight"}"#;
    assert_eq!(worker.metric(recent) + worker.metric(in_flight), 2.0);
    assert!(worker.metric(recent) >= 1.0, "the third event reused the finished listing");
    let reused = worker.metric(recent);

    // Keys change after that listing: key 0 replaced by a new one (their
    // own events are not sent). An event for key 1 that happens now is
    // consistent with the old listing (key 1 is active there too), yet must
    // not reuse it: it started before the event.
    p.iam.delete_access_key().user_name("pia").access_key_id(&keys[0]).send().await.unwrap();
    let third = p.create_key("pia").await;
    p.put_cloudtrail(&update_key_event("evt-after", "admin", "pia", &keys[1], "Active")).await;
    let f = one_finding(&p, &worker).await;
    let active: Vec<&str> = f["active_keys"].as_array().unwrap().iter().map(|k| k["access_key_id"].as_str().unwrap()).collect();
    assert_eq!(active.len(), 2);
    assert!(active.contains(&third.as_str()) && !active.contains(&keys[0].as_str()), "listed again: {active:?}");
    assert_eq!(worker.metric(lists), 2.0);
    assert_eq!(worker.metric(recent), reused);
}
