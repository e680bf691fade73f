//! The ledger's decision on its own: what a claim answers for every kind of
//! last word, and when a violation opens and closes.

use std::collections::HashMap;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;

use super::sink::within_batch;
use super::*;
use crate::keys::{AccessKey, KeyStatus, User};
use crate::sink::Dropped;

const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

/// The scan finding of a user with `active` active keys, resting on the
/// IAM answer of `observed`.
fn finding(active: usize, observed: OffsetDateTime) -> Finding {
    let user = User { name: "alice".into(), arn: "arn:aws:iam::123456789012:user/alice".into() };
    let keys: Vec<AccessKey> = (0..active.max(1))
        .map(|i| AccessKey {
            access_key_id: format!("AKIA{i:016}"),
            status: if i < active { KeyStatus::Active } else { KeyStatus::Inactive },
            created_at: Some(T0),
        })
        .collect();
    crate::finding::build_scan("123456789012", &user, &keys, &HashMap::new(), T0, true, observed).unwrap().observed(observed)
}

fn published(old: Option<&Last>, f: &Finding, now: OffsetDateTime) -> Last {
    match claim(old, f, now) {
        Claim::Publish(entry) => Last { published: true, ..entry.last },
        other => panic!("expected a claim to publish, got {other:?}"),
    }
}

#[test]
fn a_first_failed_opens_the_violation_at_its_observation() {
    let f = finding(2, T0);
    let Claim::Publish(entry) = claim(None, &f, T0) else { panic!() };
    assert_eq!((entry.last.opened_at, entry.last.closed_at, entry.last.version), (Some(T0), None, 1));
    assert!(entry.is_open() && !entry.last.published);
}

#[test]
fn an_older_answer_is_superseded_and_a_newer_one_is_published() {
    let last = published(None, &finding(2, T0), T0);
    assert_eq!(claim(Some(&last), &finding(1, T0 - Duration::from_millis(1)), T0), Claim::Superseded);
    assert!(matches!(claim(Some(&last), &finding(2, T0 + Duration::from_nanos(1)), T0), Claim::Publish(_)));
}

#[test]
fn the_same_verdict_on_the_same_answer_is_identical_once_published_and_in_flight_before() {
    let f = finding(2, T0);
    let Claim::Publish(entry) = claim(None, &f, T0) else { panic!() };
    let unpublished = entry.last;
    assert_eq!(claim(Some(&unpublished), &f, T0 + Duration::from_secs(1)), Claim::InFlight);
    // A claim whose publish never finished is taken over after a while.
    assert!(matches!(claim(Some(&unpublished), &f, T0 + IN_FLIGHT), Claim::Publish(_)));
    let done = Last { published: true, ..unpublished };
    assert_eq!(claim(Some(&done), &f, T0 + Duration::from_secs(1)), Claim::Identical);
    // Another verdict on the same answer (an exception now covers the
    // user) is not identical.
    let mut suppressed = f.clone();
    suppressed.suppressed = true;
    assert!(matches!(claim(Some(&done), &suppressed, T0), Claim::Publish(_)));
}

#[test]
fn a_passed_closes_the_violation_and_says_how_long_it_was_open() {
    let open = published(None, &finding(2, T0), T0);
    let later = T0 + Duration::from_secs(3600);
    let still = published(Some(&open), &finding(2, later), later);
    assert_eq!(still.opened_at, Some(T0), "a FAILED after a FAILED keeps the opening");
    let fixed_at = T0 + Duration::from_secs(7200);
    let Claim::Publish(closed) = claim(Some(&still), &finding(1, fixed_at), fixed_at) else { panic!() };
    assert_eq!((closed.last.opened_at, closed.last.closed_at), (Some(T0), Some(fixed_at)));
    assert!(!closed.is_open());
    assert_eq!(closes(Some(&still), &closed.last), Some(Duration::from_secs(7200)));
    assert_eq!(closes(Some(&open), &still), None, "nothing closed");
    // Reopened: a new opening, the close forgotten.
    let reopened_at = fixed_at + Duration::from_secs(60);
    let reopened = published(Some(&Last { published: true, ..closed.last }), &finding(2, reopened_at), reopened_at);
    assert_eq!((reopened.opened_at, reopened.closed_at), (Some(reopened_at), None));
    assert_eq!(reopened.version, 4);
}

