//! SQS: the input queue as a [`MessageSource`] — receive, delete in
//! batches, keep a long-running message invisible — and its depth for the
//! metrics.
//!
//! Deletion is the acknowledgement: a message is deleted only once the
//! worker has decided it is done with it (its finding accepted, or nothing to
//! emit). `DeleteMessageBatch` can fail per entry, so each entry's result is
//! returned; a message whose delete failed is simply delivered again, and
//! findings are idempotent by `finding_id` and `trigger.event_id`.

use std::time::Duration;

use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use time::OffsetDateTime;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{call, AwsError, ErrorClass};
use crate::message::{Message, Requeue};
use crate::source::{Delivery, MessageSource, SourceError};
use crate::telemetry::{self, Service};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

/// A received message with its receipt handle.
type Received = Delivery<String>;

mod requeue;

/// The input queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// SQS accepts at most 10 entries per batch call.
const MAX_BATCH: usize = 10;

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue { client, url: url.into() }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Long-polls for up to `max` messages, waiting up to `wait`.
    async fn receive(&self, max: i32, wait: Duration, visibility_timeout: Option<Duration>) -> Result<Vec<Received>, AwsError> {
        let request = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait.as_secs() as i32)
            .set_visibility_timeout(visibility_timeout.map(|v| v.as_secs() as i32))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        let out = call(Service::Sqs, "ReceiveMessage", request).await?;
        let now = OffsetDateTime::now_utc();
        let started = std::time::Instant::now();
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count =
                    m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)).and_then(|c| c.parse().ok());
                Some(Received {
                    message: Message {
                        message_id: m.message_id?,
                        body: m.body.unwrap_or_default(),
                        receive_count,
                        received_at: now,
                        received: started,
                    },
                    ack: m.receipt_handle?,
                })
            })
            .collect())
    }

    /// Deletes messages by receipt handle, in batches of 10. Returns one
    /// result per handle, in order.
    async fn delete(&self, handles: &[&str]) -> Vec<Result<(), AwsError>> {
        let mut results = Vec::with_capacity(handles.len());
        for chunk in handles.chunks(MAX_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(*h).build())
                .collect::<Result<_, _>>()
                .expect("id and receipt handle are always set");
            let request = self.client.delete_message_batch().queue_url(&self.url).set_entries(Some(entries));
            let answer = call(Service::Sqs, "DeleteMessageBatch", request.customize().config_override(self.call_timeouts()).send()).await;
            results.extend(match answer {
                Ok(out) => entry_results("DeleteMessageBatch", chunk.len(), out.failed(), out.successful().iter().map(|s| s.id())),
                Err(e) => vec![Err(e); chunk.len()],
            });
        }
        results
    }

    /// Makes messages visible again at once (`ChangeMessageVisibility` 0),
    /// in batches of 10, so that another replica takes them. One result per
    /// handle, in order.
    async fn release(&self, handles: &[&str]) -> Vec<Result<(), AwsError>> {
        let mut results = Vec::with_capacity(handles.len());
        for chunk in handles.chunks(MAX_BATCH) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder().id(i.to_string()).receipt_handle(*h).visibility_timeout(0).build()
                })
                .collect::<Result<_, _>>()
                .expect("id and receipt handle are always set");
            let request = self.client.change_message_visibility_batch().queue_url(&self.url).set_entries(Some(entries));
            let answer =
                call(Service::Sqs, "ChangeMessageVisibilityBatch", request.customize().config_override(self.call_timeouts()).send()).await;
            results.extend(match answer {
                Ok(out) => {
                    entry_results("ChangeMessageVisibilityBatch", chunk.len(), out.failed(), out.successful().iter().map(|s| s.id()))
                }
                Err(e) => vec![Err(e); chunk.len()],
            });
        }
        results
    }

    /// Makes a message invisible for `lease` from now
    /// (`ChangeMessageVisibility`), however long it has been in flight.
    async fn extend(&self, handle: &str, lease: Duration) -> Result<(), AwsError> {
        let request = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .visibility_timeout(lease.as_secs().min(MAX_VISIBILITY_SECS) as i32);
        call(Service::Sqs, "ChangeMessageVisibility", request.customize().config_override(self.call_timeouts()).send()).await?;
        Ok(())
    }

    /// Timeouts for calls other than the long poll: shorter than any drain.
    fn call_timeouts(&self) -> aws_sdk_sqs::config::Builder {
        aws_sdk_sqs::config::Builder::default().timeout_config(super::call_timeouts())
    }

    /// Visible and in-flight message counts, and the dead-letter queue's ARN
    /// from the redrive policy (when there is one).
    pub(crate) async fn attributes(&self) -> Result<QueueState, AwsError> {
        queue_state(&self.client, &self.url).await
    }

    /// The URL of a queue given its ARN (`arn:aws:sqs:region:account:name`).
    /// A queue in the same region as this one (a dead-letter queue must be)
    /// has this queue's URL with its own account and name, which needs no
    /// call and no `sqs:GetQueueUrl` permission; otherwise SQS is asked.
    async fn url_of_arn(&self, arn: &str) -> Result<Option<String>, AwsError> {
        let mut parts = arn.split(':');
        let (Some(account), Some(name)) = (parts.nth(4), parts.next()) else { return Ok(None) };
        if let Some(url) = sibling_url(&self.url, account, name) {
            return Ok(Some(url));
        }
        let request = self.client.get_queue_url().queue_name(name).queue_owner_aws_account_id(account).send();
        let out = call(Service::Sqs, "GetQueueUrl", request).await?;
        Ok(out.queue_url().map(str::to_string))
    }

    fn with_url(&self, url: impl Into<String>) -> SqsQueue {
        SqsQueue { client: self.client.clone(), url: url.into() }
    }
}

