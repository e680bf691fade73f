//! One AWS Lambda invocation as a message source: the records of an SQS
//! event source mapping's batch, handed out once, through the same
//! [`drive`] as the worker's queue (scan requests included, as tasks of
//! their own).
//!
//! Lambda, not keywatch, deletes the messages: every record the function's
//! answer does not name (`batchItemFailures`, with the mapping's
//! `ReportBatchItemFailures`) is deleted, every record it names is left for
//! redelivery. So acknowledging a message here only marks it done, and the
//! answer names every other record: a message whose finding was not
//! accepted (`Retry`), one that cannot be understood (`Invalid`: left, as
//! the worker leaves it, for the queue's redrive policy to move to the
//! dead-letter queue) and whatever the function's time did not allow
//! (handed back, [`MessageSource::release`], which has nothing to do here).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{drive, Delivery, MessageSource, SourceError};
use crate::health::Health;
use crate::inventory::KeyInventory;
use crate::message::Message;
use crate::processor::Processor;

/// The records of one invocation, and which of them are done.
struct Invocation {
    batch: Mutex<Option<Vec<Delivery<String>>>>,
    /// `messageId`s acknowledged; at most the batch's size.
    done: Mutex<HashSet<String>>,
}

impl MessageSource for Invocation {
    /// The record's `messageId`: what `batchItemFailures` names.
    type Ack = String;

    async fn receive(&self) -> Result<Option<Vec<Delivery<String>>>, SourceError> {
        Ok(self.batch.lock().unwrap_or_else(|e| e.into_inner()).take())
    }

    async fn ack(&self, acks: Vec<&String>) -> Vec<Result<(), SourceError>> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        acks.into_iter()
            .map(|id| {
                done.insert(id.clone());
                Ok(())
            })
            .collect()
    }

    async fn release(&self, acks: Vec<&String>) -> Vec<Result<(), SourceError>> {
        acks.into_iter().map(|_| Ok(())).collect()
    }
}

/// The messages of an SQS event, received now.
fn deliveries(event: SqsEvent) -> Vec<Delivery<String>> {
    let now = OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    event
        .records
        .into_iter()
        .filter_map(|r| {
            let id = r.message_id?;
            let receive_count = r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok());
            let message =
                Message { message_id: id.clone(), body: r.body.unwrap_or_default(), receive_count, received_at: now, received: started };
            Some(Delivery { message, ack: id })
        })
        .collect()
}

/// Handles one invocation's batch within `time` (what is left of the
/// function's timeout, less a margin to answer in): the records to report
/// as `batchItemFailures`, the others being done. What is still running
/// when `time` is up is stopped (a scan) or left behind, and reported.
pub async fn handle<I: KeyInventory>(processor: std::sync::Arc<Processor<I>>, event: SqsEvent, time: Duration) -> SqsBatchResponse {
    let batch = deliveries(event);
    let ids: Vec<String> = batch.iter().map(|d| d.ack.clone()).collect();
    let source = std::sync::Arc::new(Invocation { batch: Mutex::new(Some(batch)), done: Mutex::new(HashSet::new()) });
    let stop = CancellationToken::new();
    // Only the time stops it: an invocation ends when its batch is done.
    let _ = drive(source.clone(), processor, 1, std::sync::Arc::new(Health::default()), stop.clone(), time).await;
    // A scan still running stops and hands its message back.
    stop.cancel();
    let done = source.done.lock().unwrap_or_else(|e| e.into_inner());
    let mut response = SqsBatchResponse::default();
    for id in ids.into_iter().filter(|id| !done.contains(id)) {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}
