//! The Kafka pipeline: ingest → per-patient workers → alert and DLQ sinks → offsets.
//!
//! [`run`] starts everything and returns when the pipeline has stopped. The stop signal is
//! a parameter (a [`CancellationToken`]): `main` ties it to SIGTERM/SIGINT, tests and the
//! demo cancel it at will. Delivery is at-least-once: an offset is stored for commit only
//! when its message is done (evaluated with every alert acknowledged, or dead-lettered
//! with the DLQ record acknowledged), and only for the partition assignment it was read
//! under. See `docs/architecture.md` for the whole argument.

pub mod ingest;
pub mod inprocess;
pub mod offsets;
pub mod preflight;
pub mod repartition;
pub mod sink;
pub mod worker;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{self as m, PipelineMetrics, SinkKind};
use crate::rules::live::LiveRules;
use crate::rules::state::StateLimits;
use crate::secret::ClientProps;
use crate::settings::Settings;
use crate::vitals::DecodeLimits;
use ingest::{BATCH, IngestContext, IngestState, Outbox, Outgoing, Routing};
use repartition::Partitioner;
use sink::{DoneTx, Publisher, Sink, SinkHealth, Ticket};
use worker::{Work, WorkerShared};

/// What the pipeline needs from the settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub input_topic: String,
    pub alert_topic: String,
    pub dlq_topic: String,
    /// Where misplaced observations are re-keyed (`kafka.repartition_topic`); `None` off.
    pub repartition_topic: Option<String>,
    /// How the input's producers partition by key (`kafka.input_partitioner`).
    pub input_partitioner: Partitioner,
    /// librdkafka properties for every client, applied over vitalwatch's own.
    pub client: ClientProps,
    pub workers: usize,
    pub queue_capacity: usize,
    pub limits: DecodeLimits,
    /// Patient rule state each worker may keep.
    pub state_limits: StateLimits,
    pub shutdown_timeout: Duration,
}

impl PipelineConfig {
    pub fn from_settings(s: &Settings) -> Self {
        PipelineConfig {
            bootstrap_servers: s.kafka.bootstrap_servers.clone(),
            group_id: s.kafka.group_id.clone(),
            input_topic: s.kafka.input_topic.clone(),
            alert_topic: s.kafka.alert_topic.clone(),
            dlq_topic: s.kafka.dlq_topic.clone(),
            repartition_topic: Some(s.kafka.repartition_topic.clone()).filter(|t| !t.is_empty()),
            input_partitioner: s.kafka.input_partitioner,
            client: s.kafka.client.clone(),
            workers: s.pipeline.workers,
            queue_capacity: s.pipeline.queue_capacity,
            limits: s.decode_limits(),
            state_limits: s.state_limits(),
            shutdown_timeout: s.shutdown_timeout(),
        }
    }

