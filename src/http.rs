//! The HTTP listener on `http.listen`: `/metrics`, `/healthz`, `/readyz`.
//!
//! Liveness never depends on the broker (a broker outage must not make Kubernetes
//! restart every replica); readiness does, and says why it is not ready. The service
//! keeps this listener up until the pipeline has drained, so the last scrape sees the
//! shutdown and `/readyz` answers 503 while it runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Status;

/// How long the ingest loop may not turn before liveness fails.
pub const STALL: Duration = Duration::from_secs(30);

/// The Prometheus text exposition format version `/metrics` speaks.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the process-wide Prometheus recorder once and returns its handle
/// (see [`crate::metrics::install`]).
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    crate::metrics::install()
}

#[derive(Clone)]
struct AppState {
    status: Arc<Status>,
    metrics: PrometheusHandle,
}

/// The routes, for serving or for calling in-process.
pub(crate) fn router(status: Arc<Status>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", routing::get(render_metrics))
        .route("/healthz", routing::get(healthz))
        .route("/readyz", routing::get(readyz))
        .with_state(AppState { status, metrics })
}

/// Binds `listen` and serves until `shutdown`. Returns the bound address (port 0 picks
/// a free port).
pub async fn spawn(
    listen: SocketAddr,
    status: Arc<Status>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let app = router(status, metrics_handle()?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {listen}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %e, %addr, "the metrics and health listener failed");
        }
    });
    Ok(addr)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        crate::metrics::render_collected(&state.metrics),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.status.liveness(STALL) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.status.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// An answer to [`get`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names as sent, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal blocking HTTP/1.0 GET of `path` on `addr` (the server closes the connection
/// after its answer, so there is no chunking to undo). Connecting and each read are
/// bounded by `timeout`. For the health check, the tools and the tests, which must not
/// pull in an HTTP client.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("nothing answers on {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line in the answer")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}
