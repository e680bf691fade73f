//! The remediation choice, in process: which key of a failing user is
//! deactivated, or why the user is left alone; the account order; the
//! circuit breaker; the plan-file round trip. No clock: `now` is passed in.

use std::time::Duration;

use keywatch::decide::remediation::{account_order, choose, same_keys, Breaker, Choice, KeyFacts, LastUse, Skip, Stop, Why};
use keywatch::keys::KeyStatus;
use keywatch::remediate::{KeyLine, Outcome, Report};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
const WEEK: Duration = Duration::from_secs(7 * 86400);

fn key(id: &str, status: KeyStatus, created_days_ago: i64, last_use: LastUse) -> KeyFacts {
    KeyFacts { access_key_id: id.into(), status, created_at: Some(NOW - time::Duration::days(created_days_ago)), last_use }
}

fn active(id: &str, created_days_ago: i64, last_use: LastUse) -> KeyFacts {
    key(id, KeyStatus::Active, created_days_ago, last_use)
}

fn days_ago(d: i64) -> LastUse {
    LastUse::At(NOW - time::Duration::days(d))
}

fn deactivate(id: &str, why: Why) -> Choice {
    Choice::Deactivate { access_key_id: id.into(), why }
}

#[test]
fn the_key_never_used_is_chosen_while_the_other_is_in_use() {
    let keys = [active("OLD", 400, days_ago(0)), active("NEW", 1, LastUse::Never)];
    assert_eq!(choose(&keys, NOW, WEEK, false), deactivate("NEW", Why::NeverUsed));
}

#[test]
fn the_key_used_least_recently_is_chosen_not_the_oldest_created() {
    // The older key (by creation) is the one in use: creation date must
    // not decide (Cloud Custodian #3274, #6732).
    let keys = [active("CREATED-FIRST", 900, days_ago(1)), active("CREATED-LATER", 30, days_ago(60))];
    assert_eq!(choose(&keys, NOW, WEEK, false), deactivate("CREATED-LATER", Why::LeastRecentlyUsed));
    // Whatever the order IAM lists them in.
    let swapped = [keys[1].clone(), keys[0].clone()];
    assert_eq!(choose(&swapped, NOW, WEEK, false), deactivate("CREATED-LATER", Why::LeastRecentlyUsed));
}

#[test]
fn two_keys_used_within_the_window_need_their_owner() {
    let keys = [active("A", 100, days_ago(2)), active("B", 50, days_ago(6))];
    assert_eq!(choose(&keys, NOW, WEEK, false), Choice::Skip(Skip::NeedsOwner));
    // With a window of a day, B's use is old: A, used later, is kept.
    assert_eq!(choose(&keys, NOW, Duration::from_secs(86400), false), deactivate("B", Why::LeastRecentlyUsed));
    // A window of 0: no use is recent.
    assert_eq!(choose(&keys, NOW, Duration::ZERO, false), deactivate("B", Why::LeastRecentlyUsed));
}

#[test]
fn the_most_recently_used_key_is_never_chosen_even_with_no_window() {
    for (a, b) in [(days_ago(3), days_ago(90)), (days_ago(0), LastUse::Never), (days_ago(400), days_ago(401))] {
        let keys = [active("RECENT", 10, a), active("OTHER", 10, b)];
        assert_eq!(
            choose(&keys, NOW, Duration::ZERO, false),
            deactivate("OTHER", if b == LastUse::Never { Why::NeverUsed } else { Why::LeastRecentlyUsed })
        );
    }
}

#[test]
fn a_tie_for_least_recent_needs_the_owner() {
    let both_never = [active("A", 10, LastUse::Never), active("B", 3, LastUse::Never)];
    assert_eq!(choose(&both_never, NOW, WEEK, false), Choice::Skip(Skip::NeedsOwner), "never by creation date");
    let same_time = [active("A", 10, days_ago(30)), active("B", 3, days_ago(30))];
    assert_eq!(choose(&same_time, NOW, WEEK, false), Choice::Skip(Skip::NeedsOwner));
}

#[test]
fn a_key_of_unknown_last_use_is_never_chosen_blindly() {
    for other in [LastUse::Never, days_ago(1), days_ago(100)] {
        let keys = [active("UNKNOWN", 100, LastUse::Unknown), active("KNOWN", 10, other)];
        assert_eq!(choose(&keys, NOW, WEEK, false), Choice::Skip(Skip::LastUseUnknown), "{other:?}");
    }
}

