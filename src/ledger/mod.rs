//! Ledger: the record of the control, one entry per `finding_id`, and the
//! last word on it.
//!
//! Before a finding is published it is *claimed*: the entry kept for its
//! `finding_id` is read, [`claim`] decides (no I/O, the entry and the
//! finding in, the new entry out), and the new entry is written only if
//! nobody wrote another since it was read (a version number). A finding
//! resting on an older IAM answer than the entry's is dropped as
//! superseded; one identical to the last one published (same IAM answer,
//! same verdict) is dropped as identical, so that N copies of an old event
//! answered from one cached listing publish once. After every sink has
//! accepted the finding its entry is marked published; one that was not
//! accepted stays unpublished and is claimed again on redelivery, so a
//! finding is never dropped for a publish that failed.
//!
//! The entry knows when the violation was opened (the `observed_at` of the
//! first `FAILED` since the last `PASSED`) and closed, so that the ledger
//! can say at any time who fails now ([`Ledger::open`]) and for how long.
//!
//! Two ledgers: [`dynamodb`](crate::aws::dynamodb), a table every replica
//! shares (the last word holds across replicas and restarts), and
//! [`MemoryLedger`], this process's memory (bounded; the last word per
//! process, no list of who fails now). [`sink::RecordedSinks`] puts a
//! ledger in front of the sinks, so that every path that publishes (events,
//! re-checks, scans, replays) goes through it.

#[cfg(feature = "aws")]
pub(crate) mod sink;
#[cfg(feature = "aws")]
pub use self::sink::RecordedSinks;
#[cfg(all(test, feature = "aws"))]
mod tests;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::cache::BoundedCache;
use crate::decide;
use crate::error::AwsError;
use crate::finding::{Finding, Severity, Status};

/// What the ledger keeps of a `finding_id`: the last verdict claimed, and
/// the violation's opening and closing.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub finding_id: String,
    pub control_id: String,
    pub account_id: String,
    pub user_name: String,
    pub severity: Severity,
    /// Why a `PASSED` closed the finding, when the listing alone does not
    /// say it (`user_deleted`, …).
    pub reason: Option<String>,
    pub active_key_count: usize,
    pub recommended_key: Option<String>,
    pub trigger_event_id: String,
    pub trigger_event_name: String,
    /// The last word: what a claim compares with.
    pub last: Last,
}

/// The last word on a `finding_id`: what [`claim`] reads of an entry, and
/// all that [`MemoryLedger`] keeps (no text, so that 50,000 of them stay
/// small).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Last {
    pub status: Status,
    /// Covered by an approved exception.
    pub suppressed: bool,
    /// The IAM answer the verdict rests on.
    pub observed_at: OffsetDateTime,
    /// The `observed_at` of the first `FAILED` since the last `PASSED`
    /// (kept after the close, until the next opening).
    pub opened_at: Option<OffsetDateTime>,
    /// The `observed_at` of the `PASSED` that closed the last opening.
    pub closed_at: Option<OffsetDateTime>,
    /// The verdict (see [`verdict_digest`]).
    pub digest: u64,
    /// When the verdict was claimed (written, unpublished).
    pub claimed_at: OffsetDateTime,
    /// Whether every sink accepted the verdict.
    pub published: bool,
    /// Incremented on every write: a write is made only over the version
    /// read.
    pub version: u64,
}

impl Last {
    /// A violation not closed yet.
    pub fn is_open(&self) -> bool {
        self.status == Status::Failed
    }
}

impl Entry {
    /// A violation not closed yet.
    pub fn is_open(&self) -> bool {
        self.last.is_open()
    }
}

/// What to do with a finding, given the entry kept for its `finding_id`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Claim {
    /// Publish it; `Entry` is the ledger's entry once it is written.
    Publish(Box<Entry>),
    /// It rests on an older IAM answer than the entry's.
    Superseded,
    /// The same verdict on the same IAM answer was published already.
    Identical,
    /// The same verdict on the same IAM answer was claimed a moment ago and
    /// is being published: ask again later (it is then identical, or its
    /// publish failed and this one takes over).
    InFlight,
}

/// A claim's answer: what to do, how long the violation it closes was
/// open, and whether the last word before it was suppressed (so that a
/// sink can lift a suppression it set, whichever process set it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claimed {
    pub(crate) claim: Claim,
    pub(crate) closed: Option<Duration>,
    pub(crate) was_suppressed: bool,
}

