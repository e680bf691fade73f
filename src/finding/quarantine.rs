//! What the worker's quarantine did about a finding's key (the finding's
//! `quarantine` object): deactivated, with when and how to undo it, or
//! withheld, with why.

use serde::Serialize;
use time::OffsetDateTime;

use super::serialize_time;

/// Why a key that looked planted was not deactivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// IAM's listing just before the action does not show the key active.
    NotListed,
    /// It is the user's only active key (deactivating it could cut off
    /// whatever uses the user).
    OnlyActiveKey,
    /// IAM says the key has been used.
    Used,
    /// The key's last use could not be read.
    LastUseUnknown,
    /// The key is older than the quarantine's freshness (CreateDate).
    NotFresh,
    /// The account's quarantines in the last hour reached
    /// `--quarantine-max-per-hour`.
    BreakerOpen,
    /// The kill switch is on (`KEYWATCH_QUARANTINE_DISABLED`, or the SSM
    /// parameter says `off`).
    KillSwitch,
    /// IAM could not be asked, or refused the change.
    Failed,
}

impl Withheld {
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::NotListed => "not_listed",
            Withheld::OnlyActiveKey => "only_active_key",
            Withheld::Used => "used",
            Withheld::LastUseUnknown => "last_use_unknown",
            Withheld::NotFresh => "not_fresh",
            Withheld::BreakerOpen => "breaker_open",
            Withheld::KillSwitch => "kill_switch",
            Withheld::Failed => "failed",
        }
    }
}

/// The finding's `quarantine` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantine {
    pub access_key_id: String,
    /// `deactivated` or `withheld`.
    pub action: &'static str,
    /// When withheld, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Withheld>,
    #[serde(serialize_with = "serialize_time")]
    pub at: OffsetDateTime,
    /// When deactivated, the command that undoes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

impl Quarantine {
    /// `access_key_id` of `user_name` deactivated at `at`.
    pub fn deactivated(user_name: &str, access_key_id: &str, at: OffsetDateTime) -> Quarantine {
        Quarantine {
            access_key_id: access_key_id.to_string(),
            action: "deactivated",
            reason: None,
            at,
            undo: Some(format!("aws iam update-access-key --user-name {user_name} --access-key-id {access_key_id} --status Active")),
        }
    }

    /// `access_key_id` left active, for `reason`.
    pub fn withheld(access_key_id: &str, reason: Withheld, at: OffsetDateTime) -> Quarantine {
        Quarantine { access_key_id: access_key_id.to_string(), action: "withheld", reason: Some(reason), at, undo: None }
    }
}
