//! Ingest: the consumer thread. Reads, decodes, routes, tracks offsets, handles rebalances.
//!
//! One OS thread owns the consumer and everything that decides offsets: the
//! [`OffsetTracker`], the outgoing batches and the completion channel. Rebalance
//! callbacks run on this thread too (inside `poll`), so a revoke can wait for the
//! partition's in-flight work and commit it without any lock being contended.
//!
//! Backpressure: when a worker's queue is full, ingest stops reading and waits. If the
//! wait outlasts [`PAUSE_AFTER`] (a stalled alert sink, say), it pauses its partitions and
//! keeps polling, so the group never sees it exceed `max.poll.interval.ms`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::commit;
use super::context_feed::{ContextFeed, FeedEvent};
use super::durable::{Control, Durable, Event as RestoreEvent};
use super::offsets::{Claim, OffsetTracker, Source, Tp};
use super::record::Record;
use super::repartition::{self, Misplaced, Partitioner, Route};
use super::sink::{Completed, Done, DoneKind};
use super::status::{Assignment, Status, WorkerProbe};
use super::work::{Observed, Origin, Work};
use crate::clock::Clock;
use crate::deadletter;
use crate::metrics::{self as m, PipelineMetrics, RebalanceEvent};
use crate::rules::context as patient_context;
use crate::rules::live::LiveRules;
use crate::telemetry::Episode;
use crate::vitals::{DecodeError, DecodeLimits, decode_value};

/// Messages per batch handed to a worker channel. Each hand-over may wake a parked worker
/// thread (~5 µs); 256 makes that ~20 ns a message. A partial batch still goes as soon as
/// the consumer has nothing more to give, so a larger batch adds no latency.
pub const BATCH: usize = 256;
/// How long a full queue is waited on before partitions are paused.
pub(crate) const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// Poll timeout when idle: bounds how late a shutdown request is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// At most one warning per this interval about misplaced input (counted in a metric
/// meanwhile).
const MISPLACED_WARN_EVERY: Duration = Duration::from_secs(600);

/// A message on its way to another topic: an invalid one to the dead-letter topic, or a
/// misplaced one's copy to its patient's home partition of the repartition topic.
pub(crate) struct Outgoing {
    pub(crate) done: Done,
    pub(crate) key: Option<Vec<u8>>,
    /// `None` for a tombstone (null value), kept as such.
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) headers: OwnedHeaders,
    /// The partition to write to; `None` lets the producer choose.
    pub(crate) partition: Option<i32>,
}

/// The topics ingest reads, and where misplaced observations go.
pub(crate) struct Routing {
    pub(crate) input_topic: String,
    /// `kafka.repartition_topic` with the outbox of its producer task; `None` when off.
    pub(crate) repartition: Option<(String, Outbox<Outgoing>)>,
    /// `kafka.input_partitioner`.
    pub(crate) partitioner: Partitioner,
}

impl Routing {
    /// The input topic alone (repartitioning off).
    pub(crate) fn input_only(input_topic: &str) -> Routing {
        Routing {
            input_topic: input_topic.to_owned(),
            repartition: None,
            partitioner: Partitioner::Murmur2,
        }
    }
}

/// What a bounded channel of ingest's carries: a batch of items, or (to a worker) an
/// instruction about patient state, in order with the batches around it.
#[derive(Debug)]
pub(crate) enum Job<T> {
    Items(Vec<T>),
    Control(Control),
}

/// A bounded channel, the batch being filled for it, and what could not be handed over
/// yet (in order).
pub(crate) struct Outbox<T> {
    tx: Option<mpsc::Sender<Job<T>>>,
    batch: Vec<T>,
    /// Jobs that found the channel full, oldest first; `batch` goes after them.
    queued: VecDeque<Job<T>>,
    max_batch: usize,
    /// The receiving worker's queue counter, when the receiver is a worker.
    probe: Option<Arc<WorkerProbe>>,
}

impl<T> Outbox<T> {
    pub(crate) fn new(
        tx: mpsc::Sender<Job<T>>,
        max_batch: usize,
        probe: Option<Arc<WorkerProbe>>,
    ) -> Self {
        Outbox {
            tx: Some(tx),
            batch: Vec::with_capacity(max_batch),
            queued: VecDeque::new(),
            max_batch,
            probe,
        }
    }

    fn is_full(&self) -> bool {
        self.batch.len() >= self.max_batch
    }

    fn has_waiting(&self) -> bool {
        !self.batch.is_empty() || !self.queued.is_empty()
    }

    /// Queues `control` after everything pushed so far.
    pub(crate) fn push_control(&mut self, control: Control) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_batch));
            self.queued.push_back(Job::Items(batch));
        }
        self.queued.push_back(Job::Control(control));
    }

    /// Hands one job over if the channel has room; gives it back otherwise.
    fn send(&mut self, job: Job<T>) -> Result<(), Job<T>> {
        let Some(tx) = &self.tx else {
            return Err(job);
        };
        let n = match &job {
            Job::Items(items) => items.len(),
            Job::Control(_) => 0,
        };
        match tx.try_send(job) {
            Ok(()) => {
                if let Some(probe) = &self.probe
                    && n > 0
                {
                    probe.enqueued(n);
                }
                Ok(())
            }
            Err(TrySendError::Full(job)) | Err(TrySendError::Closed(job)) => Err(job),
        }
    }

    /// Hands over what waits, in order, while the channel has room. True when nothing is
    /// left waiting.
    fn flush(&mut self) -> bool {
        while let Some(job) = self.queued.pop_front() {
            if let Err(job) = self.send(job) {
                self.queued.push_front(job);
                return false;
            }
        }
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_batch));
        match self.send(Job::Items(batch)) {
            Ok(()) => true,
            Err(Job::Items(batch)) => {
                self.batch = batch;
                false
            }
            Err(job) => {
                self.queued.push_back(job);
                false
            }
        }
    }

    /// Drops items not yet handed over that `keep` refuses.
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.batch.retain(&mut keep);
        for job in &mut self.queued {
            if let Job::Items(items) = job {
                items.retain(&mut keep);
            }
        }
    }

    fn close(&mut self) {
        self.tx = None;
    }

    /// Sends an empty batch if the channel has room: wakes the receiver without work.
    fn nudge(&mut self) {
        if let Some(tx) = &self.tx
            && self.queued.is_empty()
        {
            let _ = tx.try_send(Job::Items(Vec::new()));
        }
    }
}

