//! keywatch's own ceiling: the worker against an in-process AWS backend that
//! answers at once, so that the number measured is keywatch's (plus the AWS
//! SDK's), not the emulator's.
//!
//! The backend is a minimal HTTP/1.1 responder on 127.0.0.1 (keep-alive,
//! `Content-Length` and chunked bodies) on its own thread and runtime. It
//! speaks just enough of three AWS protocols for the worker's calls:
//! - SQS, awsJson1_0 (`X-Amz-Target: AmazonSQS.*`): `ReceiveMessage` hands out
//!   a preloaded backlog 10 at a time (bodies are generated on receive, with a
//!   fresh `eventTime`, so that the backlog itself costs no memory),
//!   `DeleteMessageBatch`, `GetQueueAttributes`;
//! - IAM, query protocol (form body `Action=ListAccessKeys`): two active keys
//!   for every user, one of them the key the event created (so the listing
//!   reflects the event and no re-list pause happens); `GetAccessKeyLastUsed`
//!   (the finding's enrichment) with a last use for each key;
//! - EventBridge, awsJson1_1 (`X-Amz-Target: AWSEvents.PutEvents`): every
//!   entry accepted.
//!
//! For each message it notes when the `ReceiveMessage` response carrying it
//! was sent and when the `DeleteMessageBatch` naming it arrived: the
//! difference is keywatch's overhead per message (parse, the IAM and
//! EventBridge round trips to a backend that answers at once, evaluate,
//! build, serialise, SDK signing and (de)serialisation, and any queueing
//! inside the worker).
//!
//! Each row of the table is one run over the whole backlog:
//! - `in-process`: `keywatch::app::App` in this process (with the metrics
//!   recorder and a JSON log subscriber writing to a sink, as the binary has).
//!   CPU is the process's minus the responder thread's; peak RSS (VmHWM,
//!   reset per row through /proc/self/clear_refs) includes the responder.
//! - `binary`: the real `keywatch run` binary as a child process against the
//!   same responder; its own CPU (utime+stime) and peak RSS (VmHWM) from
//!   /proc/<pid>, read just before it is stopped with SIGTERM.
//!
//! Run: `cargo bench --bench throughput` (release). Settings (env):
//! - `KW_BENCH_MESSAGES` (20000), `KW_BENCH_USERS` (2000)
//! - `KW_BENCH_ROWS`: comma-separated `MODE:RECEIVERSxMAX[:MESSAGES]`, MODE
//!   `in` or `bin`; default `in:1x10,in:4x10,bin:1x10,bin:4x10,in:1x1:2000`
//! - `KW_BENCH_WAIT_SECS` (1): the long-poll wait (an empty receive is held
//!   that long by the responder)
//! - `KW_BENCH_LOG` (`json`): `off` drops the in-process log subscriber
//! - `KW_BENCH_ROW_TIMEOUT_SECS` (60)
//! - `KW_BENCH_EVENT_TIME` (`backlog`): the events' `eventTime`. `backlog`:
//!   when the row's backlog was loaded, as for a burst that happened just
//!   before the drain (a user's later events can then share the listing made
//!   for the first). `receive`: the moment each message is received, as if
//!   every event had just happened; no listing can serve a later event, so
//!   every event costs a `ListAccessKeys` (the worst case).
//! - `KW_BENCH_KEYWATCH` (this build's binary): the `keywatch` binary the
//!   `bin` rows run, e.g. one built at another commit, for a before/after
//!   in one sitting
//! - `KW_BENCH_IAM_RATE` (0 = off): the per-account IAM rate limit, in-process
//!   and as `KEYWATCH_IAM_RATE_PER_ACCOUNT` for the binary. Off by default
//!   because every event here is in one account: the binary's default (20/s)
//!   would cap the run at 20 IAM calls/s and measure the limiter, not the
//!   worker. Set it to see the limiter's own cost (e.g. 1000000).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use tokio_util::sync::CancellationToken;

use keywatch::app::App;
use keywatch::config::RunArgs;

#[path = "support/mod.rs"]
mod support;

use support::procfs::*;
use support::responder::*;

const BUS: &str = "keywatch-findings";

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    InProcess,
    Binary,
}

#[derive(Debug, Clone)]
struct Row {
    mode: Mode,
    receivers: usize,
    max_messages: i32,
    messages: usize,
}

