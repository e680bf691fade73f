//! The CloudFormation template proven to wire the pipeline, not only to
//! lint: `infra/central.yaml` is deployed to the emulator's CloudFormation
//! (`infra/local_deploy.py`, without the parts the emulator lacks: ECS,
//! autoscaling, alarms) and the real worker runs against the queue, the
//! dead-letter queue, the rules, the buses and the ledger table that the
//! stack created.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

trials! {
    multi the_central_stack_wires_the_pipeline_end_to_end,
}

const T: Duration = Duration::from_secs(60);

async fn the_central_stack_wires_the_pipeline_end_to_end() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    // The SIEM stand-in: the stack's example findings rule targets it.
    let siem_url = sqs.create_queue().queue_name("siem").send().await.unwrap().queue_url.unwrap();
    let siem_arn = sqs
        .get_queue_attributes()
        .queue_url(&siem_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();

    let out = Command::new(venv_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/local_deploy.py"))
        .args(["--endpoint-url", &moto.url])
        .args(["--parameter", "MaxReceiveCount=2"])
        .args(["--parameter", &format!("FindingsTargetArn={siem_arn}")])
        .args(["--parameter", "OrganizationId=o-abcdefghij"])
        .output()
        .expect("run infra/local_deploy.py");
    assert!(out.status.success(), "deploy failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let outputs: Value = serde_json::from_slice(&out.stdout).expect("stack outputs as JSON");
    let output = |k: &str| outputs[k].as_str().unwrap_or_else(|| panic!("output {k} missing: {outputs}")).to_string();

    let p = Pipeline {
        sqs,
        iam: aws_sdk_iam::Client::new(&config),
        events: aws_sdk_eventbridge::Client::new(&config),
        queue_url: output("QueueUrl"),
        dlq_url: output("DeadLetterQueueUrl"),
        findings_url: siem_url,
    };
    // The stack's queue keeps a 30 s+ visibility timeout; the worker asks
    // for 1 s on receive so that redrive is quick here.
    let mut env = vec![("KEYWATCH_VISIBILITY_TIMEOUT_SECS", "1".to_string())];
    let bus = output("FindingsBusName");
    env.push(("KEYWATCH_FINDINGS_BUS", bus));
    // The stack's ledger table, as the task definition passes it.
    let ledger = output("LedgerTableName");
    env.push(("KEYWATCH_LEDGER_TABLE", ledger.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    // Through the default-bus rule.
    let keys = p.user_with_keys("nora", 2).await;
    p.put_cloudtrail(&create_key_event("evt-stack-1", "admin", "nora", &keys[1])).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "{}", worker.logs());
    assert_eq!(found[0]["detail"]["user_name"], "nora");
    assert_eq!(found[0]["detail"]["status"], "FAILED");

    // Through the organisation bus and its rule.
    let org_bus = output("OrganizationBusArn");
    let other = p.user_with_keys("otto", 2).await;
    let detail = create_key_event("evt-stack-2", "admin", "otto", &other[1]);
    p.put_cloudtrail_on(Some(&org_bus), &detail).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "org bus: {}", worker.logs());
    assert_eq!(found[0]["detail"]["user_name"], "otto");

    // Both are in the stack's ledger, and `keywatch findings` lists them.
    let (code, out, err) = keywatch(&moto, &["findings", "--ledger-table", &ledger, "--json", "--fail-on-open"], &[]);
    assert_eq!(code, Some(1), "open violations: {err}");
    let users: Vec<String> =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["user_name"].as_str().unwrap().to_string()).collect();
    assert_eq!(users.len(), 2, "{out}");
    assert!(users.contains(&"nora".to_string()) && users.contains(&"otto".to_string()), "{out}");

    // A poison message ends in the stack's dead-letter queue.
    p.send_raw("poison").await;
    let deadline = std::time::Instant::now() + T;
    while p.depth(&p.dlq_url).await.0 < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(p.depth(&p.dlq_url).await.0, 1, "{}", worker.logs());
    assert!(p.wait_drained(&p.queue_url, T).await, "input queue not drained");
}
