//! The admin listener on `admin.listen`: CPU profiles of the running service.
//!
//! `GET /debug/pprof/profile?seconds=N` samples every thread for N seconds and answers
//! with a pprof protobuf (`go tool pprof`, `pprof`, Grafana Pyroscope and speedscope read
//! it); `GET /debug/pprof/flamegraph?seconds=N` answers with the same samples drawn as an
//! SVG flame graph. A profile shows code, not data, but it still tells an attacker a lot
//! and costs CPU while it runs: the listener is loopback-only by default (reach it with
//! `kubectl port-forward`) and `admin.listen = ""` turns it off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pprof::protos::Message;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Samples per second per thread. Not a round number, so sampling does not run in
/// lockstep with timers in the code being measured (the pprof default as well).
pub(crate) const FREQUENCY: i32 = 99;
/// Duration when the request names none (the Go tools' default).
pub(crate) const DEFAULT_SECONDS: u64 = 30;
/// Longest profile one request may ask for.
pub(crate) const MAX_SECONDS: u64 = 300;
/// Libraries not to unwind through from the signal handler: unwinding inside them can
/// deadlock (pprof-rs's advice).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// The profiler is process-wide: one profile at a time.
static PROFILING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

/// The routes, for serving or for calling in-process. A profile in progress ends early
/// when `shutdown` is cancelled.
pub(crate) fn router(shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/debug/pprof/profile", get(profile))
        .route("/debug/pprof/flamegraph", get(flamegraph))
        .with_state(shutdown)
}

/// Binds `listen` and serves until `shutdown`. Returns the bound address.
pub async fn spawn(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    if !listen.ip().is_loopback() {
        warn!(%listen, "admin listener on a non-loopback address: anyone who can reach it can take CPU profiles");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {listen} (set it to \"\" to disable the admin listener)"))?;
    let addr = listener.local_addr()?;
    let app = router(shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %e, %addr, "the admin listener failed");
        }
    });
    Ok(addr)
}

async fn profile(
    Query(params): Query<ProfileParams>,
    State(shutdown): State<CancellationToken>,
) -> Response {
    let report = match sample(params.seconds, &shutdown).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let body = report.pprof().map_err(internal).and_then(|p| {
        let mut body = Vec::with_capacity(p.encoded_len());
        p.encode(&mut body).map_err(internal)?;
        Ok(body)
    });
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn flamegraph(
    Query(params): Query<ProfileParams>,
    State(shutdown): State<CancellationToken>,
) -> Response {
    let report = match sample(params.seconds, &shutdown).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut svg = Vec::new();
    match report.flamegraph(&mut svg) {
        Ok(()) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

type Failure = (StatusCode, String);

fn internal(e: impl std::fmt::Display) -> Failure {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot build the profile: {e}\n"),
    )
}

/// Samples the process for the requested time (cut short by shutdown) and resolves the
/// stacks.
async fn sample(
    seconds: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<pprof::Report, Failure> {
    let seconds = seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("seconds must be between 1 and {MAX_SECONDS}, got {seconds}\n"),
        ));
    }
    if PROFILING.swap(true, Ordering::AcqRel) {
        return Err((
            StatusCode::CONFLICT,
            "a profile is already being taken; try again when it is done\n".to_owned(),
        ));
    }
    let _release = Release;
    info!(seconds, "cpu profile started");
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(internal)?;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = shutdown.cancelled() => {}
    }
    // Symbolizing is slow: off the async workers. Samples the signal handler takes
    // meanwhile are dropped (it holds the profiler's lock), so it does not profile itself.
    let report = tokio::task::spawn_blocking(move || {
        let report = guard.report().build();
        drop(guard);
        report
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    info!(seconds, "cpu profile done");
    Ok(report)
}

/// Lets the next profile start when this one ends, however it ends.
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}
