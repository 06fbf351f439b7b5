//! Every metric vitalwatch exports: names, labels, buckets and emission in one place.
//!
//! The pipeline calls the small functions and handles below instead of naming metrics
//! itself (vector's `internal_events` pattern). Label values are topic names, partition
//! numbers, rule ids, severities, reason codes and worker numbers: never a patient id or a
//! vital value. Hot-path counters are resolved once into handles ([`PipelineMetrics`]).
//!
//! [`install`] sets up the process-wide Prometheus recorder: real histograms with the
//! buckets below (replicas aggregate them; summaries cannot be), a description for every
//! metric, and every series whose labels are known up front registered at zero, so a
//! dashboard sees `0` rather than "no data" before the first event.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::vitals::DecodeError;

pub(crate) const MESSAGES_CONSUMED: &str = "vitalwatch_messages_consumed_total";
pub(crate) const MESSAGES_INVALID: &str = "vitalwatch_messages_invalid_total";
pub(crate) const ALERTS_EMITTED: &str = "vitalwatch_alerts_emitted_total";
pub(crate) const DLQ_PUBLISHED: &str = "vitalwatch_dlq_published_total";
pub(crate) const SINK_ERRORS: &str = "vitalwatch_sink_errors_total";
pub const PROCESSING_DURATION: &str = "vitalwatch_processing_duration_seconds";
pub(crate) const EVENT_AGE: &str = "vitalwatch_event_age_seconds";
pub const WORKER_QUEUE_DEPTH: &str = "vitalwatch_worker_queue_depth";
pub(crate) const INFLIGHT_MESSAGES: &str = "vitalwatch_inflight_messages";
pub(crate) const CONSUMER_LAG: &str = "vitalwatch_consumer_lag";
pub(crate) const COMMITTED_OFFSET: &str = "vitalwatch_committed_offset";
pub(crate) const REBALANCES: &str = "vitalwatch_rebalances_total";
pub(crate) const WORKERS: &str = "vitalwatch_workers";
pub(crate) const BUILD_INFO: &str = "vitalwatch_build_info";
// Beyond the original contract's table (docs/architecture.md, "Additions to the contract").
pub(crate) const ALERTS_RESOLVED: &str = "vitalwatch_alerts_resolved_total";
pub(crate) const RULES_RELOADS: &str = "vitalwatch_rules_reloads_total";
pub(crate) const RULES_LOADED: &str = "vitalwatch_rules_loaded";
pub(crate) const RULES_FILE_REJECTED: &str = "vitalwatch_rules_file_rejected";
pub(crate) const PATIENT_STATES: &str = "vitalwatch_patient_states";
pub(crate) const PATIENT_STATE_EVICTIONS: &str = "vitalwatch_patient_state_evictions_total";
pub(crate) const MESSAGES_MISPLACED: &str = "vitalwatch_messages_misplaced_total";
pub(crate) const ASSIGNED_PARTITIONS: &str = "vitalwatch_assigned_partitions";
pub(crate) const COMMIT_ERRORS: &str = "vitalwatch_commit_errors_total";
pub(crate) const STATE_RESTORES: &str = "vitalwatch_state_restores_total";
pub(crate) const STATE_RECORDS_RESTORED: &str = "vitalwatch_state_records_restored_total";
pub(crate) const STATE_RECORDS_WRITTEN: &str = "vitalwatch_state_records_written_total";
pub(crate) const STATE_READINGS_SKIPPED: &str = "vitalwatch_state_readings_skipped_total";
pub(crate) const CONTEXT_RECORDS: &str = "vitalwatch_context_records_total";
pub(crate) const CONTEXT_CATCH_UPS: &str = "vitalwatch_context_catch_ups_total";
pub(crate) const PATIENT_CONTEXTS: &str = "vitalwatch_patient_contexts";
pub(crate) const ALERTS_SUPPRESSED: &str = "vitalwatch_alerts_suppressed_total";

/// The `result` label values of [`CONTEXT_RECORDS`].
pub(crate) const CONTEXT_RESULTS: [&str; 3] = ["applied", "reset", "bad"];

/// The `reason` label values of [`MESSAGES_MISPLACED`] (`pipeline::repartition` says what
/// each means).
pub(crate) const MISPLACED_REASONS: [&str; 3] = ["no_key", "other_key", "other_partition"];

