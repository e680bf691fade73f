//! Sources: the port messages come in through, and the one loop that
//! drives any source through the processor.
//!
//! A [`MessageSource`] hands out batches and acknowledges what the core is
//! done with (SQS deletes; a replayed file has nothing to delete). [`drive`]
//! runs receive loops side by side, each holding at most two batches (the
//! one being checked and the next, whose receive already waits), and stops
//! on the shutdown token after finishing the batches in hand: a batch once
//! received is always finished and acknowledged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::AwsError;
use crate::health::Health;
use crate::inventory::KeyInventory;
use crate::message::{Disposition, Message};
use crate::processor::Processor;
use crate::telemetry::{self, MessageResult};

/// A received message with what its source needs to acknowledge it.
#[derive(Debug, Clone)]
pub struct Delivery<A> {
    pub message: Message,
    pub ack: A,
}

/// Why a source could not receive or acknowledge.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Read(String),
}

/// Where messages come from.
pub trait MessageSource: Send + Sync + 'static {
    /// What acknowledging a message takes (an SQS receipt handle).
    type Ack: Send + Sync + 'static;

    /// The next batch (possibly empty after a wait); `None` once the source
    /// has nothing more to give.
    fn receive(&self) -> impl Future<Output = Result<Option<Vec<Delivery<Self::Ack>>>, SourceError>> + Send;

    /// Acknowledges messages the core is done with; one result per message,
    /// in order. A message whose acknowledgement failed comes again.
    fn ack(&self, acks: Vec<&Self::Ack>) -> impl Future<Output = Vec<Result<(), SourceError>>> + Send;
}

/// Batches a receive loop holds at once: the one being checked and the
/// next, whose receive is already waiting meanwhile (so the source's answer
/// time overlaps the IAM and sink calls instead of adding to them).
const BATCHES_PER_RECEIVER: usize = 2;

/// Runs `receivers` receive loops over `source` until `shutdown` is
/// cancelled or the source is exhausted, then finishes the batches in hand
/// (acknowledging what is done) and returns.
pub async fn drive<S: MessageSource, I: KeyInventory>(
    source: Arc<S>,
    processor: Arc<Processor<I>>,
    receivers: usize,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let exhausted = CancellationToken::new();
    for receiver in 0..receivers.max(1) {
        let ctx = Loop { receiver, source: source.clone(), processor: processor.clone(), health: health.clone(), tracker: tracker.clone() };
        tracker.spawn(ctx.run(shutdown.clone(), exhausted.clone()));
    }
    tracker.close();
    tokio::select! {
        _ = shutdown.cancelled() => {
            health.set_draining();
            info!("shutting down: no new receives; finishing messages in flight");
        }
        _ = exhausted.cancelled() => info!("source exhausted; finishing messages in flight"),
    }
    tracker.wait().await;
    info!("all messages in flight handled");
}

struct Loop<S, I> {
    receiver: usize,
    source: Arc<S>,
    processor: Arc<Processor<I>>,
    health: Arc<Health>,
    tracker: TaskTracker,
}

impl<S: MessageSource, I: KeyInventory> Loop<S, I> {
    /// Receives batches and hands each to a task of its own (tracked, so
    /// that shutdown waits for it), holding at most [`BATCHES_PER_RECEIVER`].
    async fn run(self, shutdown: CancellationToken, exhausted: CancellationToken) {
        const MIN_BACKOFF: Duration = Duration::from_millis(500);
        const MAX_BACKOFF: Duration = Duration::from_secs(30);
        let slots = Arc::new(Semaphore::new(BATCHES_PER_RECEIVER));
        let mut backoff = MIN_BACKOFF;
        let receiver = self.receiver;
        loop {
            // Only waiting (for a slot, for messages) races shutdown: a batch
            // once received is always finished and acknowledged.
            let slot = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = exhausted.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = exhausted.cancelled() => break,
                r = self.source.receive() => r,
            };
            match received {
                Ok(Some(batch)) => {
                    backoff = MIN_BACKOFF;
                    self.health.set_ready();
                    if !batch.is_empty() {
                        telemetry::messages_received(batch[0].message.received_at.unix_timestamp_nanos() as f64 / 1e9);
                        let (source, processor) = (self.source.clone(), self.processor.clone());
                        self.tracker.spawn(async move {
                            process(&*source, &processor, batch).await;
                            drop(slot);
                        });
                    }
                }
                Ok(None) => {
                    exhausted.cancel();
                    break;
                }
                Err(e) => {
                    warn!(receiver, error = %e, retry_in_ms = backoff.as_millis() as u64, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        debug!(receiver, "receive loop stopped");
    }
}

/// Handles one received batch and acknowledges what the core is done with.
async fn process<S: MessageSource, I: KeyInventory>(source: &S, processor: &Processor<I>, batch: Vec<Delivery<S::Ack>>) {
    let n = batch.len();
    telemetry::inflight_add(n);
    let (messages, acks): (Vec<Message>, Vec<S::Ack>) = batch.into_iter().map(|d| (d.message, d.ack)).unzip();
    let dispositions = processor.handle_batch(&messages).await;

    let done: Vec<usize> = (0..n).filter(|&i| dispositions[i] == Disposition::Ack).collect();
    let acked = if done.is_empty() { Vec::new() } else { source.ack(done.iter().map(|&i| &acks[i]).collect()).await };
    for (&i, result) in done.iter().zip(acked) {
        match result {
            Ok(()) => telemetry::message(MessageResult::Deleted),
            Err(e) => {
                warn!(message_id = %messages[i].message_id, error = %e, "delete failed; the message will be delivered again");
                telemetry::message(MessageResult::Retried);
            }
        }
    }
    for (m, d) in messages.iter().zip(&dispositions) {
        match d {
            Disposition::Ack => {}
            Disposition::Retry => telemetry::message(MessageResult::Retried),
            Disposition::Invalid => telemetry::message(MessageResult::Invalid),
        }
        telemetry::processing(m.received.elapsed());
    }
    telemetry::inflight_sub(n);
}
