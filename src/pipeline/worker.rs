//! Evaluation workers: a fixed pool of tasks, each owning a share of the patients.
//!
//! Ingest routes every observation of a patient to the same worker, and a worker handles
//! its queue in order, so one patient's observations are evaluated in the order they
//! were read. A worker publishes the alerts an observation raises without waiting for
//! their delivery; the observation is done when the last alert is acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;
use tokio::sync::mpsc;

use super::durable::Control;
use super::hooks::Hooks;
use super::ingest::Job;
use super::offsets::{Source as TopicSource, Tp};
use super::sink::{Completed, Done, DoneTx, Publisher, Ticket};
use super::status::{Assignment, Status, WorkerProbe};
use super::work::Work;
use crate::alert::{Alert, Source};
use crate::metrics::{self as m, PipelineMetrics};
use crate::rules::live::LiveRules;
use crate::rules::state::{At, Evaluator, Restored, StateLimits, StateRecord};
use crate::rules::{AlertStatus, Event, Severity};
use crate::rules::{News2Rule, RuleSet};

/// What every worker shares.
pub(crate) struct WorkerShared {
    /// The rules in force; a worker picks up a reloaded set between two batches.
    pub(crate) rules: LiveRules,
    /// How much patient state each worker keeps.
    pub(crate) state_limits: StateLimits,
    /// The alert producer (`Publisher::Discard` only in-process, for benchmarks).
    pub(crate) alerts: Publisher,
    pub(crate) done_tx: DoneTx,
    pub(crate) input_topic: String,
    /// `kafka.repartition_topic`, for alerts of records there that name no origin.
    pub(crate) repartition_topic: String,
    pub(crate) metrics: PipelineMetrics,
    /// The partitions this instance owns: patients of others are forgotten.
    pub(crate) assignment: Arc<Assignment>,
    /// Metric handles of the rules in force, built by the first worker to see a set.
    counters: Mutex<Option<Arc<RuleCounters>>>,
    pub(crate) status: Arc<Status>,
    pub(crate) hooks: Hooks,
    /// Durable mode: the producer of the state topic (`kafka.state_topic`).
    pub(crate) state: Option<Publisher>,
    /// The consumer group, named in state records.
    pub(crate) group: Arc<str>,
}

impl WorkerShared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        rules: LiveRules,
        state_limits: StateLimits,
        alerts: Publisher,
        done_tx: DoneTx,
        input_topic: &str,
        metrics: PipelineMetrics,
        status: Arc<Status>,
        hooks: Hooks,
    ) -> Self {
        WorkerShared {
            rules,
            state_limits,
            alerts,
            done_tx,
            input_topic: input_topic.to_owned(),
            repartition_topic: String::new(),
            metrics,
            assignment: Arc::new(Assignment::default()),
            counters: Mutex::new(None),
            status,
            hooks,
            state: None,
            group: Arc::from(""),
        }
    }

    /// The counters of `rules`, built once per rule set for all workers.
    fn counters(&self, rules: &Arc<RuleSet>) -> Arc<RuleCounters> {
        let mut cached = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some(c) if Arc::ptr_eq(&c.rules, rules) => c.clone(),
            _ => {
                let c = Arc::new(RuleCounters::new(rules.clone()));
                *cached = Some(c.clone());
                c
            }
        }
    }
}

/// Metric handles per rule, resolved once per rule set (a lookup per alert would hash
/// the labels every time).
struct RuleCounters {
    rules: Arc<RuleSet>,
    /// `alerts_emitted` by rule index.
    alerts: Vec<Counter>,
    /// `alerts_resolved` by rule index, for rules that emit resolved events.
    resolved: Vec<Option<Counter>>,
    /// NEWS2, (medium, high): alerts, and resolved events (labelled with the same ids).
    news2: Option<([Counter; 2], [Counter; 2])>,
    /// `alerts_suppressed` by rule index, then NEWS2 medium and high; made on first use
    /// (suppression is rare).
    suppressed: Mutex<HashMap<usize, Counter>>,
}

