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
//!
//! **Workflow.** `BatchImportFindings` sets `Workflow` only when it creates
//! a finding; afterwards the workflow belongs to `BatchUpdateFindings`. So
//! after each successful import the sink sends the workflow changes that
//! [`asff::workflow_update`] calls for (`SUPPRESSED` with a note naming the
//! exception; `NEW` once keywatch's suppression no longer applies;
//! `RESOLVED` for a `PASSED`): one `BatchUpdateFindings` per distinct
//! change among the call's findings (at most 100 identifiers each), none
//! when no finding needs one. A finding is accepted only when its update
//! comes back among the `ProcessedFindings` and not among the
//! `UnprocessedFindings`; otherwise, or when the call fails, its message
//! stays for redelivery (the import is then repeated, which Security Hub
//! ignores for an unchanged `UpdatedAt`, and the update sent again).
//!
//! A `FAILED` without an exception sets `NEW` only for a finding keywatch
//! suppressed, so a workflow the security team set (`NOTIFIED`) is not
//! overwritten by every re-check or scan. Which findings those are, the
//! ledger says when there is a table (`Finding::was_suppressed`: the last
//! word before this one was suppressed, whichever replica published it,
//! before a restart too); this process also remembers the ones it set, per
//! `finding_id` (at most `SUPPRESSED_CAPACITY`, each for
//! `SUPPRESSED_TTL`). Without a table, a finding suppressed by another
//! replica, or before a restart, stays `SUPPRESSED` when its exception goes
//! until its next `PASSED` resolves it (docs/formats.md says how to find
//! such findings).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingIdentifier, NoteUpdate, WorkflowStatus, WorkflowUpdate as SdkWorkflowUpdate,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::call;
use crate::cache::BoundedCache;
use crate::finding::Finding;
use crate::format::asff::{self, Target, WorkflowUpdate};
use crate::sink::{FindingSink, SinkError};
use crate::telemetry::Service;

/// Security Hub accepts at most 100 findings per `BatchImportFindings`.
/// `BatchUpdateFindings` takes as many identifiers.
const MAX_FINDINGS: usize = 100;
/// Findings keywatch suppressed, remembered at most (by `finding_id`).
pub(crate) const SUPPRESSED_CAPACITY: usize = 50_000;
/// How long a suppression is remembered.
pub(crate) const SUPPRESSED_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// [`FindingSink`] over Security Hub.
#[derive(Clone)]
pub struct SecurityHubSink {
    client: aws_sdk_securityhub::Client,
    target: Target,
    /// The `finding_id`s this process set `SUPPRESSED`.
    suppressed: Arc<BoundedCache<String, ()>>,
}

