//! Starting and stopping the pipeline: the producers, the worker pool, the ingest
//! thread, and the drain at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{ClientConfigError, PipelineConfig};
use super::context_feed::ContextFeed;
use super::durable::Durable;
use super::hooks::Hooks;
use super::ingest::{self, BATCH, IngestContext, IngestState, Job, Outbox, Outgoing, Routing};
use super::sink::{DoneTx, Publisher, Sink, Ticket};
use super::status::{Assignment, Counts, Status, WorkerProbe};
use super::work::Work;
use super::worker::{self, WorkerShared};
use crate::metrics::{self as m, PipelineMetrics, SinkKind};
use crate::rules::live::LiveRules;

/// How a pipeline run ended.
#[derive(Debug, Clone)]
pub struct Report {
    pub counts: Counts,
    /// Every message read was finished and committed within the deadline.
    pub clean: bool,
    /// Stopped through the crash hook.
    pub crashed: bool,
}

/// The least a graceful stop waits for the consumer to leave the group, whatever is left
/// of `pipeline.shutdown_timeout_secs`: a clean close takes milliseconds.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

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
    let rules: LiveRules = rules.into();
    if shutdown.is_cancelled() {
        // Stopped before it started (SIGTERM during the broker check): nothing was read.
        return Ok(Report {
            counts: status.counts(),
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
    let state_sink = match &config.state_topic {
        Some(topic) => {
            // No delivery timeout: librdkafka retries in order for as long as it takes, so
            // that an older record of a patient can never land after a newer one.
            let mut c = producer_config.clone();
            c.set("message.timeout.ms", "0");
            Some(Sink::new(SinkKind::State, topic, &c)?)
        }
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
    health.extend(state_sink.iter().map(|s| (SinkKind::State, s.health())));
    let _ = status.sinks.set(health);

    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let forward_done = done_tx.clone();
    let assignment = Arc::new(Assignment::default());
    let mut shared = WorkerShared::new(
        rules.clone(),
        config.state_limits,
        Publisher::Kafka(alerts.clone()),
        done_tx,
        &config.input_topic,
        metrics.clone(),
        status.clone(),
        hooks.clone(),
    );
    shared.assignment = assignment.clone();
    shared.state = state_sink.clone().map(Publisher::Kafka);
    shared.group = Arc::from(config.group_id.as_str());
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

    let mut state = IngestState::new(
        outboxes,
        dlq_outbox,
        routing,
        done_rx,
        metrics,
        config.limits,
        tokio::runtime::Handle::current(),
    );
    if let Some(topic) = &config.state_topic {
        state.durable = Some(Durable::start(
            &config,
            topic,
            status.clone(),
            hooks.before_restore.clone(),
        )?);
    }
    if let Some(topic) = &config.context_topic {
        state.contexts = Some((ContextFeed::start(&config, topic, status.clone())?, rules));
    }
    let context = IngestContext::new(state, status.clone(), config.shutdown_timeout, assignment);
    let consumer: BaseConsumer<IngestContext> = config
        .consumer_config()
        .create_with_context(context)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create the Kafka consumer: {}",
                ClientConfigError::from_kafka(&e)
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
        state = config.state_topic.as_deref().unwrap_or("off (memory only)"),
        context = config.context_topic.as_deref().unwrap_or("off"),
        group = %config.group_id,
        workers = config.workers,
        queue_capacity = config.queue_capacity,
        "pipeline started"
    );

    let (result_tx, result_rx) = oneshot::channel();
    let (left_tx, left_rx) = oneshot::channel::<()>();
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
            let (outcome, member) = ingest::run(consumer, shutdown, crash, shutdown_timeout);
            let _ = result_tx.send(outcome);
            if let Some(member) = member {
                member.leave();
                let _ = left_tx.send(());
            }
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
            if let Some(s) = &state_sink {
                s.purge();
            }
            shutdown_started.abort();
            Ok(Report {
                counts,
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
                if let Some(s) = &state_sink {
                    let _ = s.flush(remaining);
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
            // Everything is committed; leaving the group only spares the others a session
            // timeout, so a close that hangs in librdkafka (see `ingest::Member`) must not
            // keep the process from exiting.
            let remaining = shutdown_timeout.saturating_sub(started.elapsed());
            if tokio::time::timeout(remaining.max(LEAVE_WAIT), left_rx)
                .await
                .is_err()
            {
                warn!(
                    "the consumer did not leave the group in time; stopping without it (its partitions move once its session times out)"
                );
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
                clean,
                crashed: false,
            })
        }
    }
}

/// The evaluation workers and the DLQ task, running, with the ingest-side ends of their
/// queues.
pub(super) struct Pool {
    pub(super) workers: Vec<Outbox<Work>>,
    pub(super) dlq: Outbox<Outgoing>,
    /// The workers' tasks, then the DLQ task's. Each ends once its queue is closed and
    /// empty.
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Spawns `workers` evaluation tasks and the DLQ task on the current runtime, each behind
/// a bounded channel of `queue_capacity` messages, and registers the workers' probes in
/// `shared.status`. [`run`] and [`inprocess`] both start their workers here, so a
/// benchmark measures the same queues and tasks the service runs.
pub(super) fn spawn_pool(
    workers: usize,
    queue_capacity: usize,
    shared: WorkerShared,
    dlq: Publisher,
) -> Pool {
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
    let (tx, mut rx) = mpsc::channel::<Job<Outgoing>>(slots);
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let Job::Items(batch) = job else { continue };
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

/// Messages per batch and channel slots per worker: `queue_capacity` messages in batches
/// of up to [`BATCH`].
fn batch_and_slots(queue_capacity: usize) -> (usize, usize) {
    let batch = BATCH.min(queue_capacity).max(1);
    (batch, queue_capacity.div_ceil(batch).max(1))
}
