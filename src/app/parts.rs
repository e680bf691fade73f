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
use crate::aws::dynamodb::DynamoLedger;
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
use crate::ledger::sink::RecordedSinks;
use crate::ledger::{Ledger, MemoryLedger};
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
    /// The ledger's table (`--ledger-table`), checked at start-up.
    pub(super) ledger: Option<Arc<DynamoLedger>>,
    region: String,
}

impl Parts {
    /// The worker's quarantine (`--quarantine-accounts`), with the IAM
    /// inventory as its key admin; `None` when no account is opted in.
    pub(super) fn quarantiner(&self, args: &crate::config::RunArgs) -> Option<crate::processor::Quarantiner> {
        if args.quarantine_accounts.is_empty() {
            return None;
        }
        let kill_switch = args.quarantine_kill_switch_parameter.as_ref().map(|name| {
            Arc::new(crate::aws::ssm::SsmKillSwitch::new(self.clients.ssm(), name.clone())) as Arc<dyn crate::processor::KillSwitch>
        });
        let rules = crate::decide::QuarantineRules {
            accounts: args.quarantine_accounts.clone(),
            principals: args.check.rotation_principals.clone(),
        };
        tracing::info!(
            accounts = args.quarantine_accounts.join(","),
            max_per_hour = args.quarantine_max_per_hour,
            disabled = args.quarantine_disabled,
            "quarantine of planted keys on"
        );
        Some(crate::processor::Quarantiner::new(
            rules,
            Arc::new(self.iam.clone()),
            args.quarantine_max_per_hour as usize,
            args.quarantine_disabled,
            kill_switch,
        ))
    }

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
        // The exceptions first, as before AWS is asked anything else; an S3
        // source whose bucket owner is not set once the own account is known.
        let needs_own = matches!(args.exceptions, Some(Location::S3 { .. })) && args.exceptions_bucket_owner.is_none();
        let mut loaded = if needs_own { None } else { Some(exceptions(args, &clients, None).await?) };
        let checked = first(clients.clone()).await?;
        let ledger = match &args.ledger_table {
            Some(table) if !dry_run => Some(Arc::new(ledger(&clients, table).await?)),
            Some(table) => {
                info!(table = %table, "dry run: the ledger is neither read nor written");
                None
            }
            None => None,
        };
        let accounts = Arc::new(accounts(args, &clients, shutdown).await?);
        let (watch, exceptions) = match loaded.take() {
            Some(loaded) => loaded,
            None => exceptions(args, &clients, Some(accounts.own())).await?,
        };
        let limiter = Arc::new(RateLimiter::new(args.iam_rate_per_account));
        let retry = RetryPolicy { max_attempts: args.iam_max_attempts, ..RetryPolicy::default() };
        let mut iam = IamInventory::new(clients.iam()).with_limits(limiter.clone(), retry);
        if let Some(name) = &args.member_role {
            info!(member_role = %name, own_account_id = %accounts.own(), "member accounts are read through their role");
            let role = MemberRole {
                name: name.clone(),
                external_id: args.member_role_external_id.clone(),
                own_account_id: accounts.own().to_string(),
                accounts: accounts.all().len(),
            };
            iam = iam.with_member_role(clients.sts(), role);
        }
        debug!(clients = ?clients.built(), "AWS clients built so far (the others are built when first needed)");
        Ok((checked, Parts { clients, accounts, iam, limiter, exceptions, watch, ledger, region }))
    }

    /// The sinks findings go to: JSON lines on standard output for a dry
    /// run, else the selected sinks (`--sink`).
    pub(super) fn sinks(&self, args: &CommonArgs, dry_run: bool) -> Result<Arc<dyn FindingSink>, AppError> {
        if dry_run {
            return Ok(self.recorded(Arc::new(StdoutSink::default().with_format(args.finding_format))));
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
        Ok(self.recorded(Arc::new(Sinks(sinks))))
    }

    /// The ledger scans read open violations from: the table, if any.
    pub(super) fn shared_ledger(&self) -> Option<Arc<dyn Ledger>> {
        self.ledger.clone().map(|l| l as Arc<dyn Ledger>)
    }

    /// The ledger's table to read from, even in a dry run (which never
    /// writes it); `None` without `--ledger-table`.
    pub(super) fn ledger_reader(&self, args: &CommonArgs) -> Option<Arc<dyn Ledger>> {
        let table = args.ledger_table.as_ref()?;
        Some(self.shared_ledger().unwrap_or_else(|| Arc::new(DynamoLedger::new(self.clients.dynamodb(), table.clone()))))
    }

    /// The partition of the worker's region (`aws`, `aws-cn`, `aws-us-gov`).
    pub(super) fn partition(&self) -> &'static str {
        crate::finding::partition_of_region(&self.region)
    }

    /// `sinks` behind the ledger: the table, or this process's memory.
    fn recorded(&self, sinks: Arc<dyn FindingSink>) -> Arc<dyn FindingSink> {
        let ledger: Arc<dyn Ledger> = match self.shared_ledger() {
            Some(table) => table,
            None => Arc::new(MemoryLedger::default()),
        };
        Arc::new(RecordedSinks::new(ledger, sinks))
    }
}

/// The ledger's table, once `DescribeTable` has answered: a table that is
/// not there, or not readable, stops start-up with its name; a transient
/// failure is only logged (the claims retry it).
async fn ledger(clients: &Clients, table: &str) -> Result<DynamoLedger, AppError> {
    let ledger = DynamoLedger::new(clients.dynamodb(), table.to_string());
    match ledger.check().await {
        Ok(()) => {}
        Err(e) if !e.is_retryable() => return Err(AppError::Ledger { table: table.to_string(), source: e }),
        Err(e) => warn!(table, error = %e, "ledger table not reachable yet; findings wait for it"),
    }
    info!(
        table,
        "ledger: DynamoDB table; the last word on each finding holds across replicas and restarts, scans close the open violations that no longer fail, and `keywatch findings` lists who fails now"
    );
    Ok(ledger)
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

/// The exceptions as loaded and their watch (none configured: empty); an
/// S3 bucket must be KEYWATCH_EXCEPTIONS_BUCKET_OWNER's, else `own`'s.
async fn exceptions(args: &CommonArgs, clients: &Clients, own: Option<&str>) -> Result<(Option<Watch>, Exceptions), AppError> {
    let Some(location) = &args.exceptions else { return Ok((None, Exceptions::default())) };
    let bucket_owner = args.exceptions_bucket_owner.as_deref().or(own).unwrap_or_default().to_string();
    let mut watch = Watch::new(source_for(location, clients, bucket_owner)).with_policy(args.exceptions_policy());
    let exceptions = watch.load().await?;
    info!(count = exceptions.entries.len(), source = %location, "approved exceptions loaded");
    Ok((Some(watch), exceptions))
}

/// The adapter for where the exceptions are kept; an S3 bucket must be
/// `bucket_owner`'s.
fn source_for(location: &Location, clients: &Clients, bucket_owner: String) -> Arc<dyn ExceptionsSource> {
    match location {
        Location::File(path) => Arc::new(FileSource::new(path.clone())),
        Location::Ssm(name) => Arc::new(SsmParameter::new(clients.ssm(), name.clone())),
        Location::S3 { bucket, key } => Arc::new(S3Object::new(clients.s3(), bucket.clone(), key.clone(), bucket_owner)),
    }
}
