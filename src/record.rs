//! Record: what became of each message, as one log line and its metrics.
//!
//! The decision ([`crate::decide`]) says what happened; this module says it
//! to people (a log line with the ids that matter, values bounded; the
//! message's id comes from the span the line is logged in) and to
//! Prometheus (labels from fixed sets), in one place per outcome.

use tracing::{debug, info, warn};

use crate::decide::{Ignored, Outcome, Retry};
use crate::event::KeyEvent;
use crate::finding::Finding;
use crate::message::Message;
use crate::sink::SinkError;
use crate::telemetry::{self, EventOutcome};

/// Logs and counts an outcome other than a published finding (see
/// [`published`] and [`not_accepted`] for those). No line names the
/// message: the span it is logged in does ([`crate::processor`]); `m`
/// gives an invalid one's receive count.
pub(crate) fn outcome(m: &Message, ev: Option<&KeyEvent>, outcome: &Outcome) {
    outcome_as(ev.map_or("unknown", |e| e.event_name.as_str()), m, ev, outcome)
}

/// `event_name` of the outcomes of re-checks (keywatch's own messages, not
/// CloudTrail events).
const RECHECK: &str = "recheck";

/// Logs and counts the outcome of a re-check of `ev` other than a published
/// finding (see [`rechecked`]), under `event_name` `recheck`.
pub(crate) fn recheck_outcome(m: &Message, ev: Option<&KeyEvent>, outcome: &Outcome) {
    outcome_as(RECHECK, m, ev, outcome)
}

fn outcome_as(label: &'static str, m: &Message, ev: Option<&KeyEvent>, outcome: &Outcome) {
    let event_id = ev.map(|e| e.event_id.as_str());
    let account_id = ev.map(|e| e.account_id.as_str());
    match outcome {
        Outcome::Invalid(e) => warn!(
            receive_count = m.receive_count,
            reason = e.reason(),
            error = %e,
            "invalid message body; left for the dead-letter queue"
        ),
        Outcome::Ignored(Ignored::NotKeyEvent { event_name, event_id }) => {
            debug!(event_name, event_id, "not an access-key event; acknowledged");
            telemetry::event("other", EventOutcome::Ignored);
            return;
        }
        Outcome::Ignored(why) => {
            let key = ev.and_then(|e| e.access_key_id.as_deref());
            match why {
                Ignored::NoTarget => warn!(event_id, "event names neither a user nor a key; acknowledged"),
                Ignored::OwnerUnknown => {
                    warn!(event_id, account_id, access_key_id = key, "owner of the key is unknown (key deleted); acknowledged")
                }
                Ignored::DeletedKeyOwner(e) => warn!(
                    event_id,
                    account_id,
                    access_key_id = key,
                    error = %e,
                    "owner of the deleted key cannot be found; acknowledged"
                ),
                Ignored::UserGone => {
                    info!(event_id, account_id, "user no longer exists (or IAM does not show it yet) while a fresh event gave it an active key; nothing closed, acknowledged")
                }
                Ignored::ForeignAccount => warn!(
                    event_id,
                    account_id, "event for an account outside KEYWATCH_ACCOUNTS; acknowledged, nothing assumed or listed there"
                ),
                Ignored::NotKeyEvent { .. } => unreachable!("handled above"),
            }
        }
        Outcome::FailedCall { code } => {
            info!(
                event_id,
                event_name = label,
                account_id,
                error_code = %code,
                "call failed in CloudTrail; nothing changed, acknowledged"
            );
            telemetry::failed_call(label, code);
        }
        Outcome::Compliant { active } => {
            debug!(event_id, account_id, active_key_count = active, "compliant; acknowledged")
        }
        Outcome::Retry(Retry::Unconfirmed) => {
            info!(event_id, account_id, "IAM does not show this deactivation or delete yet; message left for redelivery")
        }
        Outcome::Superseded(f) => info!(
            event_id,
            finding_id = %f.finding_id,
            observed_at = %crate::finding::rfc3339(f.observed_at),
            "a finding from a later IAM answer was already published; this one dropped"
        ),
        Outcome::Identical(f) => debug!(
            event_id,
            finding_id = %f.finding_id,
            observed_at = %crate::finding::rfc3339(f.observed_at),
            "the same verdict on the same IAM answer was already published; this one dropped"
        ),
        Outcome::RotationInProgress(f) => info!(
            event_id,
            account_id,
            finding_id = %f.finding_id,
            user_name = %f.user_name,
            "second key made by its own user or a rotation principal, within the rotation grace; nothing published (KEYWATCH_ROTATION_GRACE_QUIET), re-checked when the grace ends"
        ),
        Outcome::Retry(Retry::Lookup(e)) => warn!(
            event_id,
            account_id,
            retryable = e.is_retryable(),
            error = %e,
            "IAM could not be asked; message left for redelivery"
        ),
        Outcome::Publish(_) => {}
    }
    if let Some(kind) = outcome.label() {
        telemetry::event(label, kind);
    }
}

/// A finding accepted by every sink.
pub(crate) fn published(ev: &KeyEvent, f: &Finding, latency: f64) {
    telemetry::finding_accepted(f.status.as_str(), latency);
    telemetry::event(ev.event_name.as_str(), EventOutcome::Finding);
    accepted(f, latency);
}

/// A re-check's finding accepted by every sink: counted, but not in the
/// detection latency (a re-check comes a consistency window after its
/// event by design).
pub(crate) fn rechecked(f: &Finding) {
    telemetry::finding_counted(f.status.as_str());
    telemetry::event(RECHECK, EventOutcome::Finding);
    accepted(f, f.detection_latency_seconds);
}

/// The log lines (and the suppression count) of an accepted finding.
fn accepted(f: &Finding, latency: f64) {
    if f.suppressed {
        telemetry::suppressed_finding();
        if let Some(e) = &f.exception {
            info!(
                account_id = %f.account_id,
                user_name = %f.user_name,
                exception_owner = %e.owner,
                exception_expires = %e.expires,
                "approved exception applies; finding marked suppressed"
            );
        }
    }
    info!(
        finding_id = %f.finding_id,
        status = f.status.as_str(),
        reason = f.reason.map(|r| r.as_str()),
        account_id = %f.account_id,
        user_name = %f.user_name,
        active_key_count = f.active_key_count,
        event_id = %f.trigger.event_id,
        detection_latency_seconds = latency,
        "finding published"
    );
}

/// A finding some sink did not accept: its message stays for redelivery.
pub(crate) fn not_accepted(f: &Finding, e: &SinkError) {
    telemetry::emit_failed_entries(1);
    warn!(
        finding_id = %f.finding_id,
        error = %e,
        "finding not accepted; message left for redelivery"
    );
}