impl RuleCounters {
    fn new(rules: Arc<RuleSet>) -> RuleCounters {
        let alerts = rules
            .rules()
            .iter()
            .map(|r| m::alerts_emitted(&r.id, r.severity.as_str()))
            .collect();
        let resolved = rules
            .rules()
            .iter()
            .map(|r| r.alarm.emit_resolved.then(|| m::alerts_resolved(&r.id)))
            .collect();
        let news2 = rules.news2().map(|_| {
            (
                [
                    m::alerts_emitted(News2Rule::MEDIUM_ID, Severity::Medium.as_str()),
                    m::alerts_emitted(News2Rule::HIGH_ID, Severity::High.as_str()),
                ],
                [
                    m::alerts_resolved(News2Rule::MEDIUM_ID),
                    m::alerts_resolved(News2Rule::HIGH_ID),
                ],
            )
        });
        m::rules_loaded(rules.rule_count());
        RuleCounters {
            rules,
            alerts,
            resolved,
            news2,
            suppressed: Mutex::new(HashMap::new()),
        }
    }
}

impl RuleCounters {
    /// Counts `event` in `vitalwatch_alerts_suppressed_total`.
    fn count_suppressed(&self, event: &Event) {
        let (slot, id) = match event {
            Event::Threshold { rule, .. } => (*rule, self.rules.rules()[*rule].id.as_str()),
            Event::News2 { severity, .. } => (
                self.rules.len() + usize::from(*severity == Severity::High),
                News2Rule::id(*severity),
            ),
        };
        let mut counters = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .entry(slot)
            .or_insert_with(|| m::alerts_suppressed(id))
            .increment(1);
    }

    /// Counts `event` in `vitalwatch_alerts_emitted_total` or, for the end of an
    /// episode, `vitalwatch_alerts_resolved_total`.
    fn count(&self, event: &Event) {
        match event {
            Event::Threshold { rule, .. } => match event.status() {
                AlertStatus::Firing => self.alerts[*rule].increment(1),
                AlertStatus::Resolved => {
                    if let Some(c) = &self.resolved[*rule] {
                        c.increment(1);
                    }
                }
            },
            Event::News2 { severity, .. } => {
                if let Some((emitted, resolved)) = &self.news2 {
                    let by_status = match event.status() {
                        AlertStatus::Firing => emitted,
                        AlertStatus::Resolved => resolved,
                    };
                    by_status[usize::from(*severity == Severity::High)].increment(1);
                }
            }
        }
    }
}

/// A worker's own: its patients' rule state and the handles that go with the rules.
struct Local {
    evaluator: Evaluator,
    counters: Arc<RuleCounters>,
    events: Vec<Event>,
    buf: Vec<u8>,
    /// The worker's monotonic clock (state TTL), from its start.
    started: Instant,
    /// The assignment generation whose partitions the evaluator's patients belong to.
    assignment: u64,
    /// Durable mode: records staged at checkpoints, by checkpoint and partition, until
    /// ingest releases them.
    staged: Vec<(u64, i32, Vec<StateRecord>)>,
    changes: Vec<StateRecord>,
    written: Counter,
    skipped: Counter,
}

