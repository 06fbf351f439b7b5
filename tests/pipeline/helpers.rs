//! Test harness: a librdkafka mock cluster, fresh topics and groups per test, a producer
//! for input, readers for the alert and DLQ topics, and an oracle computed from what was
//! actually written to the input topic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalwatch::alert::{OwnedAlert, Source, alert_id};
use vitalwatch::pipeline::{self, Hooks, PipelineConfig, Report, Status};
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::live::LiveRules;
use vitalwatch::vitals::{DecodeLimits, decode};

/// The size limit the pipeline runs with in these tests.
pub const TEST_MAX_BYTES: usize = 4096;

pub fn test_limits() -> DecodeLimits {
    DecodeLimits {
        max_message_bytes: TEST_MAX_BYTES,
        ..DecodeLimits::default()
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A mock cluster with three fresh topics.
pub struct Cluster {
    pub mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub input: String,
    pub alerts: String,
    pub dlq: String,
    /// The repartition topic, when the test asked for one ([`Cluster::with_repartition`]).
    pub repartition: Option<String>,
    pub partitions: i32,
}

impl Cluster {
    pub fn new(partitions: i32) -> Cluster {
        Self::with_brokers(1, partitions)
    }

    pub fn with_brokers(brokers: i32, partitions: i32) -> Cluster {
        let mock = MockCluster::new(brokers).expect("mock cluster");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let c = Cluster {
            mock,
            input: format!("patient-data-{n}"),
            alerts: format!("patient-alerts-{n}"),
            dlq: format!("patient-data-dlq-{n}"),
            repartition: None,
            partitions,
        };
        c.mock.create_topic(&c.input, partitions, 1).unwrap();
        c.mock.create_topic(&c.alerts, 3, 1).unwrap();
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
        lead(&cluster.alerts, 3, 2);
        cluster
            .mock
            .coordinator(rdkafka::mocking::MockCoordinator::Group(group.into()), 1)
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

    pub fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    pub fn config(&self, group: &str) -> PipelineConfig {
        PipelineConfig {
            bootstrap_servers: self.bootstrap(),
            group_id: group.to_owned(),
            input_topic: self.input.clone(),
            alert_topic: self.alerts.clone(),
            dlq_topic: self.dlq.clone(),
            repartition_topic: self.repartition.clone(),
            input_partitioner: vitalwatch::pipeline::repartition::Partitioner::Murmur2,
            client: Default::default(),
            workers: 4,
            queue_capacity: 256,
            limits: test_limits(),
            state_limits: Default::default(),
            shutdown_timeout: Duration::from_secs(20),
        }
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Produces `(key, payload)` pairs to the input topic, keyed so that one patient's
    /// messages share a partition; returns once all are acknowledged.
    pub async fn produce(&self, messages: &[(String, Vec<u8>)]) {
        produce_with(&self.producer(), &self.input, messages).await;
    }

    pub fn reader(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader")
    }

    /// Every message of `topic` from the beginning, until at least `expect` messages were
    /// read and nothing more arrived for half a second, or `timeout` passed.
    pub fn read_all(&self, topic: &str, expect: usize, timeout: Duration) -> Vec<Record> {
        let consumer = self.reader();
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap();
        let parts = md.topics()[0].partitions().len() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut last = Instant::now();
        while Instant::now() < deadline
            && (out.len() < expect || last.elapsed() < Duration::from_millis(500))
        {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                last = Instant::now();
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_owned(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        out
    }

    /// The alert topic: at least `expect` alerts, and any that follow them.
    pub fn alerts(&self, expect: usize) -> Vec<OwnedAlert> {
        self.read_all(&self.alerts, expect, Duration::from_secs(30))
            .iter()
            .map(|r| serde_json::from_slice(&r.payload).expect("alert json"))
            .collect()
    }

    /// Committed offset of `group` per input partition (-1001 = none).
    pub fn committed(&self, group: &str) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.input, p);
        }
        let c = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap();
        (0..self.partitions)
            .map(|p| {
                c.find_partition(&self.input, p)
                    .map(|e| e.offset().to_raw().unwrap_or(-1001))
                    .unwrap_or(-1001)
            })
            .collect()
    }

    /// Log end offset per input partition.
    pub fn end_offsets(&self) -> Vec<i64> {
        let consumer = self.reader();
        (0..self.partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.input, p, Duration::from_secs(5))
                    .unwrap()
                    .1
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// What the input topic should produce: alert ids for valid messages, reason codes for
/// invalid ones, computed with the library's own decoder and rules.
pub struct Oracle {
    pub alert_ids: BTreeSet<String>,
    /// (partition, offset) → reason code.
    pub dlq: BTreeMap<(i32, i64), String>,
    pub valid: usize,
}

pub fn oracle(cluster: &Cluster, input: &[Record], rules: &RuleSet) -> Oracle {
    let limits = test_limits();
    let now = vitalwatch::pipeline::worker::now_ms();
    let mut o = Oracle {
        alert_ids: BTreeSet::new(),
        dlq: BTreeMap::new(),
        valid: 0,
    };
    for r in input {
        match decode(&r.payload, &limits, now) {
            Ok(obs) => {
                o.valid += 1;
                let source = Source {
                    topic: &cluster.input,
                    partition: r.partition,
                    offset: r.offset,
                };
                for rule in rules.evaluate(&obs) {
                    o.alert_ids.insert(alert_id(&source, &rule.id).to_string());
                }
            }
            Err(e) => {
                o.dlq.insert((r.partition, r.offset), e.reason().to_owned());
            }
        }
    }
    o
}

/// Produces `(key, payload)` pairs to `topic` with `producer`; returns once all are
/// acknowledged.
pub async fn produce_with(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) {
    // In chunks below librdkafka's local queue limit (100 000 messages).
    for chunk in messages.chunks(50_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for (key, payload) in chunk {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            pending.push(producer.send_result(record).expect("enqueue"));
        }
        for p in pending {
            p.await.expect("delivery future").expect("delivered");
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
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

/// Shows the pipeline's warnings in test output (`RUST_LOG` overrides).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vitalwatch=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub fn start(config: PipelineConfig, rules: impl Into<LiveRules>, mut hooks: Hooks) -> Running {
    init_logs();
    let shutdown = CancellationToken::new();
    let crash = CancellationToken::new();
    hooks.crash = Some(crash.clone());
    let status = Status::new();
    let rules: LiveRules = rules.into();
    let handle = tokio::spawn(pipeline::run(
        config,
        rules,
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

/// Deterministic traffic: `n` messages over `patients` patients; every 10th valid message
/// breaches a NEWS2 red flag, every `invalid_every`th is malformed (cycling through the
/// DLQ reasons).
pub fn traffic(n: usize, patients: usize, invalid_every: usize) -> Vec<(String, Vec<u8>)> {
    let now = vitalwatch::pipeline::worker::now_ms();
    let mut out = Vec::with_capacity(n);
    let mut bad = 0usize;
    for i in 0..n {
        let patient = format!("P-{:06}", i % patients);
        if invalid_every > 0 && i % invalid_every == invalid_every - 1 {
            out.push((patient.clone(), invalid_payload(bad, &patient, now)));
            bad += 1;
            continue;
        }
        let (metric, value) = match (i % 6, i % 10 == 3) {
            (0, false) => ("heart_rate", 72.0 + (i % 20) as f64),
            (0, true) => ("heart_rate", 140.0),
            (1, false) => ("spo2", 97.0),
            (1, true) => ("spo2", 88.0),
            (2, false) => ("respiratory_rate", 16.0),
            (2, true) => ("respiratory_rate", 28.0),
            (3, false) => ("systolic_bp", 120.0),
            (3, true) => ("systolic_bp", 85.0),
            (4, false) => ("temperature", 37.0),
            (4, true) => ("temperature", 39.5),
            (_, false) => ("diastolic_bp", 80.0),
            (_, true) => ("heart_rate", 35.0),
        };
        let payload = format!(
            r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{}}}"#,
            now - 60_000 + i as i64
        );
        out.push((patient, payload.into_bytes()));
    }
    out
}

/// One malformed message per DLQ reason, in turn.
pub fn invalid_payload(k: usize, patient: &str, now: i64) -> Vec<u8> {
    match k % 10 {
        // too_large (the harness runs with max_message_bytes = TEST_MAX_BYTES; the mock
        // broker stalls fetches of many 64 KiB+ messages, real brokers do not).
        0 => vec![b'x'; TEST_MAX_BYTES + 1],
        1 => vec![0xff, 0xfe, b'{', b'}'], // not_utf8
        2 => b"{\"patientId\": ".to_vec(), // invalid_json
        3 => format!(r#"{{"patientId":"{patient}","metric":"spo2","timestamp":{now}}}"#).into_bytes(), // missing_field
        4 => format!(r#"{{"patientId":"{patient}","metric":"spo2","value":"97","timestamp":{now}}}"#).into_bytes(), // wrong_type
        5 => format!(r#"{{"patientId":"{patient}","metric":"glucose","value":5,"timestamp":{now}}}"#).into_bytes(), // unknown_metric
        6 => format!(r#"{{"patientId":"{patient}","metric":"heart_rate","value":900,"timestamp":{now}}}"#).into_bytes(), // out_of_range
        7 => format!(r#"{{"patientId":"{patient}","metric":"spo2","value":97,"timestamp":12}}"#).into_bytes(), // bad_timestamp
        8 => format!(r#"{{"patientId":"bad id","metric":"spo2","value":97,"timestamp":{now}}}"#).into_bytes(), // bad_patient_id
        _ => format!(r#"{{"patientId":"{patient}","metric":"spo2","value":97,"unit":"mmHg","timestamp":{now}}}"#).into_bytes(), // bad_unit
    }
}