/// A Prometheus metric type, as written on the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: what the contract in design.md lists, plus its help text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub(crate) help: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// The metrics of the original contract, in its order.
pub const CATALOGUE: [MetricDef; 14] = [
    def(
        MESSAGES_CONSUMED,
        Kind::Counter,
        &["topic"],
        "Messages read, from the input topic and from the repartition topic.",
    ),
    def(
        MESSAGES_INVALID,
        Kind::Counter,
        &["reason"],
        "Messages that failed validation, by DLQ reason code.",
    ),
    def(
        ALERTS_EMITTED,
        Kind::Counter,
        &["rule", "severity"],
        "Alerts handed to the alert producer, by rule and severity.",
    ),
    def(
        DLQ_PUBLISHED,
        Kind::Counter,
        &[],
        "Dead letters acknowledged by the broker.",
    ),
    def(
        SINK_ERRORS,
        Kind::Counter,
        &["sink"],
        "Failed alert or dead-letter publishes (each is retried, never dropped).",
    ),
    def(
        PROCESSING_DURATION,
        Kind::Histogram,
        &[],
        "Time from reading a message to its being done (alerts or dead letter acknowledged).",
    ),
    def(
        EVENT_AGE,
        Kind::Histogram,
        &[],
        "Age of an observation when evaluated: now minus its timestamp.",
    ),
    def(
        WORKER_QUEUE_DEPTH,
        Kind::Gauge,
        &["worker"],
        "Work queued for one evaluation worker.",
    ),
    def(
        INFLIGHT_MESSAGES,
        Kind::Gauge,
        &[],
        "Messages read but not yet done (their offsets cannot be committed yet).",
    ),
    def(
        CONSUMER_LAG,
        Kind::Gauge,
        &["topic", "partition"],
        "Messages between the committed offset and the log end, per partition assigned here.",
    ),
    def(
        COMMITTED_OFFSET,
        Kind::Gauge,
        &["topic", "partition"],
        "Last offset committed for a partition assigned here (the next one to read after a restart).",
    ),
    def(
        REBALANCES,
        Kind::Counter,
        &["event"],
        "Consumer-group rebalance events: assign, revoke, lost.",
    ),
    def(WORKERS, Kind::Gauge, &[], "Evaluation workers configured."),
    def(
        BUILD_INFO,
        Kind::Gauge,
        &["version"],
        "Always 1; the version label says which build is running.",
    ),
];

/// Metrics the clinical rules and operations added after the design's table was written.
pub const RULE_STATE_METRICS: [MetricDef; 17] = [
    def(
        ALERTS_RESOLVED,
        Kind::Counter,
        &["rule"],
        "Resolved events published for alerts that cleared (rules with emit_resolved).",
    ),
    def(
        RULES_RELOADS,
        Kind::Counter,
        &["result"],
        "Rules-file reloads: applied, or rejected (the rules in force stay).",
    ),
    def(
        RULES_LOADED,
        Kind::Gauge,
        &[],
        "Rules in force: threshold rules, and the NEWS2 score as one.",
    ),
    def(
        RULES_FILE_REJECTED,
        Kind::Gauge,
        &[],
        "1 while the rules file on disk was rejected and older rules are in force.",
    ),
    def(
        PATIENT_STATES,
        Kind::Gauge,
        &["worker"],
        "Patients whose rule state a worker holds.",
    ),
    def(
        STATE_RESTORES,
        Kind::Counter,
        &["outcome"],
        "Partition state restores from kafka.state_topic: complete, timeout (went live with what was read), failed (went live with no state).",
    ),
    def(
        STATE_RECORDS_RESTORED,
        Kind::Counter,
        &["result"],
        "State records read back: applied, tombstone, expired (older than the state TTL), or refused (invalid, version, key).",
    ),
    def(
        STATE_RECORDS_WRITTEN,
        Kind::Counter,
        &[],
        "Patient state records (and tombstones) written to kafka.state_topic, at most one per changed patient per checkpoint.",
    ),
    def(
        STATE_READINGS_SKIPPED,
        Kind::Counter,
        &[],
        "Readings read again (after a crash or a rewind) that the patient's saved state already reflects: not counted twice.",
    ),
    def(
        CONTEXT_RECORDS,
        Kind::Counter,
        &["result"],
        "Patient context records read from kafka.context_topic: applied, reset (a tombstone: back to the defaults), bad (dead-lettered as bad_context; the previous context stays).",
    ),
    def(
        CONTEXT_CATCH_UPS,
        Kind::Counter,
        &["outcome"],
        "Newly assigned partitions whose patient context was read to its end before their readings: complete, or incomplete (timed out or failed; went live with what was read).",
    ),
    def(
        PATIENT_CONTEXTS,
        Kind::Gauge,
        &["worker"],
        "Patients with a context (kafka.context_topic) a worker holds.",
    ),
    def(
        ALERTS_SUPPRESSED,
        Kind::Counter,
        &["rule"],
        "Alerts published while their patient's context suppressed them (marked suppressed, with the reason); also counted in vitalwatch_alerts_emitted_total.",
    ),
    def(
        PATIENT_STATE_EVICTIONS,
        Kind::Counter,
        &["reason"],
        "Patient states dropped: ttl (no data), capacity (worker full), reassigned (partition moved).",
    ),
    def(
        MESSAGES_MISPLACED,
        Kind::Counter,
        &["reason"],
        "Valid input not on its patient's partition: no_key, other_key, other_partition (re-keyed through the repartition topic when it is on).",
    ),
    def(
        ASSIGNED_PARTITIONS,
        Kind::Gauge,
        &["topic"],
        "Partitions assigned to this instance, per topic.",
    ),
    def(
        COMMIT_ERRORS,
        Kind::Counter,
        &[],
        "Offset commits that failed (each is retried by the next; finished work may be read again).",
    ),
];

