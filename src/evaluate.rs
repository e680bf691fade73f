//! Evaluate: a user's listed keys plus the event that touched them → verdict.
//!
//! Pure: no AWS types, no clock. Two facts of IAM shape it:
//! - IAM is eventually consistent. A listing taken right after the change
//!   may not show it yet, so for a *fresh* event (younger than the
//!   consistency window) the event's own statement about its key is merged
//!   in when the listing disagrees.
//! - Nothing caps the number of keys at two (races have produced eight), so
//!   the verdict counts, it never assumes.

use crate::event::{EventName, KeyEvent};
use crate::keys::{AccessKey, KeyStatus};

/// What the control says about the user after this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// More than one active key: a `FAILED` finding.
    Violation,
    /// The event deactivated or deleted a key and left at most one active:
    /// a violation it may have ended is closed with a `PASSED` finding. It
    /// is emitted even when no `FAILED` was open (keywatch keeps no state),
    /// which is harmless: the finding id is the same.
    Resolved,
    /// At most one active key and nothing to close: no finding.
    Compliant,
    /// A fresh deactivation or delete that IAM does not show yet, while IAM
    /// still shows more than one active key: neither `FAILED` (IAM is
    /// probably behind) nor `PASSED` (IAM has not shown it): look again
    /// later. A `PASSED` rests only on what IAM shows.
    Unconfirmed,
}

/// The verdict with the key set it was reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub verdict: Verdict,
    /// The user's keys after merging in the event's own state.
    keys: Vec<AccessKey>,
    /// True when the listing did not reflect the event and the event's state
    /// was assumed for its key.
    pub assumed_event_state: bool,
}

impl Assessment {
    pub(crate) fn active_keys(&self) -> impl Iterator<Item = &AccessKey> {
        self.keys.iter().filter(|k| k.is_active())
    }
    pub fn active_count(&self) -> usize {
        self.active_keys().count()
    }
}

/// True when the listing already shows what the event did to its key. The
/// processor re-lists (with a short backoff) while this is false for a
/// fresh event.
pub fn listing_reflects(event: &KeyEvent, keys: &[AccessKey]) -> bool {
    let Some(key_id) = event.access_key_id.as_deref() else { return true };
    let listed = keys.iter().find(|k| k.access_key_id == key_id);
    match (event.event_name, listed, &event.key_status) {
        (EventName::DeleteAccessKey, listed, _) => listed.is_none(),
        (_, Some(k), Some(status)) => &k.status == status,
        (_, None, Some(_)) => false,
        (_, _, None) => true,
    }
}

/// Whether the event lowers the user's active keys (a delete, or an update
/// to any status but `Active`).
fn is_reduction(event: &KeyEvent) -> bool {
    match event.event_name {
        EventName::DeleteAccessKey => true,
        EventName::UpdateAccessKey => event.key_status.as_ref().is_some_and(|s| *s != KeyStatus::Active),
        EventName::CreateAccessKey => false,
    }
}

/// Decides the control for the user the event touched.
///
/// `fresh`: whether the event is young enough that a listing disagreeing
/// with it is more likely stale than newer. The event's own state is then
/// assumed only in the alerting direction (a key created or re-activated
/// that IAM does not list yet counts as active); a reduction IAM does not
/// show is never assumed: with more than one active key listed, the verdict
/// is [`Verdict::Unconfirmed`].
pub fn evaluate(event: &KeyEvent, listed: Vec<AccessKey>, fresh: bool) -> Assessment {
    let mut keys = listed;
    let mut assumed = false;
    let stale = fresh && !listing_reflects(event, &keys);
    if stale && event.key_status == Some(KeyStatus::Active) {
        if let Some(key_id) = event.access_key_id.as_deref() {
            match keys.iter().position(|k| k.access_key_id == key_id) {
                Some(i) => keys[i].status = KeyStatus::Active,
                None => keys.push(AccessKey { access_key_id: key_id.to_string(), status: KeyStatus::Active, created_at: None }),
            }
            assumed = true;
        }
    }
    let active = keys.iter().filter(|k| k.is_active()).count();
    let reducing = is_reduction(event);
    let verdict = if active > 1 && stale && reducing {
        Verdict::Unconfirmed
    } else if active > 1 {
        Verdict::Violation
    } else if reducing {
        Verdict::Resolved
    } else {
        Verdict::Compliant
    };
    Assessment { verdict, keys, assumed_event_state: assumed }
}

/// The root user's access keys after a root key event (CIS 1.4, "no root
/// access key"). `present` is `AccountAccessKeysPresent`; a fresh, successful
/// `CreateAccessKey` that the summary does not reflect yet counts as one key,
/// as for user keys; a fresh delete that the summary does not show yet is
/// [`Verdict::Unconfirmed`]. Returns the verdict, the key count and whether
/// the event was assumed.
pub fn evaluate_root(event: &KeyEvent, present: u32, fresh: bool) -> (Verdict, u32, bool) {
    let (present, assumed) =
        if present == 0 && fresh && event.event_name == EventName::CreateAccessKey { (1, true) } else { (present, false) };
    let verdict = if present > 0 && fresh && event.event_name == EventName::DeleteAccessKey {
        Verdict::Unconfirmed
    } else if present > 0 {
        Verdict::Violation
    } else {
        Verdict::Resolved
    };
    (verdict, present, assumed)
}
