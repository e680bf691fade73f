//! Decide: what the control says, from facts already gathered.
//!
//! Pure: no async, no AWS types, no clock of its own (`now` comes in). The
//! processor gathers the facts (the parsed event, IAM's listing or account
//! summary, the keys' last use, the approved exceptions) and [`conclude`]
//! turns them into an [`Outcome`]: invalid, ignored, a failed call,
//! compliant, retry later, or a finding to publish. Each outcome knows what
//! becomes of its message and its metric label, so the callers only carry
//! it out. The steps before it ([`triage`], [`screen`], [`owner`]) may end
//! a message early; [`usage_to_prefetch`], [`just_created`] and
//! [`usage_wanted`] say which facts are worth gathering.
//!
//! The verdict itself (how many active keys, whether the event's own state
//! is merged into a stale listing) is [`crate::evaluate`]'s.
//!
//! A `FAILED` that counted its event's key from the event alone is looked
//! at again once the consistency window has passed: `recheck.rs` says
//! when ([`wants_recheck`], [`recheck_when`]) and what the second look
//! concludes ([`conclude_recheck`]).

mod quarantine;
mod recheck;
pub mod remediation;
mod rotation;

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::evaluate::{evaluate, evaluate_root, Verdict};
use crate::event::{Check, EventName, KeyEvent, ParseError, Parsed, Target, MAX_CLOCK_SKEW};
use crate::exceptions::Exceptions;
use crate::finding::{self, Finding, Status};

pub use self::quarantine::{quarantine_candidate, quarantine_choice, QuarantineRules, QUARANTINE_FRESH};
pub use self::recheck::{conclude_recheck, recheck_delay, recheck_when, wants_recheck, RecheckWhen, MAX_RECHECK_DELAY};
pub use self::rotation::Rotation;
use crate::inventory::InventoryError;
use crate::keys::{KeyStatus, KeyUsage, Listing};
use crate::message::Disposition;
use crate::telemetry::EventOutcome;

/// The settings the decision depends on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// An event younger than this is recent enough that a listing which
    /// does not show its change is taken as stale (IAM propagation); an
    /// older event's listing is taken as the truth.
    pub consistency_window: Duration,
    /// The rotation grace (`--rotation-grace`); `None`: off, every second
    /// key is a violation at its normal severity at once.
    pub rotation: Option<Rotation>,
}

impl Rules {
    /// Whether `event` is young enough at `now` for IAM to lag behind it.
    pub(crate) fn fresh(&self, event: &KeyEvent, now: OffsetDateTime) -> bool {
        now - event.event_time <= self.consistency_window
    }
}

/// Why a message needs nothing done (it is acknowledged).
#[derive(Debug, Clone, PartialEq)]
pub enum Ignored {
    /// A well-formed event that is not one of the three key events.
    NotKeyEvent { event_name: Option<String>, event_id: Option<String> },
    /// The event names neither a user nor a key.
    NoTarget,
    /// IAM no longer knows the key, so its owner cannot be found.
    OwnerUnknown,
    /// The deleted key's owner cannot be found, and never will be.
    DeletedKeyOwner(InventoryError),
    /// IAM does not know the user, but the event, still within the
    /// consistency window, says it just got an active key: IAM may not show
    /// a user created moments ago yet, so nothing is closed on that answer.
    UserGone,
    /// The account is not one keywatch may act in (`KEYWATCH_ACCOUNTS`).
    ForeignAccount,
}

/// Why a message is left for redelivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// IAM could not be asked (throttled, 5xx, credentials...).
    Lookup(InventoryError),
    /// A fresh deactivation or delete IAM does not show yet, while it still
    /// shows more than one active key: look again later.
    Unconfirmed,
}

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The body cannot be understood: left for the dead-letter queue.
    Invalid(ParseError),
    Ignored(Ignored),
    /// The CloudTrail record is of a call that failed: nothing changed.
    FailedCall {
        code: String,
    },
    /// Re-checked; nothing to report.
    Compliant {
        active: usize,
    },
    Retry(Retry),
    /// A finding to publish; the message is done once it is accepted.
    Publish(Box<Finding>),
    /// A finding resting on an older IAM answer than one already published
    /// for the same user: dropped, so that the last word stays the truth.
    Superseded(Box<Finding>),
    /// A finding saying what the last one published for its user said, on
    /// the same IAM answer: dropped, as it would add nothing.
    Identical(Box<Finding>),
    /// A rotation under way, within the grace, with
    /// `--rotation-grace-quiet`: the `LOW` finding it would be is not
    /// published; a re-check is due when the grace ends.
    RotationInProgress(Box<Finding>),
}

