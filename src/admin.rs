//! Admin: the one HTTP port operators and orchestrators talk to.
//!
//! - `GET /metrics`: Prometheus text exposition.
//! - `GET /healthz`: 200 while the process is alive (liveness).
//! - `GET /readyz`: 503 until the first successful receive from the queue,
//!   200 while working, 503 again once draining at shutdown (readiness), so
//!   that an orchestrator sees a worker that cannot reach its queue.
//!
//! The server is deliberately tiny (HTTP/1.1, one request per connection):
//! its only clients are a scraper and probes. It is bounded against a client
//! that would hold it ([`Limits`]): at most 32 connections at once (one more
//! is closed at once, unanswered), 5 s to send the request head, 5 s to take
//! the whole answer; a connection never lives longer than those together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::health::Health;

/// Binds the admin listener (so that a taken port fails start-up at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// How much of the worker one admin client may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is closed unanswered.
    pub max_connections: usize,
    /// Time a client has to send its request head.
    pub read_timeout: Duration,
    /// Time a client has to take the whole answer.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 32, read_timeout: Duration::from_secs(5), write_timeout: Duration::from_secs(5) }
    }
}

/// Serves the admin endpoints until `shutdown` is cancelled, within the
/// default [`Limits`].
pub async fn serve(listener: TcpListener, metrics: PrometheusHandle, health: Arc<Health>, shutdown: CancellationToken) {
    serve_within(listener, metrics, health, Limits::default(), shutdown).await
}

/// Serves the admin endpoints until `shutdown` is cancelled, within `limits`.
pub async fn serve_within(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // The exporter's histograms need periodic upkeep when it does not run
    // its own listener.
    let upkeep = {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => metrics.run_upkeep(),
                }
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Closed at once: its descriptor is not kept either.
                    debug!(%peer, max = limits.max_connections, "admin connection refused: too many at once");
                    drop(stream);
                    continue;
                };
                let metrics = metrics.clone();
                let health = health.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = respond(stream, &metrics, &health, limits).await {
                        debug!(error = %e, "admin connection failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    upkeep.abort();
}

async fn respond(mut stream: TcpStream, metrics: &PrometheusHandle, health: &Health, limits: Limits) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head (bounded, with a timeout against idle peers).
    let read = tokio::time::timeout(limits.read_timeout, async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if read.is_err() {
        return Ok(());
    }
    read.unwrap()?;
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET", "/readyz") if health.is_ready() => ("200 OK", "text/plain; charset=utf-8", "ready\n".to_string()),
        ("GET", "/readyz") => ("503 Service Unavailable", "text/plain; charset=utf-8", "not ready\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found: try /metrics, /healthz, /readyz\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n".to_string()),
    };
    let response =
        format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    // A client that does not take the answer is dropped, not waited for.
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    written.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client did not take the answer in time")))
}

/// `keywatch healthcheck`: GET `path` on the admin port; true on HTTP 200.
/// For container health checks in images without curl.
pub async fn probe(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await??;
    let host = addr.to_string();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut buf)).await??;
    Ok(buf.starts_with(b"HTTP/1.1 200"))
}