/// Everything the ingest thread decides with: the router (decode, route, batch), the
/// offset tracker and the completion channel. Locked only by that thread: by the main loop
/// between polls and by rebalance callbacks inside a poll. Nothing here but `store` and
/// `revoke` needs a consumer, so [`super::inprocess`] drives the same state without Kafka.
pub(crate) struct IngestState {
    pub(crate) tracker: OffsetTracker,
    pub(crate) workers: Vec<Outbox<Work>>,
    pub(crate) dlq: Outbox<Outgoing>,
    /// Copies of misplaced observations for the repartition topic (`None`: off).
    pub(crate) forward: Option<Outbox<Outgoing>>,
    input_topic: String,
    repartition_topic: Option<String>,
    /// Each patient's home partition; its partition count is learnt at each assignment.
    route: Route,
    /// Misplaced input since the last warning about it, and when that was.
    misplaced_unwarned: u64,
    misplaced_warned: Option<Instant>,
    pub(crate) done_rx: mpsc::UnboundedReceiver<Completed>,
    pub(crate) metrics: PipelineMetrics,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) limits: DecodeLimits,
    pub(crate) paused: bool,
    /// Set once shutdown has drained: a revoke during close must not wait again.
    pub(crate) closing: bool,
    last_store: Instant,
    last_shadow_refresh: Instant,
    clock: Clock,
    /// Durable patient state (`kafka.state_topic`); `None`: memory only.
    pub(crate) durable: Option<Durable>,
    /// Durable mode: checkpoint cuts persisted everywhere, to store for commit.
    to_store: Vec<(Tp, i64)>,
    /// Durable mode: the offsets last stored for commit, per partition.
    stored: std::collections::BTreeMap<Tp, i64>,
    /// Input partitions whose restore or context catch-up ended since the last `store`,
    /// to resume unless the other still holds them.
    to_resume: Vec<i32>,
    /// Patient context (`kafka.context_topic`) and the rules its records are checked
    /// against; `None`: off.
    pub(crate) contexts: Option<(ContextFeed, LiveRules)>,
}

pub struct IngestContext {
    state: Mutex<IngestState>,
    /// Consume and client errors come many times a second while a broker is
    /// unreachable: logged when they start and when they stop.
    broker_errors: Episode,
    /// The input topic missing on the brokers, logged the same way.
    missing_topic: Episode,
    input_topic: String,
    repartition_topic: Option<String>,
    status: Arc<Status>,
    /// Bound on how long a revoke waits for in-flight work of its partitions.
    drain_timeout: Duration,
    /// The partitions assigned here, for the workers (they forget patients of partitions
    /// that moved away).
    assignment: Arc<Assignment>,
}

impl IngestContext {
    /// The consumer's context around the router `state`.
    pub(crate) fn new(
        state: IngestState,
        status: Arc<Status>,
        drain_timeout: Duration,
        assignment: Arc<Assignment>,
    ) -> Self {
        IngestContext {
            input_topic: state.input_topic.clone(),
            repartition_topic: state.repartition_topic.clone(),
            state: Mutex::new(state),
            broker_errors: Episode::new(),
            missing_topic: Episode::new(),
            status,
            drain_timeout,
            assignment,
        }
    }

