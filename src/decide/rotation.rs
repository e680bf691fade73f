//! Rotation grace: a second key made by its own user (or by an
//! allow-listed rotation principal) is how a key is rotated, and for a
//! while both keys are active. Within the grace such a `FAILED` is `LOW`
//! with `rotation_in_progress` (or, quiet, not published at all); a
//! re-check on the queue, due when the grace ends, escalates it to the
//! normal severity if two keys are still active. A key made by anyone else
//! gets no grace. Pure: `now` comes in.

use std::time::Duration;

use time::OffsetDateTime;

use crate::event::{EventName, KeyEvent, Target};
use crate::exceptions::glob_match;
use crate::finding::actor_is_target;
use crate::keys::Listing;

/// The rotation grace's settings (`--rotation-grace` and its companions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// How long after its creation a self-made second key is a rotation
    /// under way.
    pub grace: Duration,
    /// ARN globs (`*`, `?`) of the principals whose second keys are
    /// rotations too (a rotation pipeline's role).
    pub principals: Vec<String>,
    /// Within the grace, publish nothing (rather than a `LOW`).
    pub quiet: bool,
}

impl Rotation {
    /// Whether the creator of the event's key is one whose second keys are
    /// rotations: the user itself, or an allow-listed principal. Only a
    /// successful `CreateAccessKey` says who made a key.
    pub(crate) fn covers(&self, event: &KeyEvent, user_name: &str) -> bool {
        if event.event_name != EventName::CreateAccessKey || event.failed.is_some() {
            return false;
        }
        actor_is_target(event, user_name)
            || event.actor.arn.as_deref().is_some_and(|arn| self.principals.iter().any(|p| glob_match(p, arn)))
    }

    /// When the grace of the event's key ends, if its creator is one
    /// [`Rotation::covers`]: from the earlier of the event's time and the
    /// key's `CreateDate` in IAM's listing (so an event cannot make an old
    /// key young). A key the listing does not show yet (IAM propagation)
    /// is as young as its creation event.
    pub(crate) fn grace_ends(&self, event: &KeyEvent, user_name: &str, listing: &Listing) -> Option<OffsetDateTime> {
        if !self.covers(event, user_name) {
            return None;
        }
        let key = event.access_key_id.as_deref()?;
        let created = listing.keys.iter().find(|k| k.access_key_id == key).and_then(|k| k.created_at);
        let start = created.map_or(event.event_time, |c| c.min(event.event_time));
        Some(later(start, self.grace))
    }

    /// When a re-check of `event` is due for the grace: its end, counted
    /// from the event (never earlier than [`Rotation::grace_ends`]);
    /// `None` when the event's creator gets no grace.
    pub(crate) fn recheck_due(&self, event: &KeyEvent) -> Option<OffsetDateTime> {
        let Target::User { name, .. } = &event.target else { return None };
        self.covers(event, name).then(|| later(event.event_time, self.grace))
    }
}

/// `t` plus `d`, or the latest time there is when that overflows.
pub(super) fn later(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d).ok().and_then(|d| t.checked_add(d)).unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}
