//! The production wiring on the emulator: a default-bus rule into the input
//! queue (with its dead-letter queue), the findings bus with a rule into a
//! findings queue that stands in for the SIEM, and helpers to drive it.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use super::FINDINGS_BUS;

/// The production wiring on the emulator.
pub struct Pipeline {
    pub sqs: aws_sdk_sqs::Client,
    pub iam: aws_sdk_iam::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub findings_url: String,
}

pub const KEY_EVENT_PATTERN: &str = r#"{"source":["aws.iam"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["iam.amazonaws.com"],"eventName":["CreateAccessKey","UpdateAccessKey","DeleteAccessKey"]}}"#;

impl Pipeline {
    /// Input queue (visibility `visibility_secs`, DLQ after 2 receives)
    /// fed by a default-bus rule; findings bus with a rule into a queue.
    pub async fn create(config: &SdkConfig, visibility_secs: u32) -> Pipeline {
        Pipeline::create_with_redrive(config, visibility_secs, 2).await
    }

    /// The same, with the DLQ taking a message on receive `max_receives`+1.
    pub async fn create_with_redrive(config: &SdkConfig, visibility_secs: u32, max_receives: u32) -> Pipeline {
        let sqs = aws_sdk_sqs::Client::new(config);
        let iam = aws_sdk_iam::Client::new(config);
        let events = aws_sdk_eventbridge::Client::new(config);

        let dlq_url = sqs.create_queue().queue_name("keywatch-dlq").send().await.unwrap().queue_url.unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()}).to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name("keywatch-input")
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn_ = queue_arn(&sqs, &queue_url).await;
        events.put_rule().name("keywatch-iam-key-events").event_pattern(KEY_EVENT_PATTERN).send().await.unwrap();
        events
            .put_targets()
            .rule("keywatch-iam-key-events")
            .targets(aws_sdk_eventbridge::types::Target::builder().id("input").arn(queue_arn_).build().unwrap())
            .send()
            .await
            .unwrap();

        let findings_url = sqs.create_queue().queue_name("keywatch-findings-out").send().await.unwrap().queue_url.unwrap();
        let findings_arn = queue_arn(&sqs, &findings_url).await;
        events.create_event_bus().name(FINDINGS_BUS).send().await.unwrap();
        events
            .put_rule()
            .name("keywatch-findings-to-siem")
            .event_bus_name(FINDINGS_BUS)
            .event_pattern(r#"{"source":["keywatch"],"detail-type":["IAM Access Key Finding","IAM Access Key Scan Summary","IAM Access Key Remediation"]}"#)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("keywatch-findings-to-siem")
            .event_bus_name(FINDINGS_BUS)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("siem").arn(findings_arn).build().unwrap())
            .send()
            .await
            .unwrap();
        Pipeline { sqs, iam, events, queue_url, dlq_url, findings_url }
    }

    /// Creates `user` with `keys` active keys; returns their ids.
    pub async fn user_with_keys(&self, user: &str, keys: usize) -> Vec<String> {
        self.iam.create_user().user_name(user).send().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..keys {
            ids.push(self.create_key(user).await);
        }
        ids
    }

    pub async fn create_key(&self, user: &str) -> String {
        let out = self.iam.create_access_key().user_name(user).send().await.unwrap();
        out.access_key.unwrap().access_key_id
    }

    /// Puts a CloudTrail-shaped event on the default bus, as AWS would.
    pub async fn put_cloudtrail(&self, detail: &Value) {
        self.put_cloudtrail_on(None, detail).await
    }

    /// Puts a CloudTrail-shaped event on `bus` (default bus when `None`), as
    /// a member account's forwarding rule would.
    pub async fn put_cloudtrail_on(&self, bus: Option<&str>, detail: &Value) {
        let out = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .set_event_bus_name(bus.map(str::to_string))
                    .source("aws.iam")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count, 0, "PutEvents rejected the test event: {out:?}");
    }

    pub async fn send_raw(&self, body: &str) {
        self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await.unwrap();
    }

    /// Receives (and deletes) findings until `n` have arrived or `timeout`.
    pub async fn findings(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut found = Vec::new();
        while found.len() < n && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.findings_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                found.push(envelope);
                self.sqs.delete_message().queue_url(&self.findings_url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
            }
        }
        found
    }

    /// (visible, in flight) messages of a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = out.attributes.unwrap_or_default();
        let get = |k| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (get(QueueAttributeName::ApproximateNumberOfMessages), get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Waits until the queue holds no message at all (visible or in flight).
    pub async fn wait_drained(&self, url: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.depth(url).await == (0, 0) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// The body the central stack's scan schedule puts on the input queue: the
/// `Input` of the `ScanScheduleRule` target in `infra/central.yaml`, which
/// EventBridge delivers as the raw message body.
pub fn scheduled_scan_request() -> String {
    let template: yaml_serde::Value = yaml_serde::from_str(include_str!("../../infra/central.yaml")).expect("infra/central.yaml");
    let targets = &template["Resources"]["ScanScheduleRule"]["Properties"]["Targets"];
    let input = targets[0]["Input"].as_str().expect("the scan schedule rule's target has a constant Input");
    assert!(targets.get(1).is_none(), "one target");
    input.to_string()
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    out.attributes.unwrap()[&QueueAttributeName::QueueArn].clone()
}
