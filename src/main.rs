//! The `keywatch` binary: parse the command line, set up logs and metrics,
//! build the AWS clients, run the worker until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::BehaviorVersion;
use clap::error::ErrorKind;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use keywatch::admin::{self, Health};
use keywatch::config::{one_line_error, Cli, Command, HealthcheckArgs, LogFormat, RunArgs};
use keywatch::emit::EventBridgeSink;
use keywatch::exceptions::Exceptions;
use keywatch::inventory::{IamInventory, MemberRole};
use keywatch::limit::{RateLimiter, RetryPolicy};
use keywatch::queue::SqsQueue;
use keywatch::worker::{self, PollSettings, Processor, ProcessorSettings};
use keywatch::aws::{self, Clients};
use keywatch::telemetry;

/// The AWS SDK's request path allocates and frees heavily on every call;
/// jemalloc spends less CPU on that than the system allocator under load
/// (see benches/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", one_line_error(&e));
                return ExitCode::from(2);
            }
        },
    };
    if let Err(e) = init_logging(cli.log_format, &cli.log_filter) {
        eprintln!("keywatch: invalid --log-filter (env KEYWATCH_LOG): {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Healthcheck(args) => runtime.block_on(healthcheck(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("keywatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    match admin::probe(args.metrics_addr, &args.path).await {
        Ok(true) => Ok(()),
        Ok(false) => bail!("{} on {} did not answer 200", args.path, args.metrics_addr),
        Err(e) => bail!("cannot reach {} on {}: {e}", args.path, args.metrics_addr),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let exceptions = match &args.exceptions_file {
        Some(path) => Exceptions::load(path).context("KEYWATCH_EXCEPTIONS_FILE")?,
        None => Exceptions::default(),
    };
    let metrics = telemetry::install_recorder().context("cannot install the metrics recorder")?;
    let listener = admin::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} (KEYWATCH_METRICS_ADDR)", args.metrics_addr))?;

    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    if sdk.region().is_none() {
        bail!("no AWS region configured: set AWS_REGION (e.g. us-east-1, where IAM events arrive)");
    }
    let Clients { sqs, iam, eventbridge } = Clients::new(&sdk, args.wait(), &args.iam_region);

    let queue = SqsQueue::new(sqs, args.queue_url.clone());
    // Fail fast on a queue that does not exist or cannot be read; a
    // transient failure is left to the receive loop's retries.
    match queue.attributes().await {
        Ok(_) => {}
        Err(e) if !e.is_retryable() => {
            bail!("cannot use queue {} (KEYWATCH_QUEUE_URL): {e}", args.queue_url)
        }
        Err(e) => warn!(error = %e, "queue not reachable yet; will keep trying"),
    }

    if !(args.iam_rate_per_account >= 0.0 && args.iam_rate_per_account.is_finite()) {
        bail!("--iam-rate-per-account (KEYWATCH_IAM_RATE_PER_ACCOUNT) must be a number >= 0, got {}", args.iam_rate_per_account);
    }
    let limiter = Arc::new(RateLimiter::new(args.iam_rate_per_account));
    let retry = RetryPolicy { max_attempts: args.iam_max_attempts, ..RetryPolicy::default() };
    let inventory = match &args.member_role {
        None => IamInventory::new(iam),
        Some(name) => {
            let sts = aws_sdk_sts::Client::new(&sdk);
            let me = sts.get_caller_identity().send().await.map_err(|e| {
                anyhow::anyhow!("KEYWATCH_MEMBER_ROLE needs the worker's own account id, but sts:GetCallerIdentity failed: {}", aws::describe(&e))
            })?;
            let own_account_id = me.account().unwrap_or_default().to_string();
            info!(member_role = %name, own_account_id = %own_account_id, "member accounts are read through their role");
            IamInventory::with_member_role(
                iam,
                sdk.clone(),
                MemberRole { name: name.clone(), external_id: args.member_role_external_id.clone(), own_account_id },
            )
        }
    }
    .with_limits(limiter, retry);
    let processor = Arc::new(Processor::new(
        inventory,
        EventBridgeSink::new(eventbridge, args.findings_bus.clone(), args.finding_source.clone()),
        ProcessorSettings {
            consistency_window: Duration::from_secs(args.consistency_window_secs),
            relist_delays: ProcessorSettings::relist_delays_for(Duration::from_millis(args.relist_budget_ms)),
            max_concurrent_checks: args.max_concurrent_checks as usize,
            last_used_ttl: Duration::from_secs(args.last_used_cache_secs),
            listing_reuse: Duration::from_secs(args.listing_reuse_secs),
        },
    ));
    if !exceptions.entries.is_empty() {
        info!(count = exceptions.entries.len(), "approved exceptions loaded");
    }
    processor.set_exceptions(exceptions);
    if let Some(path) = args.exceptions_file.clone() {
        tokio::spawn(reload_on_hangup(path, processor.clone()));
    }
    let poll = PollSettings {
        max_messages: args.max_messages,
        wait: args.wait(),
        visibility_timeout: args.visibility_timeout_secs.map(Duration::from_secs),
        receivers: args.receivers as usize,
        queue_metrics_interval: args.queue_metrics_interval(),
    };

    let shutdown = CancellationToken::new();
    let health = Arc::new(Health::default());
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(listener, metrics, health.clone(), admin_stop.clone()));
    tokio::spawn(signal_to(shutdown.clone()));

    info!(
        queue_url = %args.queue_url,
        findings_bus = %args.findings_bus,
        metrics_addr = %args.metrics_addr,
        version = env!("CARGO_PKG_VERSION"),
        "keywatch started"
    );
    let mut worker_task = tokio::spawn(worker::run(queue, processor, poll, health, shutdown.clone()));
    let outcome = tokio::select! {
        r = &mut worker_task => r.map_err(anyhow::Error::from),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(args.drain_timeout()).await;
        } => Err(anyhow::anyhow!(
            "messages in flight did not finish within {} s (KEYWATCH_DRAIN_TIMEOUT_SECS); they will be delivered again",
            args.drain_timeout_secs
        )),
    };
    admin_stop.cancel();
    let _ = admin_task.await;
    outcome?;
    info!("keywatch stopped");
    Ok(())
}

/// Reloads the exceptions file on SIGHUP; a broken file keeps the previous
/// exceptions.
async fn reload_on_hangup<I, S>(path: std::path::PathBuf, processor: Arc<Processor<I, S>>)
where
    I: keywatch::inventory::KeyInventory,
    S: keywatch::emit::FindingSink,
{
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; exceptions will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match Exceptions::load(&path) {
            Ok(e) => {
                info!(count = e.entries.len(), path = %path.display(), "exceptions reloaded");
                processor.set_exceptions(e);
            }
            Err(e) => error!(error = %e, "exceptions not reloaded; keeping the previous ones"),
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn signal_to(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
    token.cancel();
}

