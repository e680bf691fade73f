//! Carrying a plan out: each deactivation after a fresh look at the user's
//! keys, in batches, under the circuit breaker, journaled, announced on the
//! findings bus, and followed by the user's re-check finding.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{look, ActionEvents, Journal, JournalEntry, KeyLine, Outcome, PlanLine, RemediateError, Report};
use crate::decide::remediation::{choose, same_keys, Breaker, Choice, KeyFacts, LastUse, Stop};
use crate::exceptions::Exceptions;
use crate::finding::{self, rfc3339};
use crate::inventory::{InventoryError, KeyAdmin, KeyInventory};
use crate::keys::{AccessKey, KeyStatus, Listing, User};
use crate::sink::FindingSink;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    pub recent_use: Duration,
    pub batch_size: usize,
    /// Between batches; `None` asks the [`Prompt`].
    pub pause: Option<Duration>,
    pub max_actions: usize,
    pub max_failures: usize,
}

/// The operator's side of a run: its progress, and the question between
/// batches.
pub trait Prompt: Send + Sync {
    /// The run will try `total` deactivations at most.
    fn start(&self, total: usize);
    /// One more planned deactivation dealt with.
    fn step(&self);
    /// Between batches: whether to go on (`done` dealt with, `left` to go).
    /// Without a terminal to ask, yes.
    fn go_on(&self, done: usize, left: usize) -> bool;
}

/// What a run needs besides its plan.
pub struct Run<'a, I> {
    pub inventory: &'a I,
    pub exceptions: &'a Exceptions,
    pub settings: &'a ApplySettings,
    pub events: &'a dyn ActionEvents,
    pub sink: &'a dyn FindingSink,
    pub prompt: &'a dyn Prompt,
    pub shutdown: &'a CancellationToken,
}

/// Carries out the deactivations of `lines`, in their order, into `report`
/// (whose `Deactivate` count becomes what was done). Each action is written
/// to `journal` before the next; `each` sees it too.
pub async fn apply<I: KeyAdmin>(
    run: &Run<'_, I>,
    lines: &[PlanLine],
    journal: &mut Journal,
    report: &mut Report,
    each: &mut (dyn FnMut(&JournalEntry) + Send),
) -> Result<(), RemediateError> {
    for counts in report.accounts.values_mut() {
        counts.remove(&Outcome::Deactivate);
    }
    let todo: Vec<&PlanLine> = lines.iter().filter(|l| l.is_deactivation()).collect();
    report.intended = todo.len();
    run.prompt.start(todo.len().min(run.settings.max_actions));
    let mut breaker = Breaker::new(run.settings.max_actions, run.settings.max_failures);
    let (mut tried, mut in_batch) = (0usize, 0usize);
    for (i, line) in todo.iter().enumerate() {
        let stop = if run.shutdown.is_cancelled() {
            Some(Stop::Interrupted)
        } else if let Err(stop) = breaker.check() {
            Some(stop)
        } else if in_batch == run.settings.batch_size {
            in_batch = 0;
            between_batches(run, tried, todo.len() - i).await
        } else {
            None
        };
        if let Some(stop) = stop {
            warn!(reason = stop.as_str(), left = todo.len() - i, "the run stopped before the end of its plan");
            report.stopped = Some(stop);
            for rest in &todo[i..] {
                report.count(&rest.account_id, Outcome::NotReached);
            }
            break;
        }
        let outcome = match one(run, line, &mut breaker, journal, report, each).await? {
            Acted::Yes(outcome) => {
                tried += 1;
                in_batch += 1;
                outcome
            }
            Acted::No(outcome) => outcome,
        };
        report.count(&line.account_id, outcome);
        run.prompt.step();
    }
    Ok(())
}

/// The pause, or the question, between two batches: `Some` to stop.
async fn between_batches<I>(run: &Run<'_, I>, done: usize, left: usize) -> Option<Stop> {
    match run.settings.pause {
        Some(pause) => {
            info!(pause_secs = pause.as_secs(), "batch done; pausing");
            tokio::select! {
                _ = run.shutdown.cancelled() => Some(Stop::Interrupted),
                _ = tokio::time::sleep(pause) => None,
            }
        }
        None if run.prompt.go_on(done, left) => None,
        None => Some(Stop::Declined),
    }
}

/// Whether an IAM change was attempted.
enum Acted {
    Yes(Outcome),
    No(Outcome),
}

