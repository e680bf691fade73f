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
//! - `in-process`: `keywatch::worker::run` in this process (with the metrics
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
//! - `KW_BENCH_IAM_RATE` (0 = off): the per-account IAM rate limit, in-process
//!   and as `KEYWATCH_IAM_RATE_PER_ACCOUNT` for the binary. Off by default
//!   because every event here is in one account: the binary's default (20/s)
//!   would cap the run at 20 IAM calls/s and measure the limiter, not the
//!   worker. Set it to see the limiter's own cost (e.g. 1000000).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use keywatch::admin::{self, Health};
use keywatch::emit::EventBridgeSink;
use keywatch::inventory::IamInventory;
use keywatch::limit::{RateLimiter, RetryPolicy};
use keywatch::queue::SqsQueue;
use keywatch::worker::{self, PollSettings, Processor, ProcessorSettings};

const ACCOUNT: &str = "123456789012";
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
        let rows_spec = std::env::var("KW_BENCH_ROWS")
            .unwrap_or_else(|_| "in:1x10,in:4x10,bin:1x10,bin:4x10,in:1x1:2000".to_string());
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
                Row {
                    mode,
                    receivers: r.parse().unwrap_or_else(|_| bad()),
                    max_messages: m.parse().unwrap_or_else(|_| bad()),
                    messages,
                }
            })
            .collect();
        Settings {
            users: env_or("KW_BENCH_USERS", 2_000),
            rows,
            wait_secs: env_or("KW_BENCH_WAIT_SECS", 1),
            log: std::env::var("KW_BENCH_LOG").map_or(true, |v| v != "off"),
            row_timeout: Duration::from_secs(env_or("KW_BENCH_ROW_TIMEOUT_SECS", 60)),
            iam_rate: env_or("KW_BENCH_IAM_RATE", 0.0),
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

// ---------------------------------------------------------------- backend state

/// Operations the responder counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Receive,
    ReceiveEmpty,
    DeleteBatch,
    GetQueueAttributes,
    ListAccessKeys,
    GetAccessKeyLastUsed,
    PutEvents,
    Other,
    /// TCP connections accepted (the SDK keeps them alive).
    Connection,
}

struct Backlog {
    total: usize,
    users: usize,
    /// Next message index to hand out.
    next: usize,
    sent_at: Vec<Option<Instant>>,
    deleted: Vec<bool>,
    deleted_count: usize,
    overhead: Vec<Duration>,
    first_receive: Option<Instant>,
    last_delete: Option<Instant>,
    calls: BTreeMap<Op, u64>,
    put_entries: u64,
    failed_findings: u64,
    duplicate_deletes: u64,
    /// Every event's `eventTime` (backlog mode); `None`: the receive time.
    event_time: Option<String>,
}

/// Where the events' `eventTime` comes from (`KW_BENCH_EVENT_TIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventTime {
    Backlog,
    Receive,
}

struct Shared {
    state: Mutex<Backlog>,
    done: Notify,
    wait: Duration,
}

impl Shared {
    fn new(total: usize, users: usize, wait: Duration, event_time: EventTime) -> Shared {
        Shared {
            state: Mutex::new(Backlog {
                total,
                users,
                next: 0,
                sent_at: vec![None; total],
                deleted: vec![false; total],
                deleted_count: 0,
                overhead: Vec::with_capacity(total),
                first_receive: None,
                last_delete: None,
                calls: BTreeMap::new(),
                put_entries: 0,
                failed_findings: 0,
                duplicate_deletes: 0,
                event_time: (event_time == EventTime::Backlog).then(|| OffsetDateTime::now_utc().format(&Rfc3339).unwrap()),
            }),
            done: Notify::new(),
            wait,
        }
    }

    fn count(&self, op: Op) {
        *self.state.lock().unwrap().calls.entry(op).or_default() += 1;
    }
}

fn user_name(u: usize) -> String {
    format!("bench-user-{u:06}")
}

fn key_id(u: usize, which: char) -> String {
    format!("AKIABENCH{u:08}{which}")
}