    /// Consumer settings for at-least-once: offsets are stored by vitalwatch once work
    /// is done (`enable.auto.offset.store=false`) and committed by librdkafka's auto
    /// commit, plus a synchronous commit on revoke and at shutdown.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("client.id", "vitalwatch")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000");
        fetch_tuning(&mut c);
        self.apply_client(&mut c);
        c
    }

    /// Producer settings: idempotent, acknowledged by all in-sync replicas, and a
    /// delivery timeout short enough that a failing broker shows in readiness quickly.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "vitalwatch")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // librdkafka's own limit is 1 000 000 bytes, below a broker's default 1 MiB:
            // a dead letter of a message the broker accepted must not be refused locally.
            // The broker's limit still applies; a DLQ record over it goes without payload.
            .set("message.max.bytes", "16777216")
            .set("message.timeout.ms", "30000")
            // A topic that does not exist is a configuration error to report (start-up
            // checks every topic), never one to paper over by creating it.
            .set("allow.auto.create.topics", "false");
        self.apply_client(&mut c);
        c
    }

    /// Every topic vitalwatch reads or writes, by its config key.
    pub fn topics(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![
            ("kafka.input_topic", self.input_topic.as_str()),
            ("kafka.alert_topic", self.alert_topic.as_str()),
            ("kafka.dlq_topic", self.dlq_topic.as_str()),
        ];
        if let Some(t) = &self.repartition_topic {
            v.push(("kafka.repartition_topic", t.as_str()));
        }
        v
    }

    /// Builds the consumer's and the producers' librdkafka configurations without
    /// creating a client (nothing connects): what librdkafka would refuse at start-up
    /// (an unknown property, a value it cannot take), with the property's name and where
    /// it was set, and never its value, which may be a credential.
    pub fn check_clients(&self, origin: &crate::settings::Origin) -> anyhow::Result<()> {
        for config in [self.consumer_config(), self.producer_config()] {
            if let Err(e) = config.create_native_config() {
                anyhow::bail!("{}", client_config_error(&e, origin));
            }
        }
        Ok(())
    }

    fn apply_client(&self, c: &mut ClientConfig) {
        // The vendored OpenSSL looks for CA certificates under its build prefix, which
        // does not exist on the host: let librdkafka probe the system's trust store
        // unless the operator names one (`ssl.ca.location` in `[kafka.client]`).
        c.set("ssl.ca.location", "probe");
        for (k, v) in self.client.expose() {
            c.set(k, v);
        }
    }
}

/// A librdkafka configuration error without the value it was about: librdkafka's own
/// text (and rdkafka's `Display`) repeats the value, which may be a password.
pub fn client_config_error(
    e: &rdkafka::error::KafkaError,
    origin: &crate::settings::Origin,
) -> String {
    use crate::settings::KeySource;
    let rdkafka::error::KafkaError::ClientConfig(_, description, key, value) = e else {
        return e.to_string();
    };
    let description = if value.is_empty() {
        description.clone()
    } else {
        description.replace(value.as_str(), "[value not shown]")
    };
    let set = match origin.of(&format!("kafka.client.{key}")) {
        KeySource::Default => String::new(),
        source => format!(" (set in {source})"),
    };
    format!("kafka.client.\"{key}\"{set}: librdkafka refuses it: {description}")
}

/// Messages per batch and channel slots per worker: `queue_capacity` messages in batches
/// of up to [`BATCH`].
fn batch_and_slots(queue_capacity: usize) -> (usize, usize) {
    let batch = BATCH.min(queue_capacity).max(1);
    (batch, queue_capacity.div_ceil(batch).max(1))
}

/// Prefetch settings (any of them can be overridden in `[kafka.client]`), measured with
/// `vitalwatch bench` (docs/benchmarks.md):
///
/// - librdkafka's default prefetch of 64 MiB made up half of the resident memory and grew
///   with the backlog; 16 MiB still holds about half a second of input at full speed.
/// - One fetch response may be up to `fetch.max.bytes` (50 MiB by default) whatever the
///   prefetch limit; with hundreds of partitions the peak RSS then varied by ±10 MiB from
///   run to run. 8 MiB bounds it and still carries tens of thousands of messages.
/// - When a partition's prefetch queue is over its threshold, librdkafka postpones its
///   next fetch by `fetch.queue.backoff.ms`, 1 s by default: a consumer that is a little
///   slower than the fetcher then idles for most of each second. 10 ms keeps it fed.
pub fn fetch_tuning(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "8388608")
}

/// The partitions this instance owns, by [`offsets::Tp::key`], as ingest publishes them
/// after each assignment: workers forget patients whose partition moved away.
#[derive(Debug, Default)]
pub struct Assignment {
    generation: AtomicU64,
    partitions: Mutex<Arc<HashSet<u64>>>,
}

