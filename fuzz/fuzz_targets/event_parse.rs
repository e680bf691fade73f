//! `event::parse` on any text, and what the processor does next with the
//! result: `decide::triage`, then for a key event `screen`, `owner`,
//! `usage_wanted` and `conclude` against hand-made IAM answers, and the
//! finding serialized.
//! Nothing here may panic, whatever the message body.

#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use keywatch::decide::{conclude, conclude_recheck, owner, recheck_when, screen, triage, usage_wanted, wants_recheck, Iam, Outcome, Rules};
use keywatch::event::{parse, KeyEvent, KeyStatus, Target};
use keywatch::exceptions::{Exception, Exceptions};
use keywatch::keys::{AccessKey, Listing};
use libfuzzer_sys::fuzz_target;
use time::macros::{date, datetime};
use time::OffsetDateTime;

const RULES: Rules = Rules { consistency_window: Duration::from_secs(120), rotation: None };
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let parsed = parse(&body);
    if let Err(e) = &parsed {
        let _ = (e.reason(), e.to_string());
    }
    match triage(parsed) {
        Err(outcome) => look_at(&outcome),
        Ok(event) => after_triage(&event),
    }
});

/// Everything the callers ask of an outcome.
fn look_at(outcome: &Outcome) {
    let _ = (outcome.disposition(), outcome.label());
    match outcome {
        Outcome::Publish(f) | Outcome::Superseded(f) => {
            serde_json::to_string(f).expect("a finding serializes");
            let _ = wants_recheck(f);
        }
        Outcome::Invalid(e) => {
            let _ = (e.reason(), e.to_string());
        }
        _ => {}
    }
}

fn after_triage(event: &KeyEvent) {
    // A moment just after the event (fresh), and a fixed one (the event may
    // claim any time in 0000..=9999, in the future of it or long before).
    let soon = event.event_time.checked_add(time::Duration::seconds(30)).unwrap_or(NOW);
    for now in [soon, NOW] {
        for known in [true, false] {
            if let Some(outcome) = screen(event, now, known) {
                look_at(&outcome);
            }
        }
    }

    let user = match &event.target {
        Target::User { name, .. } => name.clone(),
        Target::Unresolved => {
            look_at(&owner(event, None).unwrap_err());
            match owner(event, Some(Ok(None))) {
                Ok(name) => name,
                Err(outcome) => {
                    look_at(&outcome);
                    "fuzz-user".to_string()
                }
            }
        }
        Target::Root => "fuzz-user".to_string(),
    };

    // IAM lists the event's key (in the state the event says, or not at
    // all) next to another active key: every verdict is reachable.
    let mut keys = vec![AccessKey { access_key_id: "AKIAFUZZOTHERKEY0001".into(), status: KeyStatus::Active, created_at: None }];
    if let Some(id) = &event.access_key_id {
        let status = event.key_status.clone().unwrap_or(KeyStatus::Active);
        keys.push(AccessKey { access_key_id: id.clone(), status, created_at: Some(event.event_time) });
    }
    let exceptions = Exceptions {
        source: None,
        entries: vec![Exception {
            account: "*".into(),
            user: "*".into(),
            reason: "fuzz".into(),
            owner: "fuzz".into(),
            expires: date!(9999 - 12 - 31),
        }],
    };
    let usage = HashMap::new();
    for now in [soon, NOW] {
        for listed in [&keys[..], &keys[..1], &[]] {
            let listing = Listing { user_name: None, keys: listed.to_vec(), observed_at: now };
            let iam = Iam::Keys { user_name: &user, listing: &listing };
            let _ = usage_wanted(event, iam, &usage, now, &RULES);
            look_at(&conclude(event, iam, &usage, &exceptions, now, &RULES));
            look_at(&conclude_recheck(event, iam, &usage, &exceptions, now));
        }
        // The same event taken for a re-check off the queue.
        if let Err(outcome) = recheck_when(event, now, &RULES) {
            look_at(&outcome);
        }
        // IAM's NoSuchEntity for the user: a closing PASSED, or nothing.
        look_at(&conclude(event, Iam::UserGone { user_name: &user, observed_at: now }, &usage, &exceptions, now, &RULES));
        look_at(&conclude_recheck(event, Iam::UserGone { user_name: &user, observed_at: now }, &usage, &exceptions, now));
        for present in [0, 1, 2] {
            look_at(&conclude(event, Iam::RootKeys { present, observed_at: now }, &usage, &Exceptions::default(), now, &RULES));
            look_at(&conclude_recheck(event, Iam::RootKeys { present, observed_at: now }, &usage, &Exceptions::default(), now));
        }
    }
}
