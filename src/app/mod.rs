//! App: the one place that wires keywatch together, used by the binary,
//! the tests and the benchmarks alike.
//!
//! [`App::build`] turns the command line ([`RunArgs`]) and an AWS SDK
//! config into the running parts: the SQS source, the IAM inventory behind
//! its caching decorator and rate limiter, the sinks, the processor, the
//! admin port, the approved exceptions from their source (file, SSM, S3).
//! [`App::run`] drives them until the shutdown token is cancelled (or the
//! queue is drained with `--once`), keeping the exceptions current, then
//! lets messages in flight finish within the drain timeout.
//!
//! What every command builds alike is in `parts.rs`; the one-shot commands
//! (`scan`, `replay`) are in `batch.rs`; the JSON log format is in
//! `logs.rs`, so this file is the worker.

mod batch;
mod findings;
#[cfg(feature = "lambda")]
mod lambda;
mod logs;
mod parts;
mod remediate;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::parts::Parts;
use crate::admin;
use crate::aws::iam::IamInventory;
use crate::aws::sqs::{self, ReceiveSettings, SqsQueue, SqsSource};
use crate::aws::AwsError;
use crate::config::{CheckArgs, RunArgs};
use crate::decide::Rules;
use crate::exceptions::{Exceptions, ExceptionsError};
use crate::exceptions_source::{self, Watch};
use crate::health::Health;
use crate::inventory::cached::{CacheSettings, CachingInventory};
use crate::ledger::{self, Ledger};
use crate::processor::{Processor, ProcessorSettings};
use crate::source;
use crate::telemetry;

pub use self::batch::{replay, scan, ReplayReport, ScanReport};
pub use self::findings::{findings, json_line, table};
#[cfg(feature = "lambda")]
pub use self::lambda::lambda;
pub use self::logs::JsonLines;
pub use self::remediate::remediate;

/// The inventory the app runs with.
type Inventory = CachingInventory<IamInventory>;

/// Why the app could not start or stop cleanly. Each says which setting
/// to look at.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("KEYWATCH_EXCEPTIONS_FILE: {0}")]
    Exceptions(#[from] ExceptionsError),
    #[error("cannot listen on {addr} (KEYWATCH_METRICS_ADDR): {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("no AWS region configured: set AWS_REGION (e.g. us-east-1, where IAM events arrive)")]
    NoRegion,
    #[error("cannot use queue {url} (KEYWATCH_QUEUE_URL): {source}")]
    Queue { url: String, source: AwsError },
    #[error("--iam-rate-per-account (KEYWATCH_IAM_RATE_PER_ACCOUNT) must be a number >= 0, got {0}")]
    Rate(f64),
    #[error("keywatch needs the worker's own account id, but sts:GetCallerIdentity failed (check the AWS credentials): {0}")]
    OwnAccount(AwsError),
    #[error(
        "the eventbridge sink needs a bus: set --findings-bus (KEYWATCH_FINDINGS_BUS), or choose other sinks with --sink (KEYWATCH_SINKS), or --dry-run"
    )]
    NoFindingsBus,
    #[error("KEYWATCH_MEMBER_ROLE (--member-role) needs KEYWATCH_ACCOUNTS (--accounts): the accounts the role may be assumed in (ids separated by commas, or organization)")]
    MemberRoleWithoutAccounts,
    #[error("KEYWATCH_ACCOUNTS (--accounts) names other accounts than the worker's own ({0}): set KEYWATCH_MEMBER_ROLE (--member-role) to the role keywatch assumes there")]
    AccountsWithoutMemberRole(String),
    #[error("KEYWATCH_ACCOUNTS=organization: cannot list the organisation's accounts (organizations:ListAccounts): {0}")]
    Organization(AwsError),
    #[error("cannot use the ledger table {table} (KEYWATCH_LEDGER_TABLE): {source}")]
    Ledger { table: String, source: AwsError },
    #[error("cannot read the ledger table {table} (KEYWATCH_LEDGER_TABLE): {message}")]
    LedgerRead { table: String, message: String },
    #[error(transparent)]
    Remediate(#[from] crate::remediate::RemediateError),
    #[error("messages in flight did not finish within {0} s (KEYWATCH_DRAIN_TIMEOUT_SECS); {1} were handed back for redelivery")]
    DrainTimeout(u64, usize),
}

