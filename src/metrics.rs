//! Every metric vitalwatch exports: names, labels and emission in one place.
//!
//! The pipeline calls the small functions and handles below instead of naming metrics
//! itself (vector's `internal_events` pattern). Label values are topic names, partition
//! numbers, rule ids, severities, reason codes and worker numbers: never a patient id or a
//! vital value. Hot-path counters are resolved once into handles ([`PipelineMetrics`]).

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::alert::Severity;
use crate::vitals::DecodeError;

pub const MESSAGES_CONSUMED: &str = "vitalwatch_messages_consumed_total";
pub const MESSAGES_INVALID: &str = "vitalwatch_messages_invalid_total";
pub const ALERTS_EMITTED: &str = "vitalwatch_alerts_emitted_total";
pub const DLQ_PUBLISHED: &str = "vitalwatch_dlq_published_total";
pub const SINK_ERRORS: &str = "vitalwatch_sink_errors_total";
pub const PROCESSING_DURATION: &str = "vitalwatch_processing_duration_seconds";
pub const EVENT_AGE: &str = "vitalwatch_event_age_seconds";
pub const WORKER_QUEUE_DEPTH: &str = "vitalwatch_worker_queue_depth";
pub const INFLIGHT_MESSAGES: &str = "vitalwatch_inflight_messages";
pub const CONSUMER_LAG: &str = "vitalwatch_consumer_lag";
pub const COMMITTED_OFFSET: &str = "vitalwatch_committed_offset";
pub const REBALANCES: &str = "vitalwatch_rebalances_total";
pub const WORKERS: &str = "vitalwatch_workers";
pub const BUILD_INFO: &str = "vitalwatch_build_info";

/// Which producer a sink metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Alerts,
    Dlq,
}

impl SinkKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            SinkKind::Alerts => "alerts",
            SinkKind::Dlq => "dlq",
        }
    }
}

/// Rebalance events, the `event` label of [`REBALANCES`].
#[derive(Debug, Clone, Copy)]
pub enum RebalanceEvent {
    Assign,
    Revoke,
    Lost,
}

impl RebalanceEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            RebalanceEvent::Assign => "assign",
            RebalanceEvent::Revoke => "revoke",
            RebalanceEvent::Lost => "lost",
        }
    }
}

/// Handles for the per-message metrics, resolved once when the pipeline starts.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub consumed: Counter,
    invalid: [Counter; DecodeError::REASONS.len()],
    pub dlq_published: Counter,
    pub processing_duration: Histogram,
    pub event_age: Histogram,
    pub inflight: Gauge,
}

impl PipelineMetrics {
    pub fn new(input_topic: &str) -> Self {
        PipelineMetrics {
            consumed: counter!(MESSAGES_CONSUMED, "topic" => input_topic.to_owned()),
            invalid: DecodeError::REASONS.map(|r| counter!(MESSAGES_INVALID, "reason" => r)),
            dlq_published: counter!(DLQ_PUBLISHED),
            processing_duration: histogram!(PROCESSING_DURATION),
            event_age: histogram!(EVENT_AGE),
            inflight: gauge!(INFLIGHT_MESSAGES),
        }
    }

    pub fn invalid(&self, error: &DecodeError) {
        let reason = error.reason();
        if let Some(i) = DecodeError::REASONS.iter().position(|&r| r == reason) {
            self.invalid[i].increment(1);
        }
    }
}

/// Counter handle for alerts of one rule (resolved per rule at start).
pub fn alerts_emitted(rule: &str, severity: Severity) -> Counter {
    counter!(ALERTS_EMITTED, "rule" => rule.to_owned(), "severity" => severity.as_str())
}

pub fn sink_error(sink: SinkKind) {
    counter!(SINK_ERRORS, "sink" => sink.as_str()).increment(1);
}

pub fn worker_queue_depth(worker: usize) -> Gauge {
    gauge!(WORKER_QUEUE_DEPTH, "worker" => worker.to_string())
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn committed_offset(topic: &str, partition: i32, offset: i64) {
    gauge!(COMMITTED_OFFSET, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(offset as f64);
}

pub fn rebalance(event: RebalanceEvent) {
    counter!(REBALANCES, "event" => event.as_str()).increment(1);
}

pub fn workers(n: usize) {
    gauge!(WORKERS).set(n as f64);
}

pub fn build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
