//! Test support: a real moto server per test, the production wiring on it
//! (default-bus rule → input queue with DLQ, findings bus → findings queue),
//! and the real `keywatch` binary running against it.
//!
//! Every process started here is killed on drop, by pid. The moto server
//! comes from the venv that `scripts/python-env.sh` creates; its path is in
//! `KEYWATCH_MOTO_SERVER` (set by `scripts/test.sh`) or `.venv/bin/moto_server`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

pub const ACCOUNT: &str = "123456789012";
pub const FINDINGS_BUS: &str = "keywatch-findings";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KEYWATCH_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(p.exists(), "moto_server not found: run scripts/python-env.sh (or scripts/test.sh) first");
    p
}

/// A moto server on a free loopback port; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap().keep();
            let child = Command::new(moto_binary())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let mut moto = Moto { child, port, url: format!("http://127.0.0.1:{port}") };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if http_get(port, "/moto-api/").is_some() {
                    return moto;
                }
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = moto.child.kill();
        }
        panic!("moto_server did not start");
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.url).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (no chunked replies); `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The production wiring on the emulator.
pub struct Pipeline {
    pub sqs: aws_sdk_sqs::Client,
    pub iam: aws_sdk_iam::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub findings_url: String,
}

pub const KEY_EVENT_PATTERN: &str = r#"{"source":["aws.iam"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["iam.amazonaws.com"],"eventName":["CreateAccessKey","UpdateAccessKey","DeleteAccessKey"]}}"#;

impl Pipeline {
    /// Input queue (visibility `visibility_secs`, DLQ after 2 receives)
    /// fed by a default-bus rule; findings bus with a rule into a queue.
    pub async fn create(config: &SdkConfig, visibility_secs: u32) -> Pipeline {
        let sqs = aws_sdk_sqs::Client::new(config);
        let iam = aws_sdk_iam::Client::new(config);
        let events = aws_sdk_eventbridge::Client::new(config);

        let dlq_url = sqs.create_queue().queue_name("keywatch-dlq").send().await.unwrap().queue_url.unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name("keywatch-input")
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn_ = queue_arn(&sqs, &queue_url).await;
        events
            .put_rule()
            .name("keywatch-iam-key-events")
            .event_pattern(KEY_EVENT_PATTERN)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("keywatch-iam-key-events")
            .targets(aws_sdk_eventbridge::types::Target::builder().id("input").arn(queue_arn_).build().unwrap())
            .send()
            .await
            .unwrap();

        let findings_url = sqs.create_queue().queue_name("keywatch-findings-out").send().await.unwrap().queue_url.unwrap();
        let findings_arn = queue_arn(&sqs, &findings_url).await;
        events.create_event_bus().name(FINDINGS_BUS).send().await.unwrap();
        events
            .put_rule()
            .name("keywatch-findings-to-siem")
            .event_bus_name(FINDINGS_BUS)
            .event_pattern(r#"{"source":["keywatch"],"detail-type":["IAM Access Key Finding"]}"#)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("keywatch-findings-to-siem")
            .event_bus_name(FINDINGS_BUS)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("siem").arn(findings_arn).build().unwrap())
            .send()
            .await
            .unwrap();
        Pipeline { sqs, iam, events, queue_url, dlq_url, findings_url }
    }

    /// Creates `user` with `keys` active keys; returns their ids.
    pub async fn user_with_keys(&self, user: &str, keys: usize) -> Vec<String> {
        self.iam.create_user().user_name(user).send().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..keys {
            ids.push(self.create_key(user).await);
        }
        ids
    }

    pub async fn create_key(&self, user: &str) -> String {
        let out = self.iam.create_access_key().user_name(user).send().await.unwrap();
        out.access_key.unwrap().access_key_id
    }

    /// Puts a CloudTrail-shaped event on the default bus, as AWS would.
    pub async fn put_cloudtrail(&self, detail: &Value) {
        self.put_cloudtrail_on(None, detail).await
    }

    /// Puts a CloudTrail-shaped event on `bus` (default bus when `None`), as
    /// a member account's forwarding rule would.
    pub async fn put_cloudtrail_on(&self, bus: Option<&str>, detail: &Value) {
        let out = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .set_event_bus_name(bus.map(str::to_string))
                    .source("aws.iam")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count, 0, "PutEvents rejected the test event: {out:?}");
    }

    pub async fn send_raw(&self, body: &str) {
        self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await.unwrap();
    }

    /// Receives (and deletes) findings until `n` have arrived or `timeout`.
    pub async fn findings(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut found = Vec::new();
        while found.len() < n && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.findings_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                found.push(envelope);
                self.sqs.delete_message().queue_url(&self.findings_url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
            }
        }
        found
    }

    /// (visible, in flight) messages of a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = out.attributes.unwrap_or_default();
        let get = |k| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (get(QueueAttributeName::ApproximateNumberOfMessages), get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Waits until the queue holds no message at all (visible or in flight).
    pub async fn wait_drained(&self, url: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.depth(url).await == (0, 0) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    out.attributes.unwrap()[&QueueAttributeName::QueueArn].clone()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn iam_user_identity(account: &str, user: &str) -> Value {
    json!({
        "type": "IAMUser",
        "principalId": format!("AIDA{}", user.to_uppercase()),
        "arn": format!("arn:aws:iam::{account}:user/{user}"),
        "accountId": account,
        "accessKeyId": "AKIACALLERKEY",
        "userName": user,
    })
}

fn record(event_name: &str, event_id: &str, identity: Value, request: Value, response: Value) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": now_rfc3339(),
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": request,
        "responseElements": response,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    })
}

/// The CloudTrail record of `actor` creating `key_id` for `user`.
pub fn create_key_event(event_id: &str, actor: &str, user: &str, key_id: &str) -> Value {
    record(
        "CreateAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"userName": user}),
        json!({"accessKey": {"accessKeyId": key_id, "status": "Active", "userName": user, "createDate": "Nov 28, 2026 10:00:00 AM"}}),
    )
}

/// The CloudTrail record of `actor` setting `key_id` of `user` to `status`.
pub fn update_key_event(event_id: &str, actor: &str, user: &str, key_id: &str, status: &str) -> Value {
    record(
        "UpdateAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"accessKeyId": key_id, "status": status, "userName": user}),
        Value::Null,
    )
}

/// The CloudTrail record of `actor` deleting `key_id` of `user`.
pub fn delete_key_event(event_id: &str, actor: &str, user: &str, key_id: &str) -> Value {
    record(
        "DeleteAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"accessKeyId": key_id, "userName": user}),
        Value::Null,
    )
}

/// The real `keywatch run` binary against the emulator; killed on drop.
pub struct Worker {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(moto: &Moto, pipeline: &Pipeline, extra_env: &[(&str, &str)]) -> Worker {
        let admin_port = free_port();
        let log = tempfile::Builder::new().prefix("keywatch-worker-").suffix(".log").tempfile().unwrap().into_temp_path().keep().unwrap();
        let out = std::fs::File::create(&log).unwrap();
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
        for (k, v) in extra_env {
            env.insert(k, v.to_string());
        }
        let child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start keywatch");
        Worker { child, admin_port, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// The same record, made by an assumed role (no userName in the identity).
pub fn by_role(mut detail: Value) -> Value {
    let account = detail["recipientAccountId"].clone();
    detail["userIdentity"] = json!({
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:ops",
        "arn": format!("arn:aws:sts::{}:assumed-role/OpsAdmin/ops", account.as_str().unwrap_or(ACCOUNT)),
        "accountId": account,
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{}:role/OpsAdmin", account.as_str().unwrap_or(ACCOUNT))}},
    });
    detail
}

/// The same record, in another account.
pub fn in_account(mut detail: Value, account: &str) -> Value {
    detail["recipientAccountId"] = json!(account);
    detail["userIdentity"]["accountId"] = json!(account);
    detail
}
