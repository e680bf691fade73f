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