impl Assignment {
    pub(crate) fn set(&self, keys: impl IntoIterator<Item = u64>) {
        let keys = Arc::new(keys.into_iter().collect());
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = keys;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The partitions, when they changed since generation `seen`, with the generation.
    pub(crate) fn changed_since(&self, seen: u64) -> Option<(u64, Arc<HashSet<u64>>)> {
        let generation = self.generation.load(Ordering::Acquire);
        (generation != seen).then(|| {
            let keys = self
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            (generation, keys)
        })
    }
}

/// Hooks for tests. Production leaves them empty.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called by a worker before evaluating; a returned duration is awaited first
    /// (skewed work, slow paths, order recording).
    #[allow(clippy::type_complexity)]
    pub before_evaluate: Option<Arc<dyn Fn(&Work) -> Option<Duration> + Send + Sync>>,
    /// Cancelling it stops the pipeline like a killed process: nothing is committed,
    /// closed or flushed.
    pub crash: Option<CancellationToken>,
}

/// Live counters and health, shared with the HTTP endpoints and the demo.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    consumed: AtomicU64,
    invalid: AtomicU64,
    evaluated: AtomicU64,
    alerts: AtomicU64,
    dlq: AtomicU64,
    forwarded: AtomicU64,
    assigned: AtomicUsize,
    /// The group has given this instance an assignment (possibly empty) since start.
    joined: AtomicBool,
    /// The brokers said the input topic does not exist (and nothing since says it does).
    input_missing: AtomicBool,
    /// A revoke is waiting for the in-flight work of its partitions.
    draining: AtomicBool,
    /// Shutdown was requested: the pipeline drains and leaves the group.
    stopping: AtomicBool,
    running: AtomicBool,
    ingest_beat_ms: AtomicU64,
    workers: OnceLock<Vec<Arc<WorkerProbe>>>,
    /// Each producer's health, by what it writes.
    sinks: OnceLock<Vec<(SinkKind, Arc<SinkHealth>)>>,
}

/// What ingest and one worker share about that worker's queue.
#[derive(Debug, Default)]
pub struct WorkerProbe {
    /// Messages handed to the worker and not yet evaluated.
    queued: AtomicUsize,
    /// [`Status`] clock (ms) when the worker last finished a batch.
    beat_ms: AtomicU64,
}

impl WorkerProbe {
    pub(crate) fn enqueued(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }
    /// Marks the worker alive (it just took a batch).
    pub(crate) fn beat(&self, now_ms: u64) {
        self.beat_ms.store(now_ms, Ordering::Relaxed);
    }
    /// Marks `n` messages evaluated; returns how many are still queued.
    pub(crate) fn evaluated(&self, n: usize, now_ms: u64) -> usize {
        self.beat_ms.store(now_ms, Ordering::Relaxed);
        self.queued
            .fetch_sub(n, Ordering::Relaxed)
            .saturating_sub(n)
    }
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Default for Status {
    fn default() -> Self {
        Status {
            started: Instant::now(),
            consumed: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            evaluated: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            dlq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            assigned: AtomicUsize::new(0),
            joined: AtomicBool::new(false),
            input_missing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            running: AtomicBool::new(false),
            ingest_beat_ms: AtomicU64::new(0),
            workers: OnceLock::new(),
            sinks: OnceLock::new(),
        }
    }
}

/// A point-in-time copy of [`Status`] counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages read from the input topic.
    pub consumed: u64,
    /// Of those, invalid (headed for the DLQ).
    pub invalid: u64,
    /// Valid messages the workers evaluated against the rules.
    pub evaluated: u64,
    /// Alerts handed to the alert producer.
    pub alerts: u64,
    /// Dead letters acknowledged by the broker.
    pub dlq: u64,
    /// Misplaced observations whose copy on the repartition topic was acknowledged.
    pub forwarded: u64,
}

impl Status {
    pub fn new() -> Arc<Status> {
        Arc::new(Status::default())
    }

    pub(crate) fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn consumed(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }
    /// A worker finished evaluating `n` messages (counted per batch, not per message).
    pub(crate) fn evaluated(&self, n: usize) {
        self.evaluated.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn alert_emitted(&self) {
        self.alerts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dlq_published(&self) {
        self.dlq.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }
    /// The group's assignment (input partitions), after each rebalance; marks the group
    /// joined.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Whether a revoke is waiting (bounded) for the in-flight work of its partitions.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn set_input_missing(&self, missing: bool) {
        self.input_missing.store(missing, Ordering::Relaxed);
    }
    pub(crate) fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
    }
    /// The ingest loop turned at `now`.
    pub(crate) fn ingest_beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.ingest_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Messages waiting in worker queues, over all workers.
    pub fn queued(&self) -> usize {
        self.workers
            .get()
            .map_or(0, |w| w.iter().map(|p| p.queued()).sum())
    }

