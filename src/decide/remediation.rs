//! Which key of a failing user `keywatch remediate` deactivates, or why it
//! leaves the user alone.
//!
//! Pure: no async, no AWS types, `now` comes in. The rules, each a guard
//! against a known way such tools break things (docs/remediation.md):
//!
//! - a user with fewer than two active keys has nothing to fix: the only
//!   active key is never touched ([`Skip::NothingToDo`]);
//! - an approved exception wins ([`Skip::Excepted`]);
//! - a key whose last use is unknown is never chosen blindly: the user is
//!   skipped ([`Skip::LastUseUnknown`]);
//! - when more than one active key was used within the recent-use window,
//!   both are in use and only the owner can say which to keep
//!   ([`Skip::NeedsOwner`]);
//! - otherwise the key chosen is the one used least recently (never used
//!   counts as oldest), by last use and never by creation date, and never
//!   the key used most recently: a tie for least recent is
//!   [`Skip::NeedsOwner`] too.
//!
//! One key per user per run: with IAM's two keys a user, that leaves one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::keys::KeyStatus;

/// What is known of a key's last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastUse {
    /// IAM says the key was never used.
    Never,
    /// IAM says when.
    At(OffsetDateTime),
    /// The look-up failed or was left out.
    Unknown,
}

/// One key of the user, as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub access_key_id: String,
    pub status: KeyStatus,
    pub created_at: Option<OffsetDateTime>,
    pub last_use: LastUse,
}

/// Why a user is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// Fewer than two active keys: compliant already.
    NothingToDo,
    /// An approved exception covers the user.
    Excepted,
    /// More than one active key used within the recent-use window, or no
    /// single least-recently-used key: the owner must choose.
    NeedsOwner,
    /// The last use of an active key is unknown.
    LastUseUnknown,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NothingToDo => "nothing_to_do",
            Skip::Excepted => "excepted",
            Skip::NeedsOwner => "needs_owner",
            Skip::LastUseUnknown => "last_use_unknown",
        }
    }
}

/// Why the chosen key was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// Never used, while another active key was.
    NeverUsed,
    /// Used, but before every other active key, and not within the window.
    LeastRecentlyUsed,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::NeverUsed => "never_used",
            Why::LeastRecentlyUsed => "least_recently_used",
        }
    }
}

/// The choice for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Deactivate { access_key_id: String, why: Why },
    Skip(Skip),
}

/// Chooses the key to deactivate among `keys`, or why none. `recent_use`:
/// a key used within it of `now` counts as in use.
pub fn choose(keys: &[KeyFacts], now: OffsetDateTime, recent_use: Duration, excepted: bool) -> Choice {
    let active: Vec<&KeyFacts> = keys.iter().filter(|k| k.status == KeyStatus::Active).collect();
    if active.len() < 2 {
        return Choice::Skip(Skip::NothingToDo);
    }
    if excepted {
        return Choice::Skip(Skip::Excepted);
    }
    if active.iter().any(|k| k.last_use == LastUse::Unknown) {
        return Choice::Skip(Skip::LastUseUnknown);
    }
    let recent = active.iter().filter(|k| matches!(k.last_use, LastUse::At(t) if is_recent(t, now, recent_use))).count();
    if recent > 1 {
        return Choice::Skip(Skip::NeedsOwner);
    }
    // Least recent first: never used, then by last use.
    let order = |k: &KeyFacts| match k.last_use {
        LastUse::Never => None,
        LastUse::At(t) => Some(t),
        LastUse::Unknown => unreachable!("refused above"),
    };
    let oldest = active.iter().map(|k| order(k)).min().expect("two active keys");
    let tied: Vec<&&KeyFacts> = active.iter().filter(|k| order(k) == oldest).collect();
    if tied.len() > 1 {
        return Choice::Skip(Skip::NeedsOwner);
    }
    let chosen = tied[0];
    let why = match chosen.last_use {
        LastUse::Never => Why::NeverUsed,
        _ => Why::LeastRecentlyUsed,
    };
    // The chosen key is not one used within the window: had it been, every
    // other active key, used later, would have been too (refused above).
    Choice::Deactivate { access_key_id: chosen.access_key_id.clone(), why }
}

/// A use at `t` is within `window` of `now` (a time after `now`, from a
/// clock ahead of ours, is recent too).
fn is_recent(t: OffsetDateTime, now: OffsetDateTime, window: Duration) -> bool {
    let age = now - t;
    age.is_negative() || age.unsigned_abs() <= window
}

/// Whether two looks at a user's keys show the same keys in the same
/// states (ids and statuses; order aside): what apply and undo compare
/// against the plan and the journal before they act.
pub fn same_keys(a: &[KeyFacts], b: &[KeyFacts]) -> bool {
    let mut a: Vec<(&str, &KeyStatus)> = a.iter().map(|k| (k.access_key_id.as_str(), &k.status)).collect();
    let mut b: Vec<(&str, &KeyStatus)> = b.iter().map(|k| (k.access_key_id.as_str(), &k.status)).collect();
    a.sort_by(|x, y| x.0.cmp(y.0));
    b.sort_by(|x, y| x.0.cmp(y.0));
    a == b
}

/// The order accounts are remediated in: those named in `first`, in that
/// order, then those `tagged` (by the Organizations tag asked for), then
/// the rest, each group in the order given, each account once.
pub fn account_order(accounts: &[String], first: &[String], tagged: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(accounts.len());
    let groups = [first, tagged];
    for group in groups {
        for a in group {
            if accounts.contains(a) && !out.contains(a) {
                out.push(a.clone());
            }
        }
    }
    for a in accounts {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// The circuit breaker of a run: it stops after `max_actions`
/// deactivations, and after `max_failures` failed ones in a row.
#[derive(Debug, Clone)]
pub struct Breaker {
    max_actions: usize,
    max_failures: usize,
    done: usize,
    failing: usize,
}

/// Why a run stopped before the end of its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// `--max-actions` deactivations made.
    MaxActions,
    /// `--max-failures` deactivations in a row failed.
    Failures,
    /// The operator said no at the prompt between batches.
    Declined,
    /// SIGTERM or SIGINT.
    Interrupted,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::MaxActions => "max_actions",
            Stop::Failures => "max_failures",
            Stop::Declined => "declined",
            Stop::Interrupted => "interrupted",
        }
    }
}

impl Breaker {
    pub fn new(max_actions: usize, max_failures: usize) -> Breaker {
        Breaker { max_actions, max_failures: max_failures.max(1), done: 0, failing: 0 }
    }

    /// Whether another action may be tried, and why not.
    pub fn check(&self) -> Result<(), Stop> {
        if self.failing >= self.max_failures {
            Err(Stop::Failures)
        } else if self.done >= self.max_actions {
            Err(Stop::MaxActions)
        } else {
            Ok(())
        }
    }

    /// A deactivation made.
    pub fn succeeded(&mut self) {
        self.done += 1;
        self.failing = 0;
    }

    /// A deactivation that failed (it counts towards `max_actions` too:
    /// the attempt may have taken effect).
    pub fn failed(&mut self) {
        self.done += 1;
        self.failing += 1;
    }
}