struct Settings {
    users: usize,
    rows: Vec<Row>,
    wait_secs: u64,
    log: bool,
    row_timeout: Duration,
    /// IAM requests per second per account (KEYWATCH_IAM_RATE_PER_ACCOUNT);
    /// 0 = off.
    iam_rate: f64,
    event_time: EventTime,
    /// The binary the `bin` rows run (KW_BENCH_KEYWATCH).
    binary: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let messages: usize = env_or("KW_BENCH_MESSAGES", 20_000);
        let rows_spec = std::env::var("KW_BENCH_ROWS").unwrap_or_else(|_| "in:1x10,in:4x10,bin:1x10,bin:4x10,in:1x1:2000".to_string());
        let rows = rows_spec
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|spec| {
                let bad = || -> ! { panic!("KW_BENCH_ROWS: {spec:?} is not MODE:RECEIVERSxMAX[:MESSAGES]") };
                let mut parts = spec.trim().split(':');
                let mode = match parts.next() {
                    Some("in") => Mode::InProcess,
                    Some("bin") => Mode::Binary,
                    _ => bad(),
                };
                let (r, m) = parts.next().and_then(|s| s.split_once('x')).unwrap_or_else(|| bad());
                let messages = parts.next().map(|n| n.parse().unwrap_or_else(|_| bad())).unwrap_or(messages);
                Row { mode, receivers: r.parse().unwrap_or_else(|_| bad()), max_messages: m.parse().unwrap_or_else(|_| bad()), messages }
            })
            .collect();
        Settings {
            users: env_or("KW_BENCH_USERS", 2_000),
            rows,
            wait_secs: env_or("KW_BENCH_WAIT_SECS", 1),
            log: std::env::var("KW_BENCH_LOG").map_or(true, |v| v != "off"),
            row_timeout: Duration::from_secs(env_or("KW_BENCH_ROW_TIMEOUT_SECS", 60)),
            iam_rate: env_or("KW_BENCH_IAM_RATE", 0.0),
            binary: std::env::var("KW_BENCH_KEYWATCH").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keywatch").to_string()),
            event_time: match std::env::var("KW_BENCH_EVENT_TIME").as_deref() {
                Err(_) | Ok("backlog") => EventTime::Backlog,
                Ok("receive") => EventTime::Receive,
                Ok(other) => panic!("KW_BENCH_EVENT_TIME={other:?} is not backlog or receive"),
            },
        }
    }
}

/// The allocator the `keywatch` binary uses, so that in-process rows match.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ---------------------------------------------------------------- runs

struct Outcome {
    row: Row,
    completed: bool,
    wall: Duration,
    deleted: usize,
    overhead: Vec<Duration>,
    calls: BTreeMap<Op, u64>,
    put_entries: u64,
    bad_findings: u64,
    duplicate_deletes: u64,
    keywatch_cpu: Duration,
    responder_cpu: Duration,
    rss_start_kb: Option<u64>,
    peak_rss_kb: Option<u64>,
    rss_note: &'static str,
    /// Cores' worth of CPU that other processes used during the run.
    other_load: f64,
}

fn collect(
    row: &Row,
    responder: Responder,
    completed: bool,
    keywatch_cpu: Duration,
    rss: (Option<u64>, Option<u64>, &'static str),
) -> Outcome {
    let shared = responder.shared.clone();
    let responder_cpu = responder.stop();
    let st = shared.state.lock().unwrap();
    let wall = match (st.first_receive, st.last_delete) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => Duration::ZERO,
    };
    let mut overhead = st.overhead.clone();
    overhead.sort();
    Outcome {
        row: row.clone(),
        completed,
        wall,
        deleted: st.deleted_count,
        overhead,
        calls: st.calls.clone(),
        put_entries: st.put_entries,
        bad_findings: st.failed_findings,
        duplicate_deletes: st.duplicate_deletes,
        keywatch_cpu,
        responder_cpu,
        rss_start_kb: rss.0,
        peak_rss_kb: rss.1,
        rss_note: rss.2,
        other_load: 0.0,
    }
}

async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    // As the binary loads it, with the endpoint and credentials fixed.
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await
}

