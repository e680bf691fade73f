//! The dashboard and the alert rules, proven on real parts: a real
//! Prometheus server scrapes the real worker while it handles real events on
//! the emulator; then every PromQL expression of the dashboard and of the
//! rules is evaluated through Prometheus's HTTP API. Each must parse, each
//! dashboard panel must return data, and every rule must load healthy.
//!
//! Needs `prometheus` (Debian package; `scripts/test.sh` installs it) and
//! `python3` for `tests/promql_check.py`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

trials! {
    multi every_dashboard_panel_and_alert_rule_works_on_a_real_prometheus,
}

const T: Duration = Duration::from_secs(30);

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn start_prometheus(scrape_port: u16) -> Prometheus {
    let binary = std::env::var("KEYWATCH_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let dir = tempfile::tempdir().unwrap().keep();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: keywatch\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n",
            repo("dashboards/alerts.yaml").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): run scripts/test.sh, which installs Debian's prometheus"));
    let prom = Prometheus { child, port };
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Some((200, _)) = http_get(port, "/-/ready") {
            return prom;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("prometheus did not become ready");
}

/// The value of an instant query's first sample, if any.
fn query(port: u16, promql: &str) -> Option<f64> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = http_get(port, &format!("/api/v1/query?query={q}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

async fn every_dashboard_panel_and_alert_rule_works_on_a_real_prometheus() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let p = Pipeline::create(&config, 1).await;
    // With a ledger, so that the Record row has its series.
    let table = create_ledger_table(&config, "keywatch-ledger").await;
    let worker = Worker::start(&moto, &p, &[("KEYWATCH_LEDGER_TABLE", table.as_str()), ("KEYWATCH_LEDGER_METRICS_SECS", "1")]);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());
    let prom = start_prometheus(worker.admin_port);
    // Prometheus must have seen the worker before the traffic, as in
    // production, where the worker runs long before the first event.
    let deadline = Instant::now() + T;
    while query(prom.port, r#"up{job="keywatch"}"#) != Some(1.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Real traffic of every kind the dashboard shows: a violation and its
    // resolution, a compliant event, an unknown user (an IAM error), an
    // ignored event and a poison message that ends in the DLQ.
    let keys = p.user_with_keys("alice", 2).await;
    p.put_cloudtrail(&create_key_event("evt-m-1", "admin", "alice", &keys[1])).await;
    let solo = p.user_with_keys("bob", 1).await;
    p.put_cloudtrail(&create_key_event("evt-m-2", "bob", "bob", &solo[0])).await;
    p.put_cloudtrail(&create_key_event("evt-m-3", "admin", "ghost", "AKIAGHOST00000000001")).await;
    p.send_raw("not json").await;
    assert_eq!(p.findings(1, T).await.len(), 1, "{}", worker.logs());
    p.iam.delete_access_key().user_name("alice").access_key_id(&keys[0]).send().await.unwrap();
    p.put_cloudtrail(&delete_key_event("evt-m-4", "admin", "alice", &keys[0])).await;
    assert_eq!(p.findings(1, T).await.len(), 1, "{}", worker.logs());
    assert!(worker.wait_metric(r#"keywatch_queue_messages{queue="dlq",state="visible"}"#, 1.0, T).await, "{}", worker.logs());

    // Wait until Prometheus has scraped all of it, twice over (rate() needs
    // two samples).
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        let passed = query(prom.port, r#"keywatch_findings_total{status="PASSED"}"#).unwrap_or(0.0);
        let dlq = query(prom.port, r#"keywatch_queue_messages{queue="dlq",state="visible"}"#).unwrap_or(0.0);
        if passed >= 1.0 && dlq >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(query(prom.port, r#"up{job="keywatch"}"#), Some(1.0));

    let out = Command::new("python3")
        .arg(repo("tests/promql_check.py"))
        .args(["--prometheus", &format!("http://127.0.0.1:{}", prom.port)])
        .arg("--dashboard")
        .arg(repo("dashboards/keywatch.json"))
        .arg("--rules")
        .arg(repo("dashboards/alerts.yaml"))
        .args(["--rate-interval", "1m", "--nan-is-empty", "--require-data-all-panels-except"])
        .output()
        .expect("python3");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "PromQL check failed:\n{report}\nworker:\n{}", worker.logs());
    assert!(!report.contains("NODATA") && !report.contains("ERROR"), "{report}");

    // Every alert rule loaded and evaluates without error.
    let (_, rules) = http_get(prom.port, "/api/v1/rules").unwrap();
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let all: Vec<&serde_json::Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert!(all.len() >= 6, "rules: {all:?}");
    for r in all {
        assert_eq!(r["health"], "ok", "rule {} unhealthy: {}", r["name"], r["lastError"]);
    }
}