impl Outcome {
    /// What to do with the message (for `Publish`: once accepted).
    pub fn disposition(&self) -> Disposition {
        match self {
            Outcome::Invalid(_) => Disposition::Invalid,
            Outcome::Retry(_) => Disposition::Retry,
            _ => Disposition::Ack,
        }
    }

    /// The `outcome` label of `keywatch_events_total`; `None` for a retry,
    /// which is counted when it finally ends.
    pub fn label(&self) -> Option<EventOutcome> {
        Some(match self {
            Outcome::Invalid(_) => EventOutcome::Invalid,
            Outcome::Ignored(Ignored::ForeignAccount) => EventOutcome::ForeignAccount,
            Outcome::Ignored(_) => EventOutcome::Ignored,
            Outcome::Superseded(_) => EventOutcome::Superseded,
            Outcome::Identical(_) => EventOutcome::Identical,
            Outcome::RotationInProgress(_) => EventOutcome::RotationInProgress,
            Outcome::FailedCall { .. } => EventOutcome::FailedCall,
            Outcome::Compliant { .. } => EventOutcome::Compliant,
            Outcome::Publish(_) => EventOutcome::Finding,
            Outcome::Retry(_) => return None,
        })
    }
}

/// The first step: a body either ends here (invalid, not a key event) or
/// is a key event.
pub fn triage(parsed: Result<Parsed, ParseError>) -> Result<Box<KeyEvent>, Outcome> {
    match parsed {
        Err(e) => Err(Outcome::Invalid(e)),
        Ok(Parsed::Ignored { event_name, event_id }) => Err(Outcome::Ignored(Ignored::NotKeyEvent { event_name, event_id })),
        Ok(Parsed::Key(ev)) => Ok(ev),
    }
}

/// The second step, before IAM is asked: a key event ends here when it
/// claims a time in the future (refused), is for an account keywatch may
/// not act in (`account_known` false: acknowledged, no role assumed there),
/// or records a call that failed (nothing changed).
pub fn screen(event: &KeyEvent, now: OffsetDateTime, account_known: bool) -> Option<Outcome> {
    if event.event_time > now + MAX_CLOCK_SKEW {
        return Some(Outcome::Invalid(ParseError::rejected(Check::FutureTime, &finding::rfc3339(event.event_time))));
    }
    if !account_known {
        return Some(Outcome::Ignored(Ignored::ForeignAccount));
    }
    event.failed.as_ref().map(|failed| Outcome::FailedCall { code: failed.code.clone() })
}

/// Whether a finding observed at `observed_at` must give way to one already
/// published for the same `finding_id` from a later IAM answer.
pub fn superseded(observed_at: OffsetDateTime, last_published: Option<OffsetDateTime>) -> bool {
    last_published.is_some_and(|last| last > observed_at)
}

/// The owner of the event's key, from `GetAccessKeyLastUsed`, for an event
/// that does not name its user ([`Target::Unresolved`]); `lookup` is `None`
/// when the event names no key either.
pub fn owner(event: &KeyEvent, lookup: Option<Result<Option<crate::keys::KeyLastUsed>, InventoryError>>) -> Result<String, Outcome> {
    debug_assert_eq!(event.target, Target::Unresolved);
    let Some(lookup) = lookup else { return Err(Outcome::Ignored(Ignored::NoTarget)) };
    match lookup {
        Ok(Some(last)) => last.user_name.ok_or(Outcome::Ignored(Ignored::OwnerUnknown)),
        Ok(None) => Err(Outcome::Ignored(Ignored::OwnerUnknown)),
        // A deleted key's owner may be unknowable: retrying forever would
        // not help.
        Err(e) if event.event_name == EventName::DeleteAccessKey && !e.is_retryable() => Err(Outcome::Ignored(Ignored::DeletedKeyOwner(e))),
        Err(e) => Err(Outcome::Retry(Retry::Lookup(e))),
    }
}

/// How far apart a `CreateAccessKey` event's `eventTime` and IAM's
/// `CreateDate` of the key may be for the listed key to be the one the
/// event made: both stamp the same call, each to the second.
const CREATION_MATCH: Duration = Duration::from_secs(5);