/// How the input queue is received from.
#[derive(Debug, Clone)]
pub struct ReceiveSettings {
    /// Messages per `ReceiveMessage` (1–10).
    pub(crate) max_messages: i32,
    /// Long-poll wait (0–20 s).
    pub(crate) wait: Duration,
    /// Overrides the queue's visibility timeout on receive.
    pub(crate) visibility_timeout: Option<Duration>,
    /// Stop once a receive returns nothing (drain the queue, then exit).
    pub(crate) until_empty: bool,
}

/// The input queue as a source of messages.
pub struct SqsSource {
    pub queue: SqsQueue,
    pub settings: ReceiveSettings,
    /// The queue's own visibility timeout, read once when first needed.
    queue_visibility: OnceCell<Duration>,
}

/// SQS's largest visibility timeout (12 hours).
const MAX_VISIBILITY_SECS: u64 = 43_200;
/// A kept message's lease when the queue's visibility timeout cannot be read
/// (SQS's default timeout).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease a kept message gets.
const MIN_LEASE: Duration = Duration::from_secs(3);

impl SqsSource {
    pub fn new(queue: SqsQueue, settings: ReceiveSettings) -> Self {
        SqsSource { queue, settings, queue_visibility: OnceCell::new() }
    }

    /// How long a kept message stays invisible from each extension: the
    /// visibility timeout the worker receives with, so that a worker that
    /// dies mid-scan leaves the message to come back as soon as any other
    /// would (the one asked for on receive, else the queue's own).
    async fn lease(&self) -> Duration {
        let lease = match self.settings.visibility_timeout {
            Some(asked) => asked,
            None => {
                let read = self.queue_visibility.get_or_try_init(|| async {
                    Ok::<_, AwsError>(self.queue.attributes().await?.visibility_timeout.unwrap_or(DEFAULT_LEASE))
                });
                match read.await {
                    Ok(v) => *v,
                    Err(e) => {
                        warn!(error = %e, lease_secs = DEFAULT_LEASE.as_secs(), "cannot read the queue's visibility timeout");
                        DEFAULT_LEASE
                    }
                }
            }
        };
        lease.max(MIN_LEASE)
    }
}

impl MessageSource for SqsSource {
    type Ack = String;

    async fn receive(&self) -> Result<Option<Vec<Received>>, SourceError> {
        let s = &self.settings;
        let batch = self.queue.receive(s.max_messages, s.wait, s.visibility_timeout).await?;
        Ok((!(batch.is_empty() && s.until_empty)).then_some(batch))
    }

    async fn ack(&self, acks: Vec<&String>) -> Vec<Result<(), SourceError>> {
        let handles: Vec<&str> = acks.into_iter().map(String::as_str).collect();
        self.queue.delete(&handles).await.into_iter().map(|r| r.map_err(SourceError::from)).collect()
    }