/// One planned deactivation: look again, check nothing changed, act,
/// journal, announce, re-check.
async fn one<I: KeyAdmin>(
    run: &Run<'_, I>,
    line: &PlanLine,
    breaker: &mut Breaker,
    journal: &mut Journal,
    report: &mut Report,
    each: &mut (dyn FnMut(&JournalEntry) + Send),
) -> Result<Acted, RemediateError> {
    let (account_id, user) = (line.account_id.as_str(), line.user());
    let key = line.access_key_id.clone().unwrap_or_default();
    let fresh = match look(run.inventory, account_id, &user).await {
        Ok(fresh) => fresh,
        Err(InventoryError::NoSuchUser { .. }) => return Ok(Acted::No(Outcome::Changed)),
        Err(e) => {
            report.error(format!("account {account_id} user {}: listing again: {e}", user.name));
            return Ok(Acted::No(Outcome::Failed));
        }
    };
    if let Some(outcome) = still_as_planned(run, line, &key, &fresh) {
        info!(account_id, user_name = %user.name, access_key_id = %key, outcome = outcome.as_str(), "left alone");
        return Ok(Acted::No(outcome));
    }
    let result = run.inventory.set_key_status(account_id, &user.name, &key, &KeyStatus::Inactive).await;
    let listing = listed_after(run.inventory, account_id, &user, &key, result.as_ref().ok().map(|()| &KeyStatus::Inactive)).await;
    let after = match (&listing, &result) {
        (Some(l), _) => lines_after(&l.keys, &fresh),
        (None, Ok(())) => with_status(&fresh, &key, KeyStatus::Inactive),
        (None, Err(_)) => Vec::new(),
    };
    let entry = JournalEntry {
        at: rfc3339(OffsetDateTime::now_utc()),
        action: "deactivate".into(),
        result: if result.is_ok() { "done" } else { "failed" }.into(),
        account_id: account_id.to_string(),
        user_name: user.name.clone(),
        user_arn: user.arn.clone(),
        access_key_id: key.clone(),
        reason: line.reason.clone(),
        before: fresh.iter().map(KeyLine::of).collect(),
        after,
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    if let Err(e) = journal.write(&entry) {
        eprintln!("{}", serde_json::to_string(&entry).unwrap_or_default());
        return Err(e);
    }
    each(&entry);
    if let Err(e) = run.events.publish(&entry).await {
        report.error(format!("publishing the action on {} {}: {e}", user.name, key));
    }
    match result {
        Ok(()) => {
            breaker.succeeded();
            info!(account_id, user_name = %user.name, access_key_id = %key, reason = %line.reason, "key deactivated");
            match listing {
                Some(listing) => recheck(run.sink, account_id, &user, &listing.keys, report).await,
                None => {
                    warn!(account_id, user_name = %user.name, "IAM does not list the change yet; the user's finding is left to the key event")
                }
            }
            Ok(Acted::Yes(Outcome::Deactivate))
        }
        Err(e) => {
            breaker.failed();
            warn!(account_id, user_name = %user.name, access_key_id = %key, error = %e, "deactivation failed");
            report.error(format!("account {account_id} user {}: UpdateAccessKey {key}: {e}", user.name));
            Ok(Acted::Yes(Outcome::Failed))
        }
    }
}

/// `None` when the user's keys are as planned and the choice made on them
/// now is the plan's key; else what to count instead.
fn still_as_planned<I>(run: &Run<'_, I>, line: &PlanLine, key: &str, fresh: &[KeyFacts]) -> Option<Outcome> {
    let planned: Vec<KeyFacts> = line.keys.iter().map(KeyLine::facts).collect();
    let use_of = |keys: &[KeyFacts]| keys.iter().find(|k| k.access_key_id == key).map(|k| k.last_use);
    if !same_keys(&planned, fresh) || use_of(&planned) != use_of(fresh) || use_of(fresh) == Some(LastUse::Unknown) {
        return Some(Outcome::Changed);
    }
    let now = OffsetDateTime::now_utc();
    let excepted = run.exceptions.matching(&line.account_id, &line.user_name, now).is_some();
    match choose(fresh, now, run.settings.recent_use, excepted) {
        Choice::Skip(s) => Some(Outcome::of_skip(s)),
        Choice::Deactivate { access_key_id, .. } if access_key_id != key => Some(Outcome::Changed),
        Choice::Deactivate { .. } => None,
    }
}

/// The user's keys after an action. With `expect` (the action succeeded),
/// listed again until the listing shows the key in that status, as IAM
/// takes a moment to propagate a change: up to 5 listings over about 3 s,
/// `None` when none shows it. Without, the first listing.
pub(crate) async fn listed_after<I: KeyInventory>(
    inventory: &I,
    account_id: &str,
    user: &User,
    key: &str,
    expect: Option<&KeyStatus>,
) -> Option<Listing> {
    let mut pause = Duration::from_millis(200);
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        if let Ok(listing) = inventory.list_user_keys(account_id, user).await {
            match expect {
                None => return Some(listing),
                Some(status) if listing.keys.iter().any(|k| k.access_key_id == key && k.status == *status) => return Some(listing),
                Some(_) => {}
            }
        }
    }
    None
}

/// `keys` with `key` in `status`: the state an action left when IAM does
/// not list it yet.
pub(crate) fn with_status(keys: &[KeyFacts], key: &str, status: KeyStatus) -> Vec<KeyLine> {
    keys.iter()
        .map(|k| {
            let mut k = k.clone();
            if k.access_key_id == key {
                k.status = status.clone();
            }
            KeyLine::of(&k)
        })
        .collect()
}

/// The keys listed after an action, each with the last use seen before it.
pub(crate) fn lines_after(keys: &[AccessKey], before: &[KeyFacts]) -> Vec<KeyLine> {
    keys.iter()
        .map(|k| {
            let last_use = before.iter().find(|b| b.access_key_id == k.access_key_id).map_or(LastUse::Unknown, |b| b.last_use);
            KeyLine::of(&KeyFacts { access_key_id: k.access_key_id.clone(), status: k.status.clone(), created_at: k.created_at, last_use })
        })
        .collect()
}

/// Publishes the user's finding as the keys now stand: a `PASSED` once one
/// active key is left (a `FAILED` again after an undo).
pub(crate) async fn recheck(sink: &dyn FindingSink, account_id: &str, user: &User, keys: &[AccessKey], report: &mut Report) {
    let now = OffsetDateTime::now_utc();
    let Some(f) = finding::build_scan(account_id, user, keys, &HashMap::new(), now, true, now) else { return };
    for result in sink.publish(std::slice::from_ref(&f)).await {
        if let Err(e) = result {
            report.error(format!("publishing the finding of {}: {e}", user.name));
        }
    }
}
