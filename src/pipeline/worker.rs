//! Evaluation workers: a fixed pool of tasks, each owning a share of the patients.
//!
//! Ingest routes every observation of a patient to the same worker, and a worker handles
//! its queue in order, so one patient's observations are evaluated in the order they
//! were read. A worker publishes the alerts an observation raises without waiting for
//! their delivery; the observation is done when the last alert is acknowledged.

use std::borrow::Cow;
use std::sync::Arc;

use compact_str::CompactString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::Counter;
use tokio::sync::mpsc;

use super::offsets::Claim;
use super::sink::{Completed, Done, DoneTx, Publisher, Ticket};
use super::{Hooks, Status, WorkerProbe};
use crate::alert::{Alert, Source, alert_id};
use crate::metrics::{self as m, PipelineMetrics};
use crate::rules::RuleSet;
use crate::vitals::{Metric, Observation};

/// One valid observation on its way to evaluation.
#[derive(Debug)]
pub struct Work {
    pub done: Done,
    pub obs: Reading,
}

/// What evaluation needs of an observation. The patient id is stored inline when it is
/// short (up to 24 bytes, as ids usually are): allocating it on the ingest thread and
/// freeing it on a worker's cost ~110 ns of the ~850 ns ingest spends per message.
#[derive(Debug, Clone)]
pub struct Reading {
    pub patient_id: CompactString,
    pub metric: Metric,
    pub value: f64,
    pub timestamp: i64,
}

impl Reading {
    pub fn new(obs: &Observation<'_>) -> Reading {
        Reading {
            patient_id: CompactString::new(&obs.patient_id),
            metric: obs.metric,
            value: obs.value,
            timestamp: obs.timestamp,
        }
    }

    /// The observation the rules look at (optional fields left out).
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            patient_id: Cow::Borrowed(self.patient_id.as_str()),
            metric: self.metric,
            value: self.value,
            timestamp: self.timestamp,
            unit: None,
            device_id: None,
            site_id: None,
        }
    }
}

impl Work {
    pub fn claim(&self) -> Claim {
        self.done.claim
    }
}

/// What every worker shares.
pub struct WorkerShared {
    pub rules: Arc<RuleSet>,
    /// The alert producer (`Publisher::Discard` only in-process, for benchmarks).
    pub alerts: Publisher,
    pub done_tx: DoneTx,
    pub input_topic: String,
    pub metrics: PipelineMetrics,
    /// One counter per rule, by rule index.
    pub alert_counters: Vec<Counter>,
    pub status: Arc<Status>,
    pub hooks: Hooks,
}

impl WorkerShared {
    pub fn new(
        rules: Arc<RuleSet>,
        alerts: Publisher,
        done_tx: DoneTx,
        input_topic: &str,
        metrics: PipelineMetrics,
        status: Arc<Status>,
        hooks: Hooks,
    ) -> Self {
        let alert_counters = rules
            .rules()
            .iter()
            .map(|r| m::alerts_emitted(&r.id, r.severity))
            .collect();
        WorkerShared {
            rules,
            alerts,
            done_tx,
            input_topic: input_topic.to_owned(),
            metrics,
            alert_counters,
            status,
            hooks,
        }
    }
}

pub async fn run(
    index: usize,
    mut rx: mpsc::Receiver<Vec<Work>>,
    shared: Arc<WorkerShared>,
    probe: Arc<WorkerProbe>,
) {
    let depth = m::worker_queue_depth(index);
    let mut buf = Vec::with_capacity(512);
    let mut fired = Vec::new();
    while let Some(batch) = rx.recv().await {
        let n = batch.len();
        probe.beat(shared.status.ms());
        // One clock read per batch: a batch is evaluated within microseconds.
        let now_ms = now_ms();
        let mut quiet = Vec::with_capacity(n);
        for work in batch {
            if let Some(hook) = &shared.hooks.before_evaluate
                && let Some(delay) = hook(&work)
            {
                tokio::time::sleep(delay).await;
            }
            if let Some(done) = evaluate(&shared, work, now_ms, &mut fired, &mut buf).await {
                quiet.push(done);
            }
        }
        // Messages that raised nothing are done now: one completion for all of them.
        if !quiet.is_empty() {
            let now = Instant::now();
            for done in &quiet {
                shared
                    .metrics
                    .processing_duration
                    .record(now.saturating_duration_since(done.received).as_secs_f64());
            }
            let _ = shared.done_tx.send(Completed::Evaluated(quiet));
        }
        shared.status.evaluated(n);
        let left = probe.evaluated(n, shared.status.ms());
        depth.set(left as f64);
    }
}

/// Evaluates one observation and publishes its alerts. Returns its completion when it
/// raised none (the caller reports it with the rest of the batch); otherwise the last
/// alert's acknowledgement reports it.
async fn evaluate(
    shared: &WorkerShared,
    work: Work,
    now_ms: i64,
    fired: &mut Vec<usize>,
    buf: &mut Vec<u8>,
) -> Option<Done> {
    let age_ms = (now_ms - work.obs.timestamp).max(0);
    shared
        .metrics
        .event_age
        .record(Duration::from_millis(age_ms as u64).as_secs_f64());

    fired.clear();
    fired.extend(
        shared
            .rules
            .evaluate_indexed(&work.obs.observation())
            .map(|(i, _)| i),
    );
    if fired.is_empty() {
        return Some(work.done);
    }
    let ticket = Ticket::new(work.done, fired.len() as u32, shared.done_tx.clone());
    let source = Source {
        topic: &shared.input_topic,
        partition: work.done.claim.partition,
        offset: work.done.offset,
    };
    for &i in fired.iter() {
        let rule = &shared.rules.rules()[i];
        let alert = Alert {
            alert_id: alert_id(&source, &rule.id),
            patient_id: &work.obs.patient_id,
            rule_id: &rule.id,
            severity: rule.severity,
            metric: rule.metric,
            value: work.obs.value,
            threshold: rule.condition.threshold(),
            observed_at: work.obs.timestamp,
            emitted_at: now_ms,
            source,
        };
        buf.clear();
        alert.encode_into(buf);
        shared
            .alerts
            .send(
                Some(work.obs.patient_id.as_bytes()),
                Some(buf),
                None,
                ticket.clone(),
            )
            .await;
        shared.alert_counters[i].increment(1);
        shared.status.alert_emitted();
    }
    None
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