    fn state(&self) -> MutexGuard<'_, IngestState> {
        // Only the ingest thread locks; a poisoned lock means it panicked mid-update, and
        // the tracker may be inconsistent: stop rather than commit from it.
        match self.state.lock() {
            Ok(g) => g,
            Err(_) => panic!("ingest state poisoned by an earlier panic"),
        }
    }

    /// The partitions of `tpl` that vitalwatch reads (input partitions the group handed
    /// out), each with its repartition shadow when repartitioning is on.
    fn with_shadows(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        let mut v: Vec<Tp> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.input_topic)
            .map(|e| Tp::input(e.partition()))
            .collect();
        if self.repartition_topic.is_some() {
            let shadows: Vec<Tp> = v.iter().map(|tp| tp.shadow()).collect();
            v.extend(shadows);
        }
        v.sort_unstable();
        v
    }

    /// `tps` as a librdkafka list (offsets unset: committed, or auto.offset.reset).
    fn list(&self, tps: &[Tp]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::with_capacity(tps.len());
        for tp in tps {
            tpl.add_partition(self.topic(tp.source), tp.partition);
        }
        tpl
    }

    fn topic(&self, source: Source) -> &str {
        match (source, &self.repartition_topic) {
            (Source::Repartition, Some(t)) => t,
            _ => &self.input_topic,
        }
    }

    fn assigned(&self, consumer: &BaseConsumer<Self>, tps: &[Tp]) {
        let mut st = self.state();
        for &tp in tps {
            let claim = st.tracker.assign(tp);
            if tp.source == Source::Input
                && let Some(d) = &mut st.durable
            {
                // Read nothing of it until its patients' state is back.
                d.begin_restore(tp.partition, claim);
                st.tell_workers(|| Control::Forget(tp.partition));
            }
            if tp.source == Source::Input
                && let Some((feed, _)) = &mut st.contexts
            {
                // Nor until its patients' context is read to its end.
                feed.begin(tp.partition);
                st.tell_workers(|| Control::ForgetContexts(tp.partition));
            }
        }
        if (st.durable.is_some() || st.contexts.is_some())
            && let Err(e) = consumer.pause(&self.list(tps))
        {
            warn!(error = %e, "cannot pause newly assigned partitions for their state restore or context catch-up");
        }
        // Re-keying, and the check that a context record is on its patient's home
        // partition, need the input's partition count.
        if self.repartition_topic.is_some() || st.contexts.is_some() {
            st.refresh_partition_count(consumer, &self.input_topic);
        }
        if st.paused
            && let Err(e) = consumer.pause(&self.list(tps))
        {
            warn!(error = %e, "cannot pause newly assigned partitions");
        }
        m::rebalance(RebalanceEvent::Assign);
        self.after_change(&st);
        // Only an assignment tells the workers which partitions stay: between an eager
        // revoke and its assignment everything looks gone, and most of it comes back.
        let owned: Vec<Tp> = st.tracker.assigned().collect();
        self.assignment.set(owned.iter().map(|tp| tp.key()));
        let shown: Vec<(&str, i32)> = owned
            .iter()
            .map(|tp| (self.topic(tp.source), tp.partition))
            .collect();
        m::partitions_assigned(&shown);
        st.tick_workers();
        let input: Vec<i32> = tps
            .iter()
            .filter(|tp| tp.source == Source::Input)
            .map(|tp| tp.partition)
            .collect();
        let assigned = st
            .tracker
            .assigned()
            .filter(|tp| tp.source == Source::Input)
            .count();
        if assigned > 0 {
            self.topic_seen();
        }
        info!(partitions = ?input, assigned, "partitions assigned");
    }

    /// What the rest of the process sees of the assignment: readiness and the partition
    /// gauges.
    fn after_change(&self, st: &IngestState) {
        let tps: Vec<Tp> = st.tracker.assigned().collect();
        let input = tps.iter().filter(|tp| tp.source == Source::Input).count();
        self.status.set_assigned(input);
        m::assigned_partitions(&self.input_topic, input);
        if let Some(t) = &self.repartition_topic {
            m::assigned_partitions(t, tps.len() - input);
        }
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, stats: Statistics) {
        for topic in std::iter::once(&self.input_topic).chain(&self.repartition_topic) {
            let Some(t) = stats.topics.get(topic) else {
                continue;
            };
            for (&partition, p) in &t.partitions {
                // -1: the internal "unassigned" partition, or lag not known yet.
                if partition >= 0 && p.consumer_lag >= 0 {
                    m::consumer_lag(topic, partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.consume_error(&error, reason);
    }
}

impl IngestContext {
    /// A consume or client error, logged once per episode: a missing topic as what it
    /// is (and readiness says so), anything else as a broker that is unreachable or
    /// failing.
    fn consume_error(&self, error: &KafkaError, reason: &str) {
        let code = match error {
            KafkaError::Global(c) | KafkaError::MessageConsumption(c) => Some(*c),
            _ => None,
        };
        if code == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            self.status.set_input_missing(true);
            if self.missing_topic.occurred() {
                warn!(%error, reason, input = %self.input_topic, "a topic vitalwatch reads does not exist on the brokers (create it, or fix kafka.input_topic / kafka.repartition_topic); waiting for it");
            } else {
                debug!(%error, reason, "consumer error");
            }
            return;
        }
        if self.broker_errors.occurred() {
            warn!(%error, reason, "consumer errors: broker unreachable or failing; retrying (logged again when it recovers)");
        } else {
            debug!(%error, reason, "consumer error");
        }
    }

    /// A message arrived, or partitions were assigned: the topic exists after all.
    fn topic_seen(&self) {
        self.status.set_input_missing(false);
        if self.missing_topic.cleared().is_some() {
            info!("the topics vitalwatch reads exist again");
        }
    }
}

impl ConsumerContext for IngestContext {
    /// librdkafka's rebalance callback. The default one (`pre_rebalance`, assign,
    /// `post_rebalance`) is replaced so that every input partition the group assigns or
    /// revokes brings its repartition shadow along: the two are always owned together
    /// (module docs of [`super::repartition`]). Works alike for the eager and the
    /// cooperative protocol; only the input topic is subscribed, so the group's
    /// assignor never sees the shadows.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        // Once the group handle has terminated it answers no assign, unassign or protocol
        // request (each would wait forever, librdkafka issue 4884) and owns nothing: a
        // rebalance event still queued from before the close only updates the books.
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assign && consumer.closed() {
            debug!("assignment after the consumer closed: ignored");
            return;
        }
        let tps = self.with_shadows(tpl);
        let list = self.list(&tps);
        if assign {
            let done = if cooperative(consumer) {
                consumer.incremental_assign(&list)
            } else {
                consumer.assign(&list)
            };
            match done {
                Ok(()) => self.assigned(consumer, &tps),
                // The group waits for the assign call; nothing is consumed from these.
                Err(e) => error!(error = %e, "cannot take the assigned partitions"),
            }
            return;
        }
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            warn!(error = ?err, "rebalance failed; letting go of every partition");
        }
        {
            let lost = consumer.assignment_lost();
            let mut st = self.state();
            st.revoke(consumer, self, &tps, lost, self.drain_timeout, &self.status);
            self.after_change(&st);
        }
        if consumer.closed() {
            debug!("revoke after the consumer closed: nothing to hand back");
            return;
        }
        let done = if cooperative(consumer) {
            consumer.incremental_unassign(&list)
        } else {
            consumer.unassign()
        };
        if let Err(e) = done {
            error!(error = %e, "cannot let go of the revoked partitions");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        commit::committed(result, offsets);
    }
}

impl IngestState {
    /// A state with no partition assigned. `runtime` runs the workers; the ingest thread
    /// blocks on it (never from inside it) to wait for room or completions.
    pub(crate) fn new(
        workers: Vec<Outbox<Work>>,
        dlq: Outbox<Outgoing>,
        routing: Routing,
        done_rx: mpsc::UnboundedReceiver<Completed>,
        metrics: PipelineMetrics,
        limits: DecodeLimits,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let (repartition_topic, forward) = match routing.repartition {
            Some((topic, outbox)) => (Some(topic), Some(outbox)),
            None => (None, None),
        };
        IngestState {
            tracker: OffsetTracker::new(),
            workers,
            dlq,
            forward,
            input_topic: routing.input_topic,
            repartition_topic,
            route: Route {
                partitioner: routing.partitioner,
                partitions: 0,
            },
            misplaced_unwarned: 0,
            misplaced_warned: None,
            done_rx,
            metrics,
            runtime,
            limits,
            paused: false,
            closing: false,
            last_store: Instant::now(),
            last_shadow_refresh: Instant::now(),
            clock: Clock::new(),
            durable: None,
            to_store: Vec::new(),
            stored: std::collections::BTreeMap::new(),
            to_resume: Vec::new(),
            contexts: None,
        }
    }

    /// Whether input partition `p` is held paused: its patients' state is being
    /// restored, or its patient context read to its end.
    fn is_held(&self, p: i32) -> bool {
        self.durable.as_ref().is_some_and(|d| d.is_restoring(p))
            || self
                .contexts
                .as_ref()
                .is_some_and(|(f, _)| f.is_catching_up(p))
    }

    /// Patient context: applies what the context thread read (good records to the
    /// patients' workers, bad ones to the DLQ) and notes the partitions caught up (for
    /// `store` to resume).
    fn context_turn(&mut self) {
        let Some((feed, rules)) = &mut self.contexts else {
            return;
        };
        let events = feed.take_events();
        if events.is_empty() {
            return;
        }
        let topic = feed.topic().to_owned();
        let rules = rules.load();
        let workers = self.workers.len();
        for event in events {
            let (partition, records) = match event {
                FeedEvent::CaughtUp { partition } => {
                    self.to_resume.push(partition);
                    continue;
                }
                FeedEvent::Records { partition, records } => (partition, records),
            };
            let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
            let (mut applied, mut reset) = (0, 0);
            for r in records {
                let parsed =
                    patient_context::parse(r.key.as_deref(), r.value.as_deref(), r.offset, &rules)
                        .map_err(|e| e.to_string())
                        .and_then(|(patient, context)| match self.route.home(&patient) {
                            Some(home) if home != partition => Err(format!(
                                "the record is on partition {partition} of the context topic, but its patient's home is partition {home} of the input topic: write it keyed by patient id with the input's partitioner"
                            )),
                            _ => Ok((patient, context)),
                        });
                match parsed {
                    Ok((patient, context)) => {
                        if context.is_some() {
                            applied += 1;
                        } else {
                            reset += 1;
                        }
                        per_worker[route(&patient, workers)].push((patient, context));
                    }
                    Err(message) => {
                        m::context_records("bad", 1);
                        let from = deadletter::From {
                            topic: &topic,
                            partition,
                            offset: r.offset,
                            timestamp: r.timestamp,
                        };
                        warn!(
                            partition,
                            offset = r.offset,
                            reason = patient_context::REASON,
                            "patient context record refused: dead-lettered, the patient's previous context stays in force"
                        );
                        self.dlq.batch.push(Outgoing {
                            done: Done {
                                claim: Claim {
                                    source: Source::Input,
                                    partition,
                                    epoch: u64::MAX,
                                },
                                offset: r.offset,
                                received: self.clock.now,
                                kind: DoneKind::ContextDeadLettered,
                            },
                            key: r.key,
                            payload: r.value,
                            headers: deadletter::refused(from, patient_context::REASON, &message),
                            partition: None,
                        });
                    }
                }
            }
            for (result, n) in [("applied", applied), ("reset", reset)] {
                if n > 0 {
                    m::context_records(result, n);
                }
            }
            for (w, records) in per_worker.into_iter().enumerate() {
                if !records.is_empty() {
                    self.workers[w].push_control(Control::Context { partition, records });
                }
            }
        }
        self.flush_all();
    }

    /// Queues `control` for every worker, behind what each was handed so far.
    fn tell_workers(&mut self, control: impl Fn() -> Control) {
        for w in &mut self.workers {
            w.push_control(control());
        }
    }

    /// Durable mode: routes restored records, notes the partitions whose restore ended
    /// (for `store` to resume), takes a checkpoint when one is due, and releases what is
    /// done.
    fn durable_turn(&mut self, due: bool) {
        let Some(d) = &mut self.durable else {
            return;
        };
        let mut ended = Vec::new();
        let events = d.take_events();
        let workers = self.workers.len();
        for event in events {
            match event {
                RestoreEvent::Records {
                    partition, records, ..
                } => {
                    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
                    for r in records {
                        per_worker[route(&r.0, workers)].push(r);
                    }
                    for (w, records) in per_worker.into_iter().enumerate() {
                        if !records.is_empty() {
                            self.workers[w].push_control(Control::Restore { partition, records });
                        }
                    }
                }
                RestoreEvent::Ended { partition, .. } => ended.push(partition),
            }
        }
        // Resumed by the next `store`, whichever loop took the event (a revoke's final
        // checkpoint waits here too).
        self.to_resume.extend(ended);
        let Some(d) = &mut self.durable else {
            return;
        };
        let checkpoint = if due {
            d.checkpoint(&self.tracker, None, false)
        } else {
            None
        };
        let releases = d.releases(&self.tracker);
        if let Some(id) = checkpoint {
            self.tell_workers(|| Control::Checkpoint(id));
        }
        for (id, partitions) in releases {
            self.tell_workers(|| Control::Release {
                id,
                partitions: partitions.clone(),
            });
        }
        self.flush_all();
    }

    /// Durable mode: a final checkpoint of input partitions `partitions` (all assigned
    /// when `None`), whose work is done, waited for until `deadline`. True when it is
    /// persisted.
    fn final_checkpoint(
        &mut self,
        partitions: Option<&[i32]>,
        deadline: Instant,
        status: &Status,
    ) -> bool {
        let Some(d) = &mut self.durable else {
            return true;
        };
        let ps: Vec<i32> = match partitions {
            Some(p) => p.to_vec(),
            None => self
                .tracker
                .assigned()
                .filter(|tp| tp.source == Source::Input)
                .map(|tp| tp.partition)
                .collect(),
        };
        if let Some(id) = d.checkpoint(&self.tracker, Some(&ps), true) {
            self.tell_workers(|| Control::Checkpoint(id));
        }
        loop {
            self.durable_turn(false);
            let settled = self.durable.as_ref().is_none_or(|d| d.settled(&ps));
            let now = Instant::now();
            if settled || now >= deadline {
                return settled;
            }
            status.ingest_beat_at(now);
            if !self.flush_all() {
                self.wait_capacity(Duration::from_millis(10), status);
            } else {
                self.wait_done((deadline - now).min(Duration::from_millis(20)), status);
            }
        }
    }

    /// The topic of `source`.
    fn topic(&self, source: Source) -> &str {
        match (source, &self.repartition_topic) {
            (Source::Repartition, Some(t)) => t,
            _ => &self.input_topic,
        }
    }

    /// Learns the input topic's partition count (each patient's home depends on it).
    /// Kept when the brokers do not answer: a partition count changes only when an
    /// operator adds partitions, which also triggers a rebalance.
    fn refresh_partition_count<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        input_topic: &str,
    ) {
        match consumer.fetch_metadata(Some(input_topic), Duration::from_secs(5)) {
            Ok(md) => {
                let n = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == input_topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len() as i32);
                if n > 0 && n != self.route.partitions {
                    if self.route.partitions > 0 {
                        warn!(
                            before = self.route.partitions,
                            now = n,
                            "the input topic's partition count changed: patients' home partitions move with it"
                        );
                    }
                    self.route.partitions = n;
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the input topic's partition count; keeping the last one known")
            }
        }
        if self.route.partitions == 0 {
            warn!(
                "the input topic's partition count is unknown: observations not on their patient's partition are evaluated where they are read, not re-keyed, until it is known"
            );
        }
    }

    /// Wakes every worker with an empty batch, so that one whose queue is quiet still
    /// looks at a new assignment (and forgets patients of partitions that moved away).
    fn tick_workers(&mut self) {
        for w in &mut self.workers {
            w.nudge();
        }
    }

    /// Reads the clock once for everything the next message needs (its receive time,
    /// the decoder's "now", the liveness beat, the store cadence).
    pub(super) fn tick(&mut self) {
        self.clock.tick();
    }

    /// Applies every completion that arrived. Returns how many channel items.
    pub(super) fn drain_done(&mut self, status: &Status) -> usize {
        let mut n = 0;
        while let Ok(done) = self.done_rx.try_recv() {
            self.apply(done, status);
            n += 1;
        }
        n
    }

    fn apply(&mut self, completed: Completed, status: &Status) {
        match completed {
            Completed::Evaluated(dones) => {
                for done in dones {
                    let _ = self.tracker.complete(done.claim, done.offset);
                }
            }
            Completed::Persisted {
                checkpoint,
                partition,
            } => {
                if let Some(d) = &mut self.durable {
                    let store = d.persisted(checkpoint, partition, &self.tracker);
                    self.to_store.extend(store);
                }
            }
            Completed::Acked(done) if done.kind == DoneKind::ContextDeadLettered => {
                // Not an input message: no offset of the group moves.
                self.metrics.dlq_published.increment(1);
                status.dlq_published();
            }
            Completed::Acked(done) => {
                if self.tracker.complete(done.claim, done.offset).is_ok() {
                    self.metrics
                        .processing_duration
                        .record(done.received.elapsed().as_secs_f64());
                    match done.kind {
                        DoneKind::DeadLettered => {
                            self.metrics.dlq_published.increment(1);
                            status.dlq_published();
                        }
                        DoneKind::Forwarded => status.forwarded(),
                        DoneKind::Evaluated | DoneKind::ContextDeadLettered => {}
                    }
                }
            }
        }
    }

    /// Waits up to `timeout` for one completion, then applies all that arrived.
    fn wait_done(&mut self, timeout: Duration, status: &Status) {
        let rx = &mut self.done_rx;
        if let Ok(Some(done)) = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, rx.recv()).await })
        {
            self.apply(done, status);
        }
        self.drain_done(status);
    }

    /// Stores advanced offsets (at most every [`commit::STORE_EVERY`] unless `now`),
    /// and refreshes the repartition partitions' commits every
    /// [`commit::REFRESH_SHADOW_COMMITS`].
    fn store<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, now: bool) {
        if !now && self.clock.now.saturating_duration_since(self.last_store) < commit::STORE_EVERY {
            return;
        }
        self.last_store = self.clock.now;
        if self.durable.is_some() || self.contexts.is_some() {
            self.durable_turn(true);
            self.context_turn();
            let mut ended = std::mem::take(&mut self.to_resume);
            // Still held by the other (or assigned again meanwhile): whichever ends last
            // resumes it.
            ended.retain(|&p| !self.is_held(p));
            ended.sort_unstable();
            ended.dedup();
            self.resume_restored(consumer, &ended);
        }
        self.metrics
            .inflight
            .set(self.tracker.total_in_flight() as f64);
        if let Some(topic) = &self.repartition_topic
            && self
                .clock
                .now
                .saturating_duration_since(self.last_shadow_refresh)
                >= commit::REFRESH_SHADOW_COMMITS
        {
            self.last_shadow_refresh = self.clock.now;
            commit::refresh(consumer, topic, &self.tracker);
        }
        let advanced = self.tracker.take_advanced();
        if self.durable.is_some() {
            // Only checkpoint cuts persisted everywhere are committed (module docs of
            // `durable`).
            let persisted = std::mem::take(&mut self.to_store);
            for &(tp, offset) in &persisted {
                let e = self.stored.entry(tp).or_insert(offset);
                *e = (*e).max(offset);
            }
            if !persisted.is_empty() {
                commit::store(consumer, persisted, |tp| self.topic(tp.source).to_owned());
                commit::commit_stored(consumer);
            }
        } else {
            commit::store(consumer, advanced, |tp| self.topic(tp.source).to_owned());
        }
    }

    /// Resumes input partitions `ps` (and their shadows) whose restore ended, unless
    /// backpressure holds everything paused (its resume then includes them).
    fn resume_restored<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, ps: &[i32]) {
        if ps.is_empty() || self.paused {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in ps {
            if self.tracker.claim(Tp::input(p)).is_none() {
                continue;
            }
            tpl.add_partition(&self.input_topic, p);
            if let Some(t) = &self.repartition_topic {
                tpl.add_partition(t, p);
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.resume(&tpl)
        {
            warn!(error = %e, "cannot resume partitions after their state restore");
        }
    }

    /// Tries to hand every non-empty batch over. True when nothing waits.
    pub(super) fn flush_all(&mut self) -> bool {
        let mut all = true;
        for w in &mut self.workers {
            all &= w.flush();
        }
        all &= self.dlq.flush();
        if let Some(f) = &mut self.forward {
            all &= f.flush();
        }
        all
    }

    pub(super) fn has_full_batch(&self) -> bool {
        self.workers.iter().any(Outbox::is_full)
            || self.dlq.is_full()
            || self.forward.as_ref().is_some_and(Outbox::is_full)
    }

    fn has_waiting(&self) -> bool {
        self.workers.iter().any(Outbox::has_waiting)
            || self.dlq.has_waiting()
            || self.forward.as_ref().is_some_and(Outbox::has_waiting)
    }

    /// Waits until a blocked batch could go, a completion arrives, or `timeout`.
    pub(super) fn wait_capacity(&mut self, timeout: Duration, status: &Status) {
        // The first outbox that is full; waiting on it is enough (others are retried).
        let blocked_worker = self
            .workers
            .iter()
            .find(|w| w.has_waiting())
            .and_then(|w| w.tx.clone());
        let blocked_dlq = if self.dlq.has_waiting() {
            self.dlq.tx.clone()
        } else {
            self.forward
                .as_ref()
                .filter(|f| f.has_waiting())
                .and_then(|f| f.tx.clone())
        };
        let rx = &mut self.done_rx;
        let got = self.runtime.block_on(async {
            let sleep = tokio::time::sleep(timeout);
            tokio::select! {
                done = rx.recv() => done,
                _ = async { match &blocked_worker { Some(tx) => drop(tx.reserve().await), None => std::future::pending().await } } => None,
                _ = async { match &blocked_dlq { Some(tx) => drop(tx.reserve().await), None => std::future::pending().await } } => None,
                _ = sleep => None,
            }
        });
        if let Some(done) = got {
            self.apply(done, status);
        }
        self.drain_done(status);
    }

    /// Reads one message: tracks its offset, decodes it and queues it for a worker, the
    /// DLQ, or (misplaced input) the repartition topic.
    pub(super) fn handle(&mut self, msg: &Record<'_>, status: &Status) {
        let source = if msg.topic == self.input_topic {
            Source::Input
        } else if self.repartition_topic.as_deref() == Some(msg.topic) {
            Source::Repartition
        } else {
            debug!("message of a topic not read here; skipped");
            return;
        };
        let tp = Tp {
            source,
            partition: msg.partition,
        };
        let partition = msg.partition;
        let offset = msg.offset;
        let Some(claim) = self.tracker.claim(tp) else {
            debug!(
                partition,
                "message of a partition not assigned here; skipped"
            );
            return;
        };
        if !self.tracker.begin(claim, offset) {
            debug!(
                partition,
                offset, "message below the read position; skipped"
            );
            return;
        }
        let lineage = self.tracker.lineage(tp, offset);
        match source {
            Source::Input => self.metrics.consumed_input.increment(1),
            Source::Repartition => self.metrics.consumed_repartition.increment(1),
        }
        if source == Source::Input {
            status.consumed();
        }
        let received = self.clock.now;
        let done = |kind| Done {
            claim,
            offset,
            received,
            kind,
        };
        match decode_value(msg.payload, &self.limits, self.clock.wall_ms) {
            Ok(obs) => {
                if source == Source::Input
                    && let Some(reason) = self.route.misplaced(msg, &obs.patient_id)
                {
                    self.metrics.misplaced(reason.as_str());
                    if let (Some(forward), Some(home)) =
                        (&mut self.forward, self.route.home(&obs.patient_id))
                    {
                        forward.batch.push(Outgoing {
                            done: done(DoneKind::Forwarded),
                            key: Some(obs.patient_id.as_bytes().to_vec()),
                            payload: msg.payload.map(<[u8]>::to_vec),
                            headers: repartition::copy_headers(msg),
                            partition: Some(home),
                        });
                        return;
                    }
                    self.warn_misplaced(reason);
                }
                let origin = match source {
                    Source::Input => Origin::input(partition, offset),
                    Source::Repartition => match repartition::origin(msg.headers) {
                        Some((p, o)) => Origin::input(p, o),
                        None => Origin::repartition(partition, offset),
                    },
                };
                let worker = route(&obs.patient_id, self.workers.len());
                let obs = Observed::new(&obs);
                self.workers[worker].batch.push(Work {
                    done: done(DoneKind::Evaluated),
                    obs,
                    lineage,
                    origin,
                });
            }
            Err(error) => {
                self.metrics.invalid(&error);
                status.invalid();
                // A copy that fails when read back (it went stale in a long backlog, say)
                // is dead-lettered as its original: the DLQ names the input message.
                let original = (source == Source::Repartition)
                    .then(|| repartition::original(msg, &self.input_topic))
                    .flatten();
                let named = original.as_ref().unwrap_or(msg);
                self.dlq.batch.push(Outgoing {
                    done: done(DoneKind::DeadLettered),
                    key: named.key.map(<[u8]>::to_vec),
                    payload: msg.payload.map(<[u8]>::to_vec),
                    headers: dlq_headers(named, &error),
                    partition: None,
                });
            }
        }
    }

    /// A misplaced observation evaluated where it was read (repartitioning off, or the
    /// partition count not known): at most one warning per [`MISPLACED_WARN_EVERY`].
    fn warn_misplaced(&mut self, reason: Misplaced) {
        self.misplaced_unwarned += 1;
        let now = self.clock.now;
        if self
            .misplaced_warned
            .is_some_and(|at| now.saturating_duration_since(at) < MISPLACED_WARN_EVERY)
        {
            return;
        }
        self.misplaced_warned = Some(now);
        let messages = std::mem::take(&mut self.misplaced_unwarned);
        let remedy = if self.forward.is_some() {
            "the input topic's partition count is not known yet (they are re-keyed once it is)"
        } else {
            "set kafka.repartition_topic"
        };
        warn!(
            messages,
            reason = reason.as_str(),
            remedy,
            "observations not on their patient's partition are evaluated where they were read: \
             with several replicas one patient's NEWS2 chart can be split between them \
             (vitalwatch_messages_misplaced_total counts them)"
        );
    }

    /// Hands over every batch read, closes the queues (workers finish what they hold and
    /// exit) and waits for every message in flight to be done, or `deadline`. Returns how
    /// many messages are still unfinished.
    pub(super) fn finish(&mut self, deadline: Instant, status: &Status) -> usize {
        while !self.flush_all() && Instant::now() < deadline {
            status.ingest_beat_at(Instant::now());
            self.wait_capacity(Duration::from_millis(10), status);
        }
        while self.tracker.total_in_flight() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Waiting, within a deadline, is progress: liveness must not fail a drain.
            status.ingest_beat_at(now);
            self.wait_done((deadline - now).min(Duration::from_millis(50)), status);
        }
        let mut unfinished = self.tracker.total_in_flight();
        if self.durable.is_some() && !self.final_checkpoint(None, deadline, status) {
            warn!(
                "shutdown deadline reached before the patient state was saved: the next owner reads from the last saved checkpoint"
            );
            unfinished = unfinished.max(1);
        }
        // The workers finish what they hold and exit.
        for w in &mut self.workers {
            w.close();
        }
        self.dlq.close();
        if let Some(f) = &mut self.forward {
            f.close();
        }
        unfinished
    }

    /// Input partitions `input` moved away: their contexts are no longer followed, and
    /// the workers forget them.
    fn contexts_revoked(&mut self, input: &[i32]) {
        let Some((feed, _)) = &mut self.contexts else {
            return;
        };
        for &p in input {
            feed.revoked(p);
        }
        for &p in input {
            self.tell_workers(|| Control::ForgetContexts(p));
        }
    }

    /// Revoke: stop routing the partitions, wait (bounded) for their in-flight work,
    /// commit what is done, forget them. A lost assignment commits nothing.
    fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        ctx: &IngestContext,
        tps: &[Tp],
        lost: bool,
        drain_timeout: Duration,
        status: &Status,
    ) {
        m::rebalance(if lost {
            RebalanceEvent::Lost
        } else {
            RebalanceEvent::Revoke
        });
        // Read but not yet handed to a worker: drop, the next owner reads them again.
        for w in &mut self.workers {
            w.retain(|work| !tps.contains(&work.done.claim.tp()));
        }
        self.dlq.retain(|item| !tps.contains(&item.done.claim.tp()));
        if let Some(f) = &mut self.forward {
            f.retain(|item| !tps.contains(&item.done.claim.tp()));
        }
        let input: Vec<i32> = tps
            .iter()
            .filter(|tp| tp.source == Source::Input)
            .map(|tp| tp.partition)
            .collect();

        if lost {
            for &tp in tps {
                self.tracker.revoke(tp);
            }
            if let Some(d) = &mut self.durable {
                self.to_store.retain(|(t, _)| !tps.contains(t));
                self.stored.retain(|t, _| !tps.contains(t));
                for &p in &input {
                    d.revoked(p);
                }
            }
            self.contexts_revoked(&input);
            warn!(partitions = ?input, "partitions lost: their in-flight work will not be committed");
            return;
        }
        let started = Instant::now();
        let deadline = started
            + if self.closing {
                Duration::ZERO
            } else {
                drain_timeout
            };
        status.set_draining(true);
        loop {
            self.drain_done(status);
            let waiting: usize = tps.iter().map(|&tp| self.tracker.in_flight(tp)).sum();
            let now = Instant::now();
            if waiting == 0 || now >= deadline {
                if waiting > 0 {
                    warn!(partitions = ?input, unfinished = waiting, "revoke deadline reached: unfinished work is left uncommitted and will be read again");
                }
                break;
            }
            // The loop waits within the drain deadline: alive, and saying so.
            status.ingest_beat_at(now);
            self.wait_done((deadline - now).min(Duration::from_millis(50)), status);
        }
        let durable = self.durable.is_some();
        // At shutdown the final checkpoint was taken before the queues closed.
        if durable && !self.closing {
            // Their state goes to the state topic before their offsets are committed.
            let restoring: Vec<i32> = input
                .iter()
                .copied()
                .filter(|&p| self.durable.as_ref().is_some_and(|d| d.is_restoring(p)))
                .collect();
            let settle: Vec<i32> = input
                .iter()
                .copied()
                .filter(|p| !restoring.contains(p))
                .collect();
            if !self.final_checkpoint(Some(&settle), deadline, status) {
                warn!(partitions = ?settle, "revoke deadline reached before the partitions' patient state was saved: the next owner reads from the last saved checkpoint");
            }
        }
        status.set_draining(false);
        let mut tpl = TopicPartitionList::new();
        for &tp in tps {
            let offset = if durable {
                // The furthest cut persisted, if any.
                self.tracker.revoke(tp);
                self.to_store
                    .iter()
                    .filter(|(t, _)| *t == tp)
                    .map(|&(_, o)| o)
                    .max()
                    .or_else(|| self.stored.remove(&tp))
            } else {
                self.tracker.revoke(tp)
            };
            if let Some(offset) = offset {
                let _ = tpl.add_partition_offset(
                    ctx.topic(tp.source),
                    tp.partition,
                    Offset::Offset(offset),
                );
            }
        }
        if let Some(d) = &mut self.durable {
            self.to_store.retain(|(t, _)| !tps.contains(t));
            self.stored.retain(|t, _| !tps.contains(t));
            for &p in &input {
                d.revoked(p);
            }
        }
        self.contexts_revoked(&input);
        if self.closing {
            // The final commit has just committed everything stored; a synchronous commit
            // from inside the close's own revoke can wait forever under the cooperative
            // protocol (seen on the mock cluster), and there is nothing left to add.
            debug!(partitions = ?input, "closing: revoked without a second commit");
        } else {
            commit::commit_revoked(consumer, &tpl);
        }
        info!(partitions = ?input, drained_ms = started.elapsed().as_millis() as u64, "partitions revoked");
    }
}

