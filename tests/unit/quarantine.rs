//! The quarantine's pure choice (`now` passed in): which findings name a
//! planted key (an opted-in account, a creation by someone other than the
//! user and not allow-listed), and whether it is deactivated from IAM's
//! listing just before the action and its last use.

use keywatch::decide::{quarantine_candidate, quarantine_choice, QuarantineRules};
use keywatch::finding::Withheld;
use keywatch::keys::{AccessKey, KeyStatus, KeyUsage, Listing};

use crate::common::*;

fn rules(accounts: &[&str], principals: &[&str]) -> QuarantineRules {
    QuarantineRules {
        accounts: accounts.iter().map(|a| a.to_string()).collect(),
        principals: principals.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn only_a_failed_key_made_by_another_principal_in_an_opted_in_account_is_a_candidate() {
    let admin = event("create_access_key_admin.json");
    let f = failed();
    let key = admin.access_key_id.as_deref();
    assert_eq!(quarantine_candidate(&admin, &f, &rules(&[MEMBER], &[])), key);
    assert_eq!(quarantine_candidate(&admin, &f, &rules(&["999988887777"], &[])), None, "an account not opted in");
    assert_eq!(quarantine_candidate(&admin, &f, &rules(&[MEMBER], &["arn:aws:iam::*:user/admin"])), None, "an allow-listed principal");
    assert_eq!(quarantine_candidate(&admin, &passed(), &rules(&[MEMBER], &[])), None, "a PASSED");
    // The user's own key.
    let own = event("create_access_key_self.json");
    let mut bob = failed();
    bob.user_name = "bob".into();
    assert_eq!(quarantine_candidate(&own, &bob, &rules(&[MEMBER], &[])), None);
    // A re-activation does not say who made the key.
    let update = event("update_access_key_inactive.json");
    assert_eq!(quarantine_candidate(&update, &f, &rules(&[MEMBER], &[])), None);
}

fn keys(planted_active: bool, other_active: bool, planted_age_secs: i64) -> Listing {
    let now = time::OffsetDateTime::now_utc();
    let status = |a: bool| if a { KeyStatus::Active } else { KeyStatus::Inactive };
    Listing {
        user_name: None,
        keys: vec![
            AccessKey { access_key_id: "OLD".into(), status: status(other_active), created_at: Some(now - time::Duration::days(90)) },
            AccessKey {
                access_key_id: "PLANTED".into(),
                status: status(planted_active),
                created_at: Some(now - time::Duration::seconds(planted_age_secs)),
            },
        ],
        observed_at: now,
    }
}

#[test]
fn a_candidate_is_deactivated_only_fresh_never_used_and_beside_another_active_key() {
    let now = time::OffsetDateTime::now_utc();
    let never = KeyUsage::default();
    let used = KeyUsage { last_used_at: Some(now - time::Duration::seconds(30)), service: Some("s3".into()), region: None };
    assert_eq!(quarantine_choice("PLANTED", &keys(true, true, 10), Some(&never), now), Ok(()));
    assert_eq!(quarantine_choice("PLANTED", &keys(true, false, 10), Some(&never), now), Err(Withheld::OnlyActiveKey));
    assert_eq!(quarantine_choice("PLANTED", &keys(false, true, 10), Some(&never), now), Err(Withheld::NotListed));
    assert_eq!(quarantine_choice("GONE", &keys(true, true, 10), Some(&never), now), Err(Withheld::NotListed));
    assert_eq!(quarantine_choice("PLANTED", &keys(true, true, 10), Some(&used), now), Err(Withheld::Used));
    assert_eq!(quarantine_choice("PLANTED", &keys(true, true, 10), None, now), Err(Withheld::LastUseUnknown));
    assert_eq!(quarantine_choice("PLANTED", &keys(true, true, 3601), Some(&never), now), Err(Withheld::NotFresh));
}
