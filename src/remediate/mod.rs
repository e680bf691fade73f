//! Remediate: deactivate (never delete) the least recently used key of each
//! user with more than one active key, under guards (docs/remediation.md).
//!
//! - [`Candidates`] is the port for the users to fix: [`ScanCandidates`]
//!   scans the accounts now (every user, its keys); a ledger of open
//!   violations can take its place.
//! - `plan` looks at each candidate's keys and their last use, and lets
//!   [`crate::decide::remediation::choose`] decide: a [`PlanLine`] per user.
//! - `apply` carries a plan out in account order and batches: the user's
//!   keys are listed again just before each action, the circuit breaker
//!   stops the run, each action goes to the journal and the findings bus,
//!   and the re-check after it publishes the user's finding.
//! - `journal` writes the journal, and `undo` re-activates what a journal
//!   says was deactivated, refusing a key changed since.

mod apply;
mod journal;
mod plan;
mod undo;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::decide::remediation::{KeyFacts, LastUse, Stop};
use crate::finding::rfc3339;
use crate::inventory::{InventoryError, KeyInventory, Need};
use crate::keys::{KeyStatus, User};
use crate::sink::SinkError;

pub use self::apply::{apply, ApplySettings, Prompt, Run};
pub use self::journal::{read as journal_entries, Journal, JournalEntry};
pub use self::plan::{plan, read_plan};
pub use self::undo::undo;

/// Error messages a report keeps (the rest are counted).
pub const ERROR_SAMPLES: usize = 50;

/// The `DetailType` of an action's event on the findings bus.
pub const ACTION_DETAIL_TYPE: &str = "IAM Access Key Remediation";

/// Why a remediation cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    #[error("cannot create the journal {path} (--journal, KEYWATCH_REMEDIATE_JOURNAL; it must not exist yet): {source}")]
    JournalCreate { path: String, source: std::io::Error },
    #[error("cannot write the journal {path}: {source}; the run stopped (the action not journaled is on standard error)")]
    JournalWrite { path: String, source: std::io::Error },
    #[error("--first-tag (KEYWATCH_REMEDIATE_FIRST_TAG): cannot read the tags of account {account_id} (organizations:ListTagsForResource): {message}")]
    Tags { account_id: String, message: String },
    #[error("--apply and --undo announce each action and its re-check on the findings bus: set --findings-bus (KEYWATCH_FINDINGS_BUS), or choose other sinks with --sink (KEYWATCH_SINKS); --plan needs none")]
    NoFindingsBus,
    #[error("cannot read {what} {path}: {message}")]
    Read { what: &'static str, path: String, message: String },
}

/// A user to remediate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub account_id: String,
    pub user: User,
}

/// Where the users to remediate come from: a scan now, or the ledger's open
/// violations. An account that cannot be read is an error
/// for that account; the others go on.
pub trait Candidates: Send + Sync {
    fn candidates<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<Candidate>, String>>;
}

/// [`Candidates`] from the ledger: the users of the account with an open
/// CIS-1.13 violation (a root key is not the kind of thing `remediate`
/// fixes), those of `users` only when it names any (any case), their ARNs
/// built in `partition`. Whether each still has more than one active key is
/// the plan's business: it lists every candidate's keys again.
pub(crate) struct LedgerCandidates {
    pub(crate) ledger: std::sync::Arc<dyn crate::ledger::Ledger>,
    pub(crate) users: Vec<String>,
    pub(crate) partition: &'static str,
}

impl Candidates for LedgerCandidates {
    fn candidates<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<Candidate>, String>> {
        async move {
            let open = self.ledger.open(Some(account_id)).await.map_err(|e| e.to_string())?;
            let wanted = |name: &str| self.users.is_empty() || self.users.iter().any(|w| w.eq_ignore_ascii_case(name));
            Ok(open
                .into_iter()
                .filter(|e| e.control_id == crate::finding::CONTROL_ID && wanted(&e.user_name))
                .map(|e| Candidate {
                    account_id: account_id.to_string(),
                    user: User { arn: format!("arn:{}:iam::{account_id}:user/{}", self.partition, e.user_name), name: e.user_name },
                })
                .collect())
        }
        .boxed()
    }
}

/// [`Candidates`] from a scan: every user of the account with more than
/// one active key (`ListUsers`, `ListAccessKeys`), those of `users` only
/// when it names any (any case).
pub struct ScanCandidates<'i, I> {
    pub inventory: &'i I,
    pub users: Vec<String>,
}

