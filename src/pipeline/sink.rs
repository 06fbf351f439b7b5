//! Producers for alerts and dead letters, with acknowledgement tracking and retries.
//!
//! A record is handed to librdkafka without waiting (publishing is pipelined); its
//! delivery report arrives on the producer's polling thread and acknowledges the
//! [`Ticket`] of the input message it belongs to. A message is done when every record it
//! produced is acknowledged. A record whose delivery fails (after librdkafka's own
//! retries, bounded by `message.timeout.ms`) is sent again after an exponential backoff,
//! for as long as it takes: an alert is never dropped. While a sink fails, its health flag
//! is down and readiness reports it.
//!
//! A *fatal* producer error (librdkafka's idempotent producer gives up on its sequence,
//! `OutOfOrderSequenceNumber` for one: seen once when a broker lost a batch) makes every
//! later send fail, so retrying alone would never deliver again. The alert and DLQ sinks
//! then build a new producer and send everything again through it: their records are
//! independent of each other (alerts carry their ids), so the new producer's order does
//! not matter. The repartition and state sinks must keep each patient's order, which a
//! second producer cannot promise against the first one's leftovers: they mark the sink
//! fatal instead, and liveness fails so that the orchestrator restarts the process, which
//! reads from the committed offsets and loses nothing.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::offsets::Claim;
use crate::deadletter;
use crate::metrics::{self, SinkKind};
use crate::telemetry::Episode;

/// An input message finished: its offset may count as done.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub claim: Claim,
    pub offset: i64,
    /// When ingest read the message, for the processing-duration histogram.
    pub(crate) received: Instant,
    /// What finishing it means.
    pub(crate) kind: DoneKind,
}

/// How a message is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DoneKind {
    /// Evaluated, with every alert it raised acknowledged.
    Evaluated,
    /// Invalid, with its dead letter acknowledged.
    DeadLettered,
    /// Misplaced, with its copy on the repartition topic acknowledged.
    Forwarded,
    /// A refused record of the patient context topic, with its dead letter acknowledged
    /// (no offset of the group's depends on it).
    ContextDeadLettered,
}

/// What comes back to ingest on the completion channel.
#[derive(Debug)]
pub(crate) enum Completed {
    /// Messages a worker evaluated without raising an alert, one send per worker batch
    /// (one channel operation per batch instead of per message). The worker already
    /// recorded their processing duration.
    Evaluated(Vec<Done>),
    /// A message whose alerts or dead letter were all acknowledged.
    Acked(Done),
    /// A worker's state records of `partition` up to checkpoint `checkpoint` are all
    /// acknowledged by the state topic.
    Persisted { checkpoint: u64, partition: i32 },
}

pub(crate) type DoneTx = mpsc::UnboundedSender<Completed>;

/// What the last acknowledgement of a ticket reports.
#[derive(Debug, Clone, Copy)]
enum Report {
    Message(Done),
    Persisted { checkpoint: u64, partition: i32 },
}

/// The outstanding records of one input message (or of one worker's state records of a
/// partition at a checkpoint). The last acknowledgement reports it done.
pub(crate) struct Ticket {
    report: Report,
    remaining: AtomicU32,
    tx: DoneTx,
}

impl Ticket {
    pub(crate) fn new(done: Done, records: u32, tx: DoneTx) -> Arc<Ticket> {
        Arc::new(Ticket {
            report: Report::Message(done),
            remaining: AtomicU32::new(records),
            tx,
        })
    }

    /// For `records` state records of `partition` written at `checkpoint`.
    pub(crate) fn persisted(
        checkpoint: u64,
        partition: i32,
        records: u32,
        tx: DoneTx,
    ) -> Arc<Ticket> {
        Arc::new(Ticket {
            report: Report::Persisted {
                checkpoint,
                partition,
            },
            remaining: AtomicU32::new(records),
            tx,
        })
    }

    fn ack(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The receiver is gone only when the pipeline stopped; the offset then stays
            // uncommitted and the message is read again, which is the safe outcome.
            let _ = self.tx.send(match self.report {
                Report::Message(done) => Completed::Acked(done),
                Report::Persisted {
                    checkpoint,
                    partition,
                } => Completed::Persisted {
                    checkpoint,
                    partition,
                },
            });
        }
    }
}

/// What travels with one record through librdkafka.
pub(crate) struct Delivery {
    ticket: Arc<Ticket>,
    /// Present once the record failed: the delays of its next attempts.
    backoff: Option<ExponentialBackoff>,
}

/// A record to send again.
struct Retry {
    /// The partition it was written to, when the sender chose one.
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
    delivery: Box<Delivery>,
}