async fn run_in_process(settings: &Settings, row: &Row, metrics: &metrics_exporter_prometheus::PrometheusHandle) -> Outcome {
    let wait = Duration::from_secs(settings.wait_secs);
    let responder = Responder::start(row.messages, settings.users, wait, settings.event_time);
    let sdk = sdk_config(&responder.url).await;
    // As the binary wires it (App), with the row's settings.
    let flags = [
        ("--wait-secs", settings.wait_secs.to_string()),
        ("--max-messages", row.max_messages.to_string()),
        ("--receivers", row.receivers.to_string()),
        ("--iam-rate-per-account", settings.iam_rate.to_string()),
        ("--queue-metrics-interval-secs", "0".to_string()),
        ("--metrics-addr", "127.0.0.1:0".to_string()),
    ];
    let flags: Vec<&str> = flags.iter().flat_map(|(k, v)| [*k, v.as_str()]).collect();
    let args = RunArgs::from_flags(&format!("{}/{ACCOUNT}/bench-input", responder.url), BUS, &flags).expect("bench flags");
    let app = App::build(&args, &sdk, Some(metrics.clone()), &CancellationToken::new()).await.expect("the app builds");

    let load = Load::start();
    let reset = reset_peak_rss();
    let rss_start = status_kb("/proc/self/status", "VmRSS:");
    let cpu_before = stat_cpu("/proc/self/stat").unwrap_or_default();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(app.run(shutdown.clone()));
    let completed = tokio::time::timeout(settings.row_timeout, responder.shared.done.notified()).await.is_ok();
    shutdown.cancel();
    let _ = worker.await;
    let cpu_after = stat_cpu("/proc/self/stat").unwrap_or_default();
    let other_load = load.others(Duration::ZERO);
    let peak = status_kb("/proc/self/status", "VmHWM:");
    let process_cpu = cpu_after.saturating_sub(cpu_before);
    let mut out = collect(
        row,
        responder,
        completed,
        Duration::ZERO,
        (rss_start, peak, if reset { "process incl. responder" } else { "process, cumulative (clear_refs failed)" }),
    );
    out.keywatch_cpu = process_cpu.saturating_sub(out.responder_cpu);
    out.other_load = other_load;
    out
}