fn user_index(name: &str) -> Option<usize> {
    name.strip_prefix("bench-user-")?.parse().ok()
}

/// The SQS body of message `i`: an EventBridge envelope carrying the
/// CloudTrail record of an administrator creating a key for a user.
fn message_body(i: usize, users: usize, now: &str) -> String {
    let u = i % users;
    let user = user_name(u);
    let key = key_id(u, if (i / users) % 2 == 0 { 'A' } else { 'B' });
    serde_json::json!({
        "version": "0",
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": ACCOUNT,
        "time": now,
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAADMINEXAMPLE",
                "arn": format!("arn:aws:iam::{ACCOUNT}:user/admin"),
                "accountId": ACCOUNT,
                "accessKeyId": "AKIAADMINCALLER",
                "userName": "admin"
            },
            "eventTime": now,
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.10",
            "userAgent": "aws-cli/2.15.0 md/command#iam.create-access-key",
            "requestParameters": {"userName": user},
            "responseElements": {"accessKey": {
                "accessKeyId": key,
                "status": "Active",
                "userName": user,
                "createDate": "Nov 20, 2026 2:03:09 PM"
            }},
            "requestID": format!("5d2b6c1e-7a0f-4c7e-8d0e-{i:012}"),
            "eventID": format!("a1b2c3d4-0001-4000-8000-{i:012}"),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management"
        }
    })
    .to_string()
}

// ---------------------------------------------------------------- HTTP

struct Request<'a> {
    target: Option<String>,
    body: &'a [u8],
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; false on EOF.
async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.reserve(16 * 1024);
    Ok(sock.read_buf(buf).await? > 0)
}