impl From<&RunArgs> for ProcessorSettings {
    fn from(args: &RunArgs) -> Self {
        ProcessorSettings::from(&args.check)
    }
}

impl From<&CheckArgs> for ProcessorSettings {
    fn from(args: &CheckArgs) -> Self {
        ProcessorSettings {
            rules: Rules { consistency_window: Duration::from_secs(args.consistency_window_secs), rotation: args.rotation() },
            relist_delays: ProcessorSettings::relist_delays_for(Duration::from_millis(args.relist_budget_ms)),
            max_concurrent_checks: args.max_concurrent_checks as usize,
        }
    }
}

impl From<&RunArgs> for CacheSettings {
    fn from(args: &RunArgs) -> Self {
        CacheSettings::from(&args.check)
    }
}

impl From<&CheckArgs> for CacheSettings {
    fn from(args: &CheckArgs) -> Self {
        CacheSettings {
            listing_reuse: Duration::from_secs(args.listing_reuse_secs),
            last_used_ttl: Duration::from_secs(args.last_used_cache_secs),
        }
    }
}

impl From<&RunArgs> for ReceiveSettings {
    fn from(args: &RunArgs) -> Self {
        ReceiveSettings {
            max_messages: args.max_messages,
            wait: args.wait(),
            visibility_timeout: args.visibility_timeout_secs.map(Duration::from_secs),
            until_empty: args.once,
        }
    }
}

/// keywatch, wired.
pub struct App {
    source: Arc<SqsSource>,
    processor: Arc<Processor<Inventory>>,
    health: Arc<Health>,
    /// The admin server, serving from start-up on, and what stops it.
    admin: Option<(tokio::task::JoinHandle<()>, std::net::SocketAddr)>,
    stop_helpers: CancellationToken,
    receivers: usize,
    queue_metrics_interval: Option<Duration>,
    /// The exceptions' source, kept current while the app runs.
    exceptions: Option<Watch>,
    exceptions_poll: Option<Duration>,
    drain_timeout_secs: u64,
    /// The shared ledger, and how often its open violations are counted
    /// for the metrics.
    ledger: Option<(Arc<dyn Ledger>, Duration)>,
    violation_sla: Duration,
}

impl App {
    /// Builds every part from `args` and `sdk` (credentials, region,
    /// endpoint). With `metrics`, the admin port serves from now on (alive,
    /// not ready), so that a port in use stops start-up at once and an
    /// orchestrator sees a worker still waiting for AWS. Transient AWS
    /// failures during start-up are retried until `shutdown`.
    pub async fn build(
        args: &RunArgs,
        sdk: &SdkConfig,
        metrics: Option<PrometheusHandle>,
        shutdown: &CancellationToken,
    ) -> Result<App, AppError> {
        let health = Arc::new(Health::default());
        let stop_helpers = CancellationToken::new();
        let admin = match metrics {
            Some(handle) => {
                let listen_error = |source| AppError::Listen { addr: args.metrics_addr, source };
                let listener = admin::bind(args.metrics_addr).await.map_err(listen_error)?;
                let addr = listener.local_addr().map_err(listen_error)?;
                Some((tokio::spawn(admin::serve(listener, handle, health.clone(), stop_helpers.clone())), addr))
            }
            None => None,
        };
        let (queue, parts) = Parts::build(&args.common, false, sdk, args.wait(), shutdown, |clients| checked_queue(clients, args)).await?;
        let Wired { processor, ledger, watch } = wire(args, parts, &queue)?;
        let exceptions_poll = args.common.exceptions_poll();

        Ok(App {
            source: Arc::new(SqsSource::new(queue, ReceiveSettings::from(args))),
            processor,
            health,
            admin,
            stop_helpers,
            receivers: args.receivers as usize,
            queue_metrics_interval: args.queue_metrics_interval(),
            exceptions: watch,
            exceptions_poll,
            drain_timeout_secs: args.drain_timeout_secs,
            ledger: ledger.map(|l| (l, Duration::from_secs(args.ledger_metrics_secs))),
            violation_sla: Duration::from_secs(args.violation_sla_hours * 3600),
        })
    }

