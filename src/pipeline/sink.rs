//! Producers for alerts and dead letters, with acknowledgement tracking and retries.
//!
//! A record is handed to librdkafka without waiting (publishing is pipelined); its
//! delivery report arrives on the producer's polling thread and acknowledges the
//! [`Ticket`] of the input message it belongs to. A message is done when every record it
//! produced is acknowledged. A record whose delivery fails (after librdkafka's own
//! retries, bounded by `message.timeout.ms`) is sent again after an exponential backoff,
//! for as long as it takes: an alert is never dropped. While a sink fails, its health flag
//! is down and readiness reports it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::offsets::Claim;
use crate::metrics::{self, SinkKind};
use crate::telemetry::Episode;

/// An input message finished: its offset may count as done.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub claim: Claim,
    pub offset: i64,
    /// When ingest read the message, for the processing-duration histogram.
    pub received: Instant,
    /// The message was invalid and this is its dead letter's acknowledgement.
    pub dead_lettered: bool,
}

pub type DoneTx = mpsc::UnboundedSender<Done>;

/// The outstanding records of one input message. The last acknowledgement reports it done.
pub struct Ticket {
    done: Done,
    remaining: AtomicU32,
    tx: DoneTx,
}

impl Ticket {
    pub fn new(done: Done, records: u32, tx: DoneTx) -> Arc<Ticket> {
        Arc::new(Ticket {
            done,
            remaining: AtomicU32::new(records),
            tx,
        })
    }

    fn ack(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The receiver is gone only when the pipeline stopped; the offset then stays
            // uncommitted and the message is read again, which is the safe outcome.
            let _ = self.tx.send(self.done);
        }
    }
}

/// What travels with one record through librdkafka.
pub struct Delivery {
    ticket: Arc<Ticket>,
    /// Present once the record failed: the delays of its next attempts.
    backoff: Option<ExponentialBackoff>,
}

/// A record to send again.
struct Retry {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
    delivery: Box<Delivery>,
}

/// Whether a sink's last delivery failed; readiness reads it.
#[derive(Debug, Default)]
pub struct SinkHealth {
    failing: AtomicBool,
}

impl SinkHealth {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

pub struct SinkContext {
    kind: SinkKind,
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
                if self.health.failing.swap(false, Ordering::Relaxed) {
                    info!(
                        sink = self.kind.as_str(),
                        "sink recovered: deliveries succeed again"
                    );
                }
                delivery.ticket.ack();
            }
            Err((error, message)) => {
                metrics::sink_error(self.kind);
                if !self.health.failing.swap(true, Ordering::Relaxed) {
                    warn!(sink = self.kind.as_str(), %error, "sink failing: delivery failed, retrying with backoff");
                }
                if delivery.backoff.is_none() {
                    delivery.backoff = Some(retry_backoff());
                }
                let retry = Retry {
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: message.headers().map(|h| h.detach()),
                    delivery,
                };
                // Fails only once the pipeline is gone; the message is then read again.
                let _ = self.retry_tx.send(retry);
            }
        }
    }
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
pub struct Sink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    producer: ThreadedProducer<SinkContext>,
    topic: String,
    kind: SinkKind,
    health: Arc<SinkHealth>,
}

/// How long a full librdkafka queue is waited on before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

impl Sink {
    /// Creates the producer and spawns its retry task on the current runtime.
    pub fn new(kind: SinkKind, topic: &str, config: &ClientConfig) -> anyhow::Result<Sink> {
        let health = Arc::new(SinkHealth::default());
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let context = SinkContext {
            kind,
            client_errors: Episode::new(),
            health: health.clone(),
            retry_tx,
        };
        let producer: ThreadedProducer<SinkContext> = config
            .create_with_context(context)
            .map_err(|e| anyhow::anyhow!("cannot create the {} producer: {e}", kind.as_str()))?;
        let sink = Sink {
            inner: Arc::new(SinkInner {
                producer,
                topic: topic.to_owned(),
                kind,
                health,
            }),
        };
        tokio::spawn(retry_loop(Arc::downgrade(&sink.inner), retry_rx));
        Ok(sink)
    }

    /// Drops everything queued or in flight without delivering it (crash simulation).
    pub fn purge(&self) {
        use rdkafka::producer::PurgeConfig;
        self.inner
            .producer
            .purge(PurgeConfig::default().queue().inflight());
    }

    pub fn health(&self) -> Arc<SinkHealth> {
        self.inner.health.clone()
    }

    /// Hands one record to librdkafka; waits only while its queue is full.
    pub async fn send(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        ticket: Arc<Ticket>,
    ) {
        self.send_delivery(
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
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        delivery: Box<Delivery>,
    ) {
        let mut record = BaseRecord::with_opaque_to(&self.inner.topic, delivery).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.inner.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((error, back)) => {
                    // Not retriable by waiting (e.g. the topic does not exist or the message
                    // is over the broker's limit). Keep the message uncommitted and retry
                    // with backoff: an operator can fix the topic while vitalwatch waits.
                    metrics::sink_error(self.inner.kind);
                    if !self.inner.health.failing.swap(true, Ordering::Relaxed) {
                        warn!(sink = self.inner.kind.as_str(), %error, "sink failing: cannot enqueue, retrying with backoff");
                    }
                    let mut delivery = back.delivery_opaque;
                    let delay = delivery
                        .backoff
                        .get_or_insert_with(retry_backoff)
                        .next()
                        .unwrap_or(Duration::from_secs(30));
                    tokio::time::sleep(delay).await;
                    record =
                        BaseRecord::with_opaque_to(&self.inner.topic, delivery).payload(payload);
                    if let Some(k) = key {
                        record = record.key(k);
                    }
                    if let Some(h) = back.headers {
                        record = record.headers(h);
                    }
                }
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner
            .producer
            .flush(timeout)
            .map_err(|e| anyhow::anyhow!("{} producer flush: {e}", self.inner.kind.as_str()))
    }

    /// Records queued or in flight in librdkafka.
    pub fn in_flight(&self) -> i32 {
        self.inner.producer.in_flight_count()
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
                retry.key.as_deref(),
                &retry.payload,
                retry.headers.take(),
                retry.delivery,
            )
            .await;
        });
    }
}