/// Buckets of [`PROCESSING_DURATION`]: a healthy message is done in milliseconds (one
/// broker round trip); seconds mean a slow or failing sink, minutes an outage.
pub(crate) const PROCESSING_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Buckets of [`EVENT_AGE`]: bedside feeds arrive within a second, wearables and ePRO
/// uploads can be minutes to hours old; the top buckets separate "late" from "backlog".
pub(crate) const EVENT_AGE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0,
    86400.0,
];

/// How often histogram samples are folded into buckets. The exporter keeps every raw
/// sample until then: at 350 000 messages/s and two samples per message, 5 s of them
/// were 30 MiB of resident memory (`vitalwatch bench`); 250 ms is under 2 MiB.
const UPKEEP_EVERY: Duration = Duration::from_millis(250);

/// The recorder configuration: real histograms for both timing metrics.
pub(crate) fn recorder_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PROCESSING_DURATION.to_owned()),
            PROCESSING_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(EVENT_AGE.to_owned()), EVENT_AGE_BUCKETS)
}

/// Installs the process-wide Prometheus recorder once and returns its handle; later calls
/// return the same handle. Metrics recorded before the first call are lost, so the
/// service calls this before it starts the pipeline.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = recorder_builder()
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| anyhow::anyhow!("cannot install the Prometheus recorder: {e}"))?;
    register_all();
    // Without an exporter task nobody runs upkeep: do it here so histogram samples do
    // not pile up between scrapes.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("vw-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the metrics upkeep thread: {e}"))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Describes every metric and registers, at zero, the series whose labels are fixed.
