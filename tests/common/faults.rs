//! A fault-injecting HTTP proxy between the worker and the emulator (test
//! support only, never shipped). It forwards every request to the emulator
//! unless the current [`Fault`] says otherwise, and counts what it did.
//!
//! It speaks just enough HTTP/1.1 for the AWS SDK: one request per
//! connection read by `Content-Length`, the emulator's answer passed back
//! whole, and the connection closed after each answer (the emulator does
//! the same).
//!
//! It also answers Security Hub's `BatchUpdateFindings` itself, which the
//! emulator does not have: every finding processed (or, under
//! [`Fault::UpdatesUnprocessed`], every one unprocessed), each request's
//! JSON body kept in [`FaultProxy::updates`].

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to the requests it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Every other IAM request answered `Throttling` (HTTP 400).
    IamThrottling,
    /// Every `PutEvents` answered HTTP 503.
    PutEventsOutage,
    /// `PutEvents` forwarded, but its answer says the first entry failed
    /// (the event was published: the retry makes a duplicate).
    PutEventsPartial,
    /// Every connection closed without an answer.
    Blackout,
    /// `DeleteMessageBatch` answered with every entry failed, not forwarded.
    DeletesFail,
    /// `GetAccountSummary` forwarded, its answer saying the root user has an
    /// access key (`AccountAccessKeysPresent` 1), which the emulator cannot
    /// make.
    RootKeyPresent,
    /// `ListAccessKeys` forwarded at once, its answer held back for 3 s: a
    /// listing that is older than one another replica starts meanwhile.
    SlowListings,
    /// `BatchUpdateFindings` answered with every finding among the
    /// `UnprocessedFindings`.
    UpdatesUnprocessed,
    /// `UpdateAccessKey` answered `AccessDenied` (as under a service control
    /// policy), not forwarded: the emulator enforces no policy.
    UpdateAccessKeyDenied,
    /// `GetAccessKeyLastUsed` answered `AccessDenied`, not forwarded.
    LastUsedDenied,
}

pub struct FaultProxy {
    pub url: String,
    fault: Arc<Mutex<Fault>>,
    pub injected: Arc<AtomicUsize>,
    /// The body of each `BatchUpdateFindings` request, in order.
    pub updates: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let fault = Arc::new(Mutex::new(Fault::None));
        let injected = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let updates = Arc::new(Mutex::new(Vec::new()));
        let (f, i, s, u) = (fault.clone(), injected.clone(), stop.clone(), updates.clone());
        std::thread::spawn(move || {
            let toggle = Arc::new(AtomicUsize::new(0));
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (f, i, toggle, u) = (f.clone(), i.clone(), toggle.clone(), u.clone());
                        std::thread::spawn(move || {
                            let _ = handle(conn, upstream_port, *f.lock().unwrap(), &i, &toggle, &u);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy { url, fault, injected, updates, stop }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request head and body.
pub fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0usize);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..].to_vec()))
}

pub fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    write!(conn, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// The answer to a `BatchUpdateFindings` request: every identifier
/// processed, or with `unprocessed` every one unprocessed.
fn batch_update_answer(request: &serde_json::Value, unprocessed: bool) -> String {
    let ids: Vec<serde_json::Value> = request["FindingIdentifiers"].as_array().cloned().unwrap_or_default();
    let answer = if unprocessed {
        let failed: Vec<serde_json::Value> = ids
            .into_iter()
            .map(|id| serde_json::json!({"FindingIdentifier": id, "ErrorCode": "FindingNotFound", "ErrorMessage": "fault"}))
            .collect();
        serde_json::json!({"ProcessedFindings": [], "UnprocessedFindings": failed})
    } else {
        serde_json::json!({"ProcessedFindings": ids, "UnprocessedFindings": []})
    };
    answer.to_string()
}

/// An IAM error answer (query protocol).
fn iam_error(conn: &mut TcpStream, status: &str, code: &str, message: &str) -> std::io::Result<()> {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
    );
    respond(conn, status, "text/xml", &body)
}