#[test]
fn a_passed_without_an_open_violation_closes_nothing() {
    let Claim::Publish(entry) = claim(None, &finding(1, T0), T0) else { panic!() };
    assert_eq!((entry.last.opened_at, entry.last.closed_at), (None, None));
    assert_eq!(closes(None, &entry.last), None);
}

#[test]
fn the_oldest_open_violation_counted_is_the_oldest_unsuppressed_one() {
    let entry = |opened: OffsetDateTime, suppressed: bool| {
        let Claim::Publish(mut e) = claim(None, &finding(2, opened), opened) else { panic!() };
        e.last.suppressed = suppressed;
        *e
    };
    let now = T0 + Duration::from_secs(100);
    let open = [entry(T0, true), entry(T0 + Duration::from_secs(40), false), entry(T0 + Duration::from_secs(90), false)];
    assert_eq!(count(&open, now), OpenCount { unsuppressed: 2, suppressed: 1, oldest_seconds: 60.0 });
    assert_eq!(count(&[], now), OpenCount { unsuppressed: 0, suppressed: 0, oldest_seconds: 0.0 });
}

#[test]
fn findings_published_together_keep_the_newest_and_one_of_identical_ones() {
    let (a, b) = (finding(2, T0), finding(2, T0 + Duration::from_secs(1)));
    assert_eq!(within_batch(&[b.clone(), a.clone()]), vec![None, Some(Dropped::Superseded)]);
    assert_eq!(within_batch(&[a.clone(), b.clone()]), vec![Some(Dropped::Superseded), None]);
    assert_eq!(within_batch(&[a.clone(), a.clone()]), vec![None, Some(Dropped::Identical)]);
    // Two events answered by one listing: each keeps its finding.
    let mut other_event = a.clone();
    other_event.trigger.event_id = "evt-other".into();
    assert_eq!(within_batch(&[a.clone(), other_event]), vec![None, None]);
}

#[test]
fn the_memory_ledger_keeps_the_last_word_of_this_process() {
    let ledger = MemoryLedger::default();
    let run = |f: &Finding| futures_util::FutureExt::now_or_never(ledger.claim(f)).unwrap().unwrap();
    let (newer, older) = (finding(2, T0 + Duration::from_secs(1)), finding(1, T0));
    let Claimed { claim: Claim::Publish(entry), closed: None, was_suppressed: false } = run(&newer) else { panic!() };
    futures_util::FutureExt::now_or_never(ledger.published(&entry)).unwrap().unwrap();
    assert_eq!(run(&older).claim, Claim::Superseded);
    assert_eq!(run(&newer).claim, Claim::Identical);
    assert!(matches!(futures_util::FutureExt::now_or_never(ledger.open(None)).unwrap(), Err(LedgerError::NotShared)));
}

#[test]
fn a_claim_whose_publish_failed_is_released_for_the_next_copy() {
    let ledger = MemoryLedger::default();
    let f = finding(2, T0);
    let run = |f: &Finding| futures_util::FutureExt::now_or_never(ledger.claim(f)).unwrap().unwrap().claim;
    let Claim::Publish(entry) = run(&f) else { panic!() };
    assert_eq!(run(&f), Claim::InFlight, "claimed and not released: in flight");
    futures_util::FutureExt::now_or_never(ledger.released(&entry)).unwrap().unwrap();
    assert!(matches!(run(&f), Claim::Publish(_)), "released: published again");
}

#[test]
fn a_claim_says_whether_the_last_word_before_it_was_suppressed() {
    let ledger = MemoryLedger::default();
    let run = |f: &Finding| futures_util::FutureExt::now_or_never(ledger.claim(f)).unwrap().unwrap();
    let mut covered = finding(2, T0);
    covered.suppressed = true;
    let first = run(&covered);
    assert!(!first.was_suppressed, "nothing before it");
    let Claim::Publish(entry) = first.claim else { panic!() };
    futures_util::FutureExt::now_or_never(ledger.published(&entry)).unwrap().unwrap();
    let lifted = run(&finding(2, T0 + Duration::from_secs(1)));
    assert!(lifted.was_suppressed, "the last word was suppressed");
}