    /// Runs until `shutdown` is cancelled (or, with `--once`, the queue is
    /// empty); messages in flight then get the drain timeout to finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let stop_helpers = self.stop_helpers;
        let admin_task = self.admin.map(|(task, _)| task);
        if let Some(interval) = self.queue_metrics_interval {
            tokio::spawn(sqs::depth_loop(self.source.queue.clone(), interval, stop_helpers.clone()));
        }
        if let Some(watch) = self.exceptions {
            let processor = self.processor.clone();
            let apply = move |e: Exceptions| processor.set_exceptions(e);
            tokio::spawn(exceptions_source::keep_current(watch, self.exceptions_poll, true, apply, stop_helpers.clone()));
        }
        telemetry::violation_sla(self.violation_sla.as_secs_f64());
        if let Some((ledger, interval)) = self.ledger.filter(|(_, interval)| !interval.is_zero()) {
            tokio::spawn(count_open(ledger, interval, stop_helpers.clone()));
        }
        info!(queue_url = %self.source.queue.url(), version = env!("CARGO_PKG_VERSION"), "keywatch started");
        let drain = Duration::from_secs(self.drain_timeout_secs);
        let outcome = source::drive(self.source, self.processor, self.receivers, self.health, shutdown, drain)
            .await
            .map_err(|e| AppError::DrainTimeout(self.drain_timeout_secs, e.released));
        stop_helpers.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        outcome
    }
}

/// The queue of `args`, checked: one that does not exist or cannot be read
/// stops start-up; a transient failure is left to the receive loop's (or
/// the next invocation's) retries.
async fn checked_queue(clients: crate::aws::Clients, args: &RunArgs) -> Result<SqsQueue, AppError> {
    let queue = SqsQueue::new(clients.sqs(), args.queue_url.clone());
    match queue.attributes().await {
        Ok(_) => Ok(queue),
        Err(e) if !e.is_retryable() => Err(AppError::Queue { url: args.queue_url.clone(), source: e }),
        Err(e) => {
            warn!(error = %e, "queue not reachable yet; will keep trying");
            Ok(queue)
        }
    }
}

/// The worker's processor from its parts, wired alike for `run` and the
/// Lambda function: the sinks behind the ledger, the IAM inventory behind
/// its cache, scan requests and re-checks onto `queue`, the exceptions.
struct Wired {
    processor: Arc<Processor<Inventory>>,
    ledger: Option<Arc<dyn Ledger>>,
    /// The exceptions' source, to keep them current.
    watch: Option<Watch>,
}

fn wire(args: &RunArgs, parts: Parts, queue: &SqsQueue) -> Result<Wired, AppError> {
    let sink = parts.sinks(&args.common, false)?;
    let ledger = parts.shared_ledger();
    let quarantine = parts.quarantiner(args).map(|mut q| {
        q.ledger = ledger.clone();
        q
    });
    let inventory = CachingInventory::new(parts.iam, parts.limiter, &CacheSettings::from(&args.check));
    let mut processor =
        Processor::new(inventory, sink, parts.accounts, ProcessorSettings::from(&args.check)).with_scans(Arc::new(queue.clone()));
    if let Some(q) = quarantine {
        processor = processor.with_quarantine(q);
    }
    match &ledger {
        Some(ledger) => processor = processor.with_ledger(ledger.clone()),
        None => warn!(
            "no ledger table (KEYWATCH_LEDGER_TABLE): the last word on a finding is kept per process (another replica, or a restart, \
             may publish an older verdict after a newer one), scans close only what they publish (include_passed), \
             and `keywatch findings` cannot say who fails now"
        ),
    }
    processor.set_exceptions(parts.exceptions);
    Ok(Wired { processor: Arc::new(processor), ledger, watch: parts.watch })
}

/// Counts the ledger's open violations every `interval` for the metrics
/// (`keywatch_open_violations`, `keywatch_oldest_open_violation_age_seconds`)
/// until `stop`. A failed count keeps the last figures and is logged.
async fn count_open(ledger: Arc<dyn Ledger>, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match ledger.open(None).await {
            Ok(open) => {
                let counted = ledger::count(&open, time::OffsetDateTime::now_utc());
                telemetry::open_violations(counted.unsuppressed, counted.suppressed, counted.oldest_seconds);
            }
            Err(e) => warn!(error = %e, "could not count the ledger's open violations; the metrics keep their last values"),
        }
    }
}
