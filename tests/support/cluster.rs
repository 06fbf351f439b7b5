//! The pipeline on librdkafka's mock cluster: a cluster with fresh topics per test, the
//! pipeline configured for them, and [`pipeline::run`] in a background task that a test
//! stops, crashes or waits on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{DefaultProducerContext, FutureProducer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalwatch::alert::OwnedAlert;
use vitalwatch::pipeline::repartition::Partitioner;
use vitalwatch::pipeline::{self, Hooks, PipelineConfig, Report, Status};
use vitalwatch::rules::live::LiveRules;

use super::kafka::{self, Client, Record};
use super::traffic::test_limits;

/// Partitions of every alert topic.
pub const ALERT_PARTITIONS: i32 = 3;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A mock cluster and the names of a test's topics.
pub struct Cluster {
    pub mock: MockCluster<'static, DefaultProducerContext>,
    pub input: String,
    pub alerts: String,
    pub dlq: String,
    /// The repartition topic, when the test asked for one ([`Cluster::with_repartition`]).
    pub repartition: Option<String>,
    /// The state topic, when the test asked for one ([`Cluster::with_state`]).
    pub state: Option<String>,
    /// The patient context topic, when the test asked for one ([`Cluster::with_context`]).
    pub context: Option<String>,
    /// Partitions of the input topic.
    pub partitions: i32,
}

impl Cluster {
    /// One broker; the input with `partitions`, the alert and DLQ topics.
    pub fn new(partitions: i32) -> Cluster {
        Self::with_brokers(1, partitions)
    }

    /// `brokers` brokers and fresh topic names, no topic created (a test that creates
    /// them itself, at the moment it wants).
    pub fn bare(brokers: i32, partitions: i32) -> Cluster {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Cluster {
            mock: MockCluster::new(brokers).expect("mock cluster"),
            input: format!("patient-data-{n}"),
            alerts: format!("patient-alerts-{n}"),
            dlq: format!("patient-data-dlq-{n}"),
            repartition: None,
            state: None,
            context: None,
            partitions,
        }
    }

    pub fn with_brokers(brokers: i32, partitions: i32) -> Cluster {
        let c = Self::bare(brokers, partitions);
        c.mock.create_topic(&c.input, partitions, 1).unwrap();
        c.mock.create_topic(&c.alerts, ALERT_PARTITIONS, 1).unwrap();
        c.mock.create_topic(&c.dlq, 1, 1).unwrap();
        c
    }

    /// Two brokers: `group`'s coordinator, the input and the DLQ on broker 1, the alert
    /// topic alone on broker 2, so that taking broker 2 down stops alert deliveries only.
    pub fn with_alerts_on_their_own_broker(partitions: i32, group: &str) -> Cluster {
        let cluster = Self::with_brokers(2, partitions);
        let lead = |topic: &str, partitions: i32, broker: i32| {
            for p in 0..partitions {
                cluster
                    .mock
                    .partition_leader(topic, p, Some(broker))
                    .unwrap();
            }
        };
        lead(&cluster.input, partitions, 1);
        lead(&cluster.dlq, 1, 1);
        lead(&cluster.alerts, ALERT_PARTITIONS, 2);
        cluster
            .mock
            .coordinator(MockCoordinator::Group(group.into()), 1)
            .unwrap();
        cluster
    }

    /// Adds a repartition topic with the input's partition count; `config` turns
    /// repartitioning on with it.
    pub fn with_repartition(mut self) -> Cluster {
        let topic = format!("{}-repartition", self.input);
        self.mock.create_topic(&topic, self.partitions, 1).unwrap();
        self.repartition = Some(topic);
        self
    }

    /// Adds a state topic with the input's partition count; `config` turns durable
    /// patient state on with it.
    pub fn with_state(mut self) -> Cluster {
        let topic = format!("{}-state", self.input);
        self.mock.create_topic(&topic, self.partitions, 1).unwrap();
        self.state = Some(topic);
        self
    }

    /// Adds a patient context topic with the input's partition count; `config` turns
    /// patient context on with it.
    pub fn with_context(mut self) -> Cluster {
        let topic = format!("{}-context", self.input);
        self.mock.create_topic(&topic, self.partitions, 1).unwrap();
        self.context = Some(topic);
        self
    }

    pub fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    /// How the tests' own clients reach the cluster.
    pub fn client(&self) -> Client {
        Client::new(&self.bootstrap())
    }

