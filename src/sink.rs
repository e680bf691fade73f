//! Sinks: the port findings leave through.
//!
//! A [`FindingSink`] takes a batch of findings and answers for each one
//! whether it was accepted, in order: a message is acknowledged only when
//! its finding was accepted, so partial success must be visible per entry.
//! [`Sinks`] publishes to several at once and accepts a finding only when
//! every one of them did. Adapters: EventBridge ([`crate::aws::eventbridge`]),
//! Security Hub ([`crate::aws::securityhub`]) and JSON lines on standard
//! output (`StdoutSink`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;

use crate::error::AwsError;
use crate::finding::{Finding, ScanSummary};
use crate::format::FindingFormat;

/// Why a finding was not accepted. Either way its message stays in the
/// queue and is retried on redelivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The whole call failed.
    #[error(transparent)]
    Call(#[from] AwsError),
    /// The sink rejected this entry.
    #[error("{sink} rejected the finding: {code}: {message}")]
    Rejected { sink: &'static str, code: String, message: String },
    /// The finding could not be encoded or written.
    #[error("finding could not be written: {0}")]
    Write(String),
    /// The ledger could not be asked or written (see [`crate::ledger`]);
    /// nothing was published.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The ledger dropped the finding: publishing it would add nothing.
    /// Not a failure: its message is acknowledged.
    #[error("not published: {}", .0.as_str())]
    Dropped(Dropped),
}

/// Why the ledger dropped a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It rests on an older IAM answer than the last word on its
    /// `finding_id`.
    Superseded,
    /// The same verdict on the same IAM answer was published already.
    Identical,
}

impl Dropped {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dropped::Superseded => "superseded",
            Dropped::Identical => "identical",
        }
    }
}

/// Where findings go.
pub trait FindingSink: Send + Sync + 'static {
    /// A short fixed name, for logs.
    fn name(&self) -> &'static str;

    /// Publishes `findings`; one result per finding, in the same order.
    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>>;

    /// Publishes a scan's summary of one account; a sink with no place for
    /// it accepts it and does nothing.
    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = summary;
        std::future::ready(Ok(())).boxed()
    }
}

/// Several sinks as one: a finding is accepted when every sink accepted it
/// (a sink that accepted sees it again on redelivery; findings are
/// idempotent by `finding_id` and `trigger.event_id`).
#[derive(Clone)]
pub struct Sinks(pub Vec<Arc<dyn FindingSink>>);

impl FindingSink for Sinks {
    fn name(&self) -> &'static str {
        "sinks"
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        async move {
            let answers = join_all(self.0.iter().map(|s| s.publish(findings))).await;
            let mut results: Vec<Result<(), SinkError>> = vec![Ok(()); findings.len()];
            for answer in answers {
                for (slot, r) in results.iter_mut().zip(answer) {
                    if slot.is_ok() {
                        *slot = r;
                    }
                }
            }
            results
        }
        .boxed()
    }

    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        async move { join_all(self.0.iter().map(|s| s.publish_summary(summary))).await.into_iter().collect() }.boxed()
    }
}

/// Findings as JSON lines on a writer (standard output by default): for
/// dry runs, pipes and log shippers. One finding per line, in the
/// configured format (native unless told).
pub(crate) struct StdoutSink {
    out: Mutex<Box<dyn Write + Send>>,
    format: FindingFormat,
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::to(Box::new(std::io::stdout()))
    }
}

impl StdoutSink {
    fn to(out: Box<dyn Write + Send>) -> Self {
        StdoutSink { out: Mutex::new(out), format: FindingFormat::Native }
    }

    /// The same, writing each finding in `format`.
    pub(crate) fn with_format(mut self, format: FindingFormat) -> Self {
        self.format = format;
        self
    }
}

impl FindingSink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let results = findings
            .iter()
            .map(|f| {
                let line = self.format.render(f).map_err(|e| SinkError::Write(e.to_string()))?;
                writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| SinkError::Write(e.to_string()))
            })
            .collect();
        std::future::ready(results).boxed()
    }

    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let line = serde_json::json!({ "scan_summary": summary }).to_string();
        let written = writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| SinkError::Write(e.to_string()));
        std::future::ready(written).boxed()
    }
}
