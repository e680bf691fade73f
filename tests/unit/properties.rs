//! Properties of the pure decision, over thousands of generated events,
//! listings, clocks and last uses: what no input can make keywatch say.
//!
//! - More than one active key in IAM's listing is never `Compliant` and
//!   never `PASSED`.
//! - A `PASSED` never rests on assumed state, and only on a listing with at
//!   most one active key.
//! - The `finding_id` depends only on the control, the account and IAM's
//!   spelling of the user, never on the event's.
//! - Nothing panics: not the parser on any text, not the decision on any
//!   facts.

use std::collections::HashMap;
use std::time::Duration;

use keywatch::decide::{conclude, Iam, Outcome, Rules};
use keywatch::event::{parse, Actor, EventName, KeyEvent, Target, TargetSource};
use keywatch::exceptions::Exceptions;
use keywatch::finding::{finding_id, Status, CONTROL_ID};
use keywatch::keys::{AccessKey, KeyStatus, KeyUsage, Listing};
use proptest::prelude::*;
use time::macros::datetime;
use time::OffsetDateTime;

const RULES: Rules = Rules { consistency_window: Duration::from_secs(120), rotation: None };
const T0: OffsetDateTime = datetime!(2026-11-20 14:00:00 UTC);

fn status() -> impl Strategy<Value = KeyStatus> {
    prop_oneof![4 => Just(KeyStatus::Active), 3 => Just(KeyStatus::Inactive), 1 => "[a-z]{0,8}".prop_map(KeyStatus::Other)]
}

fn key_id(i: usize) -> String {
    format!("AKIAPROPERTY{i:08}")
}

/// Up to 8 keys (races have produced that many), ids 0..8.
fn listing() -> impl Strategy<Value = Vec<AccessKey>> {
    prop::collection::vec((0usize..8, status()), 0..8).prop_map(|keys| {
        let mut seen = std::collections::BTreeMap::new();
        for (i, s) in keys {
            seen.insert(i, s);
        }
        seen.into_iter().map(|(i, status)| AccessKey { access_key_id: key_id(i), status, created_at: None }).collect()
    })
}

prop_compose! {
    fn event()(
        name in prop_oneof![Just(EventName::CreateAccessKey), Just(EventName::UpdateAccessKey), Just(EventName::DeleteAccessKey)],
        key in prop::option::of(0usize..10),
        update_status in prop::option::of(status()),
        spelling in prop_oneof![Just("alice"), Just("ALICE"), Just("Alice")],
        self_made in any::<bool>(),
    ) -> KeyEvent {
        let key_status = match name {
            EventName::CreateAccessKey => Some(KeyStatus::Active),
            EventName::UpdateAccessKey => update_status,
            EventName::DeleteAccessKey => None,
        };
        KeyEvent {
            event_id: "evt-prop".into(),
            event_name: name,
            event_time: T0,
            account_id: "111122223333".into(),
            region: None,
            actor: Actor {
                identity_type: Some("IAMUser".into()),
                arn: None,
                user_name: Some(if self_made { spelling.to_string() } else { "admin".into() }),
                account_id: Some("111122223333".into()),
            },
            target: Target::User { name: spelling.into(), from: TargetSource::RequestParameters },
            access_key_id: key.map(key_id),
            key_status,
            failed: None,
        }
    }
}

/// Last use known for some keys.
fn usage() -> impl Strategy<Value = HashMap<String, KeyUsage>> {
    prop::collection::hash_map(
        (0usize..8).prop_map(key_id),
        prop::option::of(0i64..100_000).prop_map(|s| KeyUsage {
            last_used_at: s.map(|s| T0 - time::Duration::seconds(s)),
            service: None,
            region: None,
        }),
        0..8,
    )
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn more_than_one_active_key_is_never_compliant_or_passed(
        ev in event(), keys in listing(), usage in usage(), after in -600i64..7200, canonical in any::<bool>(),
    ) {
        let active = keys.iter().filter(|k| k.is_active()).count();
        let listing = Listing { user_name: canonical.then(|| "alice".to_string()), keys, observed_at: T0 };
        let now = T0 + time::Duration::seconds(after);
        let outcome = conclude(&ev, Iam::Keys { user_name: "alice", listing: &listing }, &usage, &Exceptions::default(), now, &RULES);
        if active > 1 {
            prop_assert!(!matches!(outcome, Outcome::Compliant { .. }), "{outcome:?}");
            if let Outcome::Publish(f) = &outcome {
                prop_assert_eq!(f.status, Status::Failed);
                prop_assert!(f.active_key_count >= active);
            }
        }
    }

    #[test]
    fn a_passed_rests_only_on_what_iam_lists(
        ev in event(), keys in listing(), usage in usage(), after in -600i64..7200,
    ) {
        let listed_active = keys.iter().filter(|k| k.is_active()).count();
        let listing = Listing { user_name: None, keys, observed_at: T0 };
        let now = T0 + time::Duration::seconds(after);
        if let Outcome::Publish(f) = conclude(&ev, Iam::Keys { user_name: "alice", listing: &listing }, &usage, &Exceptions::default(), now, &RULES) {
            if f.status == Status::Passed {
                prop_assert!(!f.event_state_assumed, "{f:?}");
                prop_assert!(listed_active <= 1, "IAM listed {listed_active} active keys: {f:?}");
                prop_assert!(f.active_key_count <= 1);
            }
        }
    }

    #[test]
    fn the_finding_id_is_the_controls_the_accounts_and_iams_spelling(
        ev in event(), keys in listing(), after in -600i64..7200, iam_spelling in "[A-Za-z0-9+=,.@_-]{1,64}",
    ) {
        let listing = Listing { user_name: Some(iam_spelling.clone()), keys, observed_at: T0 };
        let now = T0 + time::Duration::seconds(after);
        let Target::User { name, .. } = &ev.target else { unreachable!() };
        let outcome = conclude(&ev, Iam::Keys { user_name: name, listing: &listing }, &HashMap::new(), &Exceptions::default(), now, &RULES);
        if let Outcome::Publish(f) = outcome {
            prop_assert_eq!(&f.user_name, &iam_spelling);
            prop_assert_eq!(f.finding_id, finding_id(CONTROL_ID, "111122223333", &iam_spelling));
        }
    }

    #[test]
    fn the_parser_answers_any_text_without_panicking(body in ".{0,400}") {
        let _ = parse(&body);
    }

    #[test]
    fn the_parser_answers_any_mutation_of_a_real_event(cut in 0usize..2000, insert in ".{0,16}") {
        let fixture = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/create_access_key_admin.json")).unwrap();
        let mut at = cut.min(fixture.len());
        while !fixture.is_char_boundary(at) {
            at -= 1;
        }
        let body = format!("{}{insert}{}", &fixture[..at], &fixture[at..]);
        let _ = parse(&body);
    }
}
