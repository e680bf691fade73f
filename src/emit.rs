//! Emit: findings → EventBridge `PutEvents` on the findings bus.
//!
//! `PutEvents` can succeed in part: the call returns 200 with
//! `FailedEntryCount` and an error on each rejected entry. Every entry's
//! result is therefore returned on its own, in order, so that the worker
//! deletes exactly the messages whose finding was accepted and leaves the
//! rest for redelivery.

use std::future::Future;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::aws::{self, AwsError};
use crate::finding::Finding;
use crate::telemetry::{self, Service};

/// The `DetailType` of every finding event.
pub const DETAIL_TYPE: &str = "IAM Access Key Finding";
/// EventBridge accepts at most 10 entries per `PutEvents`.
pub const MAX_ENTRIES: usize = 10;
/// EventBridge's limit on one `PutEvents` request, with room for framing.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024 - 4 * 1024;

/// Why a finding was not accepted. Either way the message stays in the
/// queue: a rejected entry is retried on redelivery and, if it keeps
/// failing, reaches the dead-letter queue through redrive.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmitError {
    /// The whole call failed.
    #[error(transparent)]
    Call(#[from] AwsError),
    /// EventBridge rejected this entry (`ErrorCode` on the entry).
    #[error("EventBridge rejected the finding: {code}: {message}")]
    Rejected { code: String, message: String },
    /// The finding could not be serialised (cannot happen with the types
    /// used; kept so that it is reported rather than panicking).
    #[error("finding could not be encoded: {0}")]
    Encode(String),
}

/// Where findings go.
pub trait FindingSink: Send + Sync + 'static {
    /// Publishes `findings`; one result per finding, in the same order.
    fn publish(&self, findings: &[Finding]) -> impl Future<Output = Vec<Result<(), EmitError>>> + Send;
}

/// [`FindingSink`] over EventBridge.
#[derive(Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    /// Bus name or ARN.
    bus: String,
    /// The events' `Source` (`keywatch` unless configured).
    source: String,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        EventBridgeSink { client, bus: bus.into(), source: source.into() }
    }

    async fn put_chunk(&self, entries: Vec<PutEventsRequestEntry>) -> Vec<Result<(), EmitError>> {
        let n = entries.len();
        let request = self.client.put_events().set_entries(Some(entries)).send();
        let out = match aws::call(Service::EventBridge, "PutEvents", request).await {
            Ok(out) => out,
            Err(e) => return vec![Err(EmitError::Call(e)); n],
        };
        let results = out.entries();
        if results.len() != n {
            // The API promises one result per entry, in order; anything else
            // cannot be mapped back, so nothing is taken as accepted.
            let e = EmitError::Rejected {
                code: "ResultCountMismatch".into(),
                message: format!("sent {n} entries, got {} results", results.len()),
            };
            return vec![Err(e); n];
        }
        results
            .iter()
            .map(|r| match (r.error_code(), r.event_id()) {
                (None, Some(_)) => Ok(()),
                (code, _) => Err(EmitError::Rejected {
                    code: code.unwrap_or("NoEventId").to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                }),
            })
            .collect()
    }
}

impl FindingSink for EventBridgeSink {
    async fn publish(&self, findings: &[Finding]) -> Vec<Result<(), EmitError>> {
        let mut results: Vec<Result<(), EmitError>> = Vec::with_capacity(findings.len());
        let mut chunk: Vec<PutEventsRequestEntry> = Vec::new();
        let mut chunk_bytes = 0usize;
        // Indexes into `results` of the entries in `chunk`.
        let mut chunk_slots: Vec<usize> = Vec::new();
        for finding in findings {
            results.push(Ok(()));
            let slot = results.len() - 1;
            let detail = match serde_json::to_string(finding) {
                Ok(d) => d,
                Err(e) => {
                    results[slot] = Err(EmitError::Encode(e.to_string()));
                    continue;
                }
            };
            // EventBridge counts Source, DetailType, Detail and resources.
            let size = detail.len() + self.source.len() + DETAIL_TYPE.len();
            if !chunk.is_empty() && (chunk.len() == MAX_ENTRIES || chunk_bytes + size > MAX_REQUEST_BYTES) {
                let sent = self.put_chunk(std::mem::take(&mut chunk)).await;
                for (i, r) in chunk_slots.drain(..).zip(sent) {
                    results[i] = r;
                }
                chunk_bytes = 0;
            }
            chunk.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(DETAIL_TYPE)
                    .detail(detail)
                    .build(),
            );
            chunk_slots.push(slot);
            chunk_bytes += size;
        }
        if !chunk.is_empty() {
            let sent = self.put_chunk(chunk).await;
            for (i, r) in chunk_slots.drain(..).zip(sent) {
                results[i] = r;
            }
        }
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            telemetry::emit_failed_entries(failed as u64);
        }
        results
    }
}