/// A key whose creation the event itself reports, as IAM confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JustCreated<'a> {
    pub access_key_id: &'a str,
    /// IAM's listing shows the key, created at the event's time; `false`:
    /// the listing does not show it yet (propagation), and the verdict
    /// counts it from the event.
    pub listed: bool,
}

/// The key a fresh, successful `CreateAccessKey` made, when IAM's listing
/// agrees: it shows that key created within `CREATION_MATCH` of the
/// event, or (while the event is within the consistency window) does not
/// show it yet. Such a key has had no time to be used, so its last use is
/// known without asking `GetAccessKeyLastUsed` (never): that answer would
/// say the same, since IAM records a key's use minutes after the fact, and
/// a cached answer is trusted for longer than the window. A listed key
/// created at another time, or with no creation time, is not taken on the
/// event's word: its last use is asked for.
pub fn just_created<'a>(event: &'a KeyEvent, listing: &Listing, now: OffsetDateTime, rules: &Rules) -> Option<JustCreated<'a>> {
    if event.event_name != EventName::CreateAccessKey || event.failed.is_some() || !rules.fresh(event, now) {
        return None;
    }
    let access_key_id = event.access_key_id.as_deref()?;
    match listing.keys.iter().find(|k| k.access_key_id == access_key_id) {
        None => Some(JustCreated { access_key_id, listed: false }),
        Some(k) => {
            let created = k.created_at?;
            ((created - event.event_time).abs() <= CREATION_MATCH).then_some(JustCreated { access_key_id, listed: true })
        }
    }
}

/// The key whose last use is worth asking for while the listing is read,
/// rather than after it: the key the event made active (a reactivation, or
/// a creation too old to be [`just_created`]), which a finding will name
/// if the user turns out to have another active key. `None` for a
/// deactivation or a delete (the key is not active after it), for a fresh
/// creation (its last use will be known without asking) and for an event
/// that records a failed call.
pub fn usage_to_prefetch<'a>(event: &'a KeyEvent, now: OffsetDateTime, rules: &Rules) -> Option<&'a str> {
    if event.failed.is_some() || event.key_status != Some(KeyStatus::Active) {
        return None;
    }
    match event.event_name {
        EventName::UpdateAccessKey => event.access_key_id.as_deref(),
        EventName::CreateAccessKey if !rules.fresh(event, now) => event.access_key_id.as_deref(),
        _ => None,
    }
}

/// What IAM said, for [`conclude`].
#[derive(Debug, Clone, Copy)]
pub enum Iam<'a> {
    /// The user's keys.
    Keys { user_name: &'a str, listing: &'a Listing },
    /// `AccountAccessKeysPresent`, for a root key event, and when the
    /// summary was asked for.
    RootKeys { present: u32, observed_at: OffsetDateTime },
    /// IAM answered `NoSuchEntity` for the user (to a listing asked for at
    /// `observed_at`): it no longer exists. This is IAM's answer, not a
    /// failure: a `NoSuchUser` error passed as [`Iam::Failed`] instead
    /// publishes nothing.
    UserGone { user_name: &'a str, observed_at: OffsetDateTime },
    /// The look-up failed.
    Failed(&'a InventoryError),
}

impl<'a> Iam<'a> {
    /// IAM's answer to a listing of `user_name` asked for at `asked_at`:
    /// the keys, the user gone (`NoSuchEntity`), or a failure.
    pub fn listed(user_name: &'a str, listing: &'a Result<Listing, InventoryError>, asked_at: OffsetDateTime) -> Iam<'a> {
        match listing {
            Ok(listing) => Iam::Keys { user_name, listing },
            Err(InventoryError::NoSuchUser { .. }) => Iam::UserGone { user_name, observed_at: asked_at },
            Err(e) => Iam::Failed(e),
        }
    }
}

/// The keys whose last use is worth asking for once IAM's listing is in:
/// the active keys a `FAILED` CIS-1.13 finding will name whose last use
/// `usage` does not hold yet (the responder chooses a key by it). Empty
/// when the facts lead to no such finding (compliant, a `PASSED`, a root
/// key, a retry, a failed look-up).
pub fn usage_wanted(event: &KeyEvent, iam: Iam<'_>, usage: &HashMap<String, KeyUsage>, now: OffsetDateTime, rules: &Rules) -> Vec<String> {
    let Iam::Keys { listing, .. } = iam else { return Vec::new() };
    let assessment = evaluate(event, listing.keys.clone(), rules.fresh(event, now));
    if assessment.verdict != Verdict::Violation {
        return Vec::new();
    }
    assessment.active_keys().filter(|k| !usage.contains_key(&k.access_key_id)).map(|k| k.access_key_id.clone()).collect()
}

