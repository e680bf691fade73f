//! What /proc says of a process: CPU time, peak and current memory, open
//! files, and the machine's load from everyone else (for benchmarks that
//! must say when the machine was shared).

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime from a /proc/.../stat file.
pub fn stat_cpu(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clk_tck()))
}

/// Busy CPU time of the whole machine (all cores), from /proc/stat.
pub fn machine_busy() -> Duration {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_secs_f64(busy as f64 / clk_tck())
}

/// CPU used by other processes on this machine during a run, in cores.
pub struct Load {
    pub started: Instant,
    pub busy: Duration,
    pub own: Duration,
}

impl Load {
    pub fn start() -> Load {
        Load { started: Instant::now(), busy: machine_busy(), own: stat_cpu("/proc/self/stat").unwrap_or_default() }
    }

    /// `extra`: CPU of our own child processes.
    pub fn others(&self, extra: Duration) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        let busy = machine_busy().saturating_sub(self.busy);
        let own = stat_cpu("/proc/self/stat").unwrap_or_default().saturating_sub(self.own) + extra;
        if wall <= 0.0 {
            return 0.0;
        }
        (busy.saturating_sub(own)).as_secs_f64() / wall
    }
}

pub fn thread_cpu() -> Duration {
    stat_cpu("/proc/thread-self/stat").unwrap_or_default()
}

pub fn status_kb(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets this process's VmHWM to its current RSS (Linux ≥ 4.0).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
