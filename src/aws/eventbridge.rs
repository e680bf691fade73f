//! EventBridge: the finding sink that publishes to the findings bus with
//! `PutEvents`.
//!
//! `PutEvents` can succeed in part: the call returns 200 with
//! `FailedEntryCount` and an error on each rejected entry. Every entry's
//! result is therefore returned on its own, in order, so that the worker
//! deletes exactly the messages whose finding was accepted and leaves the
//! rest for redelivery.
//!
//! Each entry's `Detail` is the finding in the configured format (native or
//! OCSF; the `DetailType` is the same for both, so rules that route by
//! source and detail type carry either), its `Resources` the user's ARN and
//! its `Time` when keywatch decided.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::call;
use crate::finding::{Finding, ScanSummary, SUMMARY_DETAIL_TYPE};
use crate::format::FindingFormat;
use crate::sink::{FindingSink, SinkError};
use crate::telemetry::Service;

/// The `DetailType` of every finding event.
const DETAIL_TYPE: &str = "IAM Access Key Finding";
/// EventBridge accepts at most 10 entries per `PutEvents`.
const MAX_ENTRIES: usize = 10;
/// EventBridge's limit on one `PutEvents` request, with room for framing.
const MAX_REQUEST_BYTES: usize = 256 * 1024 - 4 * 1024;

/// [`FindingSink`] over EventBridge.
#[derive(Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    /// Bus name or ARN.
    bus: String,
    /// The events' `Source` (`keywatch` unless configured).
    source: String,
    /// The document in `Detail`.
    format: FindingFormat,
}

impl EventBridgeSink {
    /// Publishes native findings to `bus` with `source`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        EventBridgeSink { client, bus: bus.into(), source: source.into(), format: FindingFormat::Native }
    }

    /// The same, with `Detail` in `format`.
    pub(crate) fn with_format(mut self, format: FindingFormat) -> Self {
        self.format = format;
        self
    }

    async fn put_chunk(&self, entries: Vec<PutEventsRequestEntry>) -> Vec<Result<(), SinkError>> {
        let n = entries.len();
        let request = self.client.put_events().set_entries(Some(entries)).send();
        let out = match call(Service::EventBridge, "PutEvents", request).await {
            Ok(out) => out,
            Err(e) => return vec![Err(SinkError::Call(e)); n],
        };
        let results = out.entries();
        if results.len() != n {
            // The API promises one result per entry, in order; anything else
            // cannot be mapped back, so nothing is taken as accepted.
            let e = SinkError::Rejected {
                sink: "eventbridge",
                code: "ResultCountMismatch".into(),
                message: format!("sent {n} entries, got {} results", results.len()),
            };
            return vec![Err(e); n];
        }
        results
            .iter()
            .map(|r| match (r.error_code(), r.event_id()) {
                (None, Some(_)) => Ok(()),
                (code, _) => Err(SinkError::Rejected {
                    sink: "eventbridge",
                    code: code.unwrap_or("NoEventId").to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                }),
            })
            .collect()
    }
}

impl FindingSink for EventBridgeSink {
    fn name(&self) -> &'static str {
        "eventbridge"
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        self.publish_all(findings).boxed()
    }

    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            let detail = serde_json::to_string(summary).map_err(|e| SinkError::Write(e.to_string()))?;
            self.put_one(SUMMARY_DETAIL_TYPE, detail, None).await
        }
        .boxed()
    }
}

impl EventBridgeSink {
    /// One event of `detail_type` on the bus, with the finding events'
    /// source (a scan summary, a remediation action).
    pub(crate) async fn put_one(&self, detail_type: &str, detail: String, resource: Option<&str>) -> Result<(), SinkError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(detail_type)
            .detail(detail)
            .set_resources(resource.map(|r| vec![r.to_string()]))
            .build();
        self.put_chunk(vec![entry]).await.into_iter().next().unwrap_or(Ok(()))
    }
}

impl EventBridgeSink {
    async fn publish_all(&self, findings: &[Finding]) -> Vec<Result<(), SinkError>> {
        let mut results: Vec<Result<(), SinkError>> = Vec::with_capacity(findings.len());
        let mut chunk: Vec<PutEventsRequestEntry> = Vec::new();
        let mut chunk_bytes = 0usize;
        // Indexes into `results` of the entries in `chunk`.
        let mut chunk_slots: Vec<usize> = Vec::new();
        for finding in findings {
            results.push(Ok(()));
            let slot = results.len() - 1;
            let detail = match self.format.render(finding) {
                Ok(d) => d,
                Err(e) => {
                    results[slot] = Err(SinkError::Write(e.to_string()));
                    continue;
                }
            };
            let t = finding.detected_at;
            let time = Some(aws_smithy_types::DateTime::from_secs_and_nanos(t.unix_timestamp(), t.nanosecond()));
            // EventBridge counts Source, DetailType, Detail, each resource
            // and 14 bytes for a Time.
            let size = detail.len() + self.source.len() + DETAIL_TYPE.len() + finding.user_arn.len() + 14;
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
                    .resources(&finding.user_arn)
                    .set_time(time)
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
        results
    }
}