    pub fn counts(&self) -> Counts {
        Counts {
            consumed: self.consumed.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            evaluated: self.evaluated.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
            dlq: self.dlq.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }

    pub fn assigned_partitions(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Ready: running, in the group (with an assignment, possibly empty: a replica beyond
    /// the partition count is a ready standby, and a rollout at full scale must not wait
    /// for it), and the sinks delivering.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.running.load(Ordering::Relaxed) {
            return Err("pipeline not running");
        }
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down: draining before leaving the group");
        }
        if self.input_missing.load(Ordering::Relaxed) && self.assigned_partitions() == 0 {
            return Err("the input topic does not exist");
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("waiting for the group's first assignment");
        }
        if let Some(sinks) = self.sinks.get()
            && let Some((kind, _)) = sinks.iter().find(|(_, h)| h.is_failing())
        {
            return Err(match kind {
                SinkKind::Alerts => "alert sink failing",
                SinkKind::Dlq => "dlq sink failing",
                SinkKind::Repartition => "repartition sink failing",
            });
        }
        Ok(())
    }

    /// Live: the ingest loop turned within `stall` (it turns at least every 100 ms, also
    /// while the broker is unreachable or partitions are paused), and no worker with a
    /// non-empty queue has gone `stall` without finishing a batch. Never depends on the
    /// broker.
    pub fn liveness(&self, stall: Duration) -> Result<(), &'static str> {
        if !self.running.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = self.ms();
        let stall = stall.as_millis() as u64;
        if now.saturating_sub(self.ingest_beat_ms.load(Ordering::Relaxed)) > stall {
            return Err("ingest loop stalled");
        }
        // A worker waiting on a full producer queue during a sink outage is not stuck:
        // restarting it would not help, and liveness must not follow the broker.
        let sink_failing = self
            .sinks
            .get()
            .is_some_and(|sinks| sinks.iter().any(|(_, h)| h.is_failing()));
        let stuck = !sink_failing
            && self.workers.get().is_some_and(|w| {
                w.iter().any(|p| {
                    p.queued() > 0 && now.saturating_sub(p.beat_ms.load(Ordering::Relaxed)) > stall
                })
            });
        if stuck {
            return Err("a worker stopped making progress");
        }
        Ok(())
    }
}

/// How a pipeline run ended.
#[derive(Debug, Clone)]
pub struct Report {
    pub counts: Counts,
    /// Committable offset per input partition at the end (next offset to read).
    pub committed: Vec<(i32, i64)>,
    /// Every message read was finished and committed within the deadline.
    pub clean: bool,
    /// Stopped through the crash hook.
    pub crashed: bool,
}

