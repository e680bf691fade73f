//! Quarantine: the worker deactivates at once a second key that looks
//! planted (opt-in, per account: `--quarantine-accounts`). Which keys are
//! candidates, and whether a candidate is deactivated, from a listing
//! taken just before the action and the key's last use. Pure: `now` comes
//! in; the circuit breaker and the kill switch, which keep state or ask
//! SSM, are the processor's.

use std::time::Duration;

use time::OffsetDateTime;

use crate::event::{EventName, KeyEvent};
use crate::exceptions::glob_match;
use crate::finding::{actor_is_target, Finding, Status, Withheld};
use crate::keys::{KeyUsage, Listing};

/// How young (IAM's `CreateDate`) a key must be to be quarantined: a
/// planted key is caught as it is made; an older one is a matter for
/// people (`keywatch remediate`).
pub const QUARANTINE_FRESH: Duration = Duration::from_secs(3600);

/// The quarantine's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRules {
    /// Accounts where a planted key is deactivated.
    pub accounts: Vec<String>,
    /// The rotation allow-list (`--rotation-principals`): their keys are
    /// never quarantined.
    pub principals: Vec<String>,
}

/// Whether `finding`, about to be published for `event`, names a key the
/// quarantine should look at: a `FAILED` in an opted-in account, made by a
/// successful `CreateAccessKey` of a principal other than the user and not
/// on the rotation allow-list. The event's key, if so.
pub fn quarantine_candidate<'a>(event: &'a KeyEvent, finding: &Finding, rules: &QuarantineRules) -> Option<&'a str> {
    let made_by_other = !actor_is_target(event, &finding.user_name)
        && !event.actor.arn.as_deref().is_some_and(|arn| rules.principals.iter().any(|p| glob_match(p, arn)));
    let eligible = finding.status == Status::Failed
        && event.event_name == EventName::CreateAccessKey
        && event.failed.is_none()
        && rules.accounts.contains(&event.account_id)
        && made_by_other;
    eligible.then_some(event.access_key_id.as_deref()).flatten()
}

/// Whether the candidate `key` is deactivated, from IAM's listing taken
/// just before the action and its last use (`GetAccessKeyLastUsed`; `None`
/// when it could not be read): only when the listing shows it active with
/// another active key beside it, it is younger than [`QUARANTINE_FRESH`],
/// and it was never used.
pub fn quarantine_choice(key: &str, listing: &Listing, last_use: Option<&KeyUsage>, now: OffsetDateTime) -> Result<(), Withheld> {
    let Some(k) = listing.keys.iter().find(|k| k.access_key_id == key && k.is_active()) else { return Err(Withheld::NotListed) };
    if !listing.keys.iter().any(|o| o.is_active() && o.access_key_id != key) {
        return Err(Withheld::OnlyActiveKey);
    }
    match k.created_at {
        Some(created) if now - created < QUARANTINE_FRESH => {}
        _ => return Err(Withheld::NotFresh),
    }
    match last_use {
        None => Err(Withheld::LastUseUnknown),
        Some(u) if u.last_used_at.is_some() => Err(Withheld::Used),
        Some(_) => Ok(()),
    }
}
