//! The last word wins: a finding resting on an older IAM answer than one
//! already published for its `finding_id` is dropped, not published, so
//! that a delayed or redelivered event can never overwrite a newer verdict
//! (consumers apply the same rule with `observed_at`; see the README's
//! finding table).
//!
//! Kept per `finding_id` and bounded like every map keyed by input data: at
//! most [`CAPACITY`] findings, each for [`TTL`], the oldest evicted first.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cache::BoundedCache;
use crate::decide;
use crate::finding::Finding;

/// Findings' last published `observed_at` kept at most (by `finding_id`).
const CAPACITY: usize = 50_000;
/// How long a published `observed_at` is kept.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The `observed_at` of the last finding published per `finding_id`.
pub(crate) struct LastWord {
    published: BoundedCache<String, OffsetDateTime>,
}

impl Default for LastWord {
    fn default() -> Self {
        LastWord { published: BoundedCache::new(CAPACITY, TTL) }
    }
}

impl LastWord {
    /// For each of `findings`, whether it may be published: false when it
    /// rests on an older IAM answer than one already published for its
    /// `finding_id`, or than another of `findings`.
    pub(crate) fn keep(&self, findings: &[Finding]) -> Vec<bool> {
        let mut latest: HashMap<&str, OffsetDateTime> = HashMap::new();
        for f in findings {
            let last = self.published.get(&f.finding_id).map_or(f.observed_at, |p| p.max(f.observed_at));
            let entry = latest.entry(f.finding_id.as_str()).or_insert(last);
            *entry = (*entry).max(last);
        }
        findings.iter().map(|f| !decide::superseded(f.observed_at, latest.get(f.finding_id.as_str()).copied())).collect()
    }

    /// Notes a finding the sinks accepted.
    pub(crate) fn published(&self, finding: &Finding) {
        let observed = finding.observed_at;
        self.published.insert_unless(finding.finding_id.clone(), observed, |kept| *kept > observed);
    }

    /// Findings whose last word is kept (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.published.len()
    }
}
