//! `keywatch remediate` on the emulator, with the real binary: a plan and
//! its application over two accounts with users in every state, the undo,
//! the only active key, the circuit breaker.
//!
//! Last use: the emulator marks a key used when a request signed with it
//! reaches it, and cannot be given a date in the past. So "in use" is a key
//! used during the test (within the default 7-day --recent-use), "never
//! used" a key no request was signed with, and which of two used keys was
//! used longer ago is told apart with `--recent-use 0s` and a pause of a
//! second between the two uses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use serde_json::Value;

use crate::common::*;

trials! {
    multi a_plan_and_its_application_over_two_accounts_act_only_where_the_guards_allow,
    multi undo_reactivates_exactly_what_was_deactivated_and_refuses_a_key_changed_since,
    multi the_only_active_key_is_never_deactivated_even_by_a_plan_that_names_it,
    multi the_circuit_breaker_stops_a_run_at_max_actions_and_on_repeated_failures,
    multi accounts_tagged_as_production_in_the_organization_come_first,
    multi a_key_whose_last_use_cannot_be_read_is_never_chosen,
    multi from_the_ledger_the_plan_takes_the_users_keywatch_saw_fail,
}

const MEMBER: &str = "222233334444";
const MEMBER_ENV: [(&str, &str); 2] = [("KEYWATCH_ACCOUNTS", MEMBER), ("KEYWATCH_MEMBER_ROLE", "keywatch-member")];
const T: Duration = Duration::from_secs(60);

/// Signs a request with the key, which the emulator then counts as used.
async fn use_key(moto: &Moto, id: &str, secret: &str) {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(id, secret, None, None, "user"))
        .load()
        .await;
    aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.unwrap();
}

/// A user with a key per entry of `used`, each used (`true`, a second
/// after the previous use) or never used; the keys' ids.
async fn user(moto: &Moto, iam: &aws_sdk_iam::Client, name: &str, used: &[bool]) -> Vec<String> {
    iam.create_user().user_name(name).send().await.unwrap();
    let mut ids = Vec::new();
    for &u in used {
        let key = iam.create_access_key().user_name(name).send().await.unwrap().access_key.unwrap();
        if u {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            use_key(moto, &key.access_key_id, &key.secret_access_key).await;
        }
        ids.push(key.access_key_id);
    }
    ids
}

/// The status of each key of `name`, by id.
async fn statuses(iam: &aws_sdk_iam::Client, name: &str) -> BTreeMap<String, String> {
    let out = iam.list_access_keys().user_name(name).send().await.unwrap();
    out.access_key_metadata().iter().map(|k| (k.access_key_id().unwrap().to_string(), k.status().unwrap().as_str().to_string())).collect()
}

