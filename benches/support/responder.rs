//! An in-process AWS backend that answers at once: a minimal HTTP/1.1
//! responder on 127.0.0.1 (keep-alive, `Content-Length` and chunked bodies)
//! on its own thread and runtime, speaking just enough of three AWS
//! protocols for keywatch's calls:
//! - SQS, awsJson1_0 (`X-Amz-Target: AmazonSQS.*`): `ReceiveMessage` hands out
//!   a preloaded backlog 10 at a time (bodies are generated on receive, so
//!   that the backlog itself costs no memory), `DeleteMessageBatch`,
//!   `GetQueueAttributes`;
//! - IAM, query protocol (form body `Action=ListAccessKeys`): two active keys
//!   for every user, one of them the key the event created;
//!   `GetAccessKeyLastUsed` with a last use for each key; STS
//!   `GetCallerIdentity` (same protocol) for the worker's own account;
//! - EventBridge, awsJson1_1 (`X-Amz-Target: AWSEvents.PutEvents`): every
//!   entry accepted.
//!
//! It counts every operation and notes, per message, when the receive that
//! carried it was answered and when the delete naming it arrived. The
//! throughput benchmark measures keywatch against it; tests use it where
//! the emulator would be the bottleneck.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::procfs::thread_cpu;

pub const ACCOUNT: &str = "123456789012";

/// Operations the responder counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
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

pub struct Backlog {
    pub total: usize,
    pub users: usize,
    /// Next message index to hand out.
    pub next: usize,
    pub sent_at: Vec<Option<Instant>>,
    pub deleted: Vec<bool>,
    pub deleted_count: usize,
    pub overhead: Vec<Duration>,
    pub first_receive: Option<Instant>,
    pub last_delete: Option<Instant>,
    pub calls: BTreeMap<Op, u64>,
    pub put_entries: u64,
    pub failed_findings: u64,
    pub duplicate_deletes: u64,
    /// Every event's `eventTime` (backlog mode); `None`: the receive time.
    pub event_time: Option<String>,
    /// Messages handed out at most this many per second since the given
    /// start (a steady load); `None`: as fast as asked.
    pub pace: Option<(Instant, f64)>,
}

/// Where the events' `eventTime` comes from (`KW_BENCH_EVENT_TIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    Backlog,
    Receive,
}

pub struct Shared {
    pub state: Mutex<Backlog>,
    pub done: Notify,
    pub wait: Duration,
}

impl Shared {
    pub fn new(total: usize, users: usize, wait: Duration, event_time: EventTime) -> Shared {
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
                pace: None,
            }),
            done: Notify::new(),
            wait,
        }
    }

    pub fn count(&self, op: Op) {
        *self.state.lock().unwrap().calls.entry(op).or_default() += 1;
    }
}

pub fn user_name(u: usize) -> String {
    format!("bench-user-{u:06}")
}

pub fn key_id(u: usize, which: char) -> String {
    format!("AKIABENCH{u:08}{which}")
}

pub fn user_index(name: &str) -> Option<usize> {
    name.strip_prefix("bench-user-")?.parse().ok()
}

/// The SQS body of message `i`: an EventBridge envelope carrying the
/// CloudTrail record of an administrator creating a key for a user.
pub fn message_body(i: usize, users: usize, now: &str) -> String {
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

pub struct Request<'a> {
    pub target: Option<String>,
    pub body: &'a [u8],
}

pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; false on EOF.
pub async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.reserve(16 * 1024);
    Ok(sock.read_buf(buf).await? > 0)
}

pub async fn serve_conn(mut sock: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
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

pub fn json_ok(body: String, content_type: &'static str) -> Response {
    Response { status: "200 OK", content_type, body }
}

pub fn form_field<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

pub async fn handle(shared: &Shared, req: Request<'_>) -> Response {
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
                let due = st.pace.map_or(st.total, |(t0, rate)| ((t0.elapsed().as_secs_f64() * rate) as usize).min(st.total));
                let end = (start + max).min(due).max(start);
                st.next = end;
                *st.calls.entry(if end > start { Op::Receive } else { Op::ReceiveEmpty }).or_default() += 1;
                (start..end, st.users, st.event_time.clone())
            };
            if range.is_empty() {
                // Drained, or the next message is not due yet: hold the
                // long poll (briefly when paced), then answer empty.
                let paced = shared.state.lock().unwrap().pace.is_some();
                let hold = if paced { Duration::from_millis(50) } else { Duration::from_secs(2) };
                if !wait.is_zero() {
                    tokio::time::sleep(wait.min(hold)).await;
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
            } else if form_field(&form, "Action") == Some("GetCallerIdentity") {
                // STS speaks the same query protocol: the worker asks once at start.
                shared.count(Op::Other);
                let body = format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
                     <Arn>arn:aws:iam::{ACCOUNT}:user/bench</Arn><UserId>AIDABENCH</UserId><Account>{ACCOUNT}</Account>\
                     </GetCallerIdentityResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
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
pub struct Responder {
    pub url: String,
    pub shared: Arc<Shared>,
    pub stop: Arc<Notify>,
    pub thread: std::thread::JoinHandle<Duration>,
}

impl Responder {
    pub fn start(total: usize, users: usize, wait: Duration, event_time: EventTime) -> Responder {
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
    pub fn stop(self) -> Duration {
        self.stop.notify_one();
        self.thread.join().unwrap()
    }
}