impl Claimed {
    /// The answer for `old`, the last word read, and `claim`, made from it.
    pub(crate) fn of(old: Option<&Last>, claim: Claim) -> Claimed {
        let closed = match &claim {
            Claim::Publish(entry) => closes(old, &entry.last),
            _ => None,
        };
        Claimed { claim, closed, was_suppressed: old.is_some_and(|o| o.suppressed) }
    }
}

/// How long a claimed, unpublished verdict is taken to be in flight: well
/// above a publish's own time limit (20 s), so that one that failed is
/// published again by the next copy after this.
pub(crate) const IN_FLIGHT: Duration = Duration::from_secs(60);

/// Decides what to do with `f` at `now`, given `old`, the last word kept
/// for its `finding_id` (no I/O: the ledgers read and write around it).
pub(crate) fn claim(old: Option<&Last>, f: &Finding, now: OffsetDateTime) -> Claim {
    let digest = verdict_digest(f);
    if let Some(old) = old {
        if decide::superseded(f.observed_at, Some(old.observed_at)) {
            return Claim::Superseded;
        }
        if f.observed_at == old.observed_at && old.digest == digest {
            if old.published {
                return Claim::Identical;
            }
            if now - old.claimed_at < IN_FLIGHT {
                return Claim::InFlight;
            }
        }
    }
    let was_open = old.is_some_and(Last::is_open);
    let (opened_at, closed_at) = match f.status {
        Status::Failed if was_open => (old.and_then(|o| o.opened_at).or(Some(f.observed_at)), None),
        Status::Failed => (Some(f.observed_at), None),
        Status::Passed if was_open => (old.and_then(|o| o.opened_at), Some(f.observed_at)),
        Status::Passed => (old.and_then(|o| o.opened_at), old.and_then(|o| o.closed_at)),
    };
    Claim::Publish(Box::new(Entry {
        finding_id: f.finding_id.clone(),
        control_id: f.control_id.to_string(),
        account_id: f.account_id.clone(),
        user_name: f.user_name.clone(),
        severity: f.severity,
        reason: f.reason.map(|r| r.as_str().to_string()),
        active_key_count: f.active_key_count,
        recommended_key: f.recommended_key_to_deactivate.clone(),
        trigger_event_id: f.trigger.event_id.clone(),
        trigger_event_name: f.trigger.event_name.to_string(),
        last: Last {
            status: f.status,
            suppressed: f.suppressed,
            observed_at: f.observed_at,
            opened_at,
            closed_at,
            digest,
            claimed_at: now,
            published: false,
            version: old.map_or(1, |o| o.version + 1),
        },
    }))
}

/// How long the violation `new` closes was open, when `old` had it open.
pub(crate) fn closes(old: Option<&Last>, new: &Last) -> Option<Duration> {
    let old = old.filter(|o| o.is_open())?;
    if new.is_open() {
        return None;
    }
    let opened = old.opened_at?;
    Some((new.observed_at - opened).try_into().unwrap_or_default())
}

/// The verdict of a finding in 64 bits: status, severity, reason,
/// suppression, the active keys, the recommended key and the event it
/// answers. Two findings with
/// one `observed_at` and one digest say the same thing (their trigger and
/// detection time aside).
pub(crate) fn verdict_digest(f: &Finding) -> u64 {
    let mut h = Sha256::new();
    let mut part = |s: &str| {
        h.update(s.as_bytes());
        h.update([0]);
    };
    part(f.status.as_str());
    part(&format!("{:?}", f.severity));
    part(f.reason.map_or("", |r| r.as_str()));
    part(if f.suppressed { "suppressed" } else { "" });
    part(if f.event_state_assumed { "assumed" } else { "" });
    // Copies of one event are identical; two events answered by one
    // listing are not: each has its finding.
    part(&f.trigger.event_id);
    for k in &f.active_keys {
        part(&k.access_key_id);
    }
    part(f.recommended_key_to_deactivate.as_deref().unwrap_or(""));
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Why the ledger could not answer. Retryable: the finding's message is
/// left for redelivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Call(#[from] AwsError),
    /// Other writers kept winning the race for this `finding_id`.
    #[error("finding {0}: the ledger entry kept changing while it was claimed; will retry")]
    Contended(String),
    /// An entry the ledger holds cannot be read (written by hand, or by a
    /// newer keywatch).
    #[error("finding {finding_id}: ledger entry unreadable: {message}")]
    Unreadable { finding_id: String, message: String },
    /// This ledger keeps no list of open violations (no table configured).
    #[error(
        "no ledger table is configured, so keywatch cannot list who fails now: set --ledger-table (KEYWATCH_LEDGER_TABLE) to the table of the central stack (output LedgerTableName)"
    )]
    NotShared,
}

