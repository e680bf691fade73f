//! The plan: for each candidate, in account order, its keys and their last
//! use, and the choice made from them.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::warn;

use super::{look, Candidates, KeyLine, Outcome, PlanLine, Report};
use crate::decide::remediation::{choose, Choice};
use crate::exceptions::Exceptions;
use crate::finding::rfc3339;
use crate::inventory::{InventoryError, KeyInventory};

/// Plans every account of `accounts`, in that order: a line per candidate
/// user (handed to `each` as it is made, and returned), and the report of
/// what the plan intends.
pub async fn plan<I: KeyInventory>(
    inventory: &I,
    candidates: &dyn Candidates,
    accounts: &[String],
    exceptions: &Exceptions,
    recent_use: Duration,
    each: &mut (dyn FnMut(&PlanLine) + Send),
) -> (Vec<PlanLine>, Report) {
    let mut report = Report::default();
    let mut lines = Vec::new();
    for account_id in accounts {
        report.accounts.entry(account_id.clone()).or_default();
        let found = match candidates.candidates(account_id).await {
            Ok(found) => found,
            Err(e) => {
                warn!(account_id, error = %e, "cannot find the account's failing users; the account is left out");
                report.error(format!("account {account_id}: {e}"));
                continue;
            }
        };
        for c in found {
            let keys = match look(inventory, account_id, &c.user).await {
                Ok(keys) => keys,
                Err(InventoryError::NoSuchUser { .. }) => continue,
                Err(e) => {
                    report.error(format!("account {account_id} user {}: {e}", c.user.name));
                    continue;
                }
            };
            let now = OffsetDateTime::now_utc();
            let excepted = exceptions.matching(account_id, &c.user.name, now).is_some();
            let (action, key, reason, outcome) = match choose(&keys, now, recent_use, excepted) {
                Choice::Deactivate { access_key_id, why } => ("deactivate", Some(access_key_id), why.as_str(), Outcome::Deactivate),
                Choice::Skip(s) => ("skip", None, s.as_str(), Outcome::of_skip(s)),
            };
            report.count(account_id, outcome);
            let line = PlanLine {
                action: action.to_string(),
                account_id: account_id.clone(),
                user_name: c.user.name.clone(),
                user_arn: c.user.arn.clone(),
                access_key_id: key,
                reason: reason.to_string(),
                keys: keys.iter().map(KeyLine::of).collect(),
                planned_at: rfc3339(now),
            };
            each(&line);
            lines.push(line);
        }
    }
    report.intended = lines.iter().filter(|l| l.is_deactivation()).count();
    (lines, report)
}

/// Reads a plan that `--plan` printed: its JSON lines (a summary line or
/// blank lines are passed over).
pub fn read_plan(path: &std::path::Path) -> Result<Vec<PlanLine>, super::RemediateError> {
    let fail = |message: String| super::RemediateError::Read { what: "the plan", path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(l).map_err(|e| fail(format!("line {}: {e}", i + 1)))?;
        if value.get("action").is_none() {
            continue;
        }
        lines.push(serde_json::from_value(value).map_err(|e| fail(format!("line {}: {e}", i + 1)))?);
    }
    Ok(lines)
}