#[test]
fn the_only_active_key_is_never_touched() {
    let alone = [active("ONLY", 10, days_ago(300))];
    assert_eq!(choose(&alone, NOW, WEEK, false), Choice::Skip(Skip::NothingToDo));
    let other_inactive = [active("ONLY", 10, days_ago(300)), key("OFF", KeyStatus::Inactive, 5, LastUse::Never)];
    assert_eq!(choose(&other_inactive, NOW, Duration::ZERO, false), Choice::Skip(Skip::NothingToDo));
    assert_eq!(choose(&[], NOW, WEEK, false), Choice::Skip(Skip::NothingToDo));
    let unknown_status = [active("ONLY", 10, days_ago(300)), key("ODD", KeyStatus::Other("Expired".into()), 5, LastUse::Never)];
    assert_eq!(choose(&unknown_status, NOW, WEEK, false), Choice::Skip(Skip::NothingToDo));
}

#[test]
fn an_exception_wins() {
    let keys = [active("A", 400, days_ago(0)), active("B", 1, LastUse::Never)];
    assert_eq!(choose(&keys, NOW, WEEK, true), Choice::Skip(Skip::Excepted));
}

#[test]
fn a_use_in_the_future_counts_as_recent() {
    let keys = [active("A", 10, LastUse::At(NOW + time::Duration::minutes(5))), active("B", 10, days_ago(1))];
    assert_eq!(choose(&keys, NOW, WEEK, false), Choice::Skip(Skip::NeedsOwner));
}

#[test]
fn same_keys_compares_ids_and_statuses_in_any_order() {
    let a = [active("A", 1, LastUse::Never), key("B", KeyStatus::Inactive, 1, LastUse::Never)];
    let b = [key("B", KeyStatus::Inactive, 9, days_ago(3)), active("A", 9, days_ago(1))];
    assert!(same_keys(&a, &b), "last use and creation aside");
    assert!(!same_keys(&a, &[active("A", 1, LastUse::Never), active("B", 1, LastUse::Never)]), "a status changed");
    assert!(!same_keys(&a, &a[..1]), "a key gone");
}

#[test]
fn accounts_named_first_then_tagged_then_the_rest() {
    let all: Vec<String> = ["111", "222", "333", "444"].map(String::from).to_vec();
    let order = account_order(&all, &["333".into(), "999".into()], &["444".into(), "333".into()]);
    assert_eq!(order, ["333", "444", "111", "222"], "an account outside the scope is not added; each once");
    assert_eq!(account_order(&all, &[], &[]), all);
}

#[test]
fn the_breaker_stops_after_max_actions_and_after_failures_in_a_row() {
    let mut b = Breaker::new(3, 2);
    for _ in 0..3 {
        assert_eq!(b.check(), Ok(()));
        b.succeeded();
    }
    assert_eq!(b.check(), Err(Stop::MaxActions));

    let mut b = Breaker::new(10, 2);
    b.failed();
    b.succeeded();
    b.failed();
    assert_eq!(b.check(), Ok(()), "failures apart do not open it");
    b.failed();
    assert_eq!(b.check(), Err(Stop::Failures));
}

#[test]
fn a_plan_line_key_round_trips_its_last_use() {
    for k in [active("A", 3, days_ago(2)), active("B", 3, LastUse::Never), key("C", KeyStatus::Inactive, 3, LastUse::Unknown)] {
        let line = KeyLine::of(&k);
        let back: KeyLine = serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
        assert_eq!(back.facts(), k);
    }
}

#[test]
fn exit_codes_say_done_partly_done_nothing_to_do() {
    let mut r = Report::default();
    assert_eq!(r.exit_code(), 3, "nothing intended");
    r.intended = 2;
    r.count("111", Outcome::Deactivate);
    assert_eq!(r.exit_code(), 1, "one of two");
    r.count("111", Outcome::Deactivate);
    assert_eq!(r.exit_code(), 0);
    r.error("an account could not be read".into());
    assert_eq!(r.exit_code(), 1);
    for i in 0..100 {
        r.error(format!("user {i}"));
    }
    assert_eq!((r.errors.len(), r.errors_total), (keywatch::remediate::ERROR_SAMPLES, 101), "bounded, counted");
    let table = r.table("deactivated");
    assert!(table.lines().next().unwrap().contains("deactivated") && table.contains("111"), "{table}");
}