async fn run_binary(settings: &Settings, row: &Row) -> Outcome {
    let wait = Duration::from_secs(settings.wait_secs);
    let responder = Responder::start(row.messages, settings.users, wait, settings.event_time);
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let load = Load::start();
    let mut child = Command::new(&settings.binary)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("KEYWATCH_QUEUE_URL", format!("{}/{ACCOUNT}/bench-input", responder.url)),
            ("KEYWATCH_FINDINGS_BUS", BUS.to_string()),
            ("KEYWATCH_METRICS_ADDR", format!("127.0.0.1:{admin_port}")),
            ("KEYWATCH_WAIT_SECS", settings.wait_secs.to_string()),
            ("KEYWATCH_MAX_MESSAGES", row.max_messages.to_string()),
            ("KEYWATCH_RECEIVERS", row.receivers.to_string()),
            ("KEYWATCH_LOG_FORMAT", "json".to_string()),
            ("KEYWATCH_IAM_RATE_PER_ACCOUNT", settings.iam_rate.to_string()),
            ("AWS_ENDPOINT_URL", responder.url.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "bench".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the keywatch binary");
    let pid = child.id();
    // Read as it comes: the binary logs every finding to stderr, and would
    // block once the pipe is full. The last 16 KiB are kept for a report.
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_tail = std::thread::spawn(move || tail_of(stderr, 16 * 1024));
    let completed = tokio::time::timeout(settings.row_timeout, responder.shared.done.notified()).await.is_ok();
    let cpu = stat_cpu(&format!("/proc/{pid}/stat")).unwrap_or_default();
    let peak = status_kb(&format!("/proc/{pid}/status"), "VmHWM:");
    let other_load = load.others(cpu);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    let err = stderr_tail.join().unwrap_or_default();
    if !completed {
        eprintln!("keywatch binary stderr (the end):\n{err}");
    }
    let mut out = collect(row, responder, completed, cpu, (None, peak, "keywatch binary alone"));
    out.other_load = other_load;
    out
}

/// Reads `r` to its end, keeping only the last `keep` bytes.
fn tail_of(mut r: impl Read, keep: usize) -> String {
    let mut kept = std::collections::VecDeque::with_capacity(keep);
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = r.read(&mut buf) {
        kept.extend(&buf[..n]);
        let over = kept.len().saturating_sub(keep);
        kept.drain(..over);
    }
    String::from_utf8_lossy(kept.make_contiguous()).into_owned()
}

// ---------------------------------------------------------------- report

fn pct(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("–".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let settings = Settings::from_env();
    if settings.log {
        // As the binary logs (one line per finding at info), into a sink.
        tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(keywatch::app::JsonLines::default())
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let metrics = keywatch::telemetry::install_recorder().expect("metrics recorder");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "throughput bench: {} users, wait {} s, IAM rate limit {}, log {}, {} cores ({}); binary rows run {}",
        settings.users,
        settings.wait_secs,
        if settings.iam_rate > 0.0 { format!("{}/s per account", settings.iam_rate) } else { "off".to_string() },
        if settings.log { "json→sink" } else { "off" },
        cores,
        cpu_model(),
        settings.binary
    );

    let mut outcomes = Vec::new();
    for row in &settings.rows {
        let out = runtime.block_on(async {
            match row.mode {
                Mode::InProcess => run_in_process(&settings, row, &metrics).await,
                Mode::Binary => run_binary(&settings, row).await,
            }
        });
        eprintln!(
            "  {:?} {}x{}: {} of {} deleted in {:.2} s",
            row.mode,
            row.receivers,
            row.max_messages,
            out.deleted,
            row.messages,
            out.wall.as_secs_f64()
        );
        outcomes.push(out);
    }

    println!();
    println!("### keywatch against an instant in-process AWS backend");
    println!();
    println!(
        "Machine: {cores} cores, {}. Backlog: CreateAccessKey events over {} users in one account, every one a violation \
         (2 active keys), eventTime {}; long-poll wait {} s; IAM rate limit {}; load average at the end {}.",
        cpu_model(),
        settings.users,
        match settings.event_time {
            EventTime::Backlog => "when the backlog was loaded (KW_BENCH_EVENT_TIME=backlog)",
            EventTime::Receive => "when received (KW_BENCH_EVENT_TIME=receive)",
        },
        settings.wait_secs,
        if settings.iam_rate > 0.0 { format!("{}/s per account", settings.iam_rate) } else { "off (KW_BENCH_IAM_RATE=0)".to_string() },
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| run | receivers × max | events | done | events/s | overhead p50 ms | p99 ms | max ms | keywatch CPU µs/event | responder CPU µs/event | AWS calls/event | peak RSS MB | RSS measured on | other processes' CPU (cores) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let rate = if o.wall.is_zero() { 0.0 } else { o.deleted as f64 / o.wall.as_secs_f64() };
        let calls: u64 = o.calls.iter().filter(|(op, _)| **op != Op::Connection).map(|(_, n)| n).sum();
        let per = |d: Duration| if o.deleted == 0 { "–".to_string() } else { format!("{:.0}", d.as_secs_f64() * 1e6 / o.deleted as f64) };
        println!(
            "| {} | {} × {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.2} |",
            match o.row.mode {
                Mode::InProcess => "in-process",
                Mode::Binary => "binary",
            },
            o.row.receivers,
            o.row.max_messages,
            o.deleted,
            if o.completed { "yes" } else { "TIMEOUT" },
            rate,
            ms(pct(&o.overhead, 0.50)),
            ms(pct(&o.overhead, 0.99)),
            ms(o.overhead.last().copied()),
            per(o.keywatch_cpu),
            per(o.responder_cpu),
            if o.deleted == 0 { 0.0 } else { calls as f64 / o.deleted as f64 },
            mb(o.peak_rss_kb),
            match o.rss_start_kb {
                Some(start) => format!("{} (at start {} MB)", o.rss_note, mb(Some(start))),
                None => o.rss_note.to_string(),
            },
            o.other_load,
        );
    }
    println!();
    println!(
        "Other processes' CPU: what the rest of the machine used meanwhile (from /proc/stat); above ~0.2 cores the run \
         competed for the 2 cores and its rates are understated."
    );
    println!();
    println!("Calls by operation (responder's count; Connection = TCP connections accepted):");
    println!();
    for o in &outcomes {
        let parts: Vec<String> = o.calls.iter().map(|(op, n)| format!("{op:?} {n}")).collect();
        println!(
            "- {:?} {}×{}: {}; PutEvents entries {}{}{}",
            o.row.mode,
            o.row.receivers,
            o.row.max_messages,
            parts.join(", "),
            o.put_entries,
            if o.bad_findings > 0 { format!(", {} entries were not FAILED keywatch findings", o.bad_findings) } else { String::new() },
            if o.duplicate_deletes > 0 { format!(", {} duplicate deletes", o.duplicate_deletes) } else { String::new() },
        );
    }
    println!();
    println!("Goals (issue \"Speed under bursts\"): ≥ 5,000 events/s on 2 cores; overhead p99 < 2 ms; RSS < 50 MB.");
    println!();
    println!("| run | ≥ 5,000 events/s | p99 < 2 ms | RSS < 50 MB |");
    println!("|---|---|---|---|");
    for o in &outcomes {
        let rate = if o.wall.is_zero() { 0.0 } else { o.deleted as f64 / o.wall.as_secs_f64() };
        let p99 = pct(&o.overhead, 0.99);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "| {:?} {} × {} | {} ({:.0}) | {} ({} ms) | {} ({} MB) |",
            o.row.mode,
            o.row.receivers,
            o.row.max_messages,
            verdict(o.completed && rate >= 5000.0),
            rate,
            verdict(p99.is_some_and(|p| p < Duration::from_millis(2))),
            ms(p99),
            verdict(o.peak_rss_kb.is_some_and(|kb| kb < 50 * 1024)),
            mb(o.peak_rss_kb),
        );
    }
    let failed = outcomes.iter().any(|o| !o.completed || o.bad_findings > 0);
    if failed {
        eprintln!("some runs did not complete or published unexpected entries");
        std::process::exit(1);
    }
}
