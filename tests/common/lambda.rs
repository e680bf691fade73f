//! The Lambda function (`bootstrap`, `lambda` feature) as Lambda runs it:
//! a stand-in for the Lambda runtime API on a loopback port (test support
//! only; the emulator cannot run functions without Docker), which hands
//! out invocations on `GET /2018-06-01/runtime/invocation/next` and takes
//! the function's answers on `POST .../invocation/{id}/response` and
//! `.../error`, and the real binary pointed at it with
//! `AWS_LAMBDA_RUNTIME_API`, killed on drop by pid.

#![cfg(feature = "lambda")]

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{read_request, respond, Moto, Pipeline, FINDINGS_BUS};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    Error(String),
}

/// The runtime API stand-in.
pub struct RuntimeApi {
    pub addr: String,
    invocations: Sender<(String, String, u64)>,
    answers: Mutex<Receiver<(String, Answer)>>,
    /// When the function first asked for an invocation.
    pub first_next: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

struct Served {
    invocations: Mutex<Receiver<(String, String, u64)>>,
    answers: Sender<(String, Answer)>,
    first_next: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (invocations, to_serve) = channel();
        let (answered, answers) = channel();
        let first_next = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let served =
            Arc::new(Served { invocations: Mutex::new(to_serve), answers: answered, first_next: first_next.clone(), stop: stop.clone() });
        std::thread::spawn(move || {
            while !served.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let served = served.clone();
                        std::thread::spawn(move || serve(conn, &served));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RuntimeApi { addr, invocations, answers: Mutex::new(answers), first_next, stop }
    }

    /// Invokes the function with `event`, giving it `timeout` (its
    /// `Lambda-Runtime-Deadline-Ms`), and waits for its answer.
    pub fn invoke(&self, event: &Value, timeout: Duration) -> Answer {
        let id = format!("req-{}", SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos());
        let deadline = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap() + timeout;
        self.invocations.send((id.clone(), event.to_string(), deadline.as_millis() as u64)).unwrap();
        let answers = self.answers.lock().unwrap();
        loop {
            match answers.recv_timeout(timeout + Duration::from_secs(10)) {
                Ok((answered, answer)) if answered == id => return answer,
                Ok(_) => continue,
                Err(e) => panic!("no answer to invocation {id}: {e}"),
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, served: &Served) {
    let Ok((head, body)) = read_request(&mut conn) else { return };
    let line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let body = String::from_utf8_lossy(&body).to_string();
    const BASE: &str = "/2018-06-01/runtime";
    if method == "GET" && path == format!("{BASE}/invocation/next") {
        served.first_next.lock().unwrap().get_or_insert_with(Instant::now);
        let next = loop {
            if served.stop.load(Ordering::Relaxed) {
                return;
            }
            match served.invocations.lock().unwrap().recv_timeout(Duration::from_millis(100)) {
                Ok(next) => break next,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let (id, event, deadline_ms) = next;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
             Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
             Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:keywatch\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{event}",
            event.len()
        );
        return;
    }
    let answer = path.strip_prefix(&format!("{BASE}/invocation/")).and_then(|rest| {
        let (id, what) = rest.split_once('/')?;
        match what {
            "response" => Some((id.to_string(), Answer::Response(serde_json::from_str(&body).unwrap_or(Value::String(body.clone()))))),
            "error" => Some((id.to_string(), Answer::Error(body.clone()))),
            _ => None,
        }
    });
    match answer {
        Some(answer) => {
            let _ = served.answers.send(answer);
            let _ = respond(&mut conn, "202 Accepted", "application/json", r#"{"status":"OK"}"#);
        }
        None => {
            eprintln!("runtime API stand-in: {method} {path} {body}");
            let _ = respond(&mut conn, "404 Not Found", "application/json", "{}");
        }
    }
}

/// The real `bootstrap` binary against the emulator and a [`RuntimeApi`];
/// killed on drop.
pub struct Function {
    pub child: Child,
    pub started: Instant,
    pub log: PathBuf,
    pub stdout: PathBuf,
}

fn temp_path(prefix: &str, suffix: &str) -> PathBuf {
    tempfile::Builder::new().prefix(prefix).suffix(suffix).tempfile().unwrap().into_temp_path().keep().unwrap()
}

impl Function {
    /// The function with the worker's settings, AWS at `endpoint` (the
    /// emulator or a fault proxy in front of it).
    pub fn start(api: &RuntimeApi, endpoint: &str, pipeline: &Pipeline, extra_env: &[(&str, &str)]) -> Function {
        let log = temp_path("keywatch-function-", ".log");
        let stdout = temp_path("keywatch-function-stdout-", ".jsonl");
        let mut env: HashMap<&str, String> = HashMap::from([
            ("AWS_LAMBDA_RUNTIME_API", api.addr.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", "keywatch".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("KEYWATCH_QUEUE_URL", pipeline.queue_url.clone()),
            ("KEYWATCH_FINDINGS_BUS", FINDINGS_BUS.to_string()),
            ("KEYWATCH_LOG", "keywatch=debug,info".into()),
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]);
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start bootstrap");
        Function { child, started, log, stdout }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Standard output's lines so far (the EMF lines, and findings with
    /// the stdout sink).
    pub fn stdout_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stdout).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- keywatch function log ({}) ----\n{}", self.log.display(), self.logs());
        }
    }
}

/// Receives `n` messages off the input queue as an SQS event source
/// mapping does (they stay in flight), as the records of one SQS event.
pub async fn sqs_event(p: &Pipeline, n: usize, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < n && Instant::now() < deadline {
        let out = p
            .sqs
            .receive_message()
            .queue_url(&p.queue_url)
            .max_number_of_messages((n - records.len()).min(10) as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let attributes: serde_json::Map<String, Value> =
                m.attributes().into_iter().flatten().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
            records.push(json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:keywatch-input",
                "awsRegion": "us-east-1",
            }));
        }
    }
    assert_eq!(records.len(), n, "messages on the input queue");
    json!({ "Records": records })
}