async fn serve_conn(mut sock: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if !fill(&mut sock, &mut buf).await? {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut content_length = 0usize;
        let mut chunked = false;
        let mut expect_continue = false;
        let mut close = false;
        let mut target = None;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "x-amz-target" => target = Some(value.to_string()),
                _ => {}
            }
        }
        if expect_continue {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        // The body, de-chunked when needed; `consumed` is where the next
        // request starts.
        let (body, consumed): (Vec<u8>, usize) = if chunked {
            let mut body = Vec::new();
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    if !fill(&mut sock, &mut buf).await? {
                        return Ok(());
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
                let data_start = line_end + 2;
                while buf.len() < data_start + size + 2 {
                    if !fill(&mut sock, &mut buf).await? {
                        return Ok(());
                    }
                }
                body.extend_from_slice(&buf[data_start..data_start + size]);
                pos = data_start + size + 2;
                if size == 0 {
                    // Trailers are not expected; the last chunk ends with
                    // an empty line, already consumed.
                    break;
                }
            }
            (body, pos)
        } else {
            while buf.len() < head_end + content_length {
                if !fill(&mut sock, &mut buf).await? {
                    return Ok(());
                }
            }
            (buf[head_end..head_end + content_length].to_vec(), head_end + content_length)
        };
        buf.drain(..consumed);

        let response = handle(&shared, Request { target, body: &body }).await;
        let mut out = String::with_capacity(response.body.len() + 200);
        let _ = write!(
            out,
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nx-amzn-RequestId: bench\r\n\r\n",
            response.status,
            response.content_type,
            response.body.len()
        );
        out.push_str(&response.body);
        sock.write_all(out.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

fn json_ok(body: String, content_type: &'static str) -> Response {
    Response { status: "200 OK", content_type, body }
}

fn form_field<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn handle(shared: &Shared, req: Request<'_>) -> Response {
    const SQS: &str = "application/x-amz-json-1.0";
    const EVENTS: &str = "application/x-amz-json-1.1";
    match req.target.as_deref() {
        Some("AmazonSQS.ReceiveMessage") => {
            let input: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let max = input["MaxNumberOfMessages"].as_u64().unwrap_or(1).clamp(1, 10) as usize;
            let wait = input["WaitTimeSeconds"].as_u64().map_or(shared.wait, Duration::from_secs);
            let (range, users, event_time) = {
                let mut st = shared.state.lock().unwrap();
                let start = st.next;
                let end = (start + max).min(st.total);
                st.next = end;
                *st.calls.entry(if end > start { Op::Receive } else { Op::ReceiveEmpty }).or_default() += 1;
                (start..end, st.users, st.event_time.clone())
            };
            if range.is_empty() {
                // Drained: hold the long poll, then answer empty.
                if !wait.is_zero() {
                    tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                }
                return json_ok("{}".to_string(), SQS);
            }
            let now = event_time.unwrap_or_else(|| OffsetDateTime::now_utc().format(&Rfc3339).unwrap());
            let mut body = String::from("{\"Messages\":[");
            for (n, i) in range.clone().enumerate() {
                if n > 0 {
                    body.push(',');
                }
                let inner = serde_json::to_string(&message_body(i, users, &now)).unwrap();
                let _ = write!(
                    body,
                    "{{\"MessageId\":\"00000000-0000-4000-9000-{i:012}\",\"ReceiptHandle\":\"rh-{i}\",\
                     \"MD5OfBody\":\"00000000000000000000000000000000\",\"Body\":{inner},\
                     \"Attributes\":{{\"ApproximateReceiveCount\":\"1\"}}}}"
                );
            }
            body.push_str("]}");
            let sent = Instant::now();
            {
                let mut st = shared.state.lock().unwrap();
                st.first_receive.get_or_insert(sent);
                for i in range {
                    st.sent_at[i] = Some(sent);
                }
            }
            json_ok(body, SQS)
        }
        Some("AmazonSQS.DeleteMessageBatch") => {
            let arrived = Instant::now();
            let input: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let entries = input["Entries"].as_array().cloned().unwrap_or_default();
            let mut ok = Vec::new();
            let mut st = shared.state.lock().unwrap();
            *st.calls.entry(Op::DeleteBatch).or_default() += 1;
            for e in &entries {
                let id = e["Id"].as_str().unwrap_or_default().to_string();
                let idx = e["ReceiptHandle"].as_str().and_then(|h| h.strip_prefix("rh-")).and_then(|n| n.parse::<usize>().ok());
                if let Some(i) = idx.filter(|&i| i < st.total) {
                    if st.deleted[i] {
                        st.duplicate_deletes += 1;
                    } else {
                        st.deleted[i] = true;
                        st.deleted_count += 1;
                        if let Some(sent) = st.sent_at[i] {
                            st.overhead.push(arrived - sent);
                        }
                    }
                }
                ok.push(serde_json::json!({"Id": id}));
            }
            st.last_delete = Some(arrived);
            if st.deleted_count == st.total {
                shared.done.notify_one();
            }
            drop(st);
            json_ok(serde_json::json!({"Successful": ok, "Failed": []}).to_string(), SQS)
        }
        Some("AmazonSQS.GetQueueAttributes") => {
            let (visible, in_flight) = {
                let mut st = shared.state.lock().unwrap();
                *st.calls.entry(Op::GetQueueAttributes).or_default() += 1;
                (st.total - st.next, st.next - st.deleted_count)
            };
            json_ok(
                serde_json::json!({"Attributes": {
                    "ApproximateNumberOfMessages": visible.to_string(),
                    "ApproximateNumberOfMessagesNotVisible": in_flight.to_string(),
                }})
                .to_string(),
                SQS,
            )
        }
        Some("AWSEvents.PutEvents") => {
            let input: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let entries = input["Entries"].as_array().cloned().unwrap_or_default();
            let failed = entries
                .iter()
                .filter(|e| !(e["Source"] == "keywatch" && e["Detail"].as_str().is_some_and(|d| d.contains("\"FAILED\""))))
                .count();
            {
                let mut st = shared.state.lock().unwrap();
                *st.calls.entry(Op::PutEvents).or_default() += 1;
                st.put_entries += entries.len() as u64;
                st.failed_findings += failed as u64;
            }
            let results: Vec<Value> =
                (0..entries.len()).map(|i| serde_json::json!({"EventId": format!("11111111-2222-4333-8444-{i:012}")})).collect();
            json_ok(serde_json::json!({"FailedEntryCount": 0, "Entries": results}).to_string(), EVENTS)
        }
        Some(other) => {
            shared.count(Op::Other);
            Response {
                status: "400 Bad Request",
                content_type: if other.starts_with("AWSEvents") { EVENTS } else { SQS },
                body: serde_json::json!({"__type": "UnknownOperationException", "message": other}).to_string(),
            }
        }
        None => {
            // Query protocol: IAM.
            let form = String::from_utf8_lossy(req.body);
            if form_field(&form, "Action") == Some("ListAccessKeys") {
                shared.count(Op::ListAccessKeys);
                let name = form_field(&form, "UserName").unwrap_or_default();
                let u = user_index(name).unwrap_or(0);
                let mut body = String::from(
                    "<ListAccessKeysResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ListAccessKeysResult><AccessKeyMetadata>",
                );
                for (which, created) in [('A', "2026-01-01T00:00:00Z"), ('B', "2026-11-20T14:03:09Z")] {
                    let _ = write!(
                        body,
                        "<member><UserName>{name}</UserName><AccessKeyId>{}</AccessKeyId><Status>Active</Status><CreateDate>{created}</CreateDate></member>",
                        key_id(u, which)
                    );
                }
                body.push_str(
                    "</AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult>\
                     <ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></ListAccessKeysResponse>",
                );
                Response { status: "200 OK", content_type: "text/xml", body }
            } else if form_field(&form, "Action") == Some("GetAccessKeyLastUsed") {
                shared.count(Op::GetAccessKeyLastUsed);
                let key = form_field(&form, "AccessKeyId").unwrap_or_default();
                let u = key.strip_prefix("AKIABENCH").and_then(|k| k.get(..8)).and_then(|n| n.parse().ok()).unwrap_or(0);
                let (date, service) = if key.ends_with('A') { ("2026-11-27T09:00:00Z", "s3") } else { ("2026-11-20T15:00:00Z", "iam") };
                let body = format!(
                    "<GetAccessKeyLastUsedResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetAccessKeyLastUsedResult>\
                     <UserName>{}</UserName><AccessKeyLastUsed><LastUsedDate>{date}</LastUsedDate><ServiceName>{service}</ServiceName>\
                     <Region>us-east-1</Region></AccessKeyLastUsed></GetAccessKeyLastUsedResult>\
                     <ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></GetAccessKeyLastUsedResponse>",
                    user_name(u)
                );
                Response { status: "200 OK", content_type: "text/xml", body }
            } else {
                shared.count(Op::Other);
                Response {
                    status: "400 Bad Request",
                    content_type: "text/xml",
                    body: "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>not in the bench</Message></Error><RequestId>bench</RequestId></ErrorResponse>".into(),
                }
            }
        }
    }
}

/// A responder on its own thread and single-threaded runtime.
struct Responder {
    url: String,
    shared: Arc<Shared>,
    stop: Arc<Notify>,
    thread: std::thread::JoinHandle<Duration>,
}

impl Responder {
    fn start(total: usize, users: usize, wait: Duration, event_time: EventTime) -> Responder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::new(total, users, wait, event_time));
        let stop = Arc::new(Notify::new());
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("responder".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener).unwrap();
                        loop {
                            tokio::select! {
                                _ = stop.notified() => break,
                                accepted = listener.accept() => {
                                    if let Ok((sock, _)) = accepted {
                                        shared.count(Op::Connection);
                                        tokio::spawn(serve_conn(sock, shared.clone()));
                                    }
                                }
                            }
                        }
                    });
                    drop(rt);
                    thread_cpu()
                })
                .unwrap()
        };
        Responder { url, shared, stop, thread }
    }

    /// Stops the responder; its thread's CPU time.
    fn stop(self) -> Duration {
        self.stop.notify_one();
        self.thread.join().unwrap()
    }
}

