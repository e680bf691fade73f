//! Quarantine in the worker on the emulator, with the real binary: a key an
//! administrator planted (fresh, never used) is deactivated before its
//! finding is published, which says so and how to undo it; a user's own
//! second key is not; the circuit breaker, the kill switches (the
//! environment variable and the SSM parameter) and two planted keys of one
//! user in one batch (never the only active key) leave keys active and the
//! finding says why.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

trials! {
    multi a_planted_key_is_deactivated_and_says_how_to_undo_it_and_a_self_rotation_is_not,
    multi the_breaker_leaves_the_key_beyond_the_hours_quota_active_and_says_why,
    multi the_kill_switches_leave_a_planted_key_active,
    multi two_planted_keys_in_one_batch_never_leave_the_user_without_an_active_key,
    multi with_a_ledger_the_quarantine_is_journalled_there,
}

const T: Duration = Duration::from_secs(30);

fn on() -> Vec<(&'static str, &'static str)> {
    vec![("KEYWATCH_QUARANTINE_ACCOUNTS", ACCOUNT)]
}

fn quarantine_of(envelope: &Value) -> &Value {
    &envelope["detail"]["quarantine"]
}

async fn status(p: &Pipeline, user: &str, key: &str) -> String {
    let out = p.iam.list_access_keys().user_name(user).send().await.unwrap();
    let k = out.access_key_metadata().iter().find(|k| k.access_key_id() == Some(key)).expect("the key");
    k.status().unwrap().as_str().to_string()
}

/// A user with one key, then a key `actor` makes for it and its event.
async fn second_key(p: &Pipeline, user: &str, actor: &str) -> String {
    p.user_with_keys(user, 1).await;
    let key = p.create_key(user).await;
    p.put_cloudtrail(&create_key_event(&format!("evt-{user}-2"), actor, user, &key)).await;
    key
}

async fn a_planted_key_is_deactivated_and_says_how_to_undo_it_and_a_self_rotation_is_not() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let worker = Worker::start(&moto, &p, &on());
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let planted = second_key(&p, "vic", "admin").await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    let q = quarantine_of(&found[0]);
    assert_eq!((q["action"].as_str(), q["access_key_id"].as_str()), (Some("deactivated"), Some(planted.as_str())), "{q}");
    assert_eq!(q["undo"], format!("aws iam update-access-key --user-name vic --access-key-id {planted} --status Active"));
    assert!(q["at"].is_string());
    assert_eq!(status(&p, "vic", &planted).await, "Inactive");
    assert!(worker.logs().contains("journal") && worker.logs().contains(&planted), "journalled:\n{}", worker.logs());
    assert_eq!(worker.metric(r#"keywatch_quarantines_total{action="deactivated"}"#), 1.0, "{}", worker.metrics());

    // The user's own second key: no quarantine.
    let own = second_key(&p, "wes", "wes").await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert!(quarantine_of(&found[0]).is_null(), "{}", found[0]);
    assert_eq!(status(&p, "wes", &own).await, "Active");
}

async fn the_breaker_leaves_the_key_beyond_the_hours_quota_active_and_says_why() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let mut env = on();
    env.push(("KEYWATCH_QUARANTINE_MAX_PER_HOUR", "2"));
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    for (i, user) in ["ann", "ben", "cat"].into_iter().enumerate() {
        let planted = second_key(&p, user, "admin").await;
        let found = p.findings(1, T).await;
        assert_eq!(found.len(), 1, "{}", worker.logs());
        let q = quarantine_of(&found[0]);
        if i < 2 {
            assert_eq!(q["action"], "deactivated", "{q}");
            assert_eq!(status(&p, user, &planted).await, "Inactive");
        } else {
            assert_eq!((q["action"].as_str(), q["reason"].as_str()), (Some("withheld"), Some("breaker_open")), "{q}");
            assert!(q.get("undo").is_none());
            assert_eq!(status(&p, user, &planted).await, "Active", "the third in the hour is left active");
            assert_eq!(worker.metric(r#"keywatch_quarantines_total{action="withheld"}"#), 1.0, "{}", worker.metrics());
        }
    }
}

async fn the_kill_switches_leave_a_planted_key_active() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let mut env = on();
    env.push(("KEYWATCH_QUARANTINE_DISABLED", "true"));
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let planted = second_key(&p, "dan", "admin").await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(
        (quarantine_of(&found[0])["action"].as_str(), quarantine_of(&found[0])["reason"].as_str()),
        (Some("withheld"), Some("kill_switch"))
    );
    assert_eq!(status(&p, "dan", &planted).await, "Active");
    drop(worker);

    // The SSM parameter says off.
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    ssm.put_parameter().name("/keywatch/quarantine").value("off").r#type(aws_sdk_ssm::types::ParameterType::String).send().await.unwrap();
    let mut env = on();
    env.push(("KEYWATCH_QUARANTINE_KILL_SWITCH_PARAMETER", "/keywatch/quarantine"));
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let planted = second_key(&p, "eve", "admin").await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(quarantine_of(&found[0])["reason"], "kill_switch", "{}", found[0]);
    assert_eq!(status(&p, "eve", &planted).await, "Active");
}

async fn two_planted_keys_in_one_batch_never_leave_the_user_without_an_active_key() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    // Both keys made by an administrator, fresh and never used, their
    // events on the queue before the worker starts: one batch, checked at
    // once, each seeing two active keys.
    p.iam.create_user().user_name("fay").send().await.unwrap();
    let keys = [p.create_key("fay").await, p.create_key("fay").await];
    for (i, key) in keys.iter().enumerate() {
        p.put_cloudtrail(&create_key_event(&format!("evt-fay-{i}"), "admin", "fay", key)).await;
    }
    let worker = Worker::start(&moto, &p, &on());
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let mut found = p.findings(2, T).await;
    assert!(p.wait_drained(&p.queue_url, T).await, "{}", worker.logs());
    found.extend(p.findings(2, Duration::from_secs(2)).await);
    let mut active = 0;
    for key in &keys {
        active += usize::from(status(&p, "fay", key).await == "Active");
    }
    assert_eq!(active, 1, "exactly one key deactivated, never both:\n{found:?}\n{}", worker.logs());
    let actions: Vec<(Option<&str>, Option<&str>)> =
        found.iter().map(|f| (quarantine_of(f)["action"].as_str(), quarantine_of(f)["reason"].as_str())).collect();
    assert!(actions.contains(&(Some("deactivated"), None)), "{actions:?}");
    if found.len() == 2 {
        assert!(actions.contains(&(Some("withheld"), Some("only_active_key"))), "{actions:?}");
    }
}

async fn with_a_ledger_the_quarantine_is_journalled_there() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 5).await;
    let table = create_ledger_table(&config, "keywatch-ledger").await;
    let mut env = on();
    env.push(("KEYWATCH_LEDGER_TABLE", table.as_str()));
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let planted = second_key(&p, "gus", "admin").await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(quarantine_of(&found[0])["action"], "deactivated");
    let item = ledger_item(&config, &table, &format!("quarantine#{planted}")).await.expect("the journal entry in the ledger");
    let entry: Value = serde_json::from_str(attr_s(&item, "journal").expect("journal")).unwrap();
    assert_eq!((entry["user_name"].as_str(), entry["action"].as_str()), (Some("gus"), Some("deactivated")), "{entry}");
    assert_eq!(entry["undo"], quarantine_of(&found[0])["undo"]);
    assert_eq!(entry["actor_arn"], format!("arn:aws:iam::{ACCOUNT}:user/admin"));
}