/// How many records of a sink are failing right now (failed at least once and not yet
/// delivered); readiness reads it. Counting records rather than remembering the last
/// delivery keeps one permanently stuck record from hiding behind later successes.
#[derive(Debug, Default)]
pub(crate) struct SinkHealth {
    failing: AtomicUsize,
    /// The producer hit a fatal error it cannot be rebuilt from (module docs).
    fatal: AtomicBool,
}

impl SinkHealth {
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed) > 0
    }

    /// Whether only a restart of the process recovers this sink.
    pub(crate) fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Relaxed)
    }

    /// A record failed for the first time.
    fn record_failing(&self, kind: SinkKind, error: &KafkaError) {
        if self.failing.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(sink = kind.as_str(), %error, "sink failing: retrying with backoff until delivered");
        }
    }

    /// A record that had failed was delivered.
    fn record_recovered(&self, kind: SinkKind) {
        if self.failing.fetch_sub(1, Ordering::Relaxed) == 1 {
            info!(
                sink = kind.as_str(),
                "sink recovered: every failed record is delivered"
            );
        }
    }
}

pub(crate) struct SinkContext {
    kind: SinkKind,
    /// Records go to a partition the sender chose (the repartition topic), which a retry
    /// must keep.
    explicit_partition: bool,
    /// Client-level errors (broker connections), logged per episode.
    client_errors: Episode,
    health: Arc<SinkHealth>,
    retry_tx: mpsc::UnboundedSender<Retry>,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if self.client_errors.occurred() {
            warn!(sink = self.kind.as_str(), %error, reason, "producer errors: broker unreachable or failing; retrying (logged again when it recovers)");
        } else {
            debug!(sink = self.kind.as_str(), %error, reason, "producer error");
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut delivery: Box<Delivery>) {
        match result {
            Ok(_) => {
                if let Some(errors) = self.client_errors.cleared() {
                    info!(
                        sink = self.kind.as_str(),
                        errors, "producer connected again"
                    );
                }
                if delivery.backoff.is_some() {
                    self.health.record_recovered(self.kind);
                }
                delivery.ticket.ack();
            }
            Err((error, message)) => {
                metrics::sink_error(self.kind);
                if delivery.backoff.is_none() {
                    self.health.record_failing(self.kind, error);
                    delivery.backoff = Some(retry_backoff());
                }
                let mut retry = Retry {
                    partition: self.explicit_partition.then(|| message.partition()),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers: message.headers().map(|h| h.detach()),
                    delivery,
                };
                if is_too_large(error) && self.kind == SinkKind::Dlq {
                    omit_payload(&mut retry);
                }
                // Fails only once the pipeline is gone; the message is then read again.
                let _ = self.retry_tx.send(retry);
            }
        }
    }
}

/// The broker or librdkafka refuses the record for its size: waiting will not help.
fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    )
}

/// A dead letter the DLQ topic cannot hold is published without its payload, with the
/// payload's size in a header: the record still says which offset failed and why, and
/// one oversized message cannot wedge the DLQ (and so every partition's commits).
fn omit_payload(retry: &mut Retry) {
    let size = retry.payload.take().map_or(0, |p| p.len());
    retry.headers = Some(deadletter::without_payload(retry.headers.take(), size));
}

/// 100 ms doubling to 30 s, with jitter, without end: a failing sink is retried until
/// it recovers or the process stops (and then the message is not committed).
fn retry_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// A producer bound to one topic.
#[derive(Clone)]
pub(crate) struct Sink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    /// Replaced after a fatal error (alert and DLQ sinks: module docs).
    producer: ArcSwap<ThreadedProducer<SinkContext>>,
    topic: String,
    kind: SinkKind,
    health: Arc<SinkHealth>,
    /// What a replacement producer is built from.
    config: ClientConfig,
    retry_tx: mpsc::UnboundedSender<Retry>,
    /// One rebuild at a time.
    rebuilding: Mutex<()>,
}

/// A producer for `kind` whose failed deliveries go to `retry_tx`.
fn producer(
    kind: SinkKind,
    config: &ClientConfig,
    health: &Arc<SinkHealth>,
    retry_tx: &mpsc::UnboundedSender<Retry>,
) -> anyhow::Result<ThreadedProducer<SinkContext>> {
    let context = SinkContext {
        kind,
        explicit_partition: matches!(kind, SinkKind::Repartition | SinkKind::State),
        client_errors: Episode::new(),
        health: health.clone(),
        retry_tx: retry_tx.clone(),
    };
    config.create_with_context(context).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the {} producer: {}",
            kind.as_str(),
            super::ClientConfigError::from_kafka(&e)
        )
    })
}

