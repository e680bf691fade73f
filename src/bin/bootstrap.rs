//! The `bootstrap` binary: keywatch as an AWS Lambda function on the
//! `provided.al2023` runtime, fed by an SQS event source mapping on the
//! worker's queue (infra/lambda.yaml, docs/deployment.md). Its settings are
//! `keywatch run`'s, from the same KEYWATCH_* variables (the flags of a
//! function cannot be given); its logs are JSON lines on standard error,
//! its metrics CloudWatch EMF lines on standard output.

use std::process::ExitCode;

use aws_config::BehaviorVersion;
use clap::Parser;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::EnvFilter;

use keywatch::app::{self, JsonLines};
use keywatch::config::{one_line_error, Cli, Command};
use keywatch::telemetry;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(["keywatch", "run"]) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("{}", one_line_error(&e, Some("run")));
            return ExitCode::from(2);
        }
    };
    let Command::Run(args) = cli.command else { unreachable!("parsed as `run`") };
    let filter = match EnvFilter::try_new(&cli.log_filter) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("keywatch: invalid KEYWATCH_LOG: {e}");
            return ExitCode::from(2);
        }
    };
    // JSON whatever KEYWATCH_LOG_FORMAT says: CloudWatch Logs Insights
    // reads the fields.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .fmt_fields(JsonFields::new())
        .event_format(JsonLines::default())
        .init();
    telemetry::install_emf();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        app::lambda(&args, &sdk).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}
