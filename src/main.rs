//! The `keywatch` binary: parse the command line, set up logs and metrics,
//! hand the rest to [`keywatch::app::App`], and turn SIGTERM/SIGINT into
//! its shutdown token.

use std::process::ExitCode;

use anyhow::{bail, Context};
use aws_config::BehaviorVersion;
use clap::error::ErrorKind;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use keywatch::admin;
use keywatch::app::App;
use keywatch::config::{one_line_error, Cli, Command, HealthcheckArgs, LogFormat, RunArgs, SinkKind};
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
    // With the stdout sink, standard output carries findings only: logs go
    // to standard error.
    let logs_to_stderr = matches!(&cli.command, Command::Run(args) if args.sinks.contains(&SinkKind::Stdout));
    if let Err(e) = init_logging(cli.log_format, &cli.log_filter, logs_to_stderr) {
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

fn init_logging(format: LogFormat, filter: &str, to_stderr: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)?;
    let writer = if to_stderr {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout)
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(writer);
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
    let metrics = telemetry::install_recorder().context("cannot install the metrics recorder")?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let app = App::build(&args, &sdk, Some(metrics)).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to(shutdown.clone()));
    let sinks: Vec<&str> = args.sinks().iter().map(|s| s.as_str()).collect();
    info!(sinks = %sinks.join(","), findings_bus = ?args.findings_bus, metrics_addr = %args.metrics_addr, "settings");
    app.run(shutdown).await?;
    info!("keywatch stopped");
    Ok(())
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