/// The worker that owns `patient_id`: stable for the life of the process.
pub(crate) fn route(patient_id: &str, workers: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(patient_id.as_bytes()) % workers as u64) as usize
}

/// The headers of the dead letter of `msg`.
fn dlq_headers(msg: &Record<'_>, error: &DecodeError) -> OwnedHeaders {
    deadletter::headers(msg.from(), error)
}

/// How the ingest loop ended.
#[derive(Debug)]
pub enum Outcome {
    /// Shutdown requested; `clean` when every message read was finished and committed.
    Stopped {
        clean: bool,
        committed: Vec<(i32, i64)>,
    },
    /// The crash hook fired: nothing was committed or closed.
    Crashed,
}

/// The consumer after a graceful stop: everything is committed, but it is still a member
/// of the group. [`Member::leave`] closes it, which runs the close's revoke through the
/// rebalance callback and sends the LeaveGroup. The caller reports the outcome first and
/// bounds the wait for the leave, because librdkafka's close can wait forever: once the
/// group handle has terminated it drops an assign or unassign request without answering
/// it (librdkafka issue 4884), and a rebalance event still queued then blocks the close.
pub struct Member(BaseConsumer<IngestContext>);

impl Member {
    /// Closes the consumer and leaves the group (a static member keeps its place).
    pub fn leave(self) {
        drop(self.0);
        m::partitions_assigned(&[]);
    }
}