/// The record of findings, shared or not.
pub(crate) trait Ledger: Send + Sync + 'static {
    /// Claims `f` (see [`claim`]): the entry is written, unpublished, when
    /// the answer is [`Claim::Publish`], which also carries how long the
    /// violation it closes was open.
    fn claim<'a>(&'a self, f: &'a Finding) -> BoxFuture<'a, Result<Claimed, LedgerError>>;

    /// Marks `entry` published, unless another has been written since.
    fn published<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// Releases the claim of `entry`, whose publish failed, unless another
    /// has been written since: the next copy publishes it at once rather
    /// than waiting [`IN_FLIGHT`].
    fn released<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// The open violations (every account, or `account`'s).
    fn open<'a>(&'a self, account: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Entry>, LedgerError>>;

    /// Keeps the journal entry of a quarantine of `access_key_id` (an item
    /// of its own, `quarantine#<key id>`); a ledger that is not shared
    /// keeps none.
    fn journal<'a>(&'a self, _access_key_id: &'a str, _entry: &'a serde_json::Value) -> BoxFuture<'a, Result<(), LedgerError>> {
        std::future::ready(Err(LedgerError::NotShared)).boxed()
    }
}

/// Puts `entries` in the order `keywatch findings` lists them: the oldest
/// opening first, then by account and user.
pub(crate) fn oldest_first(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.last.opened_at, &a.account_id, &a.user_name).cmp(&(b.last.opened_at, &b.account_id, &b.user_name)));
}

/// Open violations counted: how many are (not) covered by an exception,
/// and the age of the oldest one that is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenCount {
    pub unsuppressed: usize,
    pub suppressed: usize,
    pub oldest_seconds: f64,
}

/// Counts `open` at `now`.
pub fn count(open: &[Entry], now: OffsetDateTime) -> OpenCount {
    let unsuppressed = open.iter().filter(|e| e.is_open() && !e.last.suppressed);
    let oldest = unsuppressed.clone().filter_map(|e| e.last.opened_at).min();
    OpenCount {
        unsuppressed: unsuppressed.count(),
        suppressed: open.iter().filter(|e| e.is_open() && e.last.suppressed).count(),
        oldest_seconds: oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0)),
    }
}

/// Entries kept in memory at most (by `finding_id`).
const MEMORY_CAPACITY: usize = 50_000;
/// How long an entry is kept in memory.
const MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The ledger of one process, without a table: the last word per process
/// (bounded like every map keyed by input data: at most 50,000 entries,
/// each for a day, the oldest evicted first), and no list of who fails now.
pub(crate) struct MemoryLedger {
    entries: BoundedCache<String, Last>,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        MemoryLedger { entries: BoundedCache::new(MEMORY_CAPACITY, MEMORY_TTL) }
    }
}

impl MemoryLedger {
    /// Entries kept (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Ledger for MemoryLedger {
    fn claim<'a>(&'a self, f: &'a Finding) -> BoxFuture<'a, Result<Claimed, LedgerError>> {
        let old = self.entries.get(&f.finding_id);
        let claimed = claim(old.as_ref(), f, OffsetDateTime::now_utc());
        if let Claim::Publish(entry) = &claimed {
            let version = entry.last.version;
            self.entries.insert_unless(f.finding_id.clone(), entry.last, |kept| kept.version >= version);
        }
        std::future::ready(Ok(Claimed::of(old.as_ref(), claimed))).boxed()
    }

    fn published<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>> {
        if self.entries.get(&entry.finding_id).is_some_and(|kept| kept.version == entry.last.version) {
            self.entries.insert(entry.finding_id.clone(), Last { published: true, ..entry.last });
        }
        std::future::ready(Ok(())).boxed()
    }

    fn released<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>> {
        if self.entries.get(&entry.finding_id).is_some_and(|kept| kept.version == entry.last.version) {
            self.entries.insert(entry.finding_id.clone(), Last { claimed_at: OffsetDateTime::UNIX_EPOCH, ..entry.last });
        }
        std::future::ready(Ok(())).boxed()
    }

    fn open<'a>(&'a self, _account: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Entry>, LedgerError>> {
        std::future::ready(Err(LedgerError::NotShared)).boxed()
    }
}

/// A severity as findings write it (`HIGH`, …).
pub(crate) fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Informational => "INFORMATIONAL",
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

/// The severity [`severity_str`] wrote.
pub(crate) fn parse_severity(s: &str) -> Option<Severity> {
    [Severity::Informational, Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
        .into_iter()
        .find(|v| severity_str(*v) == s)
}
