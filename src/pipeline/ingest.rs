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

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::offsets::OffsetTracker;
use super::sink::{Completed, Done};
use super::worker::{Reading, Work, now_ms};
use super::{Status, WorkerProbe};
use crate::metrics::{self as m, PipelineMetrics, RebalanceEvent};
use crate::telemetry::Episode;
use crate::vitals::{DecodeError, DecodeLimits, decode_value};

/// Messages per batch handed to a worker channel. Each hand-over may wake a parked worker
/// thread (~5 µs); 256 makes that ~20 ns a message. A partial batch still goes as soon as
/// the consumer has nothing more to give, so a larger batch adds no latency.
pub const BATCH: usize = 256;
/// How long a full queue is waited on before partitions are paused.
pub const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// Poll timeout when idle: bounds how late a shutdown request is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often advanced offsets are stored (auto-commit picks them up).
const STORE_EVERY: Duration = Duration::from_millis(100);

/// One input message as the router sees it, whatever it was read from: the ingest loop
/// builds it from a Kafka message without copying ([`Record::from_message`]); in-process
/// benchmarks build it from plain slices.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Creation or log-append time, Unix epoch milliseconds, when the broker gave one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone (null value).
    pub payload: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// Borrows everything from `msg`: no copy, no allocation.
    pub fn from_message(msg: &'a BorrowedMessage<'_>) -> Self {
        Record {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis(),
            key: msg.key(),
            payload: msg.payload(),
        }
    }
}

/// An invalid message on its way to the dead-letter topic.
pub struct DlqItem {
    pub done: Done,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone (null value), kept as such.
    pub payload: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

/// A bounded channel and the batch being filled for it.
pub struct Outbox<T> {
    tx: Option<mpsc::Sender<Vec<T>>>,
    batch: Vec<T>,
    max_batch: usize,
    /// The receiving worker's queue counter, when the receiver is a worker.
    probe: Option<Arc<WorkerProbe>>,
}

impl<T> Outbox<T> {
    pub fn new(
        tx: mpsc::Sender<Vec<T>>,
        max_batch: usize,
        probe: Option<Arc<WorkerProbe>>,
    ) -> Self {
        Outbox {
            tx: Some(tx),
            batch: Vec::with_capacity(max_batch),
            max_batch,
            probe,
        }
    }

    fn is_full(&self) -> bool {
        self.batch.len() >= self.max_batch
    }

    /// Hands the batch over if the channel has room. True when nothing is left waiting.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let Some(tx) = &self.tx else {
            return false;
        };
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_batch));
        let n = batch.len();
        match tx.try_send(batch) {
            Ok(()) => {
                if let Some(probe) = &self.probe {
                    probe.enqueued(n);
                }
                true
            }
            Err(TrySendError::Full(batch)) | Err(TrySendError::Closed(batch)) => {
                self.batch = batch;
                false
            }
        }
    }

    fn close(&mut self) {
        self.tx = None;
    }
}

/// Everything the ingest thread decides with: the router (decode, route, batch), the
/// offset tracker and the completion channel. Locked only by that thread: by the main loop
/// between polls and by rebalance callbacks inside a poll. Nothing here but `store` and
/// `revoke` needs a consumer, so [`super::inprocess`] drives the same state without Kafka.
pub struct IngestState {
    pub tracker: OffsetTracker,
    pub workers: Vec<Outbox<Work>>,
    pub dlq: Outbox<DlqItem>,
    pub done_rx: mpsc::UnboundedReceiver<Completed>,
    pub metrics: PipelineMetrics,
    pub runtime: tokio::runtime::Handle,
    pub limits: DecodeLimits,
    pub paused: bool,
    /// Set once shutdown has drained: a revoke during close must not wait again.
    pub closing: bool,
    last_store: Instant,
    clock: Clock,
}

/// One clock read per message instead of five: the monotonic instant, and the wall
/// clock in Unix milliseconds derived from it (re-read from the system every second, so
/// it follows clock adjustments; the decoder only compares it with the skew and age bounds, minutes to days).
struct Clock {
    now: Instant,
    wall_ms: i64,
    base: Instant,
    base_wall_ms: i64,
}

