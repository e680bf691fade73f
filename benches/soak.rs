//! Soak: the worker (the app as the binary wires it, in process) against
//! the instant AWS backend at a steady rate for a long run, sampling the
//! process's resident memory, open file descriptors and live tokio tasks
//! every interval, to show that nothing grows once warm.
//!
//! Run: `KW_SOAK_SECS=600 cargo bench --bench soak` (release), or the same
//! with `cargo test --bench soak` for a debug build (the same samples, a
//! slower process). Settings (env): `KW_SOAK_SECS` (600), `KW_SOAK_RATE`
//! (events per second, 200), `KW_SOAK_USERS` (20000: distinct users, so the
//! caches fill and then evict), `KW_SOAK_SAMPLE_SECS` (10). Prints a table of
//! samples and the growth from the first sample after one minute (warm-up)
//! to the last. `cargo test --benches --no-run` only compiles it.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use keywatch::app::App;
use keywatch::config::RunArgs;
use support::procfs::status_kb;
use support::responder::{EventTime, Responder, ACCOUNT};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Sample {
    at: u64,
    deleted: usize,
    rss_kb: u64,
    fds: usize,
    tasks: usize,
}

fn main() {
    // `cargo test --benches` runs bench binaries too: only run when asked
    // for a duration or through `cargo bench` (which passes --bench).
    let benching = std::env::args().any(|a| a == "--bench") || std::env::var("KW_SOAK_SECS").is_ok();
    if !benching {
        return;
    }
    let secs: u64 = env_or("KW_SOAK_SECS", 600);
    let rate: f64 = env_or("KW_SOAK_RATE", 200.0);
    let users: usize = env_or("KW_SOAK_USERS", 20_000);
    let every = Duration::from_secs(env_or("KW_SOAK_SAMPLE_SECS", 10));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let samples = runtime.block_on(soak(secs, rate, users, every));

    println!("| t (s) | messages deleted | RSS (MB) | open fds | tokio tasks |");
    println!("|---|---|---|---|---|");
    for s in &samples {
        println!("| {} | {} | {:.1} | {} | {} |", s.at, s.deleted, s.rss_kb as f64 / 1024.0, s.fds, s.tasks);
    }
    let warm = samples.iter().find(|s| s.at >= 60).unwrap_or(&samples[0]);
    let last = samples.last().unwrap();
    println!(
        "growth from t={} s to t={} s: RSS {:+.1} MB, fds {:+}, tasks {:+}; {:.0} events/s over the run",
        warm.at,
        last.at,
        (last.rss_kb as f64 - warm.rss_kb as f64) / 1024.0,
        last.fds as i64 - warm.fds as i64,
        last.tasks as i64 - warm.tasks as i64,
        last.deleted as f64 / last.at.max(1) as f64
    );
}

async fn soak(secs: u64, rate: f64, users: usize, every: Duration) -> Vec<Sample> {
    let metrics = keywatch::telemetry::install_recorder().expect("metrics recorder");
    let total = (rate * secs as f64) as usize + 1_000;
    let responder = Responder::start(total, users, Duration::from_secs(1), EventTime::Receive);
    responder.shared.state.lock().unwrap().pace = Some((Instant::now(), rate));
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&responder.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("soak", "soak", None, None, "soak"))
        .load()
        .await;
    let flags = ["--wait-secs", "1", "--iam-rate-per-account", "0", "--queue-metrics-interval-secs", "0", "--metrics-addr", "127.0.0.1:0"];
    let args = RunArgs::from_flags(&format!("{}/{ACCOUNT}/soak-input", responder.url), "keywatch-findings", &flags).unwrap();
    let shutdown = CancellationToken::new();
    let app = App::build(&args, &sdk, Some(metrics), &shutdown).await.expect("the app builds");
    let run = tokio::spawn(app.run(shutdown.clone()));

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let deleted = responder.shared.state.lock().unwrap().deleted_count;
        samples.push(Sample {
            at: started.elapsed().as_secs(),
            deleted,
            rss_kb: status_kb("/proc/self/status", "VmRSS:").unwrap_or(0),
            fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        });
    }
    shutdown.cancel();
    let _ = run.await;
    responder.stop();
    samples
}