    async fn release(&self, acks: Vec<&String>) -> Vec<Result<(), SourceError>> {
        let handles: Vec<&str> = acks.into_iter().map(String::as_str).collect();
        self.queue.release(&handles).await.into_iter().map(|r| r.map_err(SourceError::from)).collect()
    }

    /// Invisible for a lease from now; again after a third of it, so that
    /// two more tries fit before it lapses.
    async fn keep(&self, ack: &String) -> Result<Option<Duration>, SourceError> {
        let lease = self.lease().await;
        self.queue.extend(ack, lease).await?;
        Ok(Some(lease / 3))
    }
}

/// Reads the input queue's and its dead-letter queue's depth every
/// `interval` until `shutdown`.
pub(crate) async fn depth_loop(queue: SqsQueue, interval: Duration, shutdown: CancellationToken) {
    let mut dlq: Option<SqsQueue> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match queue.attributes().await {
            Ok(state) => {
                telemetry::queue_depth("input", state.visible, state.in_flight);
                if dlq.is_none() {
                    if let Some(arn) = &state.dead_letter_arn {
                        match queue.url_of_arn(arn).await {
                            Ok(Some(url)) => dlq = Some(queue.with_url(url)),
                            Ok(None) => {}
                            Err(e) => warn!(error = %e, dead_letter_arn = %arn, "cannot resolve the dead-letter queue"),
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the input queue's depth"),
        }
        if let Some(dlq) = &dlq {
            match dlq.attributes().await {
                Ok(state) => telemetry::queue_depth("dlq", state.visible, state.in_flight),
                Err(e) => warn!(error = %e, "cannot read the dead-letter queue's depth"),
            }
        }
    }
}

/// One result per entry of a batch call (ids are the entries' indexes): an
/// entry SQS reports failed, or does not report at all, is not done.
fn entry_results<'a>(
    operation: &'static str,
    n: usize,
    failed: &[BatchResultErrorEntry],
    successful: impl Iterator<Item = &'a str>,
) -> Vec<Result<(), AwsError>> {
    let missing = || AwsError { operation, class: ErrorClass::Transient, code: None, message: "entry missing from the response".into() };
    let mut results: Vec<Result<(), AwsError>> = (0..n).map(|_| Err(missing())).collect();
    for i in successful.filter_map(|id| id.parse::<usize>().ok()).filter(|&i| i < n) {
        results[i] = Ok(());
    }
    for f in failed {
        if let Some(i) = f.id().parse::<usize>().ok().filter(|&i| i < n) {
            results[i] = Err(AwsError {
                operation,
                class: if f.sender_fault() { ErrorClass::Permanent } else { ErrorClass::Transient },
                code: Some(f.code().to_string()),
                message: f.message().unwrap_or_default().to_string(),
            });
        }
    }
    results
}

/// `https://host/<account>/<name>` → the same host with another account and
/// name; `None` for a URL of another shape.
pub fn sibling_url(url: &str, account: &str, name: &str) -> Option<String> {
    let (base, queue) = url.trim_end_matches('/').rsplit_once('/')?;
    let (host, owner) = base.rsplit_once('/')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(owner) && !queue.is_empty() && host.contains("://")).then(|| format!("{host}/{account}/{name}"))
}

/// What GetQueueAttributes said of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueState {
    visible: u64,
    in_flight: u64,
    dead_letter_arn: Option<String>,
    visibility_timeout: Option<Duration>,
}

async fn queue_state(client: &aws_sdk_sqs::Client, url: &str) -> Result<QueueState, AwsError> {
    let request = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send();
    let out = call(Service::Sqs, "GetQueueAttributes", request).await?;
    let attrs = out.attributes();
    let get = |name: QueueAttributeName| attrs.and_then(|a| a.get(&name)).map(String::as_str);
    let count = |name| get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    let dead_letter_arn = get(QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|v| v.get("deadLetterTargetArn").and_then(|a| a.as_str()).map(str::to_string));
    Ok(QueueState {
        visible: count(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        dead_letter_arn,
        visibility_timeout: get(QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse().ok()).map(Duration::from_secs),
    })
}