/// Series labelled by topic, partition, worker or rule appear when the pipeline starts
/// (and lag and committed offsets once librdkafka reports them).
fn register_all() {
    // Lag and committed offsets are rendered from the partition table, with their own
    // HELP and TYPE lines.
    let collected = [CONSUMER_LAG, COMMITTED_OFFSET];
    for m in CATALOGUE
        .iter()
        .chain(&RULE_STATE_METRICS)
        .filter(|m| !collected.contains(&m.name))
    {
        let unit = match m.kind {
            Kind::Histogram => Some(Unit::Seconds),
            _ => None,
        };
        match (m.kind, unit) {
            (Kind::Counter, _) => describe_counter!(m.name, m.help),
            (Kind::Gauge, _) => describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => describe_histogram!(m.name, m.help),
        }
    }
    for reason in DecodeError::REASONS {
        counter!(MESSAGES_INVALID, "reason" => reason).absolute(0);
    }
    counter!(DLQ_PUBLISHED).absolute(0);
    counter!(COMMIT_ERRORS).absolute(0);
    for outcome in RESTORE_OUTCOMES {
        counter!(STATE_RESTORES, "outcome" => outcome).absolute(0);
    }
    counter!(STATE_RECORDS_WRITTEN).absolute(0);
    for result in CONTEXT_RESULTS {
        counter!(CONTEXT_RECORDS, "result" => result).absolute(0);
    }
    for outcome in ["complete", "incomplete"] {
        counter!(CONTEXT_CATCH_UPS, "outcome" => outcome).absolute(0);
    }
    counter!(STATE_READINGS_SKIPPED).absolute(0);
    for sink in [
        SinkKind::Alerts,
        SinkKind::Dlq,
        SinkKind::Repartition,
        SinkKind::State,
    ] {
        counter!(SINK_ERRORS, "sink" => sink.as_str()).absolute(0);
    }
    for reason in MISPLACED_REASONS {
        counter!(MESSAGES_MISPLACED, "reason" => reason).absolute(0);
    }
    process_collector().describe();
    for event in [
        RebalanceEvent::Assign,
        RebalanceEvent::Revoke,
        RebalanceEvent::Lost,
    ] {
        counter!(REBALANCES, "event" => event.as_str()).absolute(0);
    }
    // Registering is enough: an empty histogram renders with zero counts.
    let _ = histogram!(PROCESSING_DURATION);
    let _ = histogram!(EVENT_AGE);
    gauge!(INFLIGHT_MESSAGES).set(0.0);
    gauge!(WORKERS).set(0.0);
    build_info();
}

/// Which producer a sink metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkKind {
    Alerts,
    Dlq,
    /// Copies of misplaced observations for the repartition topic.
    Repartition,
    /// Patient state records for the state topic.
    State,
}

impl SinkKind {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            SinkKind::Alerts => "alerts",
            SinkKind::Dlq => "dlq",
            SinkKind::Repartition => "repartition",
            SinkKind::State => "state",
        }
    }
}

/// The standard `process_*` metrics (CPU seconds, resident and virtual memory, open file
/// descriptors, threads, start time), as every Prometheus client library exports them.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Everything that is read when scraped rather than recorded when it happens, as
/// Prometheus text to append to the recorder's: the `process_*` metrics (refreshed
/// here) and the per-partition gauges of the partitions assigned now.
pub fn render_collected(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    let mut out = handle.render();
    partitions().render(&mut out);
    out
}

/// Lag and committed offset of the partitions assigned here. Rendered at each scrape
/// from this table instead of kept in the recorder, which cannot forget a series: a
/// partition given up in a rebalance disappears from `/metrics` instead of showing its
/// last committed offset for ever (and tripping a "commits stuck" alert).
#[derive(Default)]
struct PartitionTable {
    rows: Mutex<PartitionRows>,
}

/// (topic, partition) → (lag, committed offset), each once known.
type PartitionRows = BTreeMap<(String, i32), (Option<i64>, Option<i64>)>;

fn partitions() -> &'static PartitionTable {
    static TABLE: OnceLock<PartitionTable> = OnceLock::new();
    TABLE.get_or_init(PartitionTable::default)
}

impl PartitionTable {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<(String, i32), (Option<i64>, Option<i64>)>) -> R,
    ) -> R {
        f(&mut self.rows.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        self.with(|rows| {
            for (name, pick) in [(CONSUMER_LAG, 0usize), (COMMITTED_OFFSET, 1usize)] {
                let help = CATALOGUE
                    .iter()
                    .find(|m| m.name == name)
                    .map_or("", |m| m.help);
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for ((topic, partition), (lag, committed)) in rows.iter() {
                    let value = if pick == 0 { lag } else { committed };
                    if let Some(v) = value {
                        let _ = writeln!(
                            out,
                            "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {v}"
                        );
                    }
                }
            }
        });
    }
}

/// Rebalance events, the `event` label of [`REBALANCES`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum RebalanceEvent {
    Assign,
    Revoke,
    Lost,
}

impl RebalanceEvent {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            RebalanceEvent::Assign => "assign",
            RebalanceEvent::Revoke => "revoke",
            RebalanceEvent::Lost => "lost",
        }
    }
}