impl SinkInner {
    /// After a failed send: when the producer has hit a fatal error, replaces it (alert
    /// and DLQ sinks) or marks the sink fatal (module docs). The old producer's queued
    /// and in-flight records are purged, which reports each as failed, so they are sent
    /// again through the new one.
    fn recover_if_fatal(&self) {
        let current = self.producer.load_full();
        let Some((code, reason)) = current.client().fatal_error() else {
            return;
        };
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current, &self.producer.load()) {
            return; // rebuilt meanwhile
        }
        if !matches!(self.kind, SinkKind::Alerts | SinkKind::Dlq) {
            if !self.health.fatal.swap(true, Ordering::Relaxed) {
                error!(sink = self.kind.as_str(), error = ?code, %reason, "fatal producer error: this sink must keep each patient's order, so only a restart recovers it (liveness now fails)");
            }
            return;
        }
        match producer(self.kind, &self.config, &self.health, &self.retry_tx) {
            Ok(fresh) => {
                warn!(sink = self.kind.as_str(), error = ?code, %reason, "fatal producer error: replaced the producer; sending its undelivered records again");
                metrics::sink_error(self.kind);
                let old = self.producer.swap(Arc::new(fresh));
                // Its delivery reports (purged: failed) go to the retry task, which sends
                // them through the new producer.
                std::thread::spawn(move || {
                    use rdkafka::producer::PurgeConfig;
                    old.purge(PurgeConfig::default().queue().inflight());
                    let _ = old.flush(Duration::from_secs(5));
                });
            }
            Err(e) => {
                error!(sink = self.kind.as_str(), error = %e, "fatal producer error, and no new producer could be built: retrying")
            }
        }
    }
}

/// How long a full librdkafka queue is waited on before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

impl Sink {
    /// Creates the producer and spawns its retry task on the current runtime.
    pub(crate) fn new(kind: SinkKind, topic: &str, config: &ClientConfig) -> anyhow::Result<Sink> {
        let health = Arc::new(SinkHealth::default());
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let first = producer(kind, config, &health, &retry_tx)?;
        let sink = Sink {
            inner: Arc::new(SinkInner {
                producer: ArcSwap::from_pointee(first),
                topic: topic.to_owned(),
                kind,
                health,
                config: config.clone(),
                retry_tx,
                rebuilding: Mutex::new(()),
            }),
        };
        tokio::spawn(retry_loop(Arc::downgrade(&sink.inner), retry_rx));
        Ok(sink)
    }

    /// Drops everything queued or in flight without delivering it (crash simulation).
    pub(crate) fn purge(&self) {
        use rdkafka::producer::PurgeConfig;
        self.inner
            .producer
            .load()
            .purge(PurgeConfig::default().queue().inflight());
    }

    pub(crate) fn health(&self) -> Arc<SinkHealth> {
        self.inner.health.clone()
    }

    /// Hands one record to librdkafka; waits only while its queue is full. A `None`
    /// payload is sent as a null value (a tombstone stays a tombstone in the DLQ).
    pub(crate) async fn send(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        ticket: Arc<Ticket>,
    ) {
        self.send_delivery(
            partition,
            key,
            payload,
            headers,
            Box::new(Delivery {
                ticket,
                backoff: None,
            }),
        )
        .await
    }

