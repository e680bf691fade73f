//! The ledger in front of the sinks: a [`FindingSink`] decorator, so that
//! every path that publishes (events, re-checks, scans, replays) claims its
//! findings first and marks them published after.
//!
//! A finding the ledger drops (superseded, identical) is answered with
//! [`SinkError::Dropped`]: nothing was published and nothing needs to be,
//! so its message is acknowledged, and the caller counts it. A finding the
//! ledger could not claim (the table unreachable) is answered with
//! [`SinkError::Ledger`], and its message is left for redelivery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use tracing::warn;

use super::{verdict_digest, Claim, Claimed, Entry, Ledger};
use crate::finding::{Finding, ScanSummary};
use crate::sink::{Dropped, FindingSink, SinkError};
use crate::telemetry;

/// Sinks behind a ledger.
pub struct RecordedSinks {
    ledger: Arc<dyn Ledger>,
    inner: Arc<dyn FindingSink>,
}

impl RecordedSinks {
    pub(crate) fn new(ledger: Arc<dyn Ledger>, inner: Arc<dyn FindingSink>) -> Self {
        RecordedSinks { ledger, inner }
    }

    /// `inner` behind this process's memory ([`super::MemoryLedger`]), as
    /// the worker runs without a ledger table.
    pub fn in_memory(inner: Arc<dyn FindingSink>) -> Self {
        RecordedSinks::new(Arc::new(super::MemoryLedger::default()), inner)
    }
}

/// Of findings published together, those that another of them makes
/// needless: an older IAM answer for the same `finding_id` (superseded), or
/// the same verdict on the same answer as an earlier one (identical).
/// Findings of one `finding_id` on one answer with other verdicts (other
/// events answered by one listing) are all kept.
pub(super) fn within_batch(findings: &[Finding]) -> Vec<Option<Dropped>> {
    let mut newest: HashMap<&str, time::OffsetDateTime> = HashMap::new();
    for f in findings {
        let t = newest.entry(f.finding_id.as_str()).or_insert(f.observed_at);
        *t = (*t).max(f.observed_at);
    }
    let mut seen: HashSet<(&str, u64)> = HashSet::new();
    findings
        .iter()
        .map(|f| {
            if f.observed_at < newest[f.finding_id.as_str()] {
                Some(Dropped::Superseded)
            } else if !seen.insert((f.finding_id.as_str(), verdict_digest(f))) {
                Some(Dropped::Identical)
            } else {
                None
            }
        })
        .collect()
}

fn count_dropped(results: &[Result<(), SinkError>]) {
    for r in results {
        if let Err(SinkError::Dropped(d)) = r {
            telemetry::finding_dropped(d.as_str());
        }
    }
}

impl FindingSink for RecordedSinks {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        async move {
            let mut results: Vec<Result<(), SinkError>> =
                within_batch(findings).into_iter().map(|d| d.map_or(Ok(()), |d| Err(SinkError::Dropped(d)))).collect();
            // One finding_id's claims one after the other (they would only
            // race each other), the others side by side.
            let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
            for i in (0..findings.len()).filter(|i| results[*i].is_ok()) {
                by_id.entry(findings[i].finding_id.as_str()).or_default().push(i);
            }
            let claims = join_all(by_id.into_values().map(|group| async move {
                let mut answers = Vec::new();
                for i in group {
                    answers.push((i, self.ledger.claim(&findings[i]).await));
                }
                answers
            }))
            .await;
            // The findings to publish: their slot, the entry claimed, how long
            // the violation each closes was open, and the finding as the
            // sinks get it (knowing whether the last word was suppressed).
            let mut claimed: Vec<(usize, Box<Entry>, Option<std::time::Duration>, Finding)> = Vec::new();
            for (i, answer) in claims.into_iter().flatten() {
                match answer {
                    Ok(Claimed { claim: Claim::Publish(entry), closed, was_suppressed }) => {
                        let mut f = findings[i].clone();
                        f.was_suppressed = was_suppressed;
                        claimed.push((i, entry, closed, f));
                    }
                    Ok(Claimed { claim: Claim::Superseded, .. }) => results[i] = Err(SinkError::Dropped(Dropped::Superseded)),
                    Ok(Claimed { claim: Claim::Identical, .. }) => results[i] = Err(SinkError::Dropped(Dropped::Identical)),
                    Ok(Claimed { claim: Claim::InFlight, .. }) => {
                        results[i] = Err(SinkError::Ledger("the same verdict is being published by another worker; will look again".into()))
                    }
                    Err(e) => results[i] = Err(SinkError::Ledger(e.to_string())),
                }
            }
            claimed.sort_by_key(|(i, ..)| *i);
            if claimed.is_empty() {
                count_dropped(&results);
                return results;
            }
            let (slots, batch): (Vec<_>, Vec<Finding>) = claimed.into_iter().map(|(i, entry, closed, f)| ((i, entry, closed), f)).unzip();
            let answers = self.inner.publish(&batch).await;
            let (mut accepted, mut refused) = (Vec::new(), Vec::new());
            for ((i, entry, closed), answer) in slots.into_iter().zip(answers) {
                match &answer {
                    Ok(()) => {
                        if let Some(open_for) = closed {
                            telemetry::violation_closed(open_for);
                        }
                        accepted.push(entry);
                    }
                    Err(_) => refused.push(entry),
                }
                results[i] = answer;
            }
            count_dropped(&results);
            // A mark that fails costs at most one more publish of the same
            // verdict (the entry stays unpublished): nothing is lost. A
            // release that fails makes the next copy wait out the claim.
            let marks = join_all(accepted.iter().map(|e| self.ledger.published(e)));
            let releases = join_all(refused.iter().map(|e| self.ledger.released(e)));
            let (marks, releases) = futures_util::join!(marks, releases);
            for (entry, marked) in accepted.iter().zip(marks) {
                if let Err(e) = marked {
                    warn!(finding_id = %entry.finding_id, error = %e, "finding published, but the ledger could not mark it so");
                }
            }
            for (entry, released) in refused.iter().zip(releases) {
                if let Err(e) = released {
                    warn!(finding_id = %entry.finding_id, error = %e, "the ledger could not release the claim of a finding not published");
                }
            }
            results
        }
        .boxed()
    }

    fn publish_summary<'a>(&'a self, summary: &'a ScanSummary) -> BoxFuture<'a, Result<(), SinkError>> {
        self.inner.publish_summary(summary)
    }
}