fn handle(
    mut conn: TcpStream,
    upstream: u16,
    fault: Fault,
    injected: &AtomicUsize,
    toggle: &AtomicUsize,
    updates: &Mutex<Vec<serde_json::Value>>,
) -> std::io::Result<()> {
    if fault == Fault::Blackout {
        injected.fetch_add(1, Ordering::Relaxed);
        return Ok(()); // dropped: the connection closes unanswered
    }
    let (head, body) = read_request(&mut conn)?;
    let target = head.lines().find_map(|l| l.strip_prefix("X-Amz-Target: ").or_else(|| l.strip_prefix("x-amz-target: "))).unwrap_or("");
    let form = String::from_utf8_lossy(&body);
    let is_iam = head.contains("iam/aws4_request") || (form.contains("Action=") && form.contains("Version=2010-05-08"));
    if head.starts_with("PATCH /findings/batchupdate ") {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let unprocessed = fault == Fault::UpdatesUnprocessed;
        if unprocessed {
            injected.fetch_add(1, Ordering::Relaxed);
        }
        let answer = batch_update_answer(&request, unprocessed);
        updates.lock().unwrap().push(request);
        return respond(&mut conn, "200 OK", "application/json", &answer);
    }
    match fault {
        Fault::IamThrottling if is_iam && toggle.fetch_add(1, Ordering::Relaxed) % 2 == 0 => {
            injected.fetch_add(1, Ordering::Relaxed);
            return iam_error(&mut conn, "400 Bad Request", "Throttling", "Rate exceeded");
        }
        Fault::PutEventsOutage if target.ends_with("PutEvents") => {
            injected.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut conn,
                "503 Service Unavailable",
                "application/x-amz-json-1.1",
                r#"{"__type":"ServiceUnavailable","message":"fault"}"#,
            );
        }
        Fault::UpdateAccessKeyDenied if is_iam && form.contains("Action=UpdateAccessKey") => {
            injected.fetch_add(1, Ordering::Relaxed);
            return iam_error(&mut conn, "403 Forbidden", "AccessDenied", "denied by a service control policy");
        }
        Fault::LastUsedDenied if is_iam && form.contains("Action=GetAccessKeyLastUsed") => {
            injected.fetch_add(1, Ordering::Relaxed);
            return iam_error(&mut conn, "403 Forbidden", "AccessDenied", "not allowed");
        }
        Fault::DeletesFail if target.ends_with("DeleteMessageBatch") => {
            injected.fetch_add(1, Ordering::Relaxed);
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let failed: Vec<serde_json::Value> = request["Entries"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .map(|e| serde_json::json!({"Id": e["Id"], "SenderFault": false, "Code": "InternalError", "Message": "fault"}))
                        .collect()
                })
                .unwrap_or_default();
            let answer = serde_json::json!({"Successful": [], "Failed": failed}).to_string();
            return respond(&mut conn, "200 OK", "application/x-amz-json-1.0", &answer);
        }
        _ => {}
    }
    // Forward to the emulator, which answers and closes the connection.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let head = head.replace("Connection: keep-alive", "Connection: close");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if fault == Fault::RootKeyPresent && form.contains("Action=GetAccountSummary") {
        let (from, to): (&[u8], &[u8]) =
            (b"AccountAccessKeysPresent</key><value>0</value>", b"AccountAccessKeysPresent</key><value>1</value>");
        if let Some(at) = find(&answer, from) {
            answer[at..at + from.len()].copy_from_slice(to);
            injected.fetch_add(1, Ordering::Relaxed);
        }
    }
    if fault == Fault::SlowListings && form.contains("Action=ListAccessKeys") {
        injected.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(3));
    }
    if fault == Fault::PutEventsPartial && target.ends_with("PutEvents") {
        if let Some(at) = find(&answer, b"\r\n\r\n") {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&answer[at + 4..]) {
                if let Some(first) = v["Entries"].as_array_mut().and_then(|e| e.first_mut()) {
                    *first = serde_json::json!({"ErrorCode": "InternalFailure", "ErrorMessage": "fault"});
                    v["FailedEntryCount"] = serde_json::json!(1);
                    injected.fetch_add(1, Ordering::Relaxed);
                    return respond(&mut conn, "200 OK", "application/x-amz-json-1.1", &v.to_string());
                }
            }
        }
    }
    conn.write_all(&answer)
}
