//! Sources: the port messages come in through, and the one loop that
//! drives any source through the processor.
//!
//! A [`MessageSource`] hands out batches and acknowledges what the core is
//! done with (SQS deletes; a replayed file has nothing to delete). [`drive`]
//! runs receive loops side by side, each holding at most two batches (the
//! one being checked and the next, whose receive already waits), and stops
//! on the shutdown token after finishing the batches in hand: a batch once
//! received is always finished and acknowledged.
//!
//! A scan request is not part of its batch: it runs as a task of its own
//! (`scans.rs`), so that it holds neither a receive loop nor the key
//! events received with it, and its message is kept from redelivery for as
//! long as the scan takes ([`MessageSource::keep`]). At shutdown a scan is
//! not waited for: its message is handed back at once, for another replica.

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

#[cfg(feature = "lambda")]
pub mod lambda;
mod scans;

/// A received message with what its source needs to acknowledge it.
#[derive(Debug, Clone)]
pub struct Delivery<A> {
    pub(crate) message: Message,
    pub(crate) ack: A,
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

    /// Hands messages back unfinished, to be delivered again at once (to
    /// another replica): at shutdown, for a scan and for what the drain
    /// timeout cut off.
    fn release(&self, acks: Vec<&Self::Ack>) -> impl Future<Output = Vec<Result<(), SourceError>>> + Send;

    /// Keeps a message the core is still working on (a scan) from being
    /// delivered again, for a while from now, and says when to call again,
    /// which [`drive`] does until the work is done. `None`: this source
    /// never delivers a message again on its own (a replayed file, a Lambda
    /// invocation), so there is nothing to keep.
    fn keep(&self, ack: &Self::Ack) -> impl Future<Output = Result<Option<Duration>, SourceError>> + Send {
        let _ = ack;
        async { Ok(None) }
    }
}

/// Batches being processed, by number: what a drain that runs out of time
/// hands back.
struct Unfinished<A> {
    next: std::sync::atomic::AtomicU64,
    batches: std::sync::Mutex<std::collections::HashMap<u64, Vec<A>>>,
}

impl<A: Clone> Unfinished<A> {
    fn new() -> Self {
        Unfinished { next: Default::default(), batches: Default::default() }
    }
    fn add(&self, acks: Vec<A>) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).insert(id, acks);
        id
    }
    fn done(&self, id: u64) {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
    fn take(&self) -> Vec<A> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).drain().flat_map(|(_, acks)| acks).collect()
    }
}

/// The drain did not finish in time; the messages still in hand were
/// handed back to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("messages in flight did not finish within the drain timeout; {released} were handed back for redelivery")]
pub struct DrainTimedOut {
    pub released: usize,
}

/// Batches a receive loop holds at once: the one being checked and the
/// next, whose receive is already waiting meanwhile (so the source's answer
/// time overlaps the IAM and sink calls instead of adding to them).
const BATCHES_PER_RECEIVER: usize = 2;

/// Runs `receivers` receive loops over `source` until `shutdown` is
/// cancelled or the source is exhausted, then finishes the batches in hand
/// (acknowledging what is done) within `drain`; what is still unfinished
/// then is handed back to the source ([`MessageSource::release`]).
pub async fn drive<S: MessageSource, I: KeyInventory>(
    source: Arc<S>,
    processor: Arc<Processor<I>>,
    receivers: usize,
    health: Arc<Health>,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<(), DrainTimedOut>
where
    S::Ack: Clone,
{
    let tracker = TaskTracker::new();
    let exhausted = CancellationToken::new();
    let unfinished = Arc::new(Unfinished::new());
    for receiver in 0..receivers.max(1) {
        let ctx = Loop {
            receiver,
            source: source.clone(),
            processor: processor.clone(),
            health: health.clone(),
            tracker: tracker.clone(),
            unfinished: unfinished.clone(),
        };
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
    if tokio::time::timeout(drain, tracker.wait()).await.is_ok() {
        info!("all messages in flight handled");
        return Ok(());
    }
    let left = unfinished.take();
    let released = source.release(left.iter().collect()).await.into_iter().filter(Result::is_ok).count();
    (0..released).for_each(|_| telemetry::message(MessageResult::Released));
    warn!(unfinished = left.len(), released, drain_secs = drain.as_secs(), "drain timeout: unfinished messages handed back for redelivery");
    Err(DrainTimedOut { released })
}

struct Loop<S: MessageSource, I> {
    receiver: usize,
    source: Arc<S>,
    processor: Arc<Processor<I>>,
    health: Arc<Health>,
    tracker: TaskTracker,
    unfinished: Arc<Unfinished<S::Ack>>,
}

impl<S: MessageSource, I: KeyInventory> Loop<S, I>
where
    S::Ack: Clone,
{
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
                    }
                    let batch = self.start_scans(batch, &shutdown);
                    if !batch.is_empty() {
                        let (source, processor, unfinished) = (self.source.clone(), self.processor.clone(), self.unfinished.clone());
                        let id = unfinished.add(batch.iter().map(|d| d.ack.clone()).collect());
                        self.tracker.spawn(async move {
                            process(&*source, &processor, batch).await;
                            unfinished.done(id);
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
    settle(source, &messages, &acks, &dispositions).await;
    telemetry::inflight_sub(n);
}

/// Acknowledges the messages the core is done with, and counts what became
/// of each.
async fn settle<S: MessageSource>(source: &S, messages: &[Message], acks: &[S::Ack], dispositions: &[Disposition]) {
    let done: Vec<usize> = (0..messages.len()).filter(|&i| dispositions[i] == Disposition::Ack).collect();
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
    for (m, d) in messages.iter().zip(dispositions) {
        match d {
            Disposition::Ack => {}
            Disposition::Retry => telemetry::message(MessageResult::Retried),
            Disposition::Invalid => telemetry::message(MessageResult::Invalid),
        }
        telemetry::processing(m.received.elapsed());
    }
}