/// Handles for the per-message metrics, resolved once when the pipeline starts.
#[derive(Clone)]
pub(crate) struct PipelineMetrics {
    /// Messages read from the input topic.
    pub(crate) consumed_input: Counter,
    /// Messages read from the repartition topic (the input's counter when it is off).
    pub(crate) consumed_repartition: Counter,
    misplaced: [Counter; MISPLACED_REASONS.len()],
    invalid: [Counter; DecodeError::REASONS.len()],
    pub(crate) dlq_published: Counter,
    pub(crate) processing_duration: Histogram,
    pub(crate) event_age: Histogram,
    pub(crate) inflight: Gauge,
}

impl PipelineMetrics {
    pub(crate) fn new(input_topic: &str, repartition_topic: Option<&str>) -> Self {
        let input = counter!(MESSAGES_CONSUMED, "topic" => input_topic.to_owned());
        PipelineMetrics {
            consumed_input: input.clone(),
            consumed_repartition: repartition_topic.map_or(
                input,
                |t| counter!(MESSAGES_CONSUMED, "topic" => t.to_owned()),
            ),
            misplaced: MISPLACED_REASONS.map(|r| counter!(MESSAGES_MISPLACED, "reason" => r)),
            invalid: DecodeError::REASONS.map(|r| counter!(MESSAGES_INVALID, "reason" => r)),
            dlq_published: counter!(DLQ_PUBLISHED),
            processing_duration: histogram!(PROCESSING_DURATION),
            event_age: histogram!(EVENT_AGE),
            inflight: gauge!(INFLIGHT_MESSAGES),
        }
    }

    /// An observation not on its patient's partition, by its `reason` label (one of
    /// [`MISPLACED_REASONS`]).
    pub(crate) fn misplaced(&self, reason: &str) {
        if let Some(i) = MISPLACED_REASONS.iter().position(|&r| r == reason) {
            self.misplaced[i].increment(1);
        }
    }

    pub(crate) fn invalid(&self, error: &DecodeError) {
        let reason = error.reason();
        if let Some(i) = DecodeError::REASONS.iter().position(|&r| r == reason) {
            self.invalid[i].increment(1);
        }
    }
}

/// Counter handle for alerts of one rule and severity (`low`, `medium`, `high`), resolved
/// per rule at start.
pub(crate) fn alerts_emitted(rule: &str, severity: &'static str) -> Counter {
    counter!(ALERTS_EMITTED, "rule" => rule.to_owned(), "severity" => severity)
}

pub(crate) fn sink_error(sink: SinkKind) {
    counter!(SINK_ERRORS, "sink" => sink.as_str()).increment(1);
}

pub(crate) fn worker_queue_depth(worker: usize) -> Gauge {
    gauge!(WORKER_QUEUE_DEPTH, "worker" => worker.to_string())
}

/// Lag of one partition from librdkafka's statistics (callers skip its `-1`, "unknown").
/// Only partitions assigned here are shown (statistics may still mention others).
pub(crate) fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    partitions().with(|rows| {
        if let Some(row) = rows.get_mut(&(topic.to_owned(), partition)) {
            row.0 = Some(lag);
        }
    });
}

/// The partitions assigned here after a rebalance: their lag and committed offset are
/// shown, and those of partitions given up leave `/metrics`, so that summing over
/// replicas counts each partition once, at its owner. Called at each assignment rather
/// than at revocation: an eager rebalance revokes everything and assigns most of it back,
/// and a partition kept keeps its last committed offset.
pub(crate) fn partitions_assigned(assigned: &[(&str, i32)]) {
    partitions().with(|rows| {
        rows.retain(|(topic, p), _| assigned.contains(&(topic.as_str(), *p)));
        for &(topic, p) in assigned {
            rows.entry((topic.to_owned(), p)).or_default();
        }
    });
}

/// A successful commit of `partition` (shown while it is assigned here).
pub(crate) fn committed_offset(topic: &str, partition: i32, offset: i64) {
    partitions().with(|rows| {
        if let Some(row) = rows.get_mut(&(topic.to_owned(), partition)) {
            row.1 = Some(offset);
        }
    });
}

/// An offset commit failed.
pub(crate) fn commit_error() {
    counter!(COMMIT_ERRORS).increment(1);
}

/// How many partitions of `topic` are assigned here.
pub(crate) fn assigned_partitions(topic: &str, n: usize) {
    gauge!(ASSIGNED_PARTITIONS, "topic" => topic.to_owned()).set(n as f64);
}

