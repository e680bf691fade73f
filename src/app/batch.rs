//! The one-shot commands, `keywatch scan` and `keywatch replay`: each builds
//! the shared parts, works through a fixed input (every user, or the given
//! files) and returns a report for the binary to print and turn into an exit
//! code, where `run` keeps going until it is stopped.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::parts::Parts;
use super::AppError;
use crate::config::{ReplayArgs, ScanArgs};
use crate::finding::ScanSummary;
use crate::health::Health;
use crate::inventory::cached::{CacheSettings, CachingInventory};
use crate::processor::{Processor, ProcessorSettings};
use crate::replay::{self, Counted, ReadReport, ReplaySource};
use crate::scan::{Progress, ScanSettings, Scanner};
use crate::source;

/// What `keywatch scan` found, account by account.
pub struct ScanReport {
    pub accounts: Vec<ScanSummary>,
}

impl ScanReport {
    pub fn users_failing(&self) -> usize {
        self.accounts.iter().map(|a| a.users_failing).sum()
    }
    /// Accounts whose root user has an access key (CIS 1.4).
    pub fn root_keys(&self) -> usize {
        self.accounts.iter().filter(|a| a.root_access_keys.is_some_and(|n| n > 0)).count()
    }
    pub fn complete(&self) -> bool {
        self.accounts.iter().all(ScanSummary::complete)
    }
}

/// `keywatch scan`: every user of every account keywatch may act in,
/// accounts side by side, under the per-account IAM limits.
pub async fn scan(args: &ScanArgs, sdk: &SdkConfig, shutdown: &CancellationToken, progress: &dyn Progress) -> Result<ScanReport, AppError> {
    let ((), parts) = Parts::build(&args.common, args.dry_run, sdk, Duration::from_secs(20), shutdown, |_| async { Ok(()) }).await?;
    let sink = parts.sinks(&args.common, args.dry_run)?;
    let settings =
        ScanSettings { include_passed: args.include_passed, last_use: !args.no_last_use, users_in_flight: args.users_in_flight as usize };
    let ledger = parts.shared_ledger();
    let scanner = Scanner::new(Arc::new(parts.iam), sink, settings).with_ledger(ledger);
    let accounts = parts.accounts.all();
    info!(accounts = accounts.len(), "scan started");
    let exceptions = &parts.exceptions;
    let summaries = futures_util::stream::iter(accounts)
        .map(|account| {
            let scanner = &scanner;
            async move { scanner.scan_account(&account, exceptions, progress).await }
        })
        .buffer_unordered(args.accounts_in_parallel as usize)
        .collect::<Vec<_>>()
        .await;
    Ok(ScanReport { accounts: summaries })
}

/// What `keywatch replay` did.
pub struct ReplayReport {
    pub read: ReadReport,
    pub findings: usize,
    /// Key events whose check did not finish (replay them again).
    pub unfinished: usize,
}

/// `keywatch replay`: the key events of the inputs, in `eventTime` order,
/// through the same processor as `run`.
pub async fn replay(args: &ReplayArgs, sdk: &SdkConfig, shutdown: &CancellationToken) -> Result<ReplayReport, AppError> {
    let ((), parts) = Parts::build(&args.common, args.dry_run, sdk, Duration::from_secs(20), shutdown, |_| async { Ok(()) }).await?;
    let sink = Arc::new(Counted::new(parts.sinks(&args.common, args.dry_run)?));
    let (messages, read) = replay::read(&args.paths);
    for (file, why) in &read.unreadable {
        error!(file = %file.display(), error = %why, "cannot read this file; the others are still replayed");
    }
    info!(files = read.files, records = read.records, key_events = read.key_events, "replaying");
    let inventory = CachingInventory::new(parts.iam, parts.limiter, &CacheSettings::from(&args.check));
    let processor = Processor::new(inventory, sink.clone(), parts.accounts, ProcessorSettings::from(&args.check));
    processor.set_exceptions(parts.exceptions);
    let source = Arc::new(ReplaySource::new(messages));
    let drained =
        source::drive(source.clone(), Arc::new(processor), 1, Arc::new(Health::default()), shutdown.clone(), Duration::from_secs(30)).await;
    if let Err(e) = drained {
        warn!(error = %e, "replay stopped before every event was checked");
    }
    Ok(ReplayReport { read, findings: sink.accepted(), unfinished: source.unfinished() })
}