impl Clock {
    fn new() -> Clock {
        let now = Instant::now();
        let wall_ms = now_ms();
        Clock {
            now,
            wall_ms,
            base: now,
            base_wall_ms: wall_ms,
        }
    }

    fn tick(&mut self) {
        self.now = Instant::now();
        let since = self.now.saturating_duration_since(self.base);
        if since >= Duration::from_secs(1) {
            self.base = self.now;
            self.base_wall_ms = now_ms();
            self.wall_ms = self.base_wall_ms;
        } else {
            self.wall_ms = self.base_wall_ms + since.as_millis() as i64;
        }
    }
}

pub struct IngestContext {
    state: Mutex<IngestState>,
    /// Consume and client errors come many times a second while a broker is
    /// unreachable: logged when they start and when they stop.
    broker_errors: Episode,
    input_topic: String,
    status: Arc<Status>,
    /// Bound on how long a revoke waits for in-flight work of its partitions.
    drain_timeout: Duration,
}

impl IngestContext {
    /// The consumer's context around the router `state`.
    pub fn new(
        state: IngestState,
        input_topic: &str,
        status: Arc<Status>,
        drain_timeout: Duration,
    ) -> Self {
        IngestContext {
            state: Mutex::new(state),
            broker_errors: Episode::new(),
            input_topic: input_topic.to_owned(),
            status,
            drain_timeout,
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
}

impl ClientContext for IngestContext {
    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.input_topic) {
            for (&partition, p) in &topic.partitions {
                // -1: the internal "unassigned" partition, or lag not known yet.
                if partition >= 0 && p.consumer_lag >= 0 {
                    m::consumer_lag(&self.input_topic, partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.broker_errors.occurred() {
            warn!(%error, reason, "consumer errors: broker unreachable or failing; retrying (logged again when it recovers)");
        } else {
            debug!(%error, reason, "consumer error");
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_of(tpl, &self.input_topic);
            let lost = consumer.assignment_lost();
            let mut st = self.state();
            st.revoke(
                consumer,
                &self.input_topic,
                &partitions,
                lost,
                self.drain_timeout,
                &self.status,
            );
            self.status.set_assigned(st.tracker.assigned().count());
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = partitions_of(tpl, &self.input_topic);
                let mut st = self.state();
                for &p in &partitions {
                    st.tracker.assign(p);
                }
                if st.paused
                    && let Err(e) = consumer.pause(tpl)
                {
                    warn!(error = %e, "cannot pause newly assigned partitions");
                }
                m::rebalance(RebalanceEvent::Assign);
                let assigned = st.tracker.assigned().count();
                self.status.set_assigned(assigned);
                info!(partitions = ?partitions, assigned, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        m::committed_offset(e.topic(), e.partition(), o);
                    }
                }
            }
            // Nothing stored since the last commit: not an error.
            Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => warn!(error = %e, "offset commit failed (retried at the next commit)"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    let mut v: Vec<i32> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect();
    v.sort_unstable();
    v
}

impl IngestState {
    /// A state with no partition assigned. `runtime` runs the workers; the ingest thread
    /// blocks on it (never from inside it) to wait for room or completions.
    pub fn new(
        workers: Vec<Outbox<Work>>,
        dlq: Outbox<DlqItem>,
        done_rx: mpsc::UnboundedReceiver<Completed>,
        metrics: PipelineMetrics,
        limits: DecodeLimits,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        IngestState {
            tracker: OffsetTracker::new(),
            workers,
            dlq,
            done_rx,
            metrics,
            runtime,
            limits,
            paused: false,
            closing: false,
            last_store: Instant::now(),
            clock: Clock::new(),
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
            Completed::Acked(done) => {
                if self.tracker.complete(done.claim, done.offset).is_ok() {
                    self.metrics
                        .processing_duration
                        .record(done.received.elapsed().as_secs_f64());
                    if done.dead_lettered {
                        self.metrics.dlq_published.increment(1);
                        status.dlq_published();
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

    /// Stores advanced offsets (at most every [`STORE_EVERY`] unless `now`).
    fn store<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, topic: &str, now: bool) {
        if !now && self.clock.now.saturating_duration_since(self.last_store) < STORE_EVERY {
            return;
        }
        self.last_store = self.clock.now;
        self.metrics
            .inflight
            .set(self.tracker.total_in_flight() as f64);
        let advanced = self.tracker.take_advanced();
        if advanced.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(advanced.len());
        for (p, offset) in advanced {
            // Exactly the next offset to read: rd_kafka_offsets_store does not add one.
            if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Offset(offset)) {
                warn!(error = %e, partition = p, "cannot build offset list");
            }
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            // __STATE: the partition was revoked in between. Expected, not fatal.
            debug!(error = %e, "storing offsets failed");
        }
    }

    /// Tries to hand every non-empty batch over. True when nothing waits.
    pub(super) fn flush_all(&mut self) -> bool {
        let mut all = true;
        for w in &mut self.workers {
            all &= w.flush();
        }
        all &= self.dlq.flush();
        all
    }

    pub(super) fn has_full_batch(&self) -> bool {
        self.workers.iter().any(Outbox::is_full) || self.dlq.is_full()
    }

    fn has_waiting(&self) -> bool {
        self.workers.iter().any(|w| !w.batch.is_empty()) || !self.dlq.batch.is_empty()
    }

    /// Waits until a blocked batch could go, a completion arrives, or `timeout`.
    pub(super) fn wait_capacity(&mut self, timeout: Duration, status: &Status) {
        // The first outbox that is full; waiting on it is enough (others are retried).
        let blocked_worker = self
            .workers
            .iter()
            .find(|w| !w.batch.is_empty())
            .and_then(|w| w.tx.clone());
        let blocked_dlq = if self.dlq.batch.is_empty() {
            None
        } else {
            self.dlq.tx.clone()
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

    /// Reads one message: tracks its offset, decodes it and queues it for a worker or
    /// the DLQ.
    pub(super) fn handle(&mut self, msg: &Record<'_>, status: &Status) {
        let partition = msg.partition;
        let offset = msg.offset;
        let Some(claim) = self.tracker.claim(partition) else {
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
        let lineage = self.tracker.lineage(partition, offset);
        self.metrics.consumed.increment(1);
        status.consumed();
        let received = self.clock.now;
        match decode_value(msg.payload, &self.limits, self.clock.wall_ms) {
            Ok(obs) => {
                let worker = route(&obs.patient_id, self.workers.len());
                let obs = Reading::new(&obs);
                let done = Done {
                    claim,
                    offset,
                    received,
                    dead_lettered: false,
                };
                self.workers[worker].batch.push(Work { done, obs, lineage });
            }
            Err(error) => {
                self.metrics.invalid(&error);
                status.invalid();
                let done = Done {
                    claim,
                    offset,
                    received,
                    dead_lettered: true,
                };
                self.dlq.batch.push(DlqItem {
                    done,
                    key: msg.key.map(<[u8]>::to_vec),
                    payload: msg.payload.map(<[u8]>::to_vec),
                    headers: dlq_headers(msg, &error),
                });
            }
        }
    }

    /// Hands over every batch read, closes the queues (workers finish what they hold and
    /// exit) and waits for every message in flight to be done, or `deadline`. Returns how
    /// many messages are still unfinished.
    pub(super) fn finish(&mut self, deadline: Instant, status: &Status) -> usize {
        while !self.flush_all() && Instant::now() < deadline {
            self.wait_capacity(Duration::from_millis(10), status);
        }
        for w in &mut self.workers {
            w.close();
        }
        self.dlq.close();
        while self.tracker.total_in_flight() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.wait_done((deadline - now).min(Duration::from_millis(50)), status);
        }
        self.tracker.total_in_flight()
    }

    /// Revoke: stop routing the partitions, wait (bounded) for their in-flight work,
    /// commit what is done, forget them. A lost assignment commits nothing.
    fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partitions: &[i32],
        lost: bool,
        drain_timeout: Duration,
        status: &Status,
    ) {
        m::rebalance(if lost {
            RebalanceEvent::Lost
        } else {
            RebalanceEvent::Revoke
        });
        m::partitions_released(topic, partitions);
        // Read but not yet handed to a worker: drop, the next owner reads them again.
        for w in &mut self.workers {
            w.batch
                .retain(|work| !partitions.contains(&work.done.claim.partition));
        }
        self.dlq
            .batch
            .retain(|item| !partitions.contains(&item.done.claim.partition));

        if lost {
            for &p in partitions {
                self.tracker.revoke(p);
            }
            warn!(partitions = ?partitions, "partitions lost: their in-flight work will not be committed");
            return;
        }
        let started = Instant::now();
        let deadline = started
            + if self.closing {
                Duration::ZERO
            } else {
                drain_timeout
            };
        loop {
            self.drain_done(status);
            let waiting: usize = partitions.iter().map(|&p| self.tracker.in_flight(p)).sum();
            let now = Instant::now();
            if waiting == 0 || now >= deadline {
                if waiting > 0 {
                    warn!(partitions = ?partitions, unfinished = waiting, "revoke deadline reached: unfinished work is left uncommitted and will be read again");
                }
                break;
            }
            self.wait_done((deadline - now).min(Duration::from_millis(50)), status);
        }
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            if let Some(offset) = self.tracker.revoke(p) {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(offset));
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
        {
            warn!(error = %e, "commit on revoke failed: the next owner may re-read finished work");
        }
        info!(partitions = ?partitions, drained_ms = started.elapsed().as_millis() as u64, "partitions revoked");
    }
}

/// The worker that owns `patient_id`: stable for the life of the process.
pub fn route(patient_id: &str, workers: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(patient_id.as_bytes()) % workers as u64) as usize
}

fn dlq_headers(msg: &Record<'_>, error: &DecodeError) -> OwnedHeaders {
    let message = error.to_string();
    let partition = msg.partition.to_string();
    let offset = msg.offset.to_string();
    let timestamp = msg.timestamp.map(|t| t.to_string()).unwrap_or_default();
    OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: "vitalwatch.error.reason",
            value: Some(error.reason()),
        })
        .insert(Header {
            key: "vitalwatch.error.message",
            value: Some(&message),
        })
        .insert(Header {
            key: "vitalwatch.source.topic",
            value: Some(msg.topic),
        })
        .insert(Header {
            key: "vitalwatch.source.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "vitalwatch.source.offset",
            value: Some(&offset),
        })
        .insert(Header {
            key: "vitalwatch.source.timestamp",
            value: Some(&timestamp),
        })
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

/// The ingest loop. Runs on its own thread until `shutdown` (graceful, bounded by
/// `shutdown_timeout`) or `crash` (tests: leave like a killed process).
pub fn run(
    consumer: BaseConsumer<IngestContext>,
    shutdown: CancellationToken,
    crash: Option<CancellationToken>,
    shutdown_timeout: Duration,
) -> Outcome {
    let ctx = consumer.context().clone();
    let status = ctx.status.clone();
    let topic = ctx.input_topic.clone();
    let mut blocked_since: Option<Instant> = None;
    let mut fresh_clock = false;

    loop {
        if crash.as_ref().is_some_and(CancellationToken::is_cancelled) {
            // Like SIGKILL: no close, no commit. The group notices by timeout.
            std::mem::forget(consumer);
            return Outcome::Crashed;
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
        st.store(&consumer, &topic, false);

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
                let mut st = ctx.state();
                st.tick();
                fresh_clock = true;
                st.handle(&Record::from_message(&msg), &status);
                if st.has_full_batch() {
                    st.flush_all();
                }
            }
            Some(Err(e)) => {
                if ctx.broker_errors.occurred() {
                    warn!(error = %e, "consume errors: broker unreachable or failing; retrying (logged again when it recovers)");
                } else {
                    debug!(error = %e, "consume error");
                }
            }
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
    let deadline = Instant::now() + shutdown_timeout;
    let mut st = ctx.state();
    info!(
        in_flight = st.tracker.total_in_flight(),
        "shutdown: draining"
    );
    let unfinished = st.finish(deadline, &status);
    st.store(&consumer, &topic, true);
    let committed = st.tracker.committable_all();
    st.closing = true;
    drop(st);
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "final commit failed"),
    }
    if unfinished > 0 {
        warn!(
            unfinished,
            "shutdown deadline reached: unfinished messages stay uncommitted and will be read again"
        );
    }
    // Dropping the consumer leaves the group (its revoke callback finds nothing to wait for).
    drop(consumer);
    Outcome::Stopped {
        clean: unfinished == 0,
        committed,
    }
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
        consumer.resume(&assignment)
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
