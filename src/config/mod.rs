//! Config: the command line, where every flag is also an environment
//! variable (`KEYWATCH_…`), so that the same binary is configured by flags on
//! a laptop and by env in a task definition or a Deployment.
//!
//! The `///` doc on each field is its `--help` text: keep them the user
//! documentation. AWS settings (region, credentials, endpoint) come from the
//! standard AWS variables and profiles through aws-config's default chain.
//!
//! Each subcommand's own arguments are here; `shared.rs` holds the groups
//! that several of them flatten in.

mod remediate;
mod shared;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use self::remediate::RemediateArgs;
pub use self::shared::{CheckArgs, CommonArgs, SinkKind};

/// keywatch: near-real-time detection of IAM users with more than one active
/// access key (CIS AWS Foundations 1.13).
///
/// Reads CloudTrail access-key events (CreateAccessKey, UpdateAccessKey,
/// DeleteAccessKey) that an EventBridge rule delivers to an SQS queue,
/// re-checks the affected user's keys with IAM ListAccessKeys at once, and
/// publishes a finding (FAILED, or PASSED when resolved) to an EventBridge
/// bus, Security Hub or standard output. AWS region, credentials and endpoint come from the standard AWS
/// environment variables and profiles (AWS_REGION, AWS_PROFILE,
/// AWS_ENDPOINT_URL, ...).
#[derive(Debug, Parser)]
#[command(name = "keywatch", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Log line format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "KEYWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax (e.g. `info`,
    /// `keywatch=debug,aws=warn`).
    #[arg(long, env = "KEYWATCH_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: poll the queue, re-check keys, publish findings.
    ///
    /// Stops on SIGTERM or SIGINT: no new receives, messages in flight are
    /// finished and acknowledged, then exit 0.
    Run(Box<RunArgs>),
    /// Scan every IAM user of every account keywatch may act in, now:
    /// FAILED findings for users with more than one active key (PASSED for
    /// the rest with --include-passed) and a summary per account. Run it
    /// first, to learn what existed before keywatch watched.
    Scan(Box<ScanArgs>),
    /// Fix failing users: deactivate (never delete) the least recently used
    /// key of each user with more than one active key. A dry run unless
    /// --apply: the plan is printed as JSON lines. Guards: the only active
    /// key and a key of unknown last use are never chosen; two keys in use
    /// (--recent-use) or an exception skip the user; keys are listed again
    /// before each action; --max-actions and --max-failures stop a run; a
    /// journal lets --undo re-activate what was deactivated. Exit 0 done, 1
    /// partly done, 3 nothing to do, 2 error. See docs/remediation.md.
    Remediate(Box<RemediateArgs>),
    /// Replay CloudTrail log files or exported EventBridge events: their key
    /// events, in eventTime order, are re-checked against IAM now and their
    /// findings published, as `run` does (backfills after an outage, rule
    /// tests). A summary goes to standard error.
    Replay(Box<ReplayArgs>),
    /// List the open violations the ledger holds (who fails CIS 1.13 or
    /// 1.4 now), oldest first, with their age and the key to deactivate.
    /// Exit 0; 1 with --fail-on-open when an unsuppressed violation is open;
    /// 2 when the ledger cannot be read.
    Findings(FindingsArgs),
    /// Probe a running worker's admin port (for container health checks
    /// where no curl exists). Exits 0 when the endpoint answers 200.
    Healthcheck(HealthcheckArgs),
}