/// The outcome of a key event, concluded from the facts gathered for it:
/// what IAM said, the keys' last use, the approved exceptions and the time.
pub fn conclude(
    event: &KeyEvent,
    iam: Iam<'_>,
    usage: &HashMap<String, KeyUsage>,
    exceptions: &Exceptions,
    now: OffsetDateTime,
    rules: &Rules,
) -> Outcome {
    decided(event, iam, usage, exceptions, now, rules.fresh(event, now), Closing::No(rules.rotation.as_ref()))
}

/// Whether a decision closes (a re-check) or not (an event's, with the
/// rotation grace, if any).
#[derive(Clone, Copy)]
enum Closing<'a> {
    /// An event's decision; a self-made second key gets this grace.
    No(Option<&'a Rotation>),
    /// A re-check's: due once any grace has ended, and a listing with at
    /// most one active key closes the finding (`PASSED`) whatever the event
    /// did, where an event that made a key active would otherwise find
    /// nothing to report.
    Yes,
}

/// [`conclude`], with the event's freshness given.
fn decided(
    event: &KeyEvent,
    iam: Iam<'_>,
    usage: &HashMap<String, KeyUsage>,
    exceptions: &Exceptions,
    now: OffsetDateTime,
    fresh: bool,
    closing: Closing<'_>,
) -> Outcome {
    let (rotation, closing) = match closing {
        Closing::No(rotation) => (rotation, false),
        Closing::Yes => (None, true),
    };
    match iam {
        // IAM's word that the user is gone closes its finding, unless a
        // fresh event says the user just got an active key (IAM may lag
        // behind a new user as behind a new key).
        Iam::UserGone { .. } if fresh && event.key_status == Some(KeyStatus::Active) => Outcome::Ignored(Ignored::UserGone),
        Iam::UserGone { user_name, observed_at } => {
            Outcome::Publish(Box::new(finding::build_user_gone(event, user_name, now).observed(observed_at)))
        }
        // Only `Iam::UserGone` may close: any failure, this one included, is
        // never taken for a PASSED.
        Iam::Failed(InventoryError::NoSuchUser { .. }) => Outcome::Ignored(Ignored::UserGone),
        Iam::Failed(e) => Outcome::Retry(Retry::Lookup(e.clone())),
        Iam::RootKeys { present, observed_at } => {
            let (verdict, present, assumed) = evaluate_root(event, present, fresh);
            match finding::build_root(event, verdict, present, assumed, now) {
                Some(f) => Outcome::Publish(Box::new(f.observed(observed_at))),
                None => Outcome::Retry(Retry::Unconfirmed),
            }
        }
        Iam::Keys { user_name, listing } => {
            // IAM's spelling: the finding id of a PASSED must match the
            // FAILED's whatever case the events used.
            let user_name = listing.user_name.as_deref().unwrap_or(user_name);
            let mut assessment = evaluate(event, listing.keys.clone(), fresh);
            if closing && assessment.verdict == Verdict::Compliant {
                assessment.verdict = Verdict::Resolved;
            }
            if assessment.verdict == Verdict::Unconfirmed {
                return Outcome::Retry(Retry::Unconfirmed);
            }
            match finding::build(event, user_name, &assessment, usage, now) {
                None => Outcome::Compliant { active: assessment.active_count() },
                Some(f) => {
                    let mut f = f.observed(listing.observed_at);
                    if f.status != Status::Failed {
                        return Outcome::Publish(Box::new(f));
                    }
                    if let Some(e) = exceptions.matching(&event.account_id, user_name, now) {
                        f.suppress(e);
                    }
                    match rotation.filter(|r| r.grace_ends(event, user_name, listing).is_some_and(|end| now < end)) {
                        Some(r) if r.quiet => Outcome::RotationInProgress(Box::new(f.rotating())),
                        Some(_) => Outcome::Publish(Box::new(f.rotating())),
                        None => Outcome::Publish(Box::new(f)),
                    }
                }
            }
        }
    }
}
