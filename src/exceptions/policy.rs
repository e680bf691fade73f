//! What an exceptions document may say beyond its syntax, so that an
//! exception cannot silence the control for ever: an expiry at most
//! [`Policy::max_days`] after the approval (`approved`, else the day the
//! document is loaded), an owner that can be reached (an e-mail address or a
//! team handle), no entry that names every account and every user unless
//! allowed; and a warning some days before an exception lapses.

use time::{Date, Duration};
use tracing::warn;

use super::{Exception, Exceptions};
use crate::telemetry;

/// The longest an exception may run by default, in days from its approval.
pub const DEFAULT_MAX_DAYS: u32 = 180;
/// How many days before it lapses an exception is reported by default.
pub const DEFAULT_WARN_DAYS: u32 = 14;

/// What an exceptions document may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The latest an exception may expire, in days after `approved` (or,
    /// without it, after the day the document is loaded).
    pub max_days: u32,
    /// Whether an entry may name every account (`*`) and every user (`*`).
    pub allow_match_all: bool,
    /// How many days before it lapses an exception is logged and counted
    /// (`keywatch_expiring_exceptions`).
    pub warn_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_days: DEFAULT_MAX_DAYS, allow_match_all: false, warn_days: DEFAULT_WARN_DAYS }
    }
}

/// An owner is an e-mail address (`platform-team@example.com`) or a team
/// handle (`@platform-team`, `@example-org/platform-team`).
pub(super) fn check_owner(owner: &str) -> Result<(), String> {
    let word = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)) && !s.starts_with('.')
    };
    let ok = match owner.strip_prefix('@') {
        Some(handle) => match handle.split_once('/') {
            Some((org, team)) => word(org) && word(team),
            None => word(handle),
        },
        None => match owner.split_once('@') {
            Some((local, domain)) => {
                word(local)
                    && domain.len() <= 253
                    && domain.contains('.')
                    && domain
                        .split('.')
                        .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            }
            None => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(format!("owner {owner:?} is neither an e-mail address (team@example.com) nor a team handle (@team, @org/team)"))
    }
}

/// Whether an entry names every account and every user.
pub(super) fn matches_everything(account: &str, user: &str) -> bool {
    account == "*" && !user.is_empty() && user.chars().all(|c| c == '*')
}

/// The refusal of an entry naming everything, unless the policy allows it.
pub(super) fn check_scope(account: &str, user: &str, policy: &Policy) -> Result<(), String> {
    if matches_everything(account, user) && !policy.allow_match_all {
        return Err("account \"*\" with user \"*\" would suppress every finding; name the account or the users, or set \
                    --exceptions-allow-match-all (KEYWATCH_EXCEPTIONS_ALLOW_MATCH_ALL)"
            .into());
    }
    Ok(())
}

/// An expiry at most `max_days` after the approval, itself not in the
/// future; without `approved`, at most `max_days` after `today`.
pub(super) fn check_expiry(expires: Date, approved: Option<Date>, today: Date, policy: &Policy) -> Result<(), String> {
    let max = Duration::days(policy.max_days.into());
    let flag = "--exceptions-max-days (KEYWATCH_EXCEPTIONS_MAX_DAYS)";
    match approved {
        Some(approved) if approved > today => Err(format!("approved {approved} is in the future")),
        Some(approved) if expires < approved => Err(format!("expires {expires} is before approved {approved}")),
        Some(approved) if expires - approved > max => Err(format!(
            "expires {expires} is more than {} days after approved {approved}; set an earlier date, or raise {flag}",
            policy.max_days
        )),
        None if expires - today > max => Err(format!(
            "expires {expires} is more than {} days from today ({today}) and there is no `approved` date; \
             set an earlier date, or raise {flag}",
            policy.max_days
        )),
        _ => Ok(()),
    }
}

/// The exceptions that still apply on `today` and lapse within `warn_days`.
pub fn expiring(exceptions: &Exceptions, today: Date, warn_days: u32) -> Vec<&Exception> {
    let horizon = today + Duration::days(warn_days.into());
    exceptions.entries.iter().filter(|e| e.expires >= today && e.expires <= horizon).collect()
}

/// Logs each exception that lapses within `warn_days` and sets
/// `keywatch_expiring_exceptions`.
pub(crate) fn report_expiring(exceptions: &Exceptions, today: Date, warn_days: u32) {
    let soon = expiring(exceptions, today, warn_days);
    for e in &soon {
        let days_left = (e.expires - today).whole_days();
        warn!(
            account = %e.account,
            user = %e.user,
            owner = %e.owner,
            expires = %e.expires,
            days_left,
            "approved exception lapses soon; renew it with its owner or let findings for it alert again"
        );
    }
    telemetry::exceptions_expiring(soon.len());
}
