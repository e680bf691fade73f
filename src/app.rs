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

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::accounts::{AccountLister, Accounts, Scope};
use crate::admin;
use crate::aws::eventbridge::EventBridgeSink;
use crate::aws::iam::{IamInventory, MemberRole};
use crate::aws::organizations::OrganizationAccounts;
use crate::aws::s3::S3Object;
use crate::aws::securityhub::SecurityHubSink;
use crate::aws::sqs::{self, ReceiveSettings, SqsQueue, SqsSource};
use crate::aws::ssm::SsmParameter;
use crate::aws::{sts, AwsError, Clients};
use crate::config::{CheckArgs, CommonArgs, ReplayArgs, RunArgs, ScanArgs, SinkKind};
use crate::decide::Rules;
use crate::exceptions::{Exceptions, ExceptionsError};
use crate::exceptions_source::{self, ExceptionsSource, FileSource, Location, Watch};
use crate::finding::ScanSummary;
use crate::format::{asff, FindingFormat};
use crate::health::Health;
use crate::inventory::cached::{CacheSettings, CachingInventory};
use crate::limit::{RateLimiter, RetryPolicy};
use crate::processor::{Processor, ProcessorSettings};
use crate::replay::{self, Counted, ReadReport, ReplaySource};
use crate::scan::{Progress, ScanSettings, Scanner};
use crate::sink::{FindingSink, Sinks, StdoutSink};
use crate::source;
use futures_util::StreamExt;

/// The inventory the app runs with.
pub type Inventory = CachingInventory<IamInventory>;

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
            rules: Rules { consistency_window: Duration::from_secs(args.consistency_window_secs) },
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
        let parts = Parts::build(&args.common, false, sdk, args.wait(), shutdown, |clients| async move {
            let queue = SqsQueue::new(clients.sqs(), args.queue_url.clone());
            // Fail fast on a queue that does not exist or cannot be read; a
            // transient failure is left to the receive loop's retries.
            match queue.attributes().await {
                Ok(_) => Ok(queue),
                Err(e) if !e.is_retryable() => Err(AppError::Queue { url: args.queue_url.clone(), source: e }),
                Err(e) => {
                    warn!(error = %e, "queue not reachable yet; will keep trying");
                    Ok(queue)
                }
            }
        })
        .await?;
        let (queue, parts) = parts;
        let sink = parts.sinks(&args.common, false)?;
        let inventory = CachingInventory::new(parts.iam, parts.limiter, &CacheSettings::from(&args.check));
        let processor =
            Processor::new(inventory, sink, parts.accounts, ProcessorSettings::from(&args.check)).with_scans(Arc::new(queue.clone()));
        processor.set_exceptions(parts.exceptions);
        let processor = Arc::new(processor);
        let exceptions_poll = args.common.exceptions_poll();

        Ok(App {
            source: Arc::new(SqsSource { queue, settings: ReceiveSettings::from(args) }),
            processor,
            health,
            admin,
            stop_helpers,
            receivers: args.receivers as usize,
            queue_metrics_interval: args.queue_metrics_interval(),
            exceptions: parts.watch,
            exceptions_poll,
            drain_timeout_secs: args.drain_timeout_secs,
        })
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The admin port's address, when it was bound.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|(_, addr)| *addr)
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

/// What every command builds alike: the AWS clients, the accounts, the IAM
/// inventory with its limits and member role, the exceptions.
struct Parts {
    clients: Clients,
    accounts: Arc<Accounts>,
    iam: IamInventory,
    limiter: Arc<RateLimiter>,
    /// The approved exceptions as loaded at start-up, and their source to
    /// keep them current (`run`).
    exceptions: Exceptions,
    watch: Option<Watch>,
    region: String,
}

