//! The app as the binary wires it ([`keywatch::app::App`]), in process,
//! against the instant AWS backend the throughput benchmark uses: a backlog
//! is drained with `--once`, every message deleted once, every finding
//! published, and the run returns by itself when the queue is empty.

#[path = "../../benches/support/mod.rs"]
mod support;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use keywatch::app::App;
use keywatch::config::RunArgs;
use support::responder::{EventTime, Op, Responder, ACCOUNT};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_drains_the_backlog_then_returns() {
    const MESSAGES: usize = 300;
    const USERS: usize = 30;
    let responder = Responder::start(MESSAGES, USERS, Duration::from_millis(500), EventTime::Backlog);
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&responder.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let queue_url = format!("{}/{ACCOUNT}/bench-input", responder.url);
    let flags = ["--once", "--wait-secs", "1", "--receivers", "2", "--iam-rate-per-account", "0", "--queue-metrics-interval-secs", "0"];
    let args = RunArgs::from_flags(&queue_url, "keywatch-findings", &flags).unwrap();
    let app = App::build(&args, &sdk, None, &CancellationToken::new()).await.expect("the app builds");

    let run = tokio::time::timeout(Duration::from_secs(120), app.run(CancellationToken::new())).await;
    run.expect("--once returns once the queue is empty").expect("no drain timeout");

    let st = responder.shared.state.lock().unwrap();
    assert_eq!(st.deleted_count, MESSAGES, "every message deleted");
    assert_eq!(st.duplicate_deletes, 0, "none deleted twice");
    assert_eq!(st.put_entries, MESSAGES as u64, "one finding per event");
    assert_eq!(st.failed_findings, 0, "every entry a FAILED keywatch finding");
    let listings = st.calls.get(&Op::ListAccessKeys).copied().unwrap_or(0);
    assert!((USERS as u64..MESSAGES as u64).contains(&listings), "a user's listing serves its older events: {listings} listings");
    assert!(st.calls.get(&Op::ReceiveEmpty).copied().unwrap_or(0) >= 1, "it stopped on an empty receive");
}
