//! The poll loop on the emulator's SQS and EventBridge with an IAM that
//! answers when the test says so: a slow IAM call (which the emulator cannot
//! produce) must not stall the messages behind it, even with one receive
//! loop taking one message at a time, and shutdown still finishes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use keywatch::aws::eventbridge::EventBridgeSink;
use keywatch::aws::sqs::{ReceiveSettings, SqsQueue, SqsSource};
use keywatch::config::RunArgs;
use keywatch::health::Health;
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::keys::{AccessKey, KeyLastUsed, KeyStatus, Listing};
use keywatch::processor::{Processor, ProcessorSettings};
use keywatch::source;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

trials! {
    multi a_slow_check_does_not_stall_the_next_message_and_shutdown_finishes_it,
    multi a_drain_that_runs_out_of_time_hands_unfinished_messages_back_at_once,
}

const T: Duration = Duration::from_secs(30);

/// Two active keys for every user; listing `slow` waits for the gate.
struct GatedInventory {
    gate: Arc<Semaphore>,
    /// Users whose listing has begun, in order.
    started: mpsc::UnboundedSender<String>,
    listed: Mutex<Vec<String>>,
}

impl KeyInventory for GatedInventory {
    async fn list_keys(&self, _account_id: &str, user_name: &str, _newer_than: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        let observed_at = OffsetDateTime::now_utc();
        self.started.send(user_name.to_string()).unwrap();
        if user_name == "slow" {
            let _pass = self.gate.acquire().await.unwrap();
        }
        self.listed.lock().unwrap().push(user_name.to_string());
        let keys = ["AKIAEXAMPLE000000001", "AKIAEXAMPLE000000002"]
            .map(|id| AccessKey { access_key_id: id.into(), status: KeyStatus::Active, created_at: None })
            .to_vec();
        Ok(Listing { user_name: Some(user_name.to_string()), keys, observed_at })
    }

    async fn last_used(&self, _account_id: &str, _access_key_id: &str, _need: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        Ok(None)
    }

    async fn root_keys_present(&self, _account_id: &str) -> Result<u32, InventoryError> {
        Ok(0)
    }
}

/// One receive loop taking one message at a time from the pipeline's queue,
/// publishing to its findings bus, with `inventory` for IAM.
fn wire(config: &aws_config::SdkConfig, p: &Pipeline, inventory: GatedInventory) -> (Arc<SqsSource>, Arc<Processor<GatedInventory>>) {
    let sink = EventBridgeSink::new(aws_sdk_eventbridge::Client::new(config), FINDINGS_BUS, "keywatch");
    let defaults = RunArgs::from_flags(&p.queue_url, FINDINGS_BUS, &["--max-messages", "1", "--wait-secs", "1"]).unwrap();
    let accounts = Arc::new(keywatch::accounts::Accounts::only(ACCOUNT));
    let processor = Arc::new(Processor::new(inventory, Arc::new(sink), accounts, ProcessorSettings::from(&defaults)));
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(config), p.queue_url.clone());
    (Arc::new(SqsSource::new(queue, ReceiveSettings::from(&defaults))), processor)
}

async fn a_slow_check_does_not_stall_the_next_message_and_shutdown_finishes_it() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 30).await;

    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (source, processor) = wire(&config, &p, GatedInventory { gate: gate.clone(), started: started_tx, listed: Mutex::new(Vec::new()) });
    let shutdown = CancellationToken::new();
    let health = Arc::new(Health::default());
    let run = tokio::spawn(source::drive(source, processor.clone(), 1, health.clone(), shutdown.clone(), Duration::from_secs(60)));

    p.put_cloudtrail(&create_key_event("evt-slow", "admin", "slow", "AKIAEXAMPLE000000002")).await;
    let first = tokio::time::timeout(T, started.recv()).await.expect("the slow check began").unwrap();
    assert_eq!(first, "slow");

    // The only receive loop is inside the slow check; the next message
    // still goes all the way through.
    p.put_cloudtrail(&create_key_event("evt-fast", "admin", "fast", "AKIAEXAMPLE000000002")).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "the message behind the slow check was handled");
    assert_eq!(found[0]["detail"]["user_name"], "fast");
    assert_eq!(p.depth(&p.queue_url).await, (0, 1), "the slow message is in flight, the fast one deleted");

    // Shutdown while the slow check waits: it is finished, published and
    // deleted before run returns.
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!run.is_finished(), "run waits for the batch in hand");
    assert!(!health.is_ready(), "draining");
    gate.add_permits(1);
    tokio::time::timeout(T, run).await.expect("run returns once the batch is done").unwrap().expect("within the drain timeout");
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["detail"]["user_name"], "slow");
    assert_eq!(p.depth(&p.queue_url).await, (0, 0), "both acknowledged");
}

async fn a_drain_that_runs_out_of_time_hands_unfinished_messages_back_at_once() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    // A long visibility timeout: only the hand-back can make the message
    // visible again within the test.
    let p = Pipeline::create(&config, 600).await;

    let (started_tx, mut started) = mpsc::unbounded_channel();
    let inventory = GatedInventory { gate: Arc::new(Semaphore::new(0)), started: started_tx, listed: Mutex::new(Vec::new()) };
    let (source, processor) = wire(&config, &p, inventory);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(source::drive(source, processor, 1, Arc::new(Health::default()), shutdown.clone(), Duration::from_secs(1)));

    p.put_cloudtrail(&create_key_event("evt-stuck", "admin", "slow", "AKIAEXAMPLE000000002")).await;
    tokio::time::timeout(T, started.recv()).await.expect("the check began");
    assert_eq!(p.depth(&p.queue_url).await, (0, 1), "in flight");

    // IAM never answers: the drain runs out of time.
    shutdown.cancel();
    let ended = tokio::time::timeout(T, run).await.expect("run returns after the drain timeout").unwrap();
    assert_eq!(ended, Err(source::DrainTimedOut { released: 1 }));
    assert_eq!(p.depth(&p.queue_url).await, (1, 0), "visible again at once, for another replica");
}
