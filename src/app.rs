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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::aws::eventbridge::EventBridgeSink;
use crate::aws::iam::{IamInventory, MemberRole};
use crate::aws::s3::S3Object;
use crate::aws::sqs::{self, ReceiveSettings, SqsQueue, SqsSource};
use crate::aws::ssm::SsmParameter;
use crate::aws::{sts, AwsError, Clients};
use crate::config::RunArgs;
use crate::decide::Rules;
use crate::exceptions::{Exceptions, ExceptionsError};
use crate::exceptions_source::{self, ExceptionsSource, FileSource, Location, Watch};
use crate::health::Health;
use crate::inventory::cached::{CacheSettings, CachingInventory};
use crate::limit::{RateLimiter, RetryPolicy};
use crate::processor::{Processor, ProcessorSettings};
use crate::sink::{FindingSink, Sinks};
use crate::source;

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
    #[error("KEYWATCH_MEMBER_ROLE needs the worker's own account id, but sts:GetCallerIdentity failed: {0}")]
    OwnAccount(AwsError),
    #[error("messages in flight did not finish within {0} s (KEYWATCH_DRAIN_TIMEOUT_SECS); they will be delivered again")]
    DrainTimeout(u64),
}

impl From<&RunArgs> for ProcessorSettings {
    fn from(args: &RunArgs) -> Self {
        ProcessorSettings {
            rules: Rules { consistency_window: Duration::from_secs(args.consistency_window_secs) },
            relist_delays: ProcessorSettings::relist_delays_for(Duration::from_millis(args.relist_budget_ms)),
            max_concurrent_checks: args.max_concurrent_checks as usize,
        }
    }
}

impl From<&RunArgs> for CacheSettings {
    fn from(args: &RunArgs) -> Self {
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
    admin: Option<(TcpListener, PrometheusHandle)>,
    receivers: usize,
    queue_metrics_interval: Option<Duration>,
    /// The exceptions' source, kept current while the app runs.
    exceptions: Option<Watch>,
    exceptions_poll: Option<Duration>,
    drain_timeout_secs: u64,
}

impl App {
    /// Builds every part from `args` and `sdk` (credentials, region,
    /// endpoint). With `metrics`, the admin port is bound now, so that a
    /// port in use stops start-up at once.
    pub async fn build(args: &RunArgs, sdk: &SdkConfig, metrics: Option<PrometheusHandle>) -> Result<App, AppError> {
        let admin = match metrics {
            Some(handle) => {
                let listener =
                    admin::bind(args.metrics_addr).await.map_err(|source| AppError::Listen { addr: args.metrics_addr, source })?;
                Some((listener, handle))
            }
            None => None,
        };
        if sdk.region().is_none() {
            return Err(AppError::NoRegion);
        }
        if !(args.iam_rate_per_account >= 0.0 && args.iam_rate_per_account.is_finite()) {
            return Err(AppError::Rate(args.iam_rate_per_account));
        }
        let clients = Clients::new(sdk, args.wait(), &args.iam_region);

        let (watch, exceptions) = match &args.exceptions {
            Some(location) => {
                let mut watch = Watch::new(source_for(location, &clients));
                let exceptions = watch.load().await?;
                (Some(watch), exceptions)
            }
            None => (None, Exceptions::default()),
        };

        let queue = SqsQueue::new(clients.sqs.clone(), args.queue_url.clone());
        // Fail fast on a queue that does not exist or cannot be read; a
        // transient failure is left to the receive loop's retries.
        match queue.attributes().await {
            Ok(_) => {}
            Err(e) if !e.is_retryable() => return Err(AppError::Queue { url: args.queue_url.clone(), source: e }),
            Err(e) => warn!(error = %e, "queue not reachable yet; will keep trying"),
        }

        let limiter = Arc::new(RateLimiter::new(args.iam_rate_per_account));
        let retry = RetryPolicy { max_attempts: args.iam_max_attempts, ..RetryPolicy::default() };
        let mut iam = IamInventory::new(clients.iam.clone()).with_limits(limiter.clone(), retry);
        if let Some(name) = &args.member_role {
            let own_account_id = sts::own_account_id(&clients.sts).await.map_err(AppError::OwnAccount)?;
            info!(member_role = %name, own_account_id = %own_account_id, "member accounts are read through their role");
            let role = MemberRole { name: name.clone(), external_id: args.member_role_external_id.clone(), own_account_id };
            iam = iam.with_member_role(clients.sts.clone(), role);
        }
        let inventory = CachingInventory::new(iam, limiter, &CacheSettings::from(args));
        let sinks: Vec<Arc<dyn FindingSink>> =
            vec![Arc::new(EventBridgeSink::new(clients.eventbridge.clone(), args.findings_bus.clone(), args.finding_source.clone()))];
        let processor = Arc::new(Processor::new(inventory, Arc::new(Sinks(sinks)), ProcessorSettings::from(args)));
        if let Some(source) = &exceptions.source {
            info!(count = exceptions.entries.len(), source = %source, "approved exceptions loaded");
        }
        processor.set_exceptions(exceptions);

        Ok(App {
            source: Arc::new(SqsSource { queue, settings: ReceiveSettings::from(args) }),
            processor,
            health: Arc::new(Health::default()),
            admin,
            receivers: args.receivers as usize,
            queue_metrics_interval: args.queue_metrics_interval(),
            exceptions: watch,
            exceptions_poll: args.exceptions_poll(),
            drain_timeout_secs: args.drain_timeout_secs,
        })
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The admin port's address, when it was bound.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Runs until `shutdown` is cancelled (or, with `--once`, the queue is
    /// empty); messages in flight then get the drain timeout to finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let stop_helpers = CancellationToken::new();
        let admin_task =
            self.admin.map(|(listener, metrics)| tokio::spawn(admin::serve(listener, metrics, self.health.clone(), stop_helpers.clone())));
        if let Some(interval) = self.queue_metrics_interval {
            tokio::spawn(sqs::depth_loop(self.source.queue.clone(), interval, stop_helpers.clone()));
        }
        if let Some(watch) = self.exceptions {
            let processor = self.processor.clone();
            let apply = move |e: Exceptions| processor.set_exceptions(e);
            tokio::spawn(exceptions_source::keep_current(watch, self.exceptions_poll, true, apply, stop_helpers.clone()));
        }
        info!(queue_url = %self.source.queue.url(), version = env!("CARGO_PKG_VERSION"), "keywatch started");
        let mut worker = tokio::spawn(source::drive(self.source, self.processor, self.receivers, self.health, shutdown.clone()));
        let drain = Duration::from_secs(self.drain_timeout_secs);
        let outcome = tokio::select! {
            r = &mut worker => {
                if let Err(e) = r {
                    error!(error = %e, "the receive loops stopped unexpectedly");
                }
                Ok(())
            }
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(drain).await;
            } => Err(AppError::DrainTimeout(self.drain_timeout_secs)),
        };
        stop_helpers.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        outcome
    }
}

/// The adapter for where the exceptions are kept.
fn source_for(location: &Location, clients: &Clients) -> Arc<dyn ExceptionsSource> {
    match location {
        Location::File(path) => Arc::new(FileSource::new(path.clone())),
        Location::Ssm(name) => Arc::new(SsmParameter::new(clients.ssm.clone(), name.clone())),
        Location::S3 { bucket, key } => Arc::new(S3Object::new(clients.s3.clone(), bucket.clone(), key.clone())),
    }
}