pub(crate) fn rebalance(event: RebalanceEvent) {
    counter!(REBALANCES, "event" => event.as_str()).increment(1);
}

pub(crate) fn workers(n: usize) {
    gauge!(WORKERS).set(n as f64);
}

pub(crate) fn build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for result in ["applied", "rejected"] {
        counter!(RULES_RELOADS, "result" => result).absolute(0);
    }
    gauge!(RULES_FILE_REJECTED).set(0.0);
    for reason in EVICTION_REASONS {
        counter!(PATIENT_STATE_EVICTIONS, "reason" => reason).absolute(0);
    }
}

/// The `reason` label values of [`PATIENT_STATE_EVICTIONS`].
pub(crate) const EVICTION_REASONS: [&str; 3] = ["ttl", "capacity", "reassigned"];

/// Counter handle for resolved events of one rule.
pub(crate) fn alerts_resolved(rule: &str) -> Counter {
    counter!(ALERTS_RESOLVED, "rule" => rule.to_owned())
}

/// A rules-file reload, applied or rejected, and the rules in force after it.
pub(crate) fn rules_reloaded(applied: bool, rules_in_force: usize) {
    let result = if applied { "applied" } else { "rejected" };
    counter!(RULES_RELOADS, "result" => result).increment(1);
    rules_loaded(rules_in_force);
}

/// Whether the rules file on disk is one that was rejected.
pub(crate) fn rules_file_rejected(rejected: bool) {
    gauge!(RULES_FILE_REJECTED).set(if rejected { 1.0 } else { 0.0 });
}

pub(crate) fn rules_loaded(rules_in_force: usize) {
    gauge!(RULES_LOADED).set(rules_in_force as f64);
}

/// How a partition's state restore ended.
pub(crate) const RESTORE_OUTCOMES: [&str; 3] = ["complete", "timeout", "failed"];

pub(crate) fn state_restore(outcome: &'static str) {
    counter!(STATE_RESTORES, "outcome" => outcome).increment(1);
}

pub(crate) fn state_records_restored(result: &'static str, n: u64) {
    counter!(STATE_RECORDS_RESTORED, "result" => result).increment(n);
}

pub(crate) fn context_records(result: &'static str, n: u64) {
    counter!(CONTEXT_RECORDS, "result" => result).increment(n);
}

pub(crate) fn context_catch_up(complete: bool) {
    let outcome = if complete { "complete" } else { "incomplete" };
    counter!(CONTEXT_CATCH_UPS, "outcome" => outcome).increment(1);
}

pub(crate) fn patient_contexts(worker: usize) -> Gauge {
    gauge!(PATIENT_CONTEXTS, "worker" => worker.to_string())
}

pub(crate) fn alerts_suppressed(rule: &str) -> Counter {
    counter!(ALERTS_SUPPRESSED, "rule" => rule.to_owned())
}

pub(crate) fn state_records_written() -> Counter {
    counter!(STATE_RECORDS_WRITTEN)
}

pub(crate) fn state_readings_skipped() -> Counter {
    counter!(STATE_READINGS_SKIPPED)
}

pub(crate) fn patient_states(worker: usize) -> Gauge {
    gauge!(PATIENT_STATES, "worker" => worker.to_string())
}

/// Eviction counters by reason, in [`EVICTION_REASONS`] order.
pub(crate) fn patient_state_evictions() -> [Counter; 3] {
    EVICTION_REASONS.map(|reason| counter!(PATIENT_STATE_EVICTIONS, "reason" => reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_follow_prometheus_conventions() {
        let all = || CATALOGUE.iter().chain(&RULE_STATE_METRICS);
        let mut names: Vec<&str> = all().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().count(), "duplicate metric name");
        for m in CATALOGUE.iter().chain(&RULE_STATE_METRICS) {
            assert!(m.name.starts_with("vitalwatch_"), "{}", m.name);
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}: counters and only counters end in _total",
                m.name
            );
            if m.kind == Kind::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
            for label in m.labels {
                assert!(!label.contains("patient"), "{}: no patient label", m.name);
            }
        }
    }

    #[test]
    fn buckets_are_increasing() {
        for b in [PROCESSING_BUCKETS, EVENT_AGE_BUCKETS] {
            assert!(b.len() >= 10);
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