    async fn send_delivery(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        mut payload: Option<&[u8]>,
        mut headers: Option<OwnedHeaders>,
        mut delivery: Box<Delivery>,
    ) {
        let kind = self.inner.kind;
        loop {
            let mut record = BaseRecord::with_opaque_to(&self.inner.topic, delivery);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(p) = payload {
                record = record.payload(p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            // Headers are cloned so that a refused record can be sent again with them.
            if let Some(h) = &headers {
                record = record.headers(h.clone());
            }
            let (error, back) = match self.inner.producer.load().send(record) {
                Ok(()) => return,
                Err(refused) => refused,
            };
            delivery = back.delivery_opaque;
            match error {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                error if is_too_large(&error) && kind == SinkKind::Dlq && payload.is_some() => {
                    metrics::sink_error(kind);
                    let size = payload.take().map_or(0, <[u8]>::len);
                    headers = Some(deadletter::without_payload(headers.take(), size));
                    warn!(
                        sink = kind.as_str(),
                        bytes = size,
                        "dead letter too large for the producer: published without its payload"
                    );
                }
                error => {
                    // Not retriable by waiting (the topic does not exist, say). Keep the
                    // message uncommitted and retry with backoff: an operator can fix the
                    // topic while vitalwatch waits.
                    metrics::sink_error(kind);
                    if delivery.backoff.is_none() {
                        self.inner.health.record_failing(kind, &error);
                    }
                    self.inner.recover_if_fatal();
                    let delay = delivery
                        .backoff
                        .get_or_insert_with(retry_backoff)
                        .next()
                        .unwrap_or(Duration::from_secs(30));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered.
    pub(crate) fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner
            .producer
            .load()
            .flush(timeout)
            .map_err(|e| anyhow::anyhow!("{} producer flush: {e}", self.inner.kind.as_str()))
    }
}

/// Where workers hand alerts and the DLQ task hands dead letters.
///
/// The service always publishes through Kafka. `Discard` exists so the rest of the
/// pipeline (routing, batching, evaluation, encoding, completion tracking) can run and be
/// measured in-process without a broker ([`super::inprocess`]): it acknowledges each
/// record at once, as if the broker had. An enum rather than a trait object keeps the
/// per-record call static, with no boxed future on the hot path.
#[derive(Clone)]
pub(crate) enum Publisher {
    Kafka(Sink),
    /// Acknowledges every record immediately and sends nothing.
    Discard,
}

impl Publisher {
    /// As [`Sink::send`]; `Discard` drops the record (already encoded by the caller) and
    /// acknowledges its ticket.
    pub(crate) async fn send(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        ticket: Arc<Ticket>,
    ) {
        match self {
            Publisher::Kafka(sink) => sink.send(partition, key, payload, headers, ticket).await,
            Publisher::Discard => ticket.ack(),
        }
    }
}

/// Holds the sink weakly: the producer owns the sender side of `rx`, so a strong
/// reference here would keep the producer alive forever.
async fn retry_loop(sink: std::sync::Weak<SinkInner>, mut rx: mpsc::UnboundedReceiver<Retry>) {
    while let Some(mut retry) = rx.recv().await {
        let Some(inner) = sink.upgrade() else { return };
        let sink = Sink { inner };
        let delay = retry
            .delivery
            .backoff
            .as_mut()
            .and_then(Iterator::next)
            .unwrap_or(Duration::from_secs(30));
        // Each failed record waits on its own, so one long backoff does not hold the rest.
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sink.send_delivery(
                retry.partition,
                retry.key.as_deref(),
                retry.payload.as_deref(),
                retry.headers.take(),
                retry.delivery,
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::offsets::Source;
    use rdkafka::mocking::MockCluster;

    fn done(offset: i64) -> Done {
        Done {
            claim: Claim {
                source: Source::Input,
                partition: 0,
                epoch: 1,
            },
            offset,
            received: Instant::now(),
            kind: DoneKind::DeadLettered,
        }
    }

    /// Sends one record through `sink` and waits for its acknowledgement.
    async fn delivered(sink: &Sink, offset: i64) -> bool {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ticket = Ticket::new(done(offset), 1, tx);
        // A send that cannot be delivered retries for ever: bounded here.
        let acked = async {
            sink.send(None, Some(b"k"), Some(b"v"), None, ticket).await;
            rx.recv().await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(30), acked).await,
            Ok(Some(Completed::Acked(d))) if d.offset == offset
        )
    }

    /// Raises a fatal error in `sink`'s producer, as librdkafka's idempotent producer does
    /// when a broker's sequence numbers disagree with its own.
    fn make_fatal(sink: &Sink) {
        let producer = sink.inner.producer.load();
        let reason = c"test: fatal idempotent producer error";
        // SAFETY: the pointer is the live producer's, held by `producer` for the call;
        // librdkafka copies the reason string.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        assert!(producer.client().fatal_error().is_some());
    }

    fn config(mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", mock.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "5000");
        c
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_letter_sink_replaces_a_producer_that_hit_a_fatal_error() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("dlq", 1, 1).expect("topic");
        let sink = Sink::new(SinkKind::Dlq, "dlq", &config(&mock)).expect("sink");
        assert!(delivered(&sink, 1).await);
        make_fatal(&sink);
        // Without a new producer this send would be retried forever.
        assert!(
            delivered(&sink, 2).await,
            "not delivered after the fatal error"
        );
        assert!(sink.inner.producer.load().client().fatal_error().is_none());
        assert!(!sink.health().is_fatal());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_order_keeping_sink_is_marked_fatal_for_a_restart() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("state", 1, 1).expect("topic");
        let sink = Sink::new(SinkKind::State, "state", &config(&mock)).expect("sink");
        assert!(delivered(&sink, 1).await);
        make_fatal(&sink);
        let (tx, _rx) = mpsc::unbounded_channel();
        let send = sink.send(
            Some(0),
            Some(b"k"),
            Some(b"v"),
            None,
            Ticket::new(done(2), 1, tx),
        );
        // The send keeps retrying (nothing is dropped); the health says restart.
        let _ = tokio::time::timeout(Duration::from_secs(2), send).await;
        assert!(sink.health().is_fatal());
    }
}
