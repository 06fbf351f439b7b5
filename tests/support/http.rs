//! The service's HTTP listener from a test: the library's own minimal GET
//! ([`vitalwatch::http::get`]) and the tools' Prometheus reader
//! ([`vitalwatch::tools::scrape`]), with blocking and async forms and polling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, DropGuard};
use vitalwatch::pipeline::Status;

pub use vitalwatch::http::Response;
pub use vitalwatch::tools::scrape::{Sample, Scrape};

/// Bound on connecting and on each read of one GET.
const TIMEOUT: Duration = Duration::from_secs(10);

/// GET `path`: the answer, or why there was none.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    vitalwatch::http::get(addr, path, TIMEOUT).map_err(|e| format!("{e:#}"))
}

/// GET `path`: (status code, body text), as a test compares them.
pub fn get_text(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    get(addr, path).map(|r| (r.status, r.text()))
}

/// GET `/metrics`, parsed; panics on anything but a 200 with the exposition.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics").unwrap_or_else(|e| panic!("GET {addr}/metrics: {e}"));
    assert_eq!(r.status, 200, "GET {addr}/metrics: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some(vitalwatch::http::METRICS_CONTENT_TYPE)
    );
    Scrape::parse(&r.text()).unwrap_or_else(|e| panic!("/metrics of {addr}: {e}"))
}

/// [`get`] from async code: on the blocking pool, so that a listener served by the same
/// runtime keeps answering. Panics when nothing answers.
pub async fn get_async(addr: SocketAddr, path: &str) -> Response {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || get(addr, &owned))
        .await
        .expect("GET task")
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// [`scrape`] from async code.
pub async fn scrape_async(addr: SocketAddr) -> Scrape {
    tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("scrape task")
}

/// GETs until `cond` holds or `timeout` passes; returns the last answer.
pub async fn poll_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    cond: impl Fn(&Response) -> bool,
) -> Response {
    let deadline = Instant::now() + timeout;
    loop {
        let r = get_async(addr, path).await;
        if cond(&r) || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrapes until `cond` holds; fails with the last scrape's series (buckets left out)
/// if it never does.
pub async fn poll_scrape(
    addr: SocketAddr,
    timeout: Duration,
    cond: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + timeout;
    loop {
        let s = scrape_async(addr).await;
        if cond(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            let interesting: Vec<&Sample> = s
                .samples
                .iter()
                .filter(|x| !x.name.ends_with("_bucket"))
                .collect();
            panic!("the scrape never met the condition; last scrape: {interesting:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The service's `/metrics`, `/healthz` and `/readyz` for `status` on a free loopback
/// port, served until the guard is dropped.
pub async fn serve(status: Arc<Status>) -> (SocketAddr, DropGuard) {
    let stop = CancellationToken::new();
    let addr = vitalwatch::http::spawn(([127, 0, 0, 1], 0).into(), status, stop.clone())
        .await
        .expect("the HTTP listener");
    (addr, stop.drop_guard())
}
