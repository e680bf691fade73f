//! Security Hub: the finding sink that imports findings in ASFF with
//! `BatchImportFindings` (see [`crate::format::asff`] for the mapping and
//! which account they are imported into).
//!
//! `BatchImportFindings` can succeed in part: the call returns 200 with
//! `FailedCount` and a `FailedFindings` entry (`Id`, `ErrorCode`,
//! `ErrorMessage`) per rejected finding, and only a `SuccessCount` for the
//! rest. A finding is taken as accepted only when its `Id` is not among the
//! failed ones *and* the counts account for every finding sent; an answer
//! that leaves any finding unaccounted for (a count that does not add up, a
//! failure without an `Id`) accepts none of the call's findings, so their
//! messages stay for redelivery. One call carries at most 100 findings and
//! never the same `Id` twice (two findings for one user in a batch go out
//! in order, in separate calls, so the later one is imported last).

use std::collections::{HashMap, HashSet};

use aws_sdk_securityhub::types::AwsSecurityFinding;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::call;
use crate::finding::Finding;
use crate::format::asff::{self, Target};
use crate::sink::{FindingSink, SinkError};
use crate::telemetry::Service;

/// Security Hub accepts at most 100 findings per `BatchImportFindings`.
const MAX_FINDINGS: usize = 100;

/// [`FindingSink`] over Security Hub.
#[derive(Clone)]
pub struct SecurityHubSink {
    client: aws_sdk_securityhub::Client,
    target: Target,
}

impl SecurityHubSink {
    /// Imports into `target` (the worker's own account and region).
    pub fn new(client: aws_sdk_securityhub::Client, target: Target) -> Self {
        SecurityHubSink { client, target }
    }

    async fn import_chunk(&self, findings: Vec<AwsSecurityFinding>) -> Vec<Result<(), SinkError>> {
        let ids: Vec<String> = findings.iter().map(|f| f.id().unwrap_or_default().to_string()).collect();
        let n = ids.len();
        let request = self.client.batch_import_findings().set_findings(Some(findings)).send();
        let out = match call(Service::SecurityHub, "BatchImportFindings", request).await {
            Ok(out) => out,
            Err(e) => return vec![Err(SinkError::Call(e)); n],
        };
        let failed: HashMap<&str, (&str, &str)> = out
            .failed_findings()
            .iter()
            .filter_map(|e| e.id().map(|id| (id, (e.error_code().unwrap_or("Failed"), e.error_message().unwrap_or_default()))))
            .collect();
        let named_failures = ids.iter().filter(|id| failed.contains_key(id.as_str())).count();
        let accounted = out.success_count() == Some((n - named_failures) as i32) && out.failed_findings().len() == named_failures;
        ids.iter()
            .map(|id| match failed.get(id.as_str()) {
                Some((code, message)) => {
                    Err(SinkError::Rejected { sink: "securityhub", code: code.to_string(), message: message.to_string() })
                }
                None if accounted => Ok(()),
                None => Err(SinkError::Rejected {
                    sink: "securityhub",
                    code: "ResultCountMismatch".into(),
                    message: format!(
                        "sent {n} findings; the answer counts {:?} imported and lists {} failed ({} of them by a sent Id)",
                        out.success_count(),
                        out.failed_findings().len(),
                        named_failures
                    ),
                }),
            })
            .collect()
    }

    async fn publish_all(&self, findings: &[Finding]) -> Vec<Result<(), SinkError>> {
        let mut results: Vec<Result<(), SinkError>> = vec![Ok(()); findings.len()];
        let mut chunk: Vec<AwsSecurityFinding> = Vec::new();
        let mut chunk_ids: HashSet<String> = HashSet::new();
        // Indexes into `results` of the findings in `chunk`.
        let mut chunk_slots: Vec<usize> = Vec::new();
        for (slot, finding) in findings.iter().enumerate() {
            let asff = asff::finding(finding, &self.target);
            if !chunk.is_empty() && (chunk.len() == MAX_FINDINGS || chunk_ids.contains(&finding.finding_id)) {
                let sent = self.import_chunk(std::mem::take(&mut chunk)).await;
                for (i, r) in chunk_slots.drain(..).zip(sent) {
                    results[i] = r;
                }
                chunk_ids.clear();
            }
            chunk_ids.insert(finding.finding_id.clone());
            chunk.push(asff);
            chunk_slots.push(slot);
        }
        if !chunk.is_empty() {
            let sent = self.import_chunk(chunk).await;
            for (i, r) in chunk_slots.drain(..).zip(sent) {
                results[i] = r;
            }
        }
        results
    }
}

impl FindingSink for SecurityHubSink {
    fn name(&self) -> &'static str {
        "securityhub"
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        self.publish_all(findings).boxed()
    }
}