// ---------------------------------------------------------------- /proc

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime from a /proc/.../stat file.
fn stat_cpu(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clk_tck()))
}

/// Busy CPU time of the whole machine (all cores), from /proc/stat.
fn machine_busy() -> Duration {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_secs_f64(busy as f64 / clk_tck())
}

/// CPU used by other processes on this machine during a run, in cores.
struct Load {
    started: Instant,
    busy: Duration,
    own: Duration,
}

impl Load {
    fn start() -> Load {
        Load { started: Instant::now(), busy: machine_busy(), own: stat_cpu("/proc/self/stat").unwrap_or_default() }
    }

    /// `extra`: CPU of our own child processes.
    fn others(&self, extra: Duration) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        let busy = machine_busy().saturating_sub(self.busy);
        let own = stat_cpu("/proc/self/stat").unwrap_or_default().saturating_sub(self.own) + extra;
        if wall <= 0.0 {
            return 0.0;
        }
        (busy.saturating_sub(own)).as_secs_f64() / wall
    }
}

fn thread_cpu() -> Duration {
    stat_cpu("/proc/thread-self/stat").unwrap_or_default()
}

fn status_kb(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets this process's VmHWM to its current RSS (Linux ≥ 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

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

async fn sdk_clients(url: &str, wait: Duration) -> (aws_sdk_sqs::Client, aws_sdk_iam::Client, aws_sdk_eventbridge::Client) {
    // As src/main.rs builds them, with the endpoint and credentials fixed.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    let clients = keywatch::aws::Clients::new(&sdk, wait, "us-east-1");
    (clients.sqs, clients.iam, clients.eventbridge)
}

async fn run_in_process(settings: &Settings, row: &Row, metrics: &metrics_exporter_prometheus::PrometheusHandle) -> Outcome {
    let wait = Duration::from_secs(settings.wait_secs);
    let responder = Responder::start(row.messages, settings.users, wait, settings.event_time);
    let (sqs, iam, events) = sdk_clients(&responder.url, wait).await;
    let queue = SqsQueue::new(sqs, format!("{}/{ACCOUNT}/bench-input", responder.url));
    // As src/main.rs wires it: the per-account IAM rate limiter and retries.
    let inventory = IamInventory::new(iam).with_limits(Arc::new(RateLimiter::new(settings.iam_rate)), RetryPolicy::default());
    let processor = Arc::new(Processor::new(
        inventory,
        EventBridgeSink::new(events, BUS, "keywatch"),
        ProcessorSettings { ..Default::default() },
    ));
    let poll = PollSettings {
        max_messages: row.max_messages,
        wait,
        visibility_timeout: None,
        receivers: row.receivers,
        queue_metrics_interval: None,
    };
    // The admin server too, as in the binary: it runs the metrics upkeep.
    let health = Arc::new(Health::default());
    let admin_stop = CancellationToken::new();
    let admin_listener = admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let admin_task = tokio::spawn(admin::serve(admin_listener, metrics.clone(), health.clone(), admin_stop.clone()));

    let load = Load::start();
    let reset = reset_peak_rss();
    let rss_start = status_kb("/proc/self/status", "VmRSS:");
    let cpu_before = stat_cpu("/proc/self/stat").unwrap_or_default();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(worker::run(queue, processor, poll, health, shutdown.clone()));
    let completed = tokio::time::timeout(settings.row_timeout, responder.shared.done.notified()).await.is_ok();
    shutdown.cancel();
    let _ = worker.await;
    let cpu_after = stat_cpu("/proc/self/stat").unwrap_or_default();
    let other_load = load.others(Duration::ZERO);
    let peak = status_kb("/proc/self/status", "VmHWM:");
    admin_stop.cancel();
    let _ = admin_task.await;
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
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
        let _ = child.wait();
    }
    if !completed {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        eprintln!("keywatch binary stderr:\n{err}");
    }
    let mut out = collect(row, responder, completed, cpu, (None, peak, "keywatch binary alone"));
    out.other_load = other_load;
    out
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
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let metrics = keywatch::telemetry::install_recorder().expect("metrics recorder");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "throughput bench: {} users, wait {} s, IAM rate limit {}, log {}, {} cores ({})",
        settings.users,
        settings.wait_secs,
        if settings.iam_rate > 0.0 { format!("{}/s per account", settings.iam_rate) } else { "off".to_string() },
        if settings.log { "json→sink" } else { "off" },
        cores,
        cpu_model()
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