fn all_active(ids: &[String]) -> BTreeMap<String, String> {
    ids.iter().map(|k| (k.clone(), "Active".to_string())).collect()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// The summary line and the other lines of a run's standard output.
fn split(stdout: &str) -> (Value, Vec<Value>) {
    let mut lines = json_lines(stdout);
    let summary = lines.pop().expect("a summary line");
    (summary["summary"].clone(), lines)
}

fn outcome(summary: &Value, name: &str) -> u64 {
    summary["outcomes"][name].as_u64().unwrap_or_else(|| panic!("{name} in {summary}"))
}

async fn a_plan_and_its_application_over_two_accounts_act_only_where_the_guards_allow() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let both_used = user(&moto, &p.iam, "both-used", &[true, true]).await;
    let one_unused = user(&moto, &p.iam, "one-unused", &[true, false]).await;
    let excepted = user(&moto, &p.iam, "excepted", &[true, false]).await;
    let changes = user(&moto, &p.iam, "changes", &[true, false]).await;
    let mixed = seed_user(&p.iam, "mixed", 1, 1).await;
    let member = member_iam(&moto, MEMBER).await;
    let m_unused = user(&moto, &member, "m-unused", &[true, false]).await;
    let m_both = user(&moto, &member, "m-both", &[true, true]).await;
    let dir = tempfile::tempdir().unwrap();
    let exceptions = dir.path().join("exceptions.yaml");
    std::fs::write(
        &exceptions,
        format!(
            "exceptions:\n  - account: \"{ACCOUNT}\"\n    user: \"excepted\"\n    reason: rotation\n    owner: ops@example.com\n    expires: {}\n",
            in_days(90)
        ),
    )
    .unwrap();
    let exceptions = exceptions.to_str().unwrap();
    let env = [MEMBER_ENV[0], MEMBER_ENV[1], ("KEYWATCH_EXCEPTIONS_FILE", exceptions), ("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS)];

    // The plan: the member account first, a line per failing user.
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--first", MEMBER], &env);
    assert_eq!(code, Some(0), "a plan with actions in it: {stderr}");
    let (summary, plan) = split(&stdout);
    let by_user: BTreeMap<&str, (&str, Option<&str>, &str)> = plan
        .iter()
        .map(|l| {
            (l["user_name"].as_str().unwrap(), (l["action"].as_str().unwrap(), l["access_key_id"].as_str(), l["reason"].as_str().unwrap()))
        })
        .collect();
    let want = BTreeMap::from([
        ("both-used", ("skip", None, "needs_owner")),
        ("one-unused", ("deactivate", Some(one_unused[1].as_str()), "never_used")),
        ("excepted", ("skip", None, "excepted")),
        ("changes", ("deactivate", Some(changes[1].as_str()), "never_used")),
        ("m-unused", ("deactivate", Some(m_unused[1].as_str()), "never_used")),
        ("m-both", ("skip", None, "needs_owner")),
    ]);
    assert_eq!(by_user, want, "mixed has one active key: no candidate\n{stderr}");
    let accounts: Vec<&str> = plan.iter().map(|l| l["account_id"].as_str().unwrap()).collect();
    assert_eq!(accounts, [MEMBER, MEMBER, ACCOUNT, ACCOUNT, ACCOUNT, ACCOUNT], "--first goes first");
    let line = plan.iter().find(|l| l["user_name"] == "one-unused").unwrap();
    let uses: Vec<(&str, &str)> =
        line["keys"].as_array().unwrap().iter().map(|k| (k["access_key_id"].as_str().unwrap(), k["last_use"].as_str().unwrap())).collect();
    assert_eq!(uses, [(one_unused[0].as_str(), "at"), (one_unused[1].as_str(), "never")], "each key's last use");
    assert_eq!((summary["intended"].as_u64(), outcome(&summary, "needs_owner")), (Some(3), 2));
    for (name, ids) in [("both-used", &both_used), ("one-unused", &one_unused), ("changes", &changes)] {
        assert_eq!(statuses(&p.iam, name).await, all_active(ids), "a plan changes nothing");
    }
    // With no use counted recent, the key of both-used used first is chosen.
    let (_, stdout, _) = keywatch(&moto, &["remediate", "--users", "both-used", "--recent-use", "0s"], &env);
    let (_, zero) = split(&stdout);
    assert_eq!((zero[0]["access_key_id"].as_str(), zero[0]["reason"].as_str()), (Some(both_used[0].as_str()), Some("least_recently_used")));

    // Between plan and apply, the owner of `changes` rotates: the other
    // key deleted, a new one created and used. The planned key would still
    // be chosen, but the user is not as planned.
    p.iam.delete_access_key().user_name("changes").access_key_id(&changes[0]).send().await.unwrap();
    let new = p.iam.create_access_key().user_name("changes").send().await.unwrap().access_key.unwrap();
    use_key(&moto, &new.access_key_id, &new.secret_access_key).await;
    let plan_file = dir.path().join("plan.jsonl");
    std::fs::write(&plan_file, stdout_of_plan(&plan)).unwrap();
    let journal = dir.path().join("journal.jsonl");
    let args = ["remediate", "--apply", "--from-plan", plan_file.to_str().unwrap(), "--journal", journal.to_str().unwrap()];
    let (code, stdout, stderr) = keywatch(&moto, &args, &env);
    assert_eq!(code, Some(1), "partly done: {stderr}");
    let (summary, actions) = split(&stdout);
    assert_eq!((outcome(&summary, "deactivate"), outcome(&summary, "changed")), (2, 1), "{stderr}");
    let deactivated: Vec<(&str, &str)> =
        actions.iter().map(|a| (a["user_name"].as_str().unwrap(), a["access_key_id"].as_str().unwrap())).collect();
    assert_eq!(deactivated, [("m-unused", m_unused[1].as_str()), ("one-unused", one_unused[1].as_str())]);
    assert_eq!(json_lines(&std::fs::read_to_string(&journal).unwrap()), actions, "the journal has each action");
    let entry = &actions[1];
    assert_eq!(entry["result"], "done");
    let before: Vec<&str> = entry["before"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    let after: Vec<&str> = entry["after"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!((before, after), (vec!["Active", "Active"], vec!["Active", "Inactive"]));
    assert!(stderr.contains("changed"), "the summary table: {stderr}");

    // IAM: exactly the two keys deactivated, never deleted.
    let mut one = all_active(&one_unused);
    one.insert(one_unused[1].clone(), "Inactive".into());
    assert_eq!(statuses(&p.iam, "one-unused").await, one);
    let mut m = all_active(&m_unused);
    m.insert(m_unused[1].clone(), "Inactive".into());
    assert_eq!(statuses(&member, "m-unused").await, m);
    assert_eq!(statuses(&member, "m-both").await, all_active(&m_both));
    assert_eq!(statuses(&p.iam, "both-used").await, all_active(&both_used));
    assert_eq!(statuses(&p.iam, "excepted").await, all_active(&excepted));
    assert_eq!(statuses(&p.iam, "changes").await, all_active(&[changes[1].clone(), new.access_key_id.clone()]));
    assert_eq!(
        statuses(&p.iam, "mixed").await,
        BTreeMap::from([(mixed[0].clone(), "Active".into()), (mixed[1].clone(), "Inactive".into())])
    );

    // The bus: an action event and the re-check's PASSED per deactivation.
    let found = p.findings(4, T).await;
    let events: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|e| {
            let status = e["detail"]["status"].as_str().or(e["detail"]["action"].as_str()).unwrap();
            (e["detail-type"].as_str().unwrap(), e["detail"]["user_name"].as_str().unwrap(), status)
        })
        .collect();
    for want in [
        ("IAM Access Key Remediation", "m-unused", "deactivate"),
        ("IAM Access Key Remediation", "one-unused", "deactivate"),
        ("IAM Access Key Finding", "m-unused", "PASSED"),
        ("IAM Access Key Finding", "one-unused", "PASSED"),
    ] {
        assert!(events.contains(&want), "{want:?} in {events:?}");
    }

    // A fresh plan and run sees `changes` as it is now (its key never used
    // beside the new one in use): done. Then nothing is left to do.
    let journal = dir.path().join("again.jsonl");
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--apply", "--journal", journal.to_str().unwrap()], &env);
    assert_eq!(code, Some(0), "done: {stderr}");
    let (_, actions) = split(&stdout);
    assert_eq!((actions.len(), actions[0]["access_key_id"].as_str()), (1, Some(changes[1].as_str())));
    let journal = dir.path().join("third.jsonl");
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--apply", "--journal", journal.to_str().unwrap()], &env);
    assert_eq!(code, Some(3), "nothing to do: {stdout}\n{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
}

/// The plan lines as a plan file holds them.
fn stdout_of_plan(plan: &[Value]) -> String {
    plan.iter().map(|l| format!("{l}\n")).collect()
}

async fn undo_reactivates_exactly_what_was_deactivated_and_refuses_a_key_changed_since() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let a = user(&moto, &p.iam, "alice", &[true, false]).await;
    let b = user(&moto, &p.iam, "bob", &[true, false]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let env = [("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS)];

    let (code, _, stderr) = keywatch(&moto, &["remediate", "--apply", "--journal", journal], &env);
    assert_eq!(code, Some(0), "{stderr}");
    for (name, ids) in [("alice", &a), ("bob", &b)] {
        assert_eq!(statuses(&p.iam, name).await[&ids[1]], "Inactive");
    }
    // A journal is never overwritten.
    let (code, _, stderr) = keywatch(&moto, &["remediate", "--apply", "--journal", journal], &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("KEYWATCH_REMEDIATE_JOURNAL"), "{stderr}");

    // Bob's owner re-activates his key by hand: a change since the run.
    p.iam.update_access_key().user_name("bob").access_key_id(&b[1]).status("Active".into()).send().await.unwrap();

    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--undo", journal], &env);
    assert_eq!(code, Some(1), "partly done: bob's key changed since: {stderr}");
    let (summary, actions) = split(&stdout);
    assert_eq!((outcome(&summary, "deactivate"), outcome(&summary, "changed")), (1, 1), "{stdout}");
    assert_eq!(
        (actions.len(), actions[0]["action"].as_str(), actions[0]["access_key_id"].as_str()),
        (1, Some("reactivate"), Some(a[1].as_str()))
    );
    assert_eq!(statuses(&p.iam, "alice").await, all_active(&a), "alice exactly as before the run");
    assert_eq!(statuses(&p.iam, "bob").await, all_active(&b));

    // The re-check after the undo: alice fails again.
    let found = p.findings(4, T).await;
    assert!(
        found.iter().any(|e| e["detail-type"] == "IAM Access Key Finding"
            && e["detail"]["user_name"] == "alice"
            && e["detail"]["status"] == "FAILED"),
        "{found:?}"
    );
    assert!(found.iter().any(|e| e["detail-type"] == "IAM Access Key Remediation" && e["detail"]["action"] == "reactivate"));

    // Undone already: refused, nothing changed.
    let (code, stdout, _) = keywatch(&moto, &["remediate", "--undo", journal], &env);
    assert_eq!(code, Some(1));
    assert_eq!(outcome(&split(&stdout).0, "changed"), 2);
}

async fn the_only_active_key_is_never_deactivated_even_by_a_plan_that_names_it() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let keys = seed_user(&p.iam, "mixed", 1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    // A plan line naming the only active key, the user's keys as they are.
    let line = serde_json::json!({
        "action": "deactivate", "account_id": ACCOUNT, "user_name": "mixed", "user_arn": format!("arn:aws:iam::{ACCOUNT}:user/mixed"),
        "access_key_id": keys[0], "reason": "never_used", "planned_at": "2026-12-01T00:00:00Z",
        "keys": [
            {"access_key_id": keys[0], "status": "Active", "created_at": null, "last_use": "never", "last_used_at": null},
            {"access_key_id": keys[1], "status": "Inactive", "created_at": null, "last_use": "never", "last_used_at": null},
        ],
    });
    let plan = dir.path().join("plan.jsonl");
    std::fs::write(&plan, format!("{line}\n")).unwrap();
    let journal = dir.path().join("journal.jsonl");
    let args = ["remediate", "--apply", "--from-plan", plan.to_str().unwrap(), "--journal", journal.to_str().unwrap()];
    let (code, stdout, stderr) = keywatch(&moto, &args, &[("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS)]);
    assert_eq!(code, Some(1), "the plan's one action not made: {stderr}");
    let (summary, actions) = split(&stdout);
    assert_eq!((outcome(&summary, "nothing_to_do"), actions.len()), (1, 0), "{stdout}");
    assert_eq!(statuses(&p.iam, "mixed").await, BTreeMap::from([(keys[0].clone(), "Active".into()), (keys[1].clone(), "Inactive".into())]));
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), "", "no action");
}

async fn the_circuit_breaker_stops_a_run_at_max_actions_and_on_repeated_failures() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let mut users = Vec::new();
    for name in ["u1", "u2", "u3"] {
        users.push(user(&moto, &p.iam, name, &[true, false]).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j1.jsonl");
    let env = [("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS)];
    let args = ["remediate", "--apply", "--max-actions", "2", "--batch-size", "1", "--pause", "1s", "--journal", journal.to_str().unwrap()];
    let started = Instant::now();
    let (code, stdout, stderr) = keywatch(&moto, &args, &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1), "a pause between the two batches");
    let (summary, _) = split(&stdout);
    assert_eq!((outcome(&summary, "deactivate"), outcome(&summary, "not_reached")), (2, 1), "{stdout}");
    assert_eq!(summary["stopped"], "max_actions");
    assert!(stderr.contains("run it again"), "{stderr}");
    assert_eq!(statuses(&p.iam, "u3").await, all_active(&users[2]), "the third user not reached");

    // UpdateAccessKey denied (the emulator enforces no policy: the proxy
    // answers AccessDenied): the run stops after two failures in a row.
    for name in ["f1", "f2", "f3", "f4"] {
        user(&moto, &p.iam, name, &[true, false]).await;
    }
    let proxy = FaultProxy::start(moto.port);
    proxy.set(Fault::UpdateAccessKeyDenied);
    let journal = dir.path().join("j2.jsonl");
    let args = ["remediate", "--apply", "--users", "f1,f2,f3,f4", "--max-failures", "2", "--journal", journal.to_str().unwrap()];
    let (code, stdout, stderr) = keywatch(&moto, &args, &[env[0], ("AWS_ENDPOINT_URL", proxy.url.as_str())]);
    assert_eq!(code, Some(1), "{stderr}");
    let (summary, actions) = split(&stdout);
    assert_eq!((outcome(&summary, "failed"), outcome(&summary, "not_reached")), (2, 2), "{stdout}");
    assert_eq!(summary["stopped"], "max_failures");
    assert!(actions.iter().all(|a| a["result"] == "failed" && a["error"].as_str().unwrap().contains("AccessDenied")), "{actions:?}");
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::Relaxed), 2, "no third try");
}

async fn accounts_tagged_as_production_in_the_organization_come_first() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 5).await;
    let org = aws_sdk_organizations::Client::new(&config);
    org.create_organization().send().await.unwrap();
    let mut created = Vec::new();
    for name in ["staging", "production"] {
        let status = org.create_account().account_name(name).email(format!("{name}@example.com")).send().await.unwrap();
        created.push(status.create_account_status().unwrap().account_id().unwrap().to_string());
    }
    let production = created[1].clone();
    let tag = aws_sdk_organizations::types::Tag::builder().key("environment").value("production").build().unwrap();
    org.tag_resource().resource_id(&production).tags(tag).send().await.unwrap();
    user(&moto, &p.iam, "own-user", &[true, false]).await;
    for account in &created {
        let iam = member_iam(&moto, account).await;
        user(&moto, &iam, "member-user", &[true, false]).await;
    }
    let env = [("KEYWATCH_ACCOUNTS", "organization"), MEMBER_ENV[1]];

    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--plan", "--first-tag", "environment=production"], &env);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, plan) = split(&stdout);
    let accounts: Vec<&str> = plan.iter().map(|l| l["account_id"].as_str().unwrap()).collect();
    assert_eq!(accounts.len(), 3, "{stdout}");
    assert_eq!(accounts[0], production, "the production account first: {accounts:?}");
    // Without the tag, the worker's own account first.
    let (_, stdout, _) = keywatch(&moto, &["remediate", "--plan"], &env);
    assert_eq!(split(&stdout).1[0]["account_id"], ACCOUNT);
}

/// `GetAccessKeyLastUsed` refused (the proxy answers `AccessDenied`; the
/// emulator enforces no policy): the never-used key cannot be told from
/// one in use, so nothing is chosen.
async fn a_key_whose_last_use_cannot_be_read_is_never_chosen() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let keys = user(&moto, &p.iam, "unknown", &[true, false]).await;
    let proxy = FaultProxy::start(moto.port);
    proxy.set(Fault::LastUsedDenied);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let env = [("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS), ("AWS_ENDPOINT_URL", proxy.url.as_str())];
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--apply", "--journal", journal.to_str().unwrap()], &env);
    assert_eq!(code, Some(3), "nothing it may do: {stderr}");
    let (summary, actions) = split(&stdout);
    assert_eq!((outcome(&summary, "last_use_unknown"), actions.len()), (1, 0), "{stdout}");
    assert!(proxy.injected.load(std::sync::atomic::Ordering::Relaxed) >= 2, "both look-ups refused");
    assert_eq!(statuses(&p.iam, "unknown").await, all_active(&keys));
}

/// `--from-ledger`: the plan's users are the ledger's open violations, not
/// a scan of every user. vic's violation was reported (a worker with the
/// ledger published it); walt's two keys were never reported: a scan finds
/// both, the ledger vic alone. The plan lists vic's keys again all the same.
async fn from_the_ledger_the_plan_takes_the_users_keywatch_saw_fail() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 5).await;
    let table = create_ledger_table(&config, "keywatch-ledger").await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_LEDGER_TABLE", table.as_str())]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let vic = user(&moto, &p.iam, "vic", &[true, false]).await;
    user(&moto, &p.iam, "walt", &[true, false]).await;
    p.put_cloudtrail(&create_key_event("evt-vic-2", "admin", "vic", &vic[1])).await;
    assert_eq!(p.findings(1, T).await.len(), 1, "{}", worker.logs());

    let users_of = |stdout: &str| {
        let (_, plan) = split(stdout);
        plan.iter().map(|l| l["user_name"].as_str().unwrap().to_string()).collect::<Vec<String>>()
    };
    let ledger_env = [("KEYWATCH_LEDGER_TABLE", table.as_str())];
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--plan", "--from-ledger"], &ledger_env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(users_of(&stdout), ["vic"], "{stdout}\n{stderr}");
    let (_, plan) = split(&stdout);
    assert_eq!(plan[0]["access_key_id"].as_str(), Some(vic[1].as_str()), "the never-used key");
    let (code, stdout, stderr) = keywatch(&moto, &["remediate", "--plan"], &ledger_env);
    assert_eq!(code, Some(0), "{stderr}");
    let mut scanned = users_of(&stdout);
    scanned.sort();
    assert_eq!(scanned, ["vic", "walt"], "a scan finds walt too");
    // --from-ledger without a table is refused before anything is read.
    let (code, _, stderr) = keywatch(&moto, &["remediate", "--plan", "--from-ledger"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("ledger-table"), "{stderr}");
}
