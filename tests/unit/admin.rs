//! The admin port: `/healthz` while alive, `/readyz` 503 until the first
//! successful receive and again while draining, `/metrics` in Prometheus text.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{dead_endpoint_env, free_port, http_get};
use keywatch::admin;
use keywatch::health::Health;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn readiness_follows_the_worker_and_drain() {
    let port = free_port();
    let listener = admin::bind(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let health = Arc::new(Health::default());
    let stop = CancellationToken::new();
    let server = tokio::spawn(admin::serve(listener, handle, health.clone(), stop.clone()));

    let get = |path: &'static str| tokio::task::spawn_blocking(move || http_get(port, path).expect("admin answers"));
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    assert_eq!(get("/readyz").await.unwrap().0, 503, "not ready before the first receive");
    health.set_ready();
    assert_eq!(get("/readyz").await.unwrap().0, 200);
    health.set_draining();
    assert_eq!(get("/readyz").await.unwrap().0, 503, "not ready while draining");
    assert_eq!(get("/healthz").await.unwrap().0, 200, "still alive while draining");
    let (status, body) = get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.is_empty() || body.contains('#') || body.contains("keywatch"), "{body}");
    assert_eq!(get("/nope").await.unwrap().0, 404);

    // `keywatch healthcheck` probes the same endpoints.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(admin::probe(addr, "/healthz").await.unwrap());
    assert!(!admin::probe(addr, "/readyz").await.unwrap());

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").unwrap();
}

#[test]
fn a_worker_that_cannot_reach_its_queue_is_alive_but_not_ready() {
    let admin_port = free_port();
    let dead_port = free_port(); // nothing listens there
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .arg("run")
        .env_clear()
        .envs(dead_endpoint_env(dead_port))
        .env("KEYWATCH_METRICS_ADDR", format!("127.0.0.1:{admin_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let (Some((h, _)), Some((r, _))) = (http_get(admin_port, "/healthz"), http_get(admin_port, "/readyz")) {
            seen = Some((h, r));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give the receive loop time to fail a few times, then look again.
    std::thread::sleep(Duration::from_secs(2));
    let again = http_get(admin_port, "/readyz").map(|(s, _)| s);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, Some((200, 503)));
    assert_eq!(again, Some(503));
}

/// A client that asks for /metrics and never reads holds its connection no
/// longer than the write timeout, and while the connections are all taken
/// one more is closed unanswered.
#[tokio::test]
async fn a_client_that_does_not_read_holds_the_port_only_until_the_write_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let listener = admin::bind(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    // An answer of 16 MiB: more than the socket buffers take in.
    let big = "x".repeat(1 << 20);
    metrics::with_local_recorder(&recorder, || {
        for i in 0..16 {
            metrics::counter!("keywatch_test_total", "n" => i.to_string(), "padding" => big.clone()).increment(1);
        }
    });
    let limits = admin::Limits { max_connections: 1, read_timeout: Duration::from_secs(2), write_timeout: Duration::from_millis(300) };
    let stop = CancellationToken::new();
    let server = tokio::spawn(admin::serve_within(listener, recorder.handle(), Arc::new(Health::default()), limits, stop.clone()));

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut holder = socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    holder.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), refused.read_to_end(&mut answer)).await.expect("closed at once");
    assert!(answer.is_empty(), "answered beyond the cap: {:?}", String::from_utf8_lossy(&answer[..answer.len().min(40)]));

    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = tokio::task::spawn_blocking(move || http_get(port, "/healthz")).await.unwrap();
    assert_eq!(after.map(|(s, _)| s), Some(200), "the holder was dropped after the write timeout, freeing its slot");
    drop(holder);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").unwrap();
}