pub(crate) async fn run(
    index: usize,
    mut rx: mpsc::Receiver<Job<Work>>,
    shared: Arc<WorkerShared>,
    probe: Arc<WorkerProbe>,
) {
    let depth = m::worker_queue_depth(index);
    let patients = m::patient_states(index);
    let contexts = m::patient_contexts(index);
    let evictions = m::patient_state_evictions();
    let rules = shared.rules.load();
    let mut local = Local {
        counters: shared.counters(&rules),
        evaluator: Evaluator::new(rules, shared.state_limits),
        events: Vec::new(),
        buf: Vec::with_capacity(512),
        started: Instant::now(),
        assignment: 0,
        staged: Vec::new(),
        changes: Vec::new(),
        written: m::state_records_written(),
        skipped: m::state_readings_skipped(),
    };
    local
        .evaluator
        .set_durable(shared.state.as_ref().map(|_| shared.group.clone()));
    while let Some(job) = rx.recv().await {
        let batch = match job {
            Job::Items(batch) => batch,
            Job::Control(control) => {
                handle_control(&shared, &mut local, control).await;
                patients.set(local.evaluator.patients() as f64);
                contexts.set(local.evaluator.contexts() as f64);
                continue;
            }
        };
        let n = batch.len();
        probe.beat(shared.status.ms());
        // A new assignment: forget the patients of partitions that moved away (an empty
        // batch is ingest's nudge to look).
        if let Some((generation, owned)) = shared.assignment.changed_since(local.assignment) {
            local.assignment = generation;
            local.evaluator.retain_owners(|key| owned.contains(&key));
            // Staged records of partitions that moved away are the new owner's business.
            local
                .staged
                .retain(|(_, p, _)| owned.contains(&Tp::input(*p).key()));
        }
        // A reloaded rule set takes effect here, between two batches.
        if !shared.rules.is_current(local.evaluator.rules()) {
            let rules = shared.rules.load();
            local.counters = shared.counters(&rules);
            local.evaluator.set_rules(rules);
        }
        // One clock read per batch: a batch is evaluated within microseconds.
        let now_ms = crate::clock::now_ms();
        let mono_ms = local.started.elapsed().as_millis() as i64;
        local.evaluator.expire(mono_ms);
        let mut quiet = Vec::with_capacity(n);
        for work in batch {
            if let Some(hook) = &shared.hooks.before_evaluate
                && let Some(delay) = hook(&work)
            {
                tokio::time::sleep(delay).await;
            }
            if let Some(done) = evaluate(&shared, &mut local, work, now_ms, mono_ms).await {
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
        let evicted = local.evaluator.take_evictions();
        for (counter, n) in
            evictions
                .iter()
                .zip([evicted.ttl, evicted.capacity, evicted.reassigned])
        {
            if n > 0 {
                counter.increment(n);
            }
        }
        patients.set(local.evaluator.patients() as f64);
        shared.status.evaluated(n);
        let left = probe.evaluated(n, shared.status.ms());
        depth.set(left as f64);
    }
}

/// Evaluates one observation and publishes what it raises. Returns its completion when
/// it raised nothing (the caller reports it with the rest of the batch); otherwise the
/// last acknowledgement reports it.
async fn evaluate(
    shared: &WorkerShared,
    local: &mut Local,
    work: Work,
    now_ms: i64,
    mono_ms: i64,
) -> Option<Done> {
    let age_ms = (now_ms - work.obs.reading.timestamp).max(0);
    shared
        .metrics
        .event_age
        .record(Duration::from_millis(age_ms as u64).as_secs_f64());

    let Local {
        evaluator,
        counters,
        events,
        buf,
        skipped,
        ..
    } = local;
    events.clear();
    let claim = work.done.claim;
    let at = At {
        owner: (claim.tp().key(), work.lineage),
        partition: claim.partition,
        topic: match claim.tp().source {
            TopicSource::Input => 0,
            TopicSource::Repartition => 1,
        },
        offset: work.done.offset,
    };
    if !evaluator.observe_at(&work.obs.patient_id, work.obs.reading, at, mono_ms, events) {
        skipped.increment(1);
        return Some(work.done);
    }
    if events.is_empty() {
        return Some(work.done);
    }
    let ticket = Ticket::new(work.done, events.len() as u32, shared.done_tx.clone());
    let source = Source {
        topic: match work.origin.topic {
            TopicSource::Input => &shared.input_topic,
            TopicSource::Repartition => &shared.repartition_topic,
        },
        partition: work.origin.partition,
        offset: work.origin.offset,
    };
    let rules = &*counters.rules;
    let context = evaluator.context(&work.obs.patient_id);
    for event in events.iter() {
        counters.count(event);
        let alert = Alert::from_event(
            event,
            rules,
            &work.obs.patient_id,
            work.obs.reading,
            source,
            now_ms,
        )
        .under(context, rules, event);
        if alert.suppressed == Some(true) {
            counters.count_suppressed(event);
        }
        buf.clear();
        alert.encode_into(buf);
        shared
            .alerts
            .send(
                None,
                Some(work.obs.patient_id.as_bytes()),
                Some(buf),
                None,
                ticket.clone(),
            )
            .await;
        shared.status.alert_emitted();
        // The patient as a keyed hash: enough to follow one patient's alerts in a debug
        // log, nothing that names them.
        tracing::debug!(
            rule = alert.rule_id,
            status = ?alert.status,
            patient = %crate::telemetry::patient_hash(&work.obs.patient_id),
            partition = alert.source.partition,
            offset = alert.source.offset,
            "alert published"
        );
    }
    None
}

/// Durable mode: one instruction of ingest's about patient state (see `durable`).
async fn handle_control(shared: &WorkerShared, local: &mut Local, control: Control) {
    let wall_ms = crate::clock::now_ms();
    let mono_ms = local.started.elapsed().as_millis() as i64;
    match control {
        Control::Checkpoint(id) => {
            local
                .evaluator
                .take_changes(wall_ms, mono_ms, &mut local.changes);
            local.changes.sort_by_key(|r| r.partition);
            let mut changes = std::mem::take(&mut local.changes).into_iter().peekable();
            while let Some(first) = changes.next() {
                let p = first.partition;
                let mut records = vec![first];
                while let Some(r) = changes.next_if(|r| r.partition == p) {
                    records.push(r);
                }
                local.staged.push((id, p, records));
            }
        }
        Control::Release { id, partitions } => {
            for &p in partitions.iter() {
                let mut records = Vec::new();
                local.staged.retain_mut(|(at, partition, staged)| {
                    if *at <= id && *partition == p {
                        records.append(staged);
                        false
                    } else {
                        true
                    }
                });
                let Some(publisher) = shared.state.as_ref().filter(|_| !records.is_empty()) else {
                    let _ = shared.done_tx.send(Completed::Persisted {
                        checkpoint: id,
                        partition: p,
                    });
                    continue;
                };
                local.written.increment(records.len() as u64);
                let ticket = Ticket::persisted(id, p, records.len() as u32, shared.done_tx.clone());
                for r in &records {
                    publisher
                        .send(
                            Some(p),
                            Some(r.key.as_bytes()),
                            r.value.as_deref(),
                            None,
                            ticket.clone(),
                        )
                        .await;
                }
            }
        }
        Control::Context { partition, records } => {
            for (patient, context) in records {
                local.evaluator.set_context(&patient, partition, context);
            }
        }
        Control::ForgetContexts(p) => local.evaluator.forget_contexts(p),
        Control::Forget(p) => {
            local.evaluator.forget_partition(p);
            local.staged.retain(|(_, partition, _)| *partition != p);
        }
        Control::Restore { partition, records } => {
            let owner = (Tp::input(partition).key(), 0);
            let (mut applied, mut expired, mut tombstones) = (0, 0, 0);
            for (key, value) in records {
                let Some(value) = value else {
                    local.evaluator.forget(&key);
                    tombstones += 1;
                    continue;
                };
                match local
                    .evaluator
                    .restore(&key, &value, partition, owner, wall_ms, mono_ms)
                {
                    Ok(Restored::Applied) => applied += 1,
                    Ok(Restored::Expired) => expired += 1,
                    Err(e) => m::state_records_restored(e.as_str(), 1),
                }
            }
            for (result, n) in [
                ("applied", applied),
                ("expired", expired),
                ("tombstone", tombstones),
            ] {
                if n > 0 {
                    m::state_records_restored(result, n);
                }
            }
        }
    }
}
