//! Logs: one subscriber, JSON or human-readable, level from settings or `RUST_LOG`.
//!
//! The writer is a parameter so tests can capture or silence output (zero2prod's
//! `get_subscriber`). Logs at info and above never carry patient ids or vital values:
//! where an operator needs to correlate, use [`patient_hash`].

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err(serde::de::Error::custom(format!(
                "\"{s}\" is not a log format: use \"json\" (one JSON object per line) or \"pretty\""
            ))),
        }
    }
}

/// Builds the subscriber with `filter` (a `log.level` the settings validated; `info` if
/// tracing refuses it). `RUST_LOG`, when set, overrides it.
pub(crate) fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    with_filter(filter, format, sink)
}

/// Builds the subscriber with an explicit filter (tests that must not depend on
/// `RUST_LOG`).
pub fn with_filter<W>(
    filter: EnvFilter,
    format: LogFormat,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
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
pub fn init(format: LogFormat, filter: &str) {
    // A second init (tests, demo after run) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr));
}

/// A short, non-reversible tag for a patient id, for logs that need to correlate events
/// of one patient without naming them. Keyed with a random 128-bit SipHash key drawn
/// from the operating system once per process, so it cannot be looked up in a table of
/// hashed ids built elsewhere, and the same patient gets another tag after a restart.
pub(crate) fn patient_hash(patient_id: &str) -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let h = KEY.get_or_init(Default::default).hash_one(patient_id);
    format!("p#{:08x}", (h >> 32) as u32)
}

/// A log sink that keeps what is written to it, to inspect it afterwards (tests check
/// which events were logged and that none of them carries patient data).
#[derive(Debug, Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Everything written so far.
    pub fn contents(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// A condition that comes and goes (a broker unreachable, a sink failing), logged once
/// when it starts and once when it ends rather than on every occurrence: librdkafka
/// reports an unreachable broker many times a second.
#[derive(Debug, Default)]
pub(crate) struct Episode {
    active: std::sync::atomic::AtomicBool,
    occurrences: std::sync::atomic::AtomicU64,
}

impl Episode {
    pub(crate) const fn new() -> Episode {
        Episode {
            active: std::sync::atomic::AtomicBool::new(false),
            occurrences: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records one occurrence. True only for the first of an episode: log that one at
    /// warn, the rest at debug.
    pub(crate) fn occurred(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.occurrences.fetch_add(1, Ordering::Relaxed);
        !self.active.swap(true, Ordering::AcqRel)
    }

    /// Ends the episode, if one was going on: returns how many occurrences it had (log
    /// the recovery then), `None` when there was nothing to end.
    pub(crate) fn cleared(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.active.swap(false, Ordering::AcqRel) {
            Some(self.occurrences.swap(0, Ordering::Relaxed))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let e = Episode::new();
        assert_eq!(e.cleared(), None, "nothing to end yet");
        assert!(e.occurred());
        assert!(!e.occurred());
        assert!(!e.occurred());
        assert_eq!(e.cleared(), Some(3));
        assert_eq!(e.cleared(), None);
        assert!(e.occurred(), "a new episode starts");
        assert_eq!(e.cleared(), Some(1));
    }

    #[test]
    fn capture_keeps_what_the_subscriber_writes() {
        let capture = Capture::new();
        let subscriber = with_filter(EnvFilter::new("info"), LogFormat::Json, capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(partitions = 3, "partitions assigned");
            tracing::debug!("not at info");
        });
        let logged = capture.contents();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        let line: serde_json::Value = serde_json::from_str(logged.trim()).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "partitions assigned");
        assert_eq!(line["fields"]["partitions"], 3);
    }

    #[test]
    fn patient_hash_is_stable_short_and_hides_the_id() {
        let a = patient_hash("P-000123");
        assert_eq!(a, patient_hash("P-000123"));
        assert_ne!(a, patient_hash("P-000124"));
        assert!(a.starts_with("p#") && a.len() == 10, "{a}");
        assert!(!a.contains("000123"));
    }
}
