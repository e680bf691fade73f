//! `keywatch findings`: who fails now, read from the ledger's open
//! violations, as a table for people or JSON lines for pipelines.

use std::fmt::Write as _;
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::json;
use time::OffsetDateTime;

use super::AppError;
use crate::aws::dynamodb::DynamoLedger;
use crate::aws::Clients;
use crate::config::FindingsArgs;
use crate::finding::rfc3339;
use crate::ledger::{self, Entry, Ledger, LedgerError};

/// The open violations of the accounts `args` names (every account when
/// none), oldest first.
pub async fn findings(args: &FindingsArgs, sdk: &SdkConfig) -> Result<Vec<Entry>, AppError> {
    if sdk.region().is_none() {
        return Err(AppError::NoRegion);
    }
    let clients = Clients::new(sdk, Duration::from_secs(20), "us-east-1");
    let ledger = DynamoLedger::new(clients.dynamodb(), args.ledger_table.clone());
    let read_error = |e: LedgerError| AppError::LedgerRead { table: args.ledger_table.clone(), message: e.to_string() };
    let mut open = Vec::new();
    if args.accounts.is_empty() {
        open = ledger.open(None).await.map_err(read_error)?;
    } else {
        for account in &args.accounts {
            open.extend(ledger.open(Some(account)).await.map_err(read_error)?);
        }
        ledger::oldest_first(&mut open);
    }
    Ok(open)
}

/// How long ago `t` was, in the two largest units (`3d 4h`, `12m 5s`).
fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn age_seconds(e: &Entry, now: OffsetDateTime) -> f64 {
    e.last.opened_at.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0))
}

/// One open violation as a JSON line.
pub fn json_line(e: &Entry, now: OffsetDateTime) -> String {
    json!({
        "finding_id": e.finding_id,
        "control_id": e.control_id,
        "account_id": e.account_id,
        "user_name": e.user_name,
        "severity": ledger::severity_str(e.severity),
        "opened_at": e.last.opened_at.map(rfc3339),
        "age_seconds": age_seconds(e, now).round() as u64,
        "observed_at": rfc3339(e.last.observed_at),
        "active_key_count": e.active_key_count,
        "recommended_key_to_deactivate": e.recommended_key,
        "suppressed": e.last.suppressed,
        "published": e.last.published,
        "trigger": { "event_id": e.trigger_event_id, "event_name": e.trigger_event_name },
    })
    .to_string()
}

/// The open violations as a table, a header line first.
pub fn table(open: &[Entry], now: OffsetDateTime) -> String {
    let rows: Vec<[String; 7]> = open
        .iter()
        .map(|e| {
            [
                e.account_id.clone(),
                e.user_name.clone(),
                e.control_id.clone(),
                ledger::severity_str(e.severity).to_string(),
                age(age_seconds(e, now)),
                e.recommended_key.clone().unwrap_or_else(|| "-".into()),
                if e.last.suppressed { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let header = ["ACCOUNT", "USER", "CONTROL", "SEVERITY", "OPEN FOR", "KEY TO DEACTIVATE", "SUPPRESSED"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
