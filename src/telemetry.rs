//! Logs: one subscriber, JSON or human-readable, level from settings or `RUST_LOG`.
//!
//! The writer is a parameter so tests can capture or silence output (zero2prod's
//! `get_subscriber`). Logs at info and above never carry patient ids or vital values:
//! where an operator needs to correlate, use [`patient_hash`].

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::settings::{LogFormat, LogSettings};

/// Builds the subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn subscriber<W>(log: &LogSettings, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_writer(sink),
            ),
        ),
    }
}

/// Installs the subscriber for the process (logs go to stderr).
pub fn init(log: &LogSettings) {
    // A second init (tests, demo after run) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(log, std::io::stderr));
}

/// A short, non-reversible tag for a patient id, for logs that need to correlate events
/// of one patient without naming them. Keyed per process, so it cannot be looked up in a
/// table built elsewhere.
pub fn patient_hash(patient_id: &str) -> String {
    use std::sync::OnceLock;
    static KEY: OnceLock<u64> = OnceLock::new();
    let key = *KEY.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ (std::process::id() as u64).rotate_left(32)
    });
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(patient_id.as_bytes(), key);
    format!("p#{:08x}", (h >> 32) as u32)
}
