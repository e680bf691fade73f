//! The re-check of an assumed `FAILED`: a fresh creation or re-activation
//! that IAM did not list yet was counted from the event (the alerting
//! direction); if IAM never lists that key (created and deleted out of
//! order, an event that lies), nothing else would look again. The worker
//! puts a re-check on its queue, delivered once the consistency window has
//! passed; this is when it is wanted, when due, and what it concludes.
//! Pure, like the rest of the decision: `now` comes in.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{decided, Closing, Iam, Outcome, Rules};
use crate::event::{Check, KeyEvent, KeyStatus, ParseError};
use crate::exceptions::Exceptions;
use crate::finding::{Finding, Reason, Status};
use crate::keys::KeyUsage;

/// The longest delay SQS gives a message (`DelaySeconds` 900): a longer
/// consistency window takes several.
pub const MAX_RECHECK_DELAY: Duration = Duration::from_secs(900);

/// Whether a published finding asks for a re-check once the consistency
/// window (and any rotation grace) has passed: a `FAILED` that counted its
/// event's key from the event alone (`event_state_assumed`), or a rotation
/// under way (`rotation_in_progress`), escalated if two keys are still
/// active when the grace ends. A re-check's own findings never do: past the
/// window nothing is assumed, past the grace nothing is in progress.
pub fn wants_recheck(finding: &Finding) -> bool {
    finding.status == Status::Failed && (finding.event_state_assumed || finding.rotation_in_progress)
}

/// When a re-check taken off the queue is to be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecheckWhen {
    /// The event is past the consistency window: IAM's answer is the truth.
    Now,
    /// Still within it: put it back on the queue, delayed by this much.
    Later(Duration),
}

/// When a re-check of `event` is due at `now`: once the event is past the
/// consistency window and, for a key whose creator gets the rotation grace,
/// past the grace (a grace longer than SQS's 15-minute delay is crossed by
/// putting the re-check back again and again, nothing kept in memory). A
/// re-check is only ever of an event that made a key
/// active (what an assumed `FAILED` rests on); any other is refused, as a
/// re-check comes off the queue and anyone who may send there could forge
/// one.
pub fn recheck_when(event: &KeyEvent, now: OffsetDateTime, rules: &Rules) -> Result<RecheckWhen, Outcome> {
    if event.key_status != Some(KeyStatus::Active) || event.access_key_id.is_none() {
        return Err(Outcome::Invalid(ParseError::rejected(Check::Recheck, event.event_name.as_str())));
    }
    Ok(if now <= due(event, rules) { RecheckWhen::Later(recheck_delay(event, now, rules)) } else { RecheckWhen::Now })
}

/// When a re-check of `event` is due: the end of the consistency window,
/// or of the rotation grace when that is later.
fn due(event: &KeyEvent, rules: &Rules) -> OffsetDateTime {
    let window_ends = super::rotation::later(event.event_time, rules.consistency_window);
    let grace_ends = rules.rotation.as_ref().and_then(|r| r.recheck_due(event));
    grace_ends.map_or(window_ends, |g| g.max(window_ends))
}

/// How long from `now` until a re-check of `event` is due: the rest of the
/// consistency window (or of the rotation grace, see [`recheck_when`]) and
/// a second, whole seconds, at least one and at most [`MAX_RECHECK_DELAY`].
pub fn recheck_delay(event: &KeyEvent, now: OffsetDateTime, rules: &Rules) -> Duration {
    let left = due(event, rules) - now;
    let secs = left.whole_seconds().saturating_add(1).clamp(1, MAX_RECHECK_DELAY.as_secs() as i64);
    Duration::from_secs(secs as u64)
}

/// The outcome of a due re-check of `event` ([`RecheckWhen::Now`]), from
/// what IAM says now: nothing is assumed any more. More than one active key
/// is a `FAILED` again; at most one is a `PASSED` that closes the finding
/// (with `reason` `assumed_key_not_confirmed` when IAM does not list the
/// event's key as active); a user IAM no longer has, a `PASSED` with
/// `user_deleted`; a failed look-up, a retry, never a `PASSED`. Its
/// trigger says it is a re-check of the event.
pub fn conclude_recheck(
    event: &KeyEvent,
    iam: Iam<'_>,
    usage: &HashMap<String, KeyUsage>,
    exceptions: &Exceptions,
    now: OffsetDateTime,
) -> Outcome {
    let key = event.access_key_id.as_deref();
    let confirmed = match iam {
        Iam::Keys { listing, .. } => listing.keys.iter().any(|k| k.is_active() && Some(k.access_key_id.as_str()) == key),
        Iam::RootKeys { present, .. } => present > 0,
        Iam::UserGone { .. } | Iam::Failed(_) => true,
    };
    match decided(event, iam, usage, exceptions, now, false, Closing::Yes) {
        Outcome::Publish(f) => {
            let mut f = f.rechecked();
            if f.status == Status::Passed && !confirmed {
                f.reason = Some(Reason::AssumedKeyNotConfirmed);
            }
            Outcome::Publish(Box::new(f))
        }
        other => other,
    }
}