/// Runs the pipeline until `shutdown` is cancelled, then drains and commits within
/// `config.shutdown_timeout`. Errors only for start-up failures; a missed shutdown
/// deadline is `Report::clean == false`.
pub async fn run(
    config: PipelineConfig,
    rules: impl Into<LiveRules>,
    status: Arc<Status>,
    shutdown: CancellationToken,
    hooks: Hooks,
) -> anyhow::Result<Report> {
    if shutdown.is_cancelled() {
        // Stopped before it started (SIGTERM during the broker check): nothing was read.
        return Ok(Report {
            counts: status.counts(),
            committed: Vec::new(),
            clean: true,
            crashed: false,
        });
    }
    // The recorder must exist before the handles below are resolved.
    m::install()?;
    let metrics = PipelineMetrics::new(&config.input_topic, config.repartition_topic.as_deref());
    m::workers(config.workers);
    m::build_info();

    let producer_config = config.producer_config();
    let alerts = Sink::new(SinkKind::Alerts, &config.alert_topic, &producer_config)?;
    let dlq = Sink::new(SinkKind::Dlq, &config.dlq_topic, &producer_config)?;
    let repartition = match &config.repartition_topic {
        Some(topic) => Some(Sink::new(SinkKind::Repartition, topic, &producer_config)?),
        None => None,
    };
    let mut health = vec![
        (SinkKind::Alerts, alerts.health()),
        (SinkKind::Dlq, dlq.health()),
    ];
    health.extend(
        repartition
            .iter()
            .map(|r| (SinkKind::Repartition, r.health())),
    );
    let _ = status.sinks.set(health);

    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let forward_done = done_tx.clone();
    let assignment = Arc::new(Assignment::default());
    let mut shared = WorkerShared::new(
        rules.into(),
        config.state_limits,
        Publisher::Kafka(alerts.clone()),
        done_tx,
        &config.input_topic,
        metrics.clone(),
        status.clone(),
        hooks.clone(),
    );
    shared.assignment = assignment.clone();
    shared.repartition_topic = config.repartition_topic.clone().unwrap_or_default();
    let Pool {
        workers: outboxes,
        dlq: dlq_outbox,
        mut tasks,
    } = spawn_pool(
        config.workers,
        config.queue_capacity,
        shared,
        Publisher::Kafka(dlq.clone()),
    );
    let routing = Routing {
        input_topic: config.input_topic.clone(),
        repartition: match (&config.repartition_topic, &repartition) {
            (Some(topic), Some(sink)) => {
                let (outbox, task) = spawn_publisher(
                    config.queue_capacity,
                    Publisher::Kafka(sink.clone()),
                    forward_done,
                );
                tasks.push(task);
                Some((topic.clone(), outbox))
            }
            _ => None,
        },
        partitioner: config.input_partitioner,
    };

    let state = IngestState::new(
        outboxes,
        dlq_outbox,
        routing,
        done_rx,
        metrics,
        config.limits,
        tokio::runtime::Handle::current(),
    );
    let context = IngestContext::new(state, status.clone(), config.shutdown_timeout, assignment);
    let consumer: BaseConsumer<IngestContext> = config
        .consumer_config()
        .create_with_context(context)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create the Kafka consumer: {}",
                client_config_error(&e, &Default::default())
            )
        })?;
    consumer
        .subscribe(&[&config.input_topic])
        .with_context(|| format!("cannot subscribe to {}", config.input_topic))?;
    status.running.store(true, Ordering::Relaxed);
    info!(
        brokers = %config.bootstrap_servers,
        input = %config.input_topic,
        alerts = %config.alert_topic,
        dlq = %config.dlq_topic,
        repartition = config.repartition_topic.as_deref().unwrap_or("off"),
        group = %config.group_id,
        workers = config.workers,
        queue_capacity = config.queue_capacity,
        "pipeline started"
    );

    let (result_tx, result_rx) = oneshot::channel();
    let shutdown_timeout = config.shutdown_timeout;
    let crash = hooks.crash.clone();
    let shutdown_started = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            Instant::now()
        }
    };
    std::thread::Builder::new()
        .name("vw-ingest".into())
        .spawn(move || {
            let outcome = ingest::run(consumer, shutdown, crash, shutdown_timeout);
            let _ = result_tx.send(outcome);
        })
        .context("cannot start the ingest thread")?;

    let shutdown_started = tokio::spawn(shutdown_started);
    let outcome = result_rx
        .await
        .context("the ingest thread died (see the panic above)")?;
    status.running.store(false, Ordering::Relaxed);

    match outcome {
        ingest::Outcome::Crashed => {
            let counts = status.counts();
            for t in &tasks {
                t.abort();
            }
            alerts.purge();
            dlq.purge();
            if let Some(r) = &repartition {
                r.purge();
            }
            shutdown_started.abort();
            Ok(Report {
                counts,
                committed: Vec::new(),
                clean: false,
                crashed: true,
            })
        }
        ingest::Outcome::Stopped { clean, committed } => {
            let started = shutdown_started.await.unwrap_or_else(|_| Instant::now());
            let remaining = shutdown_timeout.saturating_sub(started.elapsed());
            // The queues are closed: workers finish what they hold and exit.
            let joined = tokio::time::timeout(remaining, async {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await;
            if joined.is_err() {
                warn!("workers did not finish before the shutdown deadline");
            }
            let remaining = shutdown_timeout.saturating_sub(started.elapsed());
            let flushed = tokio::task::spawn_blocking(move || {
                // Copies first: an unflushed copy leaves its input message uncommitted.
                if let Some(r) = &repartition {
                    let _ = r.flush(remaining);
                }
                let a = alerts.flush(remaining);
                let d = dlq.flush(Duration::from_millis(100).min(remaining));
                a.and(d)
            })
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("flush task failed: {e}")));
            if let Err(e) = &flushed {
                warn!(error = %e, "producers not fully flushed");
            }
            let clean = clean && joined.is_ok() && flushed.is_ok();
            let counts = status.counts();
            info!(
                consumed = counts.consumed,
                invalid = counts.invalid,
                alerts = counts.alerts,
                dlq = counts.dlq,
                committed = ?committed,
                clean,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pipeline stopped"
            );
            Ok(Report {
                counts,
                committed,
                clean,
                crashed: false,
            })
        }
    }
}