/// `keywatch run`: the worker.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub check: CheckArgs,

    /// URL of the SQS queue the EventBridge rule delivers CloudTrail
    /// access-key events to.
    #[arg(long, env = "KEYWATCH_QUEUE_URL", value_name = "URL", value_parser = parse_url)]
    pub(crate) queue_url: String,

    /// Address of the admin HTTP listener (/metrics, /healthz, /readyz). In a
    /// container, set 0.0.0.0:9464 so that the scraper and probes reach it.
    #[arg(long, env = "KEYWATCH_METRICS_ADDR", value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Long-poll wait of each receive, in seconds (0–20). 20 keeps the
    /// number of empty receives, and their cost, lowest.
    #[arg(long, env = "KEYWATCH_WAIT_SECS", value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=20))]
    wait_secs: u64,

    /// Messages per receive (1–10).
    #[arg(long, env = "KEYWATCH_MAX_MESSAGES", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub(crate) max_messages: i32,

    /// Visibility timeout to request on receive, in seconds; unset, the
    /// queue's own. A message not acknowledged within it is delivered again;
    /// a scan request is kept invisible that long at a time while scanned.
    #[arg(long, env = "KEYWATCH_VISIBILITY_TIMEOUT_SECS", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=43200))]
    pub(crate) visibility_timeout_secs: Option<u64>,

    /// Receive loops running side by side, each handling its own batch.
    #[arg(long, env = "KEYWATCH_RECEIVERS", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) receivers: u64,

    /// After SIGTERM, how long messages in flight may take to finish before
    /// the worker gives up on them (they are then delivered again). Keep it
    /// below the orchestrator's stop timeout.
    #[arg(long, env = "KEYWATCH_DRAIN_TIMEOUT_SECS", value_name = "SECS", default_value_t = 30)]
    pub(crate) drain_timeout_secs: u64,

    /// How long a violation may stay open, in hours, before the
    /// KeywatchViolationOpenTooLong alert fires (exported as
    /// keywatch_violation_sla_seconds, which the alert compares the oldest
    /// open violation's age with).
    #[arg(long, env = "KEYWATCH_VIOLATION_SLA_HOURS", value_name = "HOURS", default_value_t = 72, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub(crate) violation_sla_hours: u64,

    /// How often the open violations are counted from the ledger for the
    /// metrics keywatch_open_violations and
    /// keywatch_oldest_open_violation_age_seconds, in seconds; 0 never.
    /// Needs --ledger-table.
    #[arg(long, env = "KEYWATCH_LEDGER_METRICS_SECS", value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub(crate) ledger_metrics_secs: u64,

    /// How often to read the input queue's and dead-letter queue's depth for
    /// the keywatch_queue_messages metric, in seconds; 0 turns it off.
    #[arg(long, env = "KEYWATCH_QUEUE_METRICS_INTERVAL_SECS", value_name = "SECS", default_value_t = 30)]
    queue_metrics_interval_secs: u64,

    /// Accounts where the worker deactivates a planted key at once
    /// (quarantine; account ids separated by commas): a second key that is
    /// fresh, never used, and created by a principal other than the user
    /// and not in --rotation-principals. Never the only active key, never a
    /// used key. Unset: no quarantine. Needs iam:UpdateAccessKey.
    #[arg(long, env = "KEYWATCH_QUARANTINE_ACCOUNTS", value_name = "IDS", value_delimiter = ',', value_parser = shared::parse_account_id)]
    pub(crate) quarantine_accounts: Vec<String>,

    /// Circuit breaker: at most this many quarantines per account per hour
    /// (per worker process); a planted key beyond it is left active and its
    /// finding says why.
    #[arg(long, env = "KEYWATCH_QUARANTINE_MAX_PER_HOUR", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) quarantine_max_per_hour: u64,

    /// Kill switch: no quarantine at all (the findings say so).
    #[arg(long, env = "KEYWATCH_QUARANTINE_DISABLED")]
    pub(crate) quarantine_disabled: bool,

    /// Kill switch kept in SSM Parameter Store: when the parameter's value
    /// is `off` or `disabled` (or it cannot be read), no quarantine. Read at
    /// most every 10 s.
    #[arg(long, env = "KEYWATCH_QUARANTINE_KILL_SWITCH_PARAMETER", value_name = "NAME", value_parser = shared::parse_non_empty)]
    pub(crate) quarantine_kill_switch_parameter: Option<String>,

    /// Drain the queue, then exit 0: stop receiving once a receive returns
    /// no message, finish what was received, and exit (for batch use and
    /// tests). Use a short --wait-secs with it.
    #[arg(long, env = "KEYWATCH_ONCE")]
    pub(crate) once: bool,
}

