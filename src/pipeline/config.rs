//! What the pipeline is configured with, and the librdkafka settings of its clients.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use super::commit;
use super::repartition::Partitioner;
use crate::rules::state::StateLimits;
use crate::secret::ClientProps;
use crate::vitals::DecodeLimits;

/// What the pipeline needs: `Settings::pipeline_config` builds it from the settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub input_topic: String,
    pub alert_topic: String,
    pub dlq_topic: String,
    /// Where misplaced observations are re-keyed (`kafka.repartition_topic`); `None` off.
    pub repartition_topic: Option<String>,
    /// Static membership (`kafka.group_instance_id`); `None`: dynamic.
    pub group_instance_id: Option<String>,
    /// Each patient's rule state (`kafka.state_topic`); `None`: memory only.
    pub state_topic: Option<String>,
    /// Per-patient context (`kafka.context_topic`); `None`: off.
    pub context_topic: Option<String>,
    /// How long a partition's state restore may take (`pipeline.restore_timeout_secs`).
    pub restore_timeout: Duration,
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
    /// Consumer settings: the commit policy's ([`commit::consumer_properties`]), the
    /// prefetch tuning, then `[kafka.client]`.
    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("client.id", "vitalwatch")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000")
            // Incremental rebalancing: a member joining or leaving moves only the
            // partitions that must move; the others keep flowing, their patients' state
            // stays where it is. `[kafka.client]` may choose another assignor.
            .set("partition.assignment.strategy", "cooperative-sticky");
        if let Some(id) = &self.group_instance_id {
            // Static membership: a restart within session.timeout.ms is no rebalance.
            c.set("group.instance.id", id);
        }
        commit::consumer_properties(&mut c);
        fetch_tuning(&mut c);
        self.apply_client(&mut c);
        c
    }

    /// The consumer's `auto.commit.interval.ms` (`[kafka.client]` may set it): also how
    /// often patient state is checkpointed.
    pub(crate) fn commit_interval(&self) -> Duration {
        let ms = self
            .client
            .get("auto.commit.interval.ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(u64::from(commit::AUTO_COMMIT_INTERVAL_MS));
        Duration::from_millis(ms.max(10))
    }

    /// The state restore's consumer: assigned partitions of the state topic read from
    /// the beginning to their end, no group, nothing committed; then `[kafka.client]`.
    pub(crate) fn restore_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "vitalwatch-restore");
        self.apply_client(&mut c);
        // After `[kafka.client]`: what the restore's correctness rests on.
        c.set("group.id", format!("{}-restore", self.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "true")
            // A partition assigned while a fetch long-polls another one at its end waits
            // for that fetch to return: at the default 500 ms, a restore took 0.55 s
            // however small; at 20 ms, 0.10-0.15 s (e2e on nisshi, 3 partitions).
            .set("fetch.wait.max.ms", "20");
        c.remove("group.instance.id");
        c
    }

    /// The patient context's consumer: as the restore's, assigned by hand and following
    /// its partitions after the catch-up, so idle partitions are long-polled longer.
    pub(crate) fn context_config(&self) -> ClientConfig {
        let mut c = self.restore_config();
        c.set("client.id", "vitalwatch-context")
            .set("group.id", format!("{}-context", self.group_id))
            .set("fetch.wait.max.ms", "100");
        c
    }

    /// Producer settings: idempotent, acknowledged by all in-sync replicas, and a
    /// delivery timeout short enough that a failing broker shows in readiness quickly.
    pub(crate) fn producer_config(&self) -> ClientConfig {
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
    pub(crate) fn topics(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![
            ("kafka.input_topic", self.input_topic.as_str()),
            ("kafka.alert_topic", self.alert_topic.as_str()),
            ("kafka.dlq_topic", self.dlq_topic.as_str()),
        ];
        if let Some(t) = &self.context_topic {
            v.push(("kafka.context_topic", t.as_str()));
        }
        if let Some(t) = &self.state_topic {
            v.push(("kafka.state_topic", t.as_str()));
        }
        if let Some(t) = &self.repartition_topic {
            v.push(("kafka.repartition_topic", t.as_str()));
        }
        v
    }

    /// Builds the consumer's and the producers' librdkafka configurations without
    /// creating a client (nothing connects): what librdkafka would refuse at start-up
    /// (an unknown property, a value it cannot take).
    pub(crate) fn check_clients(&self) -> Result<(), ClientConfigError> {
        for config in [self.consumer_config(), self.producer_config()] {
            if let Err(e) = config.create_native_config() {
                return Err(ClientConfigError::from_kafka(&e));
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfigError {
    /// The librdkafka property (empty when the error names none).
    pub(crate) property: String,
    /// What librdkafka says is wrong, the value replaced by `[value not shown]`.
    pub(crate) problem: String,
}

impl ClientConfigError {
    pub(crate) fn from_kafka(e: &KafkaError) -> ClientConfigError {
        match e {
            KafkaError::ClientConfig(_, description, key, value) => ClientConfigError {
                property: key.clone(),
                problem: if value.is_empty() {
                    description.clone()
                } else {
                    description.replace(value.as_str(), "[value not shown]")
                },
            },
            // Other creation errors name no value.
            other => ClientConfigError {
                property: String::new(),
                problem: other.to_string(),
            },
        }
    }
}

impl std::fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.property.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(
                f,
                "kafka.client.\"{}\": librdkafka refuses it: {}",
                self.property, self.problem
            )
        }
    }
}

impl std::error::Error for ClientConfigError {}

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

/// The host of a `bootstrap.servers` entry: `host:port`, `[v6]:port` or
/// `PROTOCOL://host:port`.
pub fn broker_host(server: &str) -> &str {
    let s = server.rsplit_once("://").map_or(server, |(_, rest)| rest);
    if let Some(v6) = s.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match s.rsplit_once(':') {
        Some((host, _port)) if !host.contains(':') => host,
        _ => s,
    }
}