impl Parts {
    /// Builds the parts; `first` checks what the command needs before the
    /// accounts are looked up (the queue, for `run`). Settings are checked
    /// before anything is asked of AWS.
    async fn build<T, F, Fut>(
        args: &CommonArgs,
        dry_run: bool,
        sdk: &SdkConfig,
        wait: Duration,
        shutdown: &CancellationToken,
        first: F,
    ) -> Result<(T, Parts), AppError>
    where
        F: FnOnce(Clients) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        if !dry_run && args.findings_bus.is_none() && args.sinks().contains(&SinkKind::EventBridge) {
            return Err(AppError::NoFindingsBus);
        }
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            return Err(AppError::NoRegion);
        };
        if !(args.iam_rate_per_account >= 0.0 && args.iam_rate_per_account.is_finite()) {
            return Err(AppError::Rate(args.iam_rate_per_account));
        }
        let clients = Clients::new(sdk, wait, &args.iam_region);
        let (watch, exceptions) = match &args.exceptions {
            Some(location) => {
                let mut watch = Watch::new(source_for(location, &clients));
                let exceptions = watch.load().await?;
                (Some(watch), exceptions)
            }
            None => (None, Exceptions::default()),
        };
        if let Some(source) = &exceptions.source {
            info!(count = exceptions.entries.len(), source = %source, "approved exceptions loaded");
        }
        let checked = first(clients.clone()).await?;
        let accounts = Arc::new(accounts(args, &clients, shutdown).await?);
        let limiter = Arc::new(RateLimiter::new(args.iam_rate_per_account));
        let retry = RetryPolicy { max_attempts: args.iam_max_attempts, ..RetryPolicy::default() };
        let mut iam = IamInventory::new(clients.iam()).with_limits(limiter.clone(), retry);
        if let Some(name) = &args.member_role {
            info!(member_role = %name, own_account_id = %accounts.own(), "member accounts are read through their role");
            let role = MemberRole {
                name: name.clone(),
                external_id: args.member_role_external_id.clone(),
                own_account_id: accounts.own().to_string(),
            };
            iam = iam.with_member_role(clients.sts(), role);
        }
        debug!(clients = ?clients.built(), "AWS clients built so far (the others are built when first needed)");
        Ok((checked, Parts { clients, accounts, iam, limiter, exceptions, watch, region }))
    }

    /// The sinks findings go to: JSON lines on standard output for a dry
    /// run, else the selected sinks (`--sink`).
    fn sinks(&self, args: &CommonArgs, dry_run: bool) -> Result<Arc<dyn FindingSink>, AppError> {
        if dry_run {
            return Ok(Arc::new(StdoutSink::default().with_format(args.finding_format)));
        }
        let kinds = args.sinks();
        let mut sinks: Vec<Arc<dyn FindingSink>> = Vec::new();
        for kind in &kinds {
            let sink: Arc<dyn FindingSink> = match kind {
                SinkKind::EventBridge => {
                    let bus = args.findings_bus.clone().ok_or(AppError::NoFindingsBus)?;
                    info!(bus = %bus, format = args.finding_format.as_str(), "findings go to EventBridge");
                    Arc::new(
                        EventBridgeSink::new(self.clients.eventbridge(), bus, args.finding_source.clone()).with_format(args.finding_format),
                    )
                }
                SinkKind::SecurityHub => {
                    let target = asff::Target::new(self.accounts.own().to_string(), self.region.clone());
                    info!(product_arn = %target.product_arn(), "findings go to Security Hub (ASFF)");
                    Arc::new(SecurityHubSink::new(self.clients.securityhub(), target))
                }
                SinkKind::Stdout => {
                    info!(format = args.finding_format.as_str(), "findings go to standard output");
                    Arc::new(StdoutSink::default().with_format(args.finding_format))
                }
            };
            sinks.push(sink);
        }
        if args.finding_format != FindingFormat::Native && !kinds.iter().any(|k| matches!(k, SinkKind::EventBridge | SinkKind::Stdout)) {
            warn!(
                format = args.finding_format.as_str(),
                "KEYWATCH_FINDING_FORMAT applies to the eventbridge and stdout sinks; none is selected"
            );
        }
        Ok(Arc::new(Sinks(sinks)))
    }
}

/// What `keywatch scan` found, account by account.
pub struct ScanReport {
    pub accounts: Vec<ScanSummary>,
}

impl ScanReport {
    pub fn users_failing(&self) -> usize {
        self.accounts.iter().map(|a| a.users_failing).sum()
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
    let scanner = Scanner::new(Arc::new(parts.iam), sink, settings);
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

/// The accounts keywatch may act in: its own (`GetCallerIdentity`) and
/// `KEYWATCH_ACCOUNTS`, which must come with a member role when it names
/// others.
async fn accounts(args: &CommonArgs, clients: &Clients, shutdown: &CancellationToken) -> Result<Accounts, AppError> {
    let sts = clients.sts();
    let own = until_answered("sts:GetCallerIdentity", shutdown, || sts::own_account_id(&sts)).await.map_err(AppError::OwnAccount)?;
    let scope = args.accounts.clone().unwrap_or(Scope::Own);
    match (&scope, &args.member_role) {
        (Scope::Own, Some(_)) => return Err(AppError::MemberRoleWithoutAccounts),
        (Scope::List(ids), None) if ids.iter().any(|id| *id != own) => return Err(AppError::AccountsWithoutMemberRole(own)),
        (Scope::Organization, None) => return Err(AppError::AccountsWithoutMemberRole(own)),
        _ => {}
    }
    // Only an organisation scope lists accounts (and needs the client).
    let lister =
        (scope == Scope::Organization).then(|| Arc::new(OrganizationAccounts::new(clients.organizations())) as Arc<dyn AccountLister>);
    until_answered("organizations:ListAccounts", shutdown, || Accounts::new(own.clone(), scope.clone(), lister.clone()))
        .await
        .map_err(AppError::Organization)
}

/// Runs `call` until it succeeds, fails for good, or `shutdown` comes;
/// transient failures are logged and retried with a growing pause.
async fn until_answered<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let mut pause = Duration::from_millis(500);
    loop {
        match call().await {
            Err(e) if e.is_retryable() => {
                warn!(call = what, error = %e, retry_in_ms = pause.as_millis() as u64, "AWS not reachable at start-up; will keep trying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// The adapter for where the exceptions are kept.
fn source_for(location: &Location, clients: &Clients) -> Arc<dyn ExceptionsSource> {
    match location {
        Location::File(path) => Arc::new(FileSource::new(path.clone())),
        Location::Ssm(name) => Arc::new(SsmParameter::new(clients.ssm(), name.clone())),
        Location::S3 { bucket, key } => Arc::new(S3Object::new(clients.s3(), bucket.clone(), key.clone())),
    }
}