/// `keywatch scan`: every user of every account, now.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Also publish a PASSED finding for every compliant user: a baseline
    /// that lets a SIEM close stale alerts.
    #[arg(long, env = "KEYWATCH_SCAN_INCLUDE_PASSED")]
    pub(crate) include_passed: bool,

    /// Print findings and summaries as JSON lines on standard output and
    /// publish nothing (KEYWATCH_FINDINGS_BUS is then not needed).
    #[arg(long, env = "KEYWATCH_DRY_RUN")]
    pub(crate) dry_run: bool,

    /// Exit 1 when any user fails the control, or a root user has an access
    /// key (for CI pipelines and cron).
    #[arg(long, env = "KEYWATCH_SCAN_FAIL_ON_FINDINGS")]
    pub fail_on_findings: bool,

    /// Leave out the last use of failing users' keys (no recommended key;
    /// one IAM call per user, plus ListUsers pages).
    #[arg(long, env = "KEYWATCH_SCAN_NO_LAST_USE")]
    pub(crate) no_last_use: bool,

    /// Users checked at once in each account (the per-account IAM rate sets
    /// the pace).
    #[arg(long, env = "KEYWATCH_SCAN_USERS_IN_FLIGHT", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) users_in_flight: u64,

    /// Accounts scanned at once.
    #[arg(long, env = "KEYWATCH_SCAN_ACCOUNTS_IN_PARALLEL", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) accounts_in_parallel: u64,
}

/// `keywatch replay`: CloudTrail files and event exports through the same
/// checks as `run`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// CloudTrail log files as CloudTrail writes them to S3
    /// (`{"Records": [...]}`, `.json` or `.json.gz`), JSON lines of
    /// EventBridge envelopes (`.jsonl`, `.ndjson`, optionally `.gz`), or
    /// directories holding them (walked).
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<std::path::PathBuf>,

    /// Print findings as JSON lines on standard output and publish nothing
    /// (KEYWATCH_FINDINGS_BUS is then not needed).
    #[arg(long, env = "KEYWATCH_DRY_RUN")]
    pub(crate) dry_run: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) check: CheckArgs,
}

impl RunArgs {
    /// The settings `keywatch run --queue-url URL --findings-bus BUS` would
    /// have, then `extra` flags: defaults come from the command line's
    /// definition alone (for tests and benchmarks).
    pub fn from_flags(queue_url: &str, findings_bus: &str, extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let args = ["keywatch", "run", "--queue-url", queue_url, "--findings-bus", findings_bus].into_iter().chain(extra.iter().copied());
        match Cli::try_parse_from(args)?.command {
            Command::Run(run) => Ok(*run),
            _ => unreachable!("the command is run"),
        }
    }

    pub(crate) fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_secs)
    }
    pub(crate) fn queue_metrics_interval(&self) -> Option<Duration> {
        (self.queue_metrics_interval_secs > 0).then(|| Duration::from_secs(self.queue_metrics_interval_secs))
    }
}

/// `keywatch findings`: who fails now, from the ledger.
#[derive(Debug, Clone, Args)]
pub struct FindingsArgs {
    /// DynamoDB table of the ledger of findings (the central stack's output
    /// LedgerTableName).
    #[arg(long, env = "KEYWATCH_LEDGER_TABLE", value_name = "TABLE", value_parser = shared::parse_non_empty)]
    pub ledger_table: String,

    /// Only this account's violations (repeat, or separate with commas).
    #[arg(long = "account", env = "KEYWATCH_FINDINGS_ACCOUNTS", value_name = "ID", value_delimiter = ',')]
    pub accounts: Vec<String>,

    /// One JSON object per line instead of a table.
    #[arg(long, env = "KEYWATCH_FINDINGS_JSON")]
    pub json: bool,

    /// Exit 1 when an open violation is not covered by an approved
    /// exception (for pipelines: the control's expected answer is none).
    #[arg(long, env = "KEYWATCH_FAIL_ON_OPEN")]
    pub fail_on_open: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Admin address of the worker to probe.
    #[arg(long, env = "KEYWATCH_METRICS_ADDR", value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Endpoint to probe: /healthz (alive) or /readyz (ready).
    #[arg(long, env = "KEYWATCH_HEALTHCHECK_PATH", default_value = "/healthz")]
    pub path: String,
}

fn parse_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a queue URL (expected https://sqs.<region>.amazonaws.com/<account>/<name>)"))
    }
}