impl<I: KeyInventory> Candidates for ScanCandidates<'_, I> {
    fn candidates<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<Candidate>, String>> {
        async move {
            let users = self.inventory.list_users(account_id).await.map_err(|e| format!("ListUsers: {e}"))?;
            let wanted = |u: &User| self.users.is_empty() || self.users.iter().any(|w| w.eq_ignore_ascii_case(&u.name));
            let mut out = Vec::new();
            for user in users.into_iter().filter(wanted) {
                match self.inventory.list_user_keys(account_id, &user).await {
                    Ok(listing) if listing.keys.iter().filter(|k| k.is_active()).count() > 1 => {
                        out.push(Candidate { account_id: account_id.to_string(), user })
                    }
                    Ok(_) | Err(InventoryError::NoSuchUser { .. }) => {}
                    Err(e) => return Err(format!("ListAccessKeys {}: {e}", user.name)),
                }
            }
            out.sort_by(|a, b| a.user.name.cmp(&b.user.name));
            Ok(out)
        }
        .boxed()
    }
}

/// One key as a plan line and the journal show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLine {
    pub access_key_id: String,
    pub status: String,
    pub created_at: Option<String>,
    /// `never`, `at` (then `last_used_at`) or `unknown`.
    pub last_use: String,
    pub last_used_at: Option<String>,
}

impl KeyLine {
    pub fn of(k: &KeyFacts) -> KeyLine {
        let (last_use, last_used_at) = match k.last_use {
            LastUse::Never => ("never", None),
            LastUse::At(t) => ("at", Some(rfc3339(t))),
            LastUse::Unknown => ("unknown", None),
        };
        KeyLine {
            access_key_id: k.access_key_id.clone(),
            status: k.status.as_str().to_string(),
            created_at: k.created_at.map(rfc3339),
            last_use: last_use.to_string(),
            last_used_at,
        }
    }

    pub fn facts(&self) -> KeyFacts {
        let time = |s: &Option<String>| s.as_deref().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        let last_use = match (self.last_use.as_str(), time(&self.last_used_at)) {
            ("never", _) => LastUse::Never,
            ("at", Some(t)) => LastUse::At(t),
            _ => LastUse::Unknown,
        };
        KeyFacts {
            access_key_id: self.access_key_id.clone(),
            status: KeyStatus::parse(&self.status),
            created_at: time(&self.created_at),
            last_use,
        }
    }
}

/// One line of a plan: what is intended for a user and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLine {
    /// `deactivate` or `skip`.
    pub action: String,
    pub account_id: String,
    pub user_name: String,
    pub user_arn: String,
    /// The key to deactivate (`deactivate` only).
    pub access_key_id: Option<String>,
    /// `never_used` or `least_recently_used` for a deactivation; the skip
    /// reason otherwise.
    pub reason: String,
    /// Every key of the user when planned, with its last use.
    pub keys: Vec<KeyLine>,
    pub planned_at: String,
}

impl PlanLine {
    pub fn is_deactivation(&self) -> bool {
        self.action == "deactivate" && self.access_key_id.is_some()
    }
    pub(crate) fn user(&self) -> User {
        User { name: self.user_name.clone(), arn: self.user_arn.clone() }
    }
}

/// What became of one user, as the summary counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Planned for deactivation (a plan), or deactivated (a run).
    Deactivate,
    NothingToDo,
    Excepted,
    NeedsOwner,
    LastUseUnknown,
    /// The keys differ from the plan's: left alone.
    Changed,
    /// The deactivation (or the re-check before it) failed.
    Failed,
    /// The run stopped before it (circuit breaker, a declined prompt).
    NotReached,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Deactivate,
        Outcome::NothingToDo,
        Outcome::Excepted,
        Outcome::NeedsOwner,
        Outcome::LastUseUnknown,
        Outcome::Changed,
        Outcome::Failed,
        Outcome::NotReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deactivate => "deactivate",
            Outcome::NothingToDo => "nothing_to_do",
            Outcome::Excepted => "excepted",
            Outcome::NeedsOwner => "needs_owner",
            Outcome::LastUseUnknown => "last_use_unknown",
            Outcome::Changed => "changed",
            Outcome::Failed => "failed",
            Outcome::NotReached => "not_reached",
        }
    }

    fn of_skip(s: crate::decide::remediation::Skip) -> Outcome {
        use crate::decide::remediation::Skip;
        match s {
            Skip::NothingToDo => Outcome::NothingToDo,
            Skip::Excepted => Outcome::Excepted,
            Skip::NeedsOwner => Outcome::NeedsOwner,
            Skip::LastUseUnknown => Outcome::LastUseUnknown,
        }
    }
}

