//! Quarantine in the worker (opt-in, `--quarantine-accounts`): a planted
//! second key ([`decide::quarantine_candidate`]) is deactivated before its
//! finding is published, which then says so. The guards that keep state or
//! ask AWS are here: one quarantine at a time (so two planted keys of one
//! user in one batch never leave it without an active key), the kill
//! switch (`KEYWATCH_QUARANTINE_DISABLED`, an SSM parameter), the circuit
//! breaker (at most N per account per hour, a map bounded by the opted-in
//! accounts), IAM's listing taken again just before the action, and the
//! key's last use; [`decide::quarantine_choice`] decides from those.
//! What was done is journalled as a JSON log line.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::Processor;
use crate::decide::{self, QuarantineRules};
use crate::event::KeyEvent;
use crate::finding::{rfc3339, Finding, Quarantine, Withheld};
use crate::inventory::{InventoryError, KeyInventory, Need};
use crate::ledger::Ledger;

/// Deactivates a key (IAM `UpdateAccessKey` `Inactive`, through the
/// [`crate::inventory::KeyAdmin`] port).
pub(crate) trait Deactivate: Send + Sync {
    fn deactivate<'a>(
        &'a self,
        account_id: &'a str,
        user_name: &'a str,
        access_key_id: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>>;
}

/// The kill switch kept outside the worker (an SSM parameter): `true` when
/// it says no quarantine, or cannot be read.
pub(crate) trait KillSwitch: Send + Sync {
    fn engaged(&self) -> BoxFuture<'_, bool>;
}

/// The quarantine's settings and state.
pub(crate) struct Quarantiner {
    pub(crate) rules: QuarantineRules,
    pub(crate) admin: Arc<dyn Deactivate>,
    pub(crate) max_per_hour: usize,
    /// `KEYWATCH_QUARANTINE_DISABLED`.
    pub(crate) disabled: bool,
    pub(crate) kill_switch: Option<Arc<dyn KillSwitch>>,
    /// Where the journal entries are kept besides the log (the shared
    /// ledger, `--ledger-table`).
    pub(crate) ledger: Option<Arc<dyn Ledger>>,
    /// Per opted-in account, when its last quarantines were (at most
    /// `max_per_hour` kept): bounded by `rules.accounts`.
    recent: Mutex<HashMap<String, VecDeque<OffsetDateTime>>>,
    /// One quarantine at a time.
    turn: tokio::sync::Mutex<()>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Quarantiner {
    pub(crate) fn new(
        rules: QuarantineRules,
        admin: Arc<dyn Deactivate>,
        max_per_hour: usize,
        disabled: bool,
        kill_switch: Option<Arc<dyn KillSwitch>>,
    ) -> Quarantiner {
        Quarantiner {
            rules,
            admin,
            max_per_hour,
            disabled,
            kill_switch,
            ledger: None,
            recent: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the account's breaker is open at `now`.
    fn breaker_open(&self, account_id: &str, now: OffsetDateTime) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = recent.get_mut(account_id) else { return false };
        times.retain(|t| now - *t < HOUR);
        times.len() >= self.max_per_hour
    }

    fn count(&self, account_id: &str, now: OffsetDateTime) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.entry(account_id.to_string()).or_default();
        times.push_back(now);
        while times.len() > self.max_per_hour {
            times.pop_front();
        }
    }
}

impl<I: KeyInventory> Processor<I> {
    /// Looks at the finding about to be published for `ev`: a planted key
    /// is deactivated (or withheld, and why), and the finding says so.
    pub(super) async fn quarantine(&self, ev: &KeyEvent, finding: &mut Finding) {
        let Some(q) = &self.quarantine else { return };
        let Some(key) = decide::quarantine_candidate(ev, finding, &q.rules) else { return };
        let _turn = q.turn.lock().await;
        let user = finding.user_name.clone();
        let result = self.quarantine_key(q, ev, &user, key).await;
        let at = OffsetDateTime::now_utc();
        let note = match result {
            Ok(()) => {
                q.count(&ev.account_id, at);
                Quarantine::deactivated(&user, key, at)
            }
            Err(why) => Quarantine::withheld(key, why, at),
        };
        crate::telemetry::quarantine(note.action);
        let entry = journal(ev, &user, &note);
        if let Some(ledger) = &q.ledger {
            if let Err(e) = ledger.journal(key, &entry).await {
                warn!(error = %e, "quarantine: the journal entry could not be kept in the ledger; it is in this log line only");
            }
        }
        finding.quarantine = Some(note);
    }

    async fn quarantine_key(&self, q: &Quarantiner, ev: &KeyEvent, user: &str, key: &str) -> Result<(), Withheld> {
        if q.disabled {
            return Err(Withheld::KillSwitch);
        }
        if let Some(switch) = &q.kill_switch {
            if switch.engaged().await {
                return Err(Withheld::KillSwitch);
            }
        }
        let now = OffsetDateTime::now_utc();
        if q.breaker_open(&ev.account_id, now) {
            return Err(Withheld::BreakerOpen);
        }
        let account = ev.account_id.as_str();
        let listing = self.inventory.list_keys(account, user, Some(now)).await.map_err(|e| failed(&e))?;
        let last_use = self.inventory.last_used(account, key, Need::Required).await.ok().flatten().map(|l| l.usage);
        decide::quarantine_choice(key, &listing, last_use.as_ref(), OffsetDateTime::now_utc())?;
        q.admin.deactivate(account, user, key).await.map_err(|e| failed(&e))
    }
}

fn failed(e: &InventoryError) -> Withheld {
    warn!(error = %e, "quarantine: IAM could not be asked or refused the change; the key is left active");
    Withheld::Failed
}

/// The journal entry of a quarantine, logged as one JSON line (and kept
/// in the ledger, when there is one).
fn journal(ev: &KeyEvent, user: &str, note: &Quarantine) -> serde_json::Value {
    let entry = serde_json::json!({
        "account_id": ev.account_id,
        "user_name": user,
        "access_key_id": note.access_key_id,
        "action": note.action,
        "reason": note.reason.map(Withheld::as_str),
        "at": rfc3339(note.at),
        "event_id": ev.event_id,
        "actor_arn": ev.actor.arn,
        "undo": note.undo,
    });
    info!(journal = %entry, action = note.action, "quarantine");
    entry
}