/// The evaluation workers and the DLQ task, running, with the ingest-side ends of their
/// queues.
struct Pool {
    workers: Vec<Outbox<Work>>,
    dlq: Outbox<Outgoing>,
    /// The workers' tasks, then the DLQ task's. Each ends once its queue is closed and
    /// empty.
    tasks: Vec<JoinHandle<()>>,
}

/// Spawns `workers` evaluation tasks and the DLQ task on the current runtime, each behind
/// a bounded channel of `queue_capacity` messages, and registers the workers' probes in
/// `shared.status`. [`run`] and [`inprocess`] both start their workers here, so a
/// benchmark measures the same queues and tasks the service runs.
fn spawn_pool(workers: usize, queue_capacity: usize, shared: WorkerShared, dlq: Publisher) -> Pool {
    let (batch, slots) = batch_and_slots(queue_capacity);
    let done_tx = shared.done_tx.clone();
    let probes: Vec<Arc<WorkerProbe>> = (0..workers)
        .map(|_| Arc::new(WorkerProbe::default()))
        .collect();
    let _ = shared.status.workers.set(probes.clone());
    let shared = Arc::new(shared);
    let mut outboxes = Vec::with_capacity(workers);
    let mut tasks = Vec::with_capacity(workers + 1);
    for (i, probe) in probes.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(slots);
        outboxes.push(Outbox::new(tx, batch, Some(probe.clone())));
        tasks.push(tokio::spawn(worker::run(i, rx, shared.clone(), probe)));
    }
    drop(shared);
    let (dlq, dlq_task) = spawn_publisher(queue_capacity, dlq, done_tx);
    tasks.push(dlq_task);
    Pool {
        workers: outboxes,
        dlq,
        tasks,
    }
}

/// A task that publishes records handed to it (dead letters, or copies for the
/// repartition topic), behind a bounded channel of `queue_capacity` records; each input
/// message is done when the broker acknowledges its record.
fn spawn_publisher(
    queue_capacity: usize,
    publisher: Publisher,
    done_tx: DoneTx,
) -> (Outbox<Outgoing>, JoinHandle<()>) {
    let (batch, slots) = batch_and_slots(queue_capacity);
    let (tx, mut rx) = mpsc::channel::<Vec<Outgoing>>(slots);
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            for item in batch {
                let ticket = Ticket::new(item.done, 1, done_tx.clone());
                publisher
                    .send(
                        item.partition,
                        item.key.as_deref(),
                        item.payload.as_deref(),
                        Some(item.headers),
                        ticket,
                    )
                    .await;
            }
        }
    });
    (Outbox::new(tx, batch, None), task)
}
