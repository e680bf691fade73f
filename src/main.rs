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
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::EnvFilter;

use keywatch::admin;
use keywatch::app::{self, App, JsonLines};
use keywatch::config::{
    one_line_error, subcommand_of, Cli, Command, FindingsArgs, HealthcheckArgs, LogFormat, RemediateArgs, ReplayArgs, RunArgs, ScanArgs,
};
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
                eprintln!("{}", one_line_error(&e, subcommand_of(std::env::args_os()).as_deref()));
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
    let log_format = cli.log_format;
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)).map(|()| ExitCode::SUCCESS),
        Command::Scan(args) => runtime.block_on(scan(*args)),
        Command::Replay(args) => runtime.block_on(replay(*args)),
        Command::Findings(args) => runtime.block_on(findings(args)),
        Command::Remediate(args) => runtime.block_on(remediate(*args)),
        Command::Healthcheck(args) => runtime.block_on(healthcheck(args)).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // One line on standard error: a log line for log pipelines (json),
        // else plain words for the person at the terminal.
        Err(e) => {
            match log_format {
                LogFormat::Json => error!("{e:#}"),
                LogFormat::Text => eprintln!("keywatch: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)?;
    // Logs go to standard error: standard output carries findings (the
    // stdout sink, and `scan` and `replay` with --dry-run).
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    match format {
        // Each line carries its spans' fields (the message's id) at the top
        // level; text lines name their spans before the message.
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(JsonLines::default()).init(),
        // Colour only on a terminal: a file or a pipe (a log shipper) would
        // store the escape sequences.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
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
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to(shutdown.clone()));
    let app = App::build(&args, &sdk, Some(metrics), &shutdown).await?;
    let sinks: Vec<&str> = args.common.sinks().iter().map(|s| s.as_str()).collect();
    info!(sinks = %sinks.join(","), findings_bus = ?args.common.findings_bus, metrics_addr = %args.metrics_addr, "settings");
    app.run(shutdown).await?;
    info!("keywatch stopped");
    Ok(())
}

/// `keywatch scan`: 0, or 1 with --fail-on-findings when a user fails or a
/// root user has a key; 2 when the scan could not complete (an account, a user or a publication
/// failed: see the summary).
async fn scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let _ = telemetry::install_recorder();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to(shutdown.clone()));
    let progress = progress::for_stderr();
    let report = app::scan(&args, &sdk, &shutdown, progress.as_ref()).await?;
    progress.finish();
    for a in &report.accounts {
        let root = a.root_access_keys.map_or("unknown".to_string(), |n| n.to_string());
        eprintln!(
            "account {}: {} users checked, {} failing, {} active keys, root access keys {root}, {} findings published, {} errors, {:.1} s",
            a.account_id, a.users_checked, a.users_failing, a.keys_active, a.findings_published, a.errors, a.duration_seconds
        );
        for e in &a.error_samples {
            eprintln!("  error: {e}");
        }
    }
    let (failing, root) = (report.users_failing(), report.root_keys());
    eprintln!("scan: {} accounts, {failing} users failing CIS 1.13, {root} with a root access key (CIS 1.4)", report.accounts.len());
    Ok(if !report.complete() {
        eprintln!("keywatch: the scan is incomplete (errors above); run it again");
        ExitCode::from(2)
    } else if (failing > 0 || root > 0) && args.fail_on_findings {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `keywatch findings`: the open violations on standard output (a table,
/// or JSON lines), a count on standard error; 0, or 1 with --fail-on-open
/// when one is not covered by an exception.
async fn findings(args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let open = app::findings(&args, &sdk).await?;
    let now = time::OffsetDateTime::now_utc();
    if args.json {
        for e in &open {
            println!("{}", app::json_line(e, now));
        }
    } else if !open.is_empty() {
        print!("{}", app::table(&open, now));
    }
    let suppressed = open.iter().filter(|e| e.last.suppressed).count();
    let accounts: std::collections::BTreeSet<&str> = open.iter().map(|e| e.account_id.as_str()).collect();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    eprintln!(
        "findings: {} in {} ({suppressed} suppressed by an exception)",
        plural(open.len(), "open violation", "open violations"),
        plural(accounts.len(), "account", "accounts")
    );
    Ok(if args.fail_on_open && open.len() > suppressed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `keywatch replay`: 0 when every file was read and every key event
/// checked; 1 otherwise (the rest is still replayed).
async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let _ = telemetry::install_recorder();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to(shutdown.clone()));
    let report = app::replay(&args, &sdk, &shutdown).await?;
    let read = &report.read;
    eprintln!(
        "replay: {} files ({} unreadable), {} records, {} key events, {} findings published, {} not finished",
        read.files,
        read.unreadable.len(),
        read.records,
        read.key_events,
        report.findings,
        report.unfinished
    );
    for (file, why) in &read.unreadable {
        eprintln!("keywatch: cannot read {}: {why}", file.display());
    }
    Ok(if read.unreadable.is_empty() && report.unfinished == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `keywatch remediate`: the plan or the actions as JSON lines on standard
/// output, then a JSON summary line; the summary table on standard error.
/// Exit 0 done, 1 partly done (an action not made, an error, the run
/// stopped early), 3 nothing to do, 2 error.
async fn remediate(args: RemediateArgs) -> anyhow::Result<ExitCode> {
    let _ = telemetry::install_recorder();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to(shutdown.clone()));
    let prompt = progress::prompt();
    let report = app::remediate(&args, &sdk, &shutdown, prompt.as_ref()).await?;
    prompt.finish();
    let (mode, first) = match (args.undo.is_some(), args.apply) {
        (true, _) => ("undo", "reactivated"),
        (false, true) => ("apply", "deactivated"),
        (false, false) => ("plan", "deactivate"),
    };
    println!("{}", report.summary_json());
    eprint!("{}", report.table(first));
    for e in &report.errors {
        eprintln!("  error: {e}");
    }
    if report.errors_total > report.errors.len() {
        eprintln!("  ... {} errors in all (see the log)", report.errors_total);
    }
    if let Some(stop) = report.stopped {
        eprintln!("keywatch: the run stopped early ({}); run it again for the rest", stop.as_str());
    }
    if let Some(journal) = &report.journal {
        eprintln!("journal: {journal} (undo with `keywatch remediate --undo {journal}`)");
    }
    let code = report.exit_code();
    let said = match code {
        0 => "done",
        3 => "nothing to do",
        _ => "partly done",
    };
    eprintln!("remediate --{mode}: {said}");
    Ok(ExitCode::from(code))
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

/// A scan's progress: a bar on standard error when it is a terminal, log
/// lines otherwise.
mod progress {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use indicatif::{ProgressBar, ProgressStyle};
    use keywatch::remediate::Prompt;
    use keywatch::scan::Progress;
    use tracing::info;

    /// A remediation run's progress and its question between batches: a
    /// bar and a question on a terminal; elsewhere nothing, and no question.
    pub fn prompt() -> Box<dyn ShownPrompt> {
        let terminal = std::io::stderr().is_terminal() && std::io::stdin().is_terminal();
        Box::new(Asking { bar: terminal.then(|| ProgressBar::new(0)) })
    }

    pub trait ShownPrompt: Prompt {
        fn finish(&self);
    }

    struct Asking {
        bar: Option<ProgressBar>,
    }

    impl Prompt for Asking {
        fn start(&self, total: usize) {
            if let Some(bar) = &self.bar {
                bar.set_length(total as u64);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} planned deactivations")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
        }
        fn step(&self) {
            if let Some(bar) = &self.bar {
                bar.inc(1);
            }
        }
        fn go_on(&self, done: usize, left: usize) -> bool {
            let Some(bar) = &self.bar else { return true };
            bar.suspend(|| {
                eprint!("{done} deactivations made, {left} planned left. Go on with the next batch? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
            })
        }
    }

    impl ShownPrompt for Asking {
        fn finish(&self) {
            if let Some(bar) = &self.bar {
                bar.finish_and_clear();
            }
        }
    }

    pub trait Shown: Progress {
        fn finish(&self);
    }

    pub fn for_stderr() -> Box<dyn Shown> {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} users ({per_sec}, {eta} left)")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Box::new(Bar(bar))
        } else {
            Box::new(Lines { total: AtomicUsize::new(0), done: AtomicUsize::new(0), last: Mutex::new(Instant::now()) })
        }
    }

    struct Bar(ProgressBar);

    impl Progress for Bar {
        fn users_found(&self, _: &str, users: usize) {
            self.0.inc_length(users as u64);
        }
        fn user_checked(&self) {
            self.0.inc(1);
        }
    }

    impl Shown for Bar {
        fn finish(&self) {
            self.0.finish_and_clear();
        }
    }

    /// A log line every 10 seconds.
    struct Lines {
        total: AtomicUsize,
        done: AtomicUsize,
        last: Mutex<Instant>,
    }

    impl Progress for Lines {
        fn users_found(&self, account_id: &str, users: usize) {
            self.total.fetch_add(users, Ordering::Relaxed);
            info!(account_id, users, "account's users listed");
        }
        fn user_checked(&self) {
            let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(10) {
                *last = Instant::now();
                info!(checked = done, of = self.total.load(Ordering::Relaxed), "scan progress");
            }
        }
    }

    impl Shown for Lines {
        fn finish(&self) {}
    }
}
