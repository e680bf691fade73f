//! `keywatch remediate`: the shared parts, then a plan (printed), a run
//! (`--apply`, journaled) or an undo (`--undo JOURNAL`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::parts::Parts;
use super::AppError;
use crate::config::RemediateArgs;
use crate::decide::remediation::account_order;
use crate::remediate::{
    self, ActionEvents, ApplySettings, Journal, LedgerCandidates, NoEvents, Prompt, RemediateError, Report, ScanCandidates,
};

/// Prints one JSON line on standard output.
fn print_line<T: serde::Serialize>(value: &T) {
    if let Ok(line) = serde_json::to_string(value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// `keywatch remediate`: plans (the default), applies or undoes, and says
/// what it did.
pub async fn remediate(
    args: &RemediateArgs,
    sdk: &SdkConfig,
    shutdown: &CancellationToken,
    prompt: &dyn Prompt,
) -> Result<Report, AppError> {
    let dry_run = !args.acts();
    let built = Parts::build(&args.common, dry_run, sdk, Duration::from_secs(20), shutdown, |_| async { Ok(()) }).await;
    let ((), parts) = match built {
        Err(AppError::NoFindingsBus) => return Err(RemediateError::NoFindingsBus.into()),
        other => other?,
    };
    let bus = if dry_run { None } else { parts.bus(&args.common) };
    if !dry_run && bus.is_none() {
        warn!("no findings bus (KEYWATCH_FINDINGS_BUS with the eventbridge sink): actions go to the journal and standard output only");
    }
    let events: &dyn ActionEvents = match &bus {
        Some(bus) => bus,
        None => &NoEvents,
    };
    if let Some(path) = &args.undo {
        let entries = remediate::journal_entries(path)?;
        let sink = parts.sinks(&args.common, false)?;
        info!(journal = %path.display(), entries = entries.len(), "undoing");
        return Ok(remediate::undo(&parts.iam, &entries, events, sink.as_ref(), &mut |e| print_line(e)).await);
    }
    let all = parts.accounts.all();
    let tagged = match &args.first_tag {
        Some((key, value)) => tagged(&parts, &all, key, value).await?,
        None => Vec::new(),
    };
    let order = account_order(&all, &args.first, &tagged);
    info!(accounts = ?order, "accounts in remediation order");
    let (lines, mut report) = match &args.from_plan {
        Some(path) => from_plan(path, &order)?,
        None => {
            let mut print = |l: &remediate::PlanLine| {
                if dry_run {
                    print_line(l)
                }
            };
            match parts.ledger_reader(&args.common).filter(|_| args.from_ledger) {
                Some(ledger) => {
                    info!("failing users from the ledger's open violations");
                    let candidates = LedgerCandidates { ledger, users: args.users.clone(), partition: parts.partition() };
                    remediate::plan(&parts.iam, &candidates, &order, &parts.exceptions, args.recent_use, &mut print).await
                }
                None => {
                    let candidates = ScanCandidates { inventory: &parts.iam, users: args.users.clone() };
                    remediate::plan(&parts.iam, &candidates, &order, &parts.exceptions, args.recent_use, &mut print).await
                }
            }
        }
    };
    if dry_run {
        return Ok(report);
    }
    let path = args.journal.clone().unwrap_or_else(default_journal);
    let mut journal = Journal::create(&path)?;
    info!(journal = %path.display(), "journal created");
    report.journal = Some(path.display().to_string());
    let sink = parts.sinks(&args.common, false)?;
    let settings = ApplySettings {
        recent_use: args.recent_use,
        batch_size: args.batch_size as usize,
        pause: args.pause,
        max_actions: args.max_actions as usize,
        max_failures: args.max_failures as usize,
    };
    let run = remediate::Run {
        inventory: &parts.iam,
        exceptions: &parts.exceptions,
        settings: &settings,
        events,
        sink: sink.as_ref(),
        prompt,
        shutdown,
    };
    remediate::apply(&run, &lines, &mut journal, &mut report, &mut |e| print_line(e)).await?;
    Ok(report)
}

/// The accounts among `all` whose Organizations tag `key` is `value`.
async fn tagged(parts: &Parts, all: &[String], key: &str, value: &str) -> Result<Vec<String>, RemediateError> {
    let org = parts.organizations();
    let mut out = Vec::new();
    for account_id in all {
        let tags = org
            .account_tags(account_id)
            .await
            .map_err(|e| RemediateError::Tags { account_id: account_id.clone(), message: e.to_string() })?;
        if tags.iter().any(|(k, v)| k == key && v == value) {
            out.push(account_id.clone());
        }
    }
    Ok(out)
}

/// A reviewed plan's lines, in the plan's order (made with its --first);
/// the lines of accounts outside `order` are refused (counted as errors).
fn from_plan(path: &std::path::Path, order: &[String]) -> Result<(Vec<remediate::PlanLine>, Report), RemediateError> {
    let mut lines = remediate::read_plan(path)?;
    let mut report = Report::default();
    lines.retain(|l| {
        let known = order.contains(&l.account_id);
        if !known {
            report.error(format!("the plan names account {}, outside KEYWATCH_ACCOUNTS: left out", l.account_id));
        }
        known
    });
    for a in order {
        report.accounts.entry(a.clone()).or_default();
    }
    Ok((lines, report))
}

fn default_journal() -> PathBuf {
    let t = OffsetDateTime::now_utc();
    PathBuf::from(format!(
        "keywatch-remediation-{:04}{:02}{:02}T{:02}{:02}{:02}Z.jsonl",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}