/// The subcommand a command line (program name first) names, if any, even
/// when the rest of it is in error: what a command-line error is about.
pub fn subcommand_of<I, T>(args: I) -> Option<String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::CommandFactory;
    let matches = Cli::command().ignore_errors(true).try_get_matches_from(args).ok()?;
    matches.subcommand_name().map(str::to_string)
}

/// One line for a command-line error, naming the setting and its env
/// variable, instead of clap's multi-line usage block, and pointing at the
/// help of `subcommand` (the one the command line names; see
/// [`subcommand_of`]), or at `keywatch --help` without one.
pub fn one_line_error(err: &clap::Error, subcommand: Option<&str>) -> String {
    use clap::error::{ContextKind, ContextValue};
    use clap::CommandFactory;
    let cmd = Cli::command();
    let sub = subcommand.and_then(|name| cmd.find_subcommand(name));
    let env_of = |flag: &str| -> Option<String> {
        let long = flag.trim_start_matches("--").split([' ', '=', '<']).next()?.to_string();
        let env = sub
            .into_iter()
            .flat_map(|s| s.get_arguments())
            .chain(cmd.get_arguments())
            .find(|a| a.get_long() == Some(long.as_str()))
            .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
        env
    };
    let help = match sub {
        Some(s) => format!("see `keywatch {} --help`", s.get_name()),
        None => "see `keywatch --help`".to_string(),
    };
    let args: Vec<String> = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let named: Vec<String> = args
        .iter()
        .map(|a| match env_of(a) {
            Some(env) => format!("{a} (env {env})"),
            None => a.clone(),
        })
        .collect();
    let text = err.render().to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments").trim();
    let first = first.trim_start_matches("error: ");
    if named.is_empty() || err.kind() != clap::error::ErrorKind::MissingRequiredArgument {
        let hint = named.first().map(|n| format!(" [{n}]")).unwrap_or_default();
        format!("keywatch: {first}{hint}; {help}")
    } else {
        format!("keywatch: missing required setting {}; {help}", named.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{one_line_error, subcommand_of, Cli};

    #[test]
    fn the_subcommand_is_found_whatever_else_is_wrong() {
        assert_eq!(subcommand_of(["keywatch", "run"]).as_deref(), Some("run"));
        assert_eq!(subcommand_of(["keywatch", "run", "--wait-secs", "60"]).as_deref(), Some("run"));
        assert_eq!(subcommand_of(["keywatch", "scan", "--no-such-flag"]).as_deref(), Some("scan"));
        assert_eq!(subcommand_of(["keywatch", "--log-format", "json", "replay"]).as_deref(), Some("replay"));
        assert_eq!(subcommand_of(["keywatch", "--log-filter", "run", "healthcheck", "--path"]).as_deref(), Some("healthcheck"));
        assert_eq!(subcommand_of(["keywatch", "scna"]), None);
        assert_eq!(subcommand_of(["keywatch"]), None);
    }

    #[test]
    fn an_error_points_at_its_own_subcommand_s_help() {
        for (args, help) in [
            (&["keywatch", "scan", "--users-in-flight", "x"][..], "see `keywatch scan --help`"),
            (&["keywatch", "replay", "--no-such-flag"][..], "see `keywatch replay --help`"),
            (&["keywatch", "healthcheck", "--metrics-addr", "nowhere"][..], "see `keywatch healthcheck --help`"),
            (&["keywatch", "run", "--wait-secs", "x"][..], "see `keywatch run --help`"),
            (&["keywatch", "scna"][..], "see `keywatch --help`"),
        ] {
            let err = Cli::try_parse_from(args).expect_err("an error");
            let line = one_line_error(&err, subcommand_of(args).as_deref());
            assert!(line.ends_with(help), "{args:?}: {line}");
            assert_eq!(line.lines().count(), 1, "{line}");
        }
        let err = Cli::try_parse_from(["keywatch", "scan", "--users-in-flight", "x"]).expect_err("an error");
        let line = one_line_error(&err, Some("scan"));
        assert!(line.contains("KEYWATCH_SCAN_USERS_IN_FLIGHT"), "a flag of scan alone is named with its env variable: {line}");
    }
}
