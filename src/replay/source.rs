//! The replayed events as a message source, and a sink decorator that
//! counts what was accepted: what `keywatch replay` runs the processor with.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::finding::{Finding, ScanSummary};
use crate::message::Message;
use crate::sink::{FindingSink, SinkError};
use crate::source::{Delivery, MessageSource, SourceError};

/// Messages handed out per receive.
const BATCH: usize = 10;

/// The replayed events as a [`MessageSource`]: batches of 10, then
/// exhausted. Nothing to delete; messages not acknowledged are counted.
pub struct ReplaySource {
    pending: Mutex<VecDeque<Message>>,
    handed_out: AtomicUsize,
    acknowledged: AtomicUsize,
}

impl ReplaySource {
    pub(crate) fn new(messages: Vec<Message>) -> Self {
        ReplaySource { pending: Mutex::new(messages.into()), handed_out: AtomicUsize::new(0), acknowledged: AtomicUsize::new(0) }
    }

    /// Events handed out whose check did not finish (IAM unreachable, a
    /// sink that refused, a refused event): replay them again.
    pub(crate) fn unfinished(&self) -> usize {
        self.handed_out.load(Ordering::SeqCst) - self.acknowledged.load(Ordering::SeqCst)
    }
}

impl MessageSource for ReplaySource {
    type Ack = ();

    async fn receive(&self) -> Result<Option<Vec<Delivery<()>>>, SourceError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return Ok(None);
        }
        let n = pending.len().min(BATCH);
        self.handed_out.fetch_add(n, Ordering::SeqCst);
        Ok(Some(pending.drain(..n).map(|message| Delivery { message, ack: () }).collect()))
    }

    async fn ack(&self, acks: Vec<&()>) -> Vec<Result<(), SourceError>> {
        self.acknowledged.fetch_add(acks.len(), Ordering::SeqCst);
        acks.iter().map(|_| Ok(())).collect()
    }

    async fn release(&self, acks: Vec<&()>) -> Vec<Result<(), SourceError>> {
        acks.iter().map(|_| Ok(())).collect()
    }
}

/// A sink that counts what the sink behind it accepted.
pub(crate) struct Counted {
    inner: std::sync::Arc<dyn FindingSink>,
    accepted: AtomicUsize,
}

impl Counted {
    pub(crate) fn new(inner: std::sync::Arc<dyn FindingSink>) -> Self {
        Counted { inner, accepted: AtomicUsize::new(0) }
    }
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl FindingSink for Counted {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        async move {
            let results = self.inner.publish(findings).await;
            self.accepted.fetch_add(results.iter().filter(|r| r.is_ok()).count(), Ordering::SeqCst);
            results
        }
        .boxed()
    }

    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        self.inner.publish_summary(summary)
    }
}
