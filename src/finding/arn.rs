//! ARNs: the partition and the IAM user's ARN that a finding names. Neither
//! CloudTrail's record of a key call nor ListAccessKeys gives the target
//! user's ARN, so it is pieced together from what the event does say (the
//! caller's ARN, the region).

use crate::event::{account_of_arn, KeyEvent};

/// `user_name` of root findings.
pub(crate) const ROOT_USER: &str = "<root>";

/// The AWS partition of a region: `aws-cn` for `cn-*`, `aws-us-gov` for
/// `us-gov-*`, the ISO partitions for theirs, `aws` otherwise.
pub(crate) fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// The partition an ARN names (`arn:aws-cn:…` → `aws-cn`).
pub(crate) fn partition_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn")).then(|| parts.next()).flatten().filter(|p| !p.is_empty())
}

/// The caller's ARN when it names the event's account; an ARN of another
/// account is not evidence about this one.
fn actor_arn(event: &KeyEvent) -> Option<&str> {
    event.actor.arn.as_deref().filter(|arn| account_of_arn(arn) == Some(event.account_id.as_str()))
}

/// The partition the event happened in: the caller's ARN in the event's
/// account says it (`arn:aws-cn:…`); else the event's region; else `aws`.
fn partition_of(event: &KeyEvent) -> String {
    let from_arn = actor_arn(event).and_then(partition_of_arn);
    match (from_arn, event.region.as_deref()) {
        (Some(p), _) => p.to_string(),
        (None, Some(region)) => partition_of_region(region).to_string(),
        (None, None) => "aws".to_string(),
    }
}

/// The IAM user's ARN. When the caller is that user, its own ARN from the
/// event (which carries the user's IAM path) when that ARN is in the
/// event's account; otherwise
/// `arn:<partition>:iam::<account>:user/<name>`, which assumes the default
/// path `/` (neither CloudTrail's record of the call nor ListAccessKeys
/// says the path). The root user's is `arn:<partition>:iam::<account>:root`.
pub fn user_arn(event: &KeyEvent, user_name: &str) -> String {
    let partition = partition_of(event);
    if user_name == ROOT_USER {
        return format!("arn:{partition}:iam::{}:root", event.account_id);
    }
    if actor_is_target(event, user_name) {
        if let Some(arn) = actor_arn(event).filter(|a| a.contains(":user/") && a.ends_with(&format!("/{user_name}"))) {
            return arn.to_string();
        }
    }
    format!("arn:{partition}:iam::{}:user/{user_name}", event.account_id)
}

/// True when the caller acted on its own keys (an IAM user in the same
/// account managing itself). Anything else, an administrator or a role
/// creating a key for someone, raises a violation's severity: a second key
/// that its owner did not make is how persistence is planted.
pub(crate) fn actor_is_target(event: &KeyEvent, user_name: &str) -> bool {
    event.actor.is_iam_user()
        && event.actor.user_name.as_deref() == Some(user_name)
        && event.actor.account_id.as_deref().is_none_or(|a| a == event.account_id)
}
