//! The local AWS emulator: a moto server per test on a free loopback port,
//! killed on drop by pid, and an SDK config pointed at it. The moto server
//! comes from the venv that `scripts/python-env.sh` creates; its path is in
//! `KEYWATCH_MOTO_SERVER` (set by `scripts/test.sh`) or `.venv/bin/moto_server`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The environment of a `keywatch run` whose queue and AWS endpoint are a
/// port where nothing listens: it starts, logs its failed calls and is never
/// ready.
pub fn dead_endpoint_env(dead_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("KEYWATCH_QUEUE_URL", format!("http://127.0.0.1:{dead_port}/123456789012/q")),
        ("KEYWATCH_FINDINGS_BUS", "findings".to_string()),
        ("KEYWATCH_WAIT_SECS", "1".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead_port}")),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "x".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// Where the emulator is: `KEYWATCH_MOTO_SERVER` (set by `scripts/test.sh`),
/// else the venv at `.venv`. The venv's Python is beside it.
pub fn moto_server_path() -> PathBuf {
    std::env::var_os("KEYWATCH_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"))
}

fn moto_binary() -> PathBuf {
    let p = moto_server_path();
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

/// An IAM client acting inside `account` (through `AssumeRole`, which the
/// emulator answers for any role).
pub async fn member_iam(moto: &Moto, account: &str) -> aws_sdk_iam::Client {
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config().await);
    let creds = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/keywatch-member"))
        .role_session_name("setup")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_string()),
            None,
            "member",
        ))
        .load()
        .await;
    aws_sdk_iam::Client::new(&config)
}

/// A user with `active` active and `inactive` inactive keys; their ids.
pub async fn seed_user(iam: &aws_sdk_iam::Client, user: &str, active: usize, inactive: usize) -> Vec<String> {
    iam.create_user().user_name(user).send().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..active + inactive {
        let id = iam.create_access_key().user_name(user).send().await.unwrap().access_key.unwrap().access_key_id;
        if i >= active {
            iam.update_access_key().user_name(user).access_key_id(&id).status("Inactive".into()).send().await.unwrap();
        }
        ids.push(id);
    }
    ids
}