    /// The pipeline on these topics: 4 workers, small queues, the test size limit.
    pub fn config(&self, group: &str) -> PipelineConfig {
        PipelineConfig {
            bootstrap_servers: self.bootstrap(),
            group_id: group.to_owned(),
            input_topic: self.input.clone(),
            alert_topic: self.alerts.clone(),
            dlq_topic: self.dlq.clone(),
            repartition_topic: self.repartition.clone(),
            state_topic: self.state.clone(),
            context_topic: self.context.clone(),
            group_instance_id: None,
            restore_timeout: Duration::from_secs(30),
            input_partitioner: Partitioner::Murmur2,
            client: Default::default(),
            workers: 4,
            queue_capacity: 256,
            limits: test_limits(),
            state_limits: vitalwatch::settings::defaults().state_limits(),
            shutdown_timeout: Duration::from_secs(20),
        }
    }

    pub fn producer(&self) -> FutureProducer {
        kafka::producer(self.client())
    }

    /// Produces `(key, payload)` pairs to the input topic, keyed so that one patient's
    /// messages share a partition; returns once all are acknowledged.
    pub async fn produce(&self, messages: &[(String, Vec<u8>)]) {
        self.produce_to(&self.input, messages).await;
    }

    pub async fn produce_to(&self, topic: &str, messages: &[(String, Vec<u8>)]) {
        kafka::produce(&self.producer(), topic, messages).await;
    }

    /// A consumer that never joins a group.
    pub fn reader(&self) -> BaseConsumer {
        kafka::reader(&self.client())
    }

    /// Every message of `topic` from the beginning, until at least `expect` messages were
    /// read and nothing more arrived for half a second, or `timeout` passed.
    pub fn read_all(&self, topic: &str, expect: usize, timeout: Duration) -> Vec<Record> {
        kafka::read_until(self.client(), topic, expect, timeout)
    }

    /// The alert topic: at least `expect` alerts, and any that follow them.
    pub fn alerts(&self, expect: usize) -> Vec<OwnedAlert> {
        self.read_all(&self.alerts, expect, Duration::from_secs(30))
            .iter()
            .map(|r| serde_json::from_slice(r.value()).expect("alert json"))
            .collect()
    }

    /// Committed offset of `group` per input partition (-1 = none).
    pub fn committed(&self, group: &str) -> Vec<i64> {
        kafka::committed(self.client(), group, &self.input, self.partitions)
    }

    /// Log end offset per input partition.
    pub fn end_offsets(&self) -> Vec<i64> {
        kafka::end_offsets(self.client(), &self.input)
    }
}

/// Client settings that let a crashed member be noticed in seconds, not minutes.
pub fn fast_group_timeouts(config: &mut PipelineConfig) {
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("max.poll.interval.ms", "6000"),
    ] {
        config.client.insert(k, v);
    }
}

/// A running pipeline in a background task.
pub struct Running {
    pub shutdown: CancellationToken,
    pub crash: CancellationToken,
    pub status: Arc<Status>,
    pub handle: JoinHandle<anyhow::Result<Report>>,
}

impl Running {
    pub async fn stop(self) -> Report {
        self.shutdown.cancel();
        self.handle.await.expect("join").expect("pipeline run")
    }

    pub async fn crash(self) -> Report {
        self.crash.cancel();
        self.handle.await.expect("join").expect("pipeline run")
    }

    /// Waits until `cond(status)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, cond: impl Fn(&Status) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(&self.status) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cond(&self.status)
    }
}

/// Shows the pipeline's warnings in test output (`RUST_LOG` overrides). A test binary
/// that installs its own subscriber first keeps it.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vitalwatch=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts the pipeline with `status` (a test that serves it over HTTP passes its own),
/// leaving logging to the test (one that captures logs installs its own subscriber).
pub fn start_with(
    config: PipelineConfig,
    rules: impl Into<LiveRules>,
    status: Arc<Status>,
    mut hooks: Hooks,
) -> Running {
    let shutdown = CancellationToken::new();
    let crash = CancellationToken::new();
    hooks.crash = Some(crash.clone());
    let handle = tokio::spawn(pipeline::run(
        config,
        rules.into(),
        status.clone(),
        shutdown.clone(),
        hooks,
    ));
    Running {
        shutdown,
        crash,
        status,
        handle,
    }
}

/// Starts the pipeline, its warnings shown in the test output ([`init_logs`]).
pub fn start(config: PipelineConfig, rules: impl Into<LiveRules>, hooks: Hooks) -> Running {
    init_logs();
    start_with(config, rules, Status::new(), hooks)
}