impl SecurityHubSink {
    /// Imports into `target` (the worker's own account and region).
    pub fn new(client: aws_sdk_securityhub::Client, target: Target) -> Self {
        SecurityHubSink { client, target, suppressed: Arc::new(BoundedCache::new(SUPPRESSED_CAPACITY, SUPPRESSED_TTL)) }
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

    /// Sends `update` for `ids`; one result per id, in order.
    async fn update_workflow(&self, update: &WorkflowUpdate, ids: &[&str]) -> Vec<Result<(), SinkError>> {
        let product_arn = self.target.product_arn();
        let identifiers = ids.iter().map(|id| AwsSecurityFindingIdentifier::builder().id(*id).product_arn(&product_arn).build());
        let mut request = self
            .client
            .batch_update_findings()
            .set_finding_identifiers(Some(identifiers.collect()))
            .workflow(SdkWorkflowUpdate::builder().status(update.status.clone()).build());
        if let Some(text) = &update.note {
            request = request.note(NoteUpdate::builder().text(text).updated_by(asff::NOTE_AUTHOR).build());
        }
        let out = match call(Service::SecurityHub, "BatchUpdateFindings", request.send()).await {
            Ok(out) => out,
            Err(e) => return vec![Err(SinkError::Call(e)); ids.len()],
        };
        let processed: HashSet<&str> = out.processed_findings().iter().filter_map(|f| f.id()).collect();
        let unprocessed: HashMap<&str, (&str, &str)> = out
            .unprocessed_findings()
            .iter()
            .filter_map(|u| {
                let id = u.finding_identifier()?.id()?;
                Some((id, (u.error_code().unwrap_or("Unprocessed"), u.error_message().unwrap_or_default())))
            })
            .collect();
        ids.iter()
            .map(|id| match (unprocessed.get(id), processed.contains(id)) {
                (None, true) => Ok(()),
                (Some((code, message)), _) => {
                    Err(SinkError::Rejected { sink: "securityhub", code: code.to_string(), message: message.to_string() })
                }
                (None, false) => Err(SinkError::Rejected {
                    sink: "securityhub",
                    code: "NotProcessed".into(),
                    message: format!("BatchUpdateFindings did not list the finding as processed (workflow {})", update.status),
                }),
            })
            .collect()
    }

    /// After an import: the workflow changes its accepted findings call
    /// for, one call per distinct change; a failed change un-accepts its
    /// finding.
    async fn update_workflows(&self, findings: &[&Finding], results: &mut [Result<(), SinkError>]) {
        let mut groups: Vec<(WorkflowUpdate, Vec<usize>)> = Vec::new();
        for (i, f) in findings.iter().enumerate() {
            if results[i].is_err() {
                continue;
            }
            let set_before = f.was_suppressed || self.suppressed.get(&f.finding_id).is_some();
            let Some(update) = asff::workflow_update(f, set_before) else { continue };
            match groups.iter_mut().find(|(u, _)| *u == update) {
                Some((_, members)) => members.push(i),
                None => groups.push((update, vec![i])),
            }
        }
        for (update, members) in groups {
            let ids: Vec<&str> = members.iter().map(|&i| findings[i].finding_id.as_str()).collect();
            let answers = self.update_workflow(&update, &ids).await;
            for (&i, r) in members.iter().zip(answers) {
                if r.is_ok() {
                    let id = &findings[i].finding_id;
                    match update.status {
                        WorkflowStatus::Suppressed => self.suppressed.insert(id.clone(), ()),
                        _ => self.suppressed.remove(id),
                    }
                }
                results[i] = r;
            }
        }
    }

    /// Imports `chunk` (slots into `results` and their findings), then
    /// updates the workflows it calls for.
    async fn send_chunk(&self, chunk: Vec<(usize, &Finding)>, results: &mut [Result<(), SinkError>]) {
        let asffs = chunk.iter().map(|(_, f)| asff::finding(f, &self.target)).collect();
        let mut sent = self.import_chunk(asffs).await;
        let findings: Vec<&Finding> = chunk.iter().map(|(_, f)| *f).collect();
        self.update_workflows(&findings, &mut sent).await;
        for ((slot, _), r) in chunk.into_iter().zip(sent) {
            results[slot] = r;
        }
    }

    async fn publish_all(&self, findings: &[Finding]) -> Vec<Result<(), SinkError>> {
        let mut results: Vec<Result<(), SinkError>> = vec![Ok(()); findings.len()];
        let mut chunk: Vec<(usize, &Finding)> = Vec::new();
        let mut chunk_ids: HashSet<&str> = HashSet::new();
        for (slot, finding) in findings.iter().enumerate() {
            if !chunk.is_empty() && (chunk.len() == MAX_FINDINGS || chunk_ids.contains(finding.finding_id.as_str())) {
                self.send_chunk(std::mem::take(&mut chunk), &mut results).await;
                chunk_ids.clear();
            }
            chunk_ids.insert(&finding.finding_id);
            chunk.push((slot, finding));
        }
        if !chunk.is_empty() {
            self.send_chunk(chunk, &mut results).await;
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