/// What a plan, a run or an undo did, account by account.
#[derive(Debug, Default)]
pub struct Report {
    /// Users by outcome, per account (the accounts keywatch may act in).
    pub accounts: BTreeMap<String, BTreeMap<Outcome, usize>>,
    /// What went wrong: accounts or users that could not be read, actions
    /// that failed or were not announced (the first [`ERROR_SAMPLES`]).
    pub errors: Vec<String>,
    /// How many things went wrong in all.
    pub errors_total: usize,
    /// Deactivations the plan intended.
    pub intended: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
    /// The journal written, if any.
    pub journal: Option<String>,
}

impl Report {
    /// Notes something that went wrong; the first [`ERROR_SAMPLES`] are kept.
    pub fn error(&mut self, message: String) {
        self.errors_total += 1;
        if self.errors.len() < ERROR_SAMPLES {
            self.errors.push(message);
        }
    }

    pub fn count(&mut self, account_id: &str, outcome: Outcome) {
        *self.accounts.entry(account_id.to_string()).or_default().entry(outcome).or_default() += 1;
    }

    pub fn total(&self, outcome: Outcome) -> usize {
        self.accounts.values().map(|m| m.get(&outcome).copied().unwrap_or(0)).sum()
    }

    /// The exit status: 0 done (every intended action made, or planned
    /// without error), 1 partly done, 3 nothing to do.
    pub fn exit_code(&self) -> u8 {
        let done = self.total(Outcome::Deactivate);
        if self.intended == 0 && self.errors_total == 0 {
            3
        } else if done == self.intended && self.errors_total == 0 && self.stopped.is_none() {
            0
        } else {
            1
        }
    }
}

impl Report {
    /// The summary table: a row per account, a column per outcome
    /// (`deactivated` is `deactivate` for a plan, `reactivated` for an undo).
    pub fn table(&self, first_column: &str) -> String {
        let mut head = vec!["account".to_string()];
        head.extend(Outcome::ALL.iter().map(|o| if *o == Outcome::Deactivate { first_column.to_string() } else { o.as_str().to_string() }));
        let mut rows = vec![head];
        let mut totals = vec![0usize; Outcome::ALL.len()];
        for (account, counts) in &self.accounts {
            let mut row = vec![account.clone()];
            for (i, o) in Outcome::ALL.iter().enumerate() {
                let n = counts.get(o).copied().unwrap_or(0);
                totals[i] += n;
                row.push(n.to_string());
            }
            rows.push(row);
        }
        let mut total = vec!["total".to_string()];
        total.extend(totals.iter().map(|n| n.to_string()));
        rows.push(total);
        let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:>w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// The summary as one JSON object.
    pub fn summary_json(&self) -> serde_json::Value {
        let totals: serde_json::Map<String, serde_json::Value> =
            Outcome::ALL.iter().map(|o| (o.as_str().to_string(), self.total(*o).into())).collect();
        serde_json::json!({"summary": {
            "intended": self.intended,
            "outcomes": totals,
            "stopped": self.stopped.map(|s| s.as_str()),
            "errors": self.errors_total,
            "error_samples": self.errors,
            "journal": self.journal,
        }})
    }
}

/// Every key of `user` with its last use (`ListAccessKeys`, then
/// `GetAccessKeyLastUsed` per key): what a choice is made from. A last use
/// that cannot be read is [`LastUse::Unknown`], which no choice acts on.
pub(crate) async fn look<I: KeyInventory>(inventory: &I, account_id: &str, user: &User) -> Result<Vec<KeyFacts>, InventoryError> {
    let listing = inventory.list_user_keys(account_id, user).await?;
    let mut facts = Vec::with_capacity(listing.keys.len());
    for k in listing.keys {
        let last_use = match inventory.last_used(account_id, &k.access_key_id, Need::Required).await {
            Ok(Some(last)) => last.usage.last_used_at.map_or(LastUse::Never, LastUse::At),
            // IAM no longer knows the key, or did not answer.
            Ok(None) | Err(_) => LastUse::Unknown,
        };
        facts.push(KeyFacts { access_key_id: k.access_key_id, status: k.status, created_at: k.created_at, last_use });
    }
    Ok(facts)
}

/// Publishes each action to the findings bus (`IAM Access Key
/// Remediation`).
pub trait ActionEvents: Send + Sync {
    fn publish<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// No bus: actions are in the journal and on standard output only.
pub struct NoEvents;

impl ActionEvents for NoEvents {
    fn publish<'a>(&'a self, _: &'a JournalEntry) -> BoxFuture<'a, Result<(), SinkError>> {
        async { Ok(()) }.boxed()
    }
}

impl ActionEvents for crate::aws::eventbridge::EventBridgeSink {
    fn publish<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            let detail = serde_json::to_string(entry).map_err(|e| SinkError::Write(e.to_string()))?;
            self.put_one(ACTION_DETAIL_TYPE, detail, Some(&entry.user_arn)).await
        }
        .boxed()
    }
}