/// The ingest loop. Runs on its own thread until `shutdown` (graceful, bounded by
/// `shutdown_timeout`) or `crash` (tests: leave like a killed process). After a graceful
/// stop it hands back the consumer, still in the group, for the caller to [`Member::leave`].
pub fn run(
    consumer: BaseConsumer<IngestContext>,
    shutdown: CancellationToken,
    crash: Option<CancellationToken>,
    shutdown_timeout: Duration,
) -> (Outcome, Option<Member>) {
    let ctx = consumer.context().clone();
    let status = ctx.status.clone();
    let mut blocked_since: Option<Instant> = None;
    let mut fresh_clock = false;

    loop {
        if crash.as_ref().is_some_and(CancellationToken::is_cancelled) {
            // Like SIGKILL: no close, no commit. The group notices by timeout.
            std::mem::forget(consumer);
            return (Outcome::Crashed, None);
        }
        if shutdown.is_cancelled() {
            break;
        }
        let mut st = ctx.state();
        // A message's clock read (right after its poll) serves this turn too.
        if !std::mem::take(&mut fresh_clock) {
            st.tick();
        }
        status.ingest_beat_at(st.clock.now);
        st.drain_done(&status);
        st.store(&consumer, false);

        if st.has_full_batch() && !st.flush_all() {
            // Backpressure: read nothing more until the batch can go.
            let since = *blocked_since.get_or_insert_with(Instant::now);
            if !st.paused && since.elapsed() >= PAUSE_AFTER {
                pause(&consumer, &mut st, true);
            }
            if st.paused {
                // Keep polling so the group keeps us; paused partitions return nothing.
                drop(st);
                let polled = consumer.poll(Duration::from_millis(10));
                let mut st = ctx.state();
                if let Some(Ok(msg)) = polled {
                    st.tick();
                    st.handle(&Record::from_message(&msg), &status);
                }
                st.wait_capacity(Duration::from_millis(10), &status);
            } else {
                st.wait_capacity(Duration::from_millis(10), &status);
            }
            continue;
        }
        if blocked_since.take().is_some() && st.paused {
            pause(&consumer, &mut st, false);
        }
        let timeout = if st.has_waiting() {
            Duration::ZERO
        } else {
            IDLE_POLL
        };
        drop(st);

        match consumer.poll(timeout) {
            Some(Ok(msg)) => {
                if let Some(errors) = ctx.broker_errors.cleared() {
                    info!(errors, "consuming again");
                }
                ctx.topic_seen();
                let mut st = ctx.state();
                st.tick();
                fresh_clock = true;
                st.handle(&Record::from_message(&msg), &status);
                if st.has_full_batch() {
                    st.flush_all();
                }
            }
            Some(Err(e)) => ctx.consume_error(&e, ""),
            None => {
                // Nothing more right now: hand over partial batches, or wait for room
                // rather than spin on an empty poll.
                let mut st = ctx.state();
                if !st.flush_all() {
                    st.wait_capacity(Duration::from_millis(10), &status);
                }
            }
        }
    }

    // Graceful shutdown: hand over what was read, close the queues, wait for the
    // workers and the deliveries, store and commit, then leave the group.
    status.set_stopping();
    let deadline = Instant::now() + shutdown_timeout;
    let mut st = ctx.state();
    info!(
        in_flight = st.tracker.total_in_flight(),
        "shutdown: draining"
    );
    let unfinished = st.finish(deadline, &status);
    st.store(&consumer, true);
    let committed = if st.durable.is_some() {
        // What was stored for commit: the persisted checkpoint cuts.
        st.stored
            .iter()
            .filter(|(tp, _)| tp.source == Source::Input)
            .map(|(tp, &o)| (tp.partition, o))
            .collect()
    } else {
        st.tracker.committable_all(Source::Input)
    };
    st.closing = true;
    drop(st);
    commit::commit_final(&consumer);
    if unfinished > 0 {
        warn!(
            unfinished,
            "shutdown deadline reached: unfinished messages stay uncommitted and will be read again"
        );
    }
    // Leaving the group is the caller's (its revoke callback finds nothing to wait for).
    (
        Outcome::Stopped {
            clean: unfinished == 0,
            committed,
        },
        Some(Member(consumer)),
    )
}

/// Whether the group runs the cooperative protocol (asked of the group handle, which
/// must not have terminated: see [`IngestContext::rebalance`]).
fn cooperative<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

fn pause<C: ConsumerContext>(consumer: &BaseConsumer<C>, st: &mut IngestState, pause: bool) {
    let assignment = match consumer.assignment() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "cannot read the assignment to pause/resume");
            return;
        }
    };
    let result = if pause {
        consumer.pause(&assignment)
    } else {
        // Partitions still restoring their patients' state or reading their context
        // stay paused.
        let mut resume = TopicPartitionList::new();
        for e in assignment.elements() {
            if !st.is_held(e.partition()) {
                resume.add_partition(e.topic(), e.partition());
            }
        }
        consumer.resume(&resume)
    };
    match result {
        Ok(()) => {
            st.paused = pause;
            if pause {
                warn!("worker queues full: partitions paused, still polling to stay in the group");
            } else {
                info!("worker queues drained: partitions resumed");
            }
        }
        Err(e) => warn!(error = %e, pause, "cannot pause/resume partitions"),
    }
}
