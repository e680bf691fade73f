//! Undo: re-activate exactly the keys a journal says were deactivated, each
//! only while the user's keys are as the journal left them.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::apply::{lines_after, listed_after, recheck};
use super::{ActionEvents, JournalEntry, KeyLine, Outcome, Report};
use crate::decide::remediation::{same_keys, KeyFacts, LastUse};
use crate::finding::rfc3339;
use crate::inventory::{InventoryError, KeyAdmin};
use crate::keys::KeyStatus;
use crate::sink::FindingSink;

/// Re-activates each key `entries` deactivated (`done` deactivations; the
/// rest is passed over), in reverse order. A key is refused (`changed`)
/// when the user's keys are no longer those the journal left: the key
/// deleted or re-activated since, a key added or removed. In the report,
/// `Deactivate` counts the keys re-activated; `each` sees each action.
pub async fn undo<I: KeyAdmin>(
    inventory: &I,
    entries: &[JournalEntry],
    events: &dyn ActionEvents,
    sink: &dyn FindingSink,
    each: &mut (dyn FnMut(&JournalEntry) + Send),
) -> Report {
    let mut report = Report::default();
    let done: Vec<&JournalEntry> = entries.iter().filter(|e| e.action == "deactivate" && e.is_done()).collect();
    report.intended = done.len();
    for entry in done.into_iter().rev() {
        let outcome = one(inventory, entry, events, sink, &mut report, each).await;
        report.count(&entry.account_id, outcome);
    }
    report
}

async fn one<I: KeyAdmin>(
    inventory: &I,
    entry: &JournalEntry,
    events: &dyn ActionEvents,
    sink: &dyn FindingSink,
    report: &mut Report,
    each: &mut (dyn FnMut(&JournalEntry) + Send),
) -> Outcome {
    let (account_id, key) = (entry.account_id.as_str(), entry.access_key_id.as_str());
    let user = crate::keys::User { name: entry.user_name.clone(), arn: entry.user_arn.clone() };
    let listing = match inventory.list_user_keys(account_id, &user).await {
        Ok(listing) => listing,
        Err(InventoryError::NoSuchUser { .. }) => {
            warn!(account_id, user_name = %user.name, access_key_id = key, "not re-activated: the user no longer exists");
            return Outcome::Changed;
        }
        Err(e) => {
            report.error(format!("account {account_id} user {}: {e}", user.name));
            return Outcome::Failed;
        }
    };
    let now: Vec<KeyFacts> = listing
        .keys
        .iter()
        .map(|k| KeyFacts {
            access_key_id: k.access_key_id.clone(),
            status: k.status.clone(),
            created_at: k.created_at,
            last_use: LastUse::Unknown,
        })
        .collect();
    let left: Vec<KeyFacts> = entry.after.iter().map(KeyLine::facts).collect();
    let inactive = now.iter().any(|k| k.access_key_id == key && k.status == KeyStatus::Inactive);
    if entry.after.is_empty() || !inactive || !same_keys(&left, &now) {
        warn!(account_id, user_name = %user.name, access_key_id = key, "not re-activated: the user's keys changed since the run");
        return Outcome::Changed;
    }
    let result = inventory.set_key_status(account_id, &user.name, key, &KeyStatus::Active).await;
    let after = listed_after(inventory, account_id, &user, key, result.as_ref().ok().map(|()| &KeyStatus::Active)).await;
    let record = JournalEntry {
        at: rfc3339(OffsetDateTime::now_utc()),
        action: "reactivate".into(),
        result: if result.is_ok() { "done" } else { "failed" }.into(),
        account_id: account_id.to_string(),
        user_name: user.name.clone(),
        user_arn: user.arn.clone(),
        access_key_id: key.to_string(),
        reason: "undo".into(),
        before: entry.after.clone(),
        after: after.as_ref().map(|l| lines_after(&l.keys, &left)).unwrap_or_default(),
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    each(&record);
    if let Err(e) = events.publish(&record).await {
        report.error(format!("publishing the action on {} {key}: {e}", user.name));
    }
    match result {
        Ok(()) => {
            info!(account_id, user_name = %user.name, access_key_id = key, "key re-activated");
            if let Some(after) = after {
                recheck(sink, account_id, &user, &after.keys, report).await;
            }
            Outcome::Deactivate
        }
        Err(e) => {
            report.error(format!("account {account_id} user {}: UpdateAccessKey {key}: {e}", user.name));
            Outcome::Failed
        }
    }
}
