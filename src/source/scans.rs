//! Scan requests taken off a source. Each runs as a task of its own rather
//! than inside its batch: a scan takes minutes, and the key events received
//! with it, and the receive loop that took it, must not wait for it.
//!
//! While the scan runs its message is kept from redelivery
//! ([`MessageSource::keep`]: on SQS its visibility timeout is pushed back,
//! again before it lapses), so that a scan longer than the queue's
//! visibility timeout is neither scanned twice nor dead-lettered for being
//! slow. At shutdown the scan is not waited for: it stops, and its message
//! is handed back at once ([`MessageSource::release`]) for another replica
//! to scan from the start; a scan is idempotent (the same findings, the same
//! `finding_id`s), and its summary is published only by the scan that ends.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{settle, Delivery, Loop, MessageSource};
use crate::inventory::KeyInventory;
use crate::message::{Message, ScanRequest};
use crate::processor::Processor;
use crate::telemetry::{self, MessageResult};

/// The next try after the source could not keep a message.
const KEEP_RETRY: Duration = Duration::from_secs(1);

impl<S: MessageSource, I: KeyInventory> Loop<S, I>
where
    S::Ack: Clone,
{
    /// Starts a task (tracked, so that shutdown waits for its hand-back) for
    /// each scan request of `batch`; returns the rest of the batch.
    pub(super) fn start_scans(&self, batch: Vec<Delivery<S::Ack>>, shutdown: &CancellationToken) -> Vec<Delivery<S::Ack>> {
        let mut rest = Vec::with_capacity(batch.len());
        for delivery in batch {
            let Some(request) = self.processor.scan_request(&delivery.message) else {
                rest.push(delivery);
                continue;
            };
            let (source, processor, unfinished, shutdown) =
                (self.source.clone(), self.processor.clone(), self.unfinished.clone(), shutdown.clone());
            let id = unfinished.add(vec![delivery.ack.clone()]);
            self.tracker.spawn(async move {
                scan(&*source, &processor, delivery, request, &shutdown).await;
                unfinished.done(id);
            });
        }
        rest
    }
}

/// Carries out one scan request, keeping its message from redelivery, and
/// acknowledges it when done; at shutdown, hands it back unfinished.
async fn scan<S: MessageSource, I: KeyInventory>(
    source: &S,
    processor: &Processor<I>,
    delivery: Delivery<S::Ack>,
    request: Result<ScanRequest, String>,
    shutdown: &CancellationToken,
) {
    telemetry::inflight_add(1);
    let Delivery { message, ack } = delivery;
    let work = kept(source, &message, &ack, processor.scan(&message, request));
    let done = tokio::select! {
        // A scan that has just ended is acknowledged, not handed back.
        biased;
        disposition = work => Some(disposition),
        _ = shutdown.cancelled() => None,
    };
    match done {
        Some(disposition) => settle(source, std::slice::from_ref(&message), std::slice::from_ref(&ack), &[disposition]).await,
        None => hand_back(source, &message, &ack).await,
    }
    telemetry::inflight_sub(1);
}

/// Runs `work` while keeping its message from redelivery: at once, then
/// whenever the source asks, until `work` is done.
async fn kept<S: MessageSource, F: Future>(source: &S, message: &Message, ack: &S::Ack, work: F) -> F::Output {
    let keeping = async {
        loop {
            let next = match source.keep(ack).await {
                Ok(Some(next)) => next,
                // Nothing to keep on this source.
                Ok(None) => return,
                Err(e) => {
                    warn!(message_id = %message.message_id, error = %e, "could not keep the scan request from redelivery; trying again");
                    KEEP_RETRY
                }
            };
            tokio::time::sleep(next).await;
        }
    };
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = keeping => {}
    }
    work.await
}

/// Hands an unfinished scan's message back, to be taken again at once.
async fn hand_back<S: MessageSource>(source: &S, message: &Message, ack: &S::Ack) {
    match source.release(vec![ack]).await.pop() {
        Some(Ok(())) => {
            info!(message_id = %message.message_id, "shutting down: scan handed back unfinished, for another worker");
            telemetry::message(MessageResult::Released);
        }
        Some(Err(e)) => warn!(
            message_id = %message.message_id,
            error = %e,
            "shutting down: the unfinished scan could not be handed back; it is delivered again once its visibility lapses"
        ),
        None => {}
    }
    telemetry::processing(message.received.elapsed());
}
