//! The real `keywatch run` binary against the emulator, killed on drop by
//! pid, with its logs and its admin port at hand.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, http_get, metric_value, Moto, Pipeline, FINDINGS_BUS};

/// The real `keywatch run` binary against the emulator; killed on drop.
pub struct Worker {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
    /// Standard output on its own, when asked for (the stdout sink).
    pub stdout: Option<PathBuf>,
}

fn temp_path(prefix: &str, suffix: &str) -> PathBuf {
    tempfile::Builder::new().prefix(prefix).suffix(suffix).tempfile().unwrap().into_temp_path().keep().unwrap()
}

impl Worker {
    /// The worker with standard output and standard error in one log.
    pub fn start(moto: &Moto, pipeline: &Pipeline, extra_env: &[(&str, &str)]) -> Worker {
        Worker::spawn(moto, pipeline, extra_env, &[], false)
    }

    /// As [`Worker::start`], with the variables in `unset` left out of the
    /// environment (e.g. the static test credentials).
    pub fn start_without(moto: &Moto, pipeline: &Pipeline, extra_env: &[(&str, &str)], unset: &[&str]) -> Worker {
        Worker::spawn(moto, pipeline, extra_env, unset, false)
    }

    /// The worker with standard output in a file of its own
    /// ([`Worker::stdout_lines`]) and standard error in the log.
    pub fn start_with_stdout(moto: &Moto, pipeline: &Pipeline, extra_env: &[(&str, &str)]) -> Worker {
        Worker::spawn(moto, pipeline, extra_env, &[], true)
    }

    fn spawn(moto: &Moto, pipeline: &Pipeline, extra_env: &[(&str, &str)], unset: &[&str], separate_stdout: bool) -> Worker {
        let admin_port = free_port();
        let log = temp_path("keywatch-worker-", ".log");
        let err = std::fs::File::create(&log).unwrap();
        let stdout = separate_stdout.then(|| temp_path("keywatch-stdout-", ".jsonl"));
        let out = match &stdout {
            Some(path) => std::fs::File::create(path).unwrap(),
            None => err.try_clone().unwrap(),
        };
        let mut env: HashMap<&str, String> = HashMap::from([
            ("KEYWATCH_QUEUE_URL", pipeline.queue_url.clone()),
            ("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS.to_string()),
            ("KEYWATCH_METRICS_ADDR", format!("127.0.0.1:{admin_port}")),
            ("KEYWATCH_WAIT_SECS", "1".into()),
            ("KEYWATCH_QUEUE_METRICS_INTERVAL_SECS", "1".into()),
            ("KEYWATCH_LOG_FORMAT", "json".into()),
            ("KEYWATCH_LOG", "keywatch=debug,info".into()),
            ("AWS_ENDPOINT_URL", moto.url.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]);
        // An empty value unsets the variable.
        for (k, v) in extra_env {
            if v.is_empty() {
                env.remove(k);
            } else {
                env.insert(k, v.to_string());
            }
        }
        for k in unset {
            env.remove(k);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start keywatch");
        Worker { child, admin_port, log, stdout }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines written to standard output so far (with
    /// [`Worker::start_with_stdout`]).
    pub fn stdout_lines(&self) -> Vec<String> {
        let path = self.stdout.as_ref().expect("started with start_with_stdout");
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one series in /metrics (`name{labels}` exactly as
    /// rendered, labels in the exporter's order), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Waits until `series` reaches at least `value`.
    pub async fn wait_metric(&self, series: &str, value: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.metric(series) >= value {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((200, _)) = http_get(self.admin_port, "/readyz") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args(["-s", sig, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- keywatch worker log ({}) ----\n{}", self.log.display(), self.logs());
        }
    }
}

/// A one-shot `keywatch` command (`scan`, `replay`) against the emulator:
/// (exit code, standard output, standard error).
pub fn keywatch(moto: &Moto, args: &[&str], extra_env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("AWS_ENDPOINT_URL", moto.url.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("KEYWATCH_LOG", "keywatch=debug,info"),
        ])
        .envs(extra_env.iter().copied())
        .output()
        .expect("run keywatch");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}
