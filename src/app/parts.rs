//! Start-up parts: what every command builds alike before it does its own
//! work (settings checked first, then the AWS clients, the exceptions, the
//! accounts, the IAM inventory with its limits and member role, the sinks).
//! Start-up waits out AWS being unreachable rather than failing, so that a
//! worker started before its network is ready still comes up.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::AppError;
use crate::accounts::{AccountLister, Accounts, Scope};
use crate::aws::eventbridge::EventBridgeSink;
use crate::aws::iam::{IamInventory, MemberRole};
use crate::aws::organizations::OrganizationAccounts;
use crate::aws::s3::S3Object;
use crate::aws::securityhub::SecurityHubSink;
use crate::aws::ssm::SsmParameter;
use crate::aws::{sts, AwsError, Clients};
use crate::config::{CommonArgs, SinkKind};
use crate::exceptions::Exceptions;
use crate::exceptions_source::{ExceptionsSource, FileSource, Location, Watch};
use crate::format::{asff, FindingFormat};
use crate::limit::{RateLimiter, RetryPolicy};
use crate::sink::{FindingSink, Sinks, StdoutSink};

/// What every command builds alike: the AWS clients, the accounts, the IAM
/// inventory with its limits and member role, the exceptions.
pub(super) struct Parts {
    clients: Clients,
    pub(super) accounts: Arc<Accounts>,
    pub(super) iam: IamInventory,
    pub(super) limiter: Arc<RateLimiter>,
    /// The approved exceptions as loaded at start-up, and their source to
    /// keep them current (`run`).
    pub(super) exceptions: Exceptions,
    pub(super) watch: Option<Watch>,
    region: String,
}

impl Parts {
    /// Builds the parts; `first` checks what the command needs before the
    /// accounts are looked up (the queue, for `run`). Settings are checked
    /// before anything is asked of AWS.
    pub(super) async fn build<T, F, Fut>(
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
    pub(super) fn sinks(&self, args: &CommonArgs, dry_run: bool) -> Result<Arc<dyn FindingSink>, AppError> {
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

impl Parts {
    /// The findings bus as an EventBridge sink, when the `eventbridge` sink
    /// is selected (for events other than findings: remediation actions).
    pub(super) fn bus(&self, args: &CommonArgs) -> Option<EventBridgeSink> {
        let bus = args.findings_bus.clone().filter(|_| args.sinks().contains(&SinkKind::EventBridge))?;
        Some(EventBridgeSink::new(self.clients.eventbridge(), bus, args.finding_source.clone()))
    }

    /// The organisation's accounts and their tags.
    pub(super) fn organizations(&self) -> OrganizationAccounts {
        OrganizationAccounts::new(self.clients.organizations())
    }
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
