//! The suite's topics: fresh ones per scenario on the broker `scripts/e2e.sh` started,
//! and the `VITALWATCH_*` variables that point `vitalwatch run` at them. Reading them back
//! and the rest of the broker side are the tests' shared [`crate::support::kafka`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

pub use crate::support::kafka::*;
use crate::wait::wait_for;

/// Bootstrap servers of the broker `scripts/e2e.sh` started.
pub fn brokers() -> String {
    std::env::var("VW_E2E_BROKERS").unwrap_or_else(|_| {
        panic!("VW_E2E_BROKERS is not set: run the suite with scripts/e2e.sh (it starts the nisshi broker)")
    })
}

/// Partitions of every alert topic.
pub const ALERT_PARTITIONS: i32 = 3;
/// Partitions of every DLQ topic.
pub const DLQ_PARTITIONS: i32 = 1;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One scenario's topics and consumer group, unique per run so that a broker that
/// outlives a run (or a rerun on the same broker) never mixes scenarios.
#[derive(Debug, Clone)]
pub struct Topics {
    /// The broker, as the suite's own clients reach it.
    pub client: Client,
    pub input: String,
    pub alerts: String,
    pub dlq: String,
    /// `kafka.repartition_topic`: as many partitions as the input.
    pub repartition: String,
    /// `kafka.state_topic`: as many partitions as the input, compacted when the broker
    /// takes `cleanup.policy=compact` ([`state_topic_kind`]).
    pub state: String,
    pub group: String,
    pub partitions: i32,
}

impl Topics {
    /// Creates the input (with `partitions`), alert, DLQ, repartition and state topics
    /// on `brokers`.
    pub fn create(brokers: impl Into<Client>, scenario: &str, partitions: i32) -> Topics {
        let client: Client = brokers.into();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{scenario}-{stamp}-{n}");
        let t = Topics {
            client,
            input: format!("e2e-data-{id}"),
            alerts: format!("e2e-alerts-{id}"),
            dlq: format!("e2e-dlq-{id}"),
            repartition: format!("e2e-repartition-{id}"),
            state: format!("e2e-state-{id}"),
            group: format!("e2e-group-{id}"),
            partitions,
        };
        create_topics(
            &t.client,
            &[
                (&t.input, partitions),
                (&t.alerts, ALERT_PARTITIONS),
                (&t.dlq, DLQ_PARTITIONS),
                (&t.repartition, partitions),
            ],
        );
        create_state_topic(&t.client, &t.state, partitions);
        t
    }

    /// The same topics, reached another way from now on (the security scenario creates
    /// them on a plaintext broker that it then restarts with TLS and SASL).
    pub fn reached_by(self, client: Client) -> Topics {
        Topics { client, ..self }
    }

    /// The `VITALWATCH_KAFKA__*` variables that point `vitalwatch run` at these topics.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", &self.client.brokers),
            ("VITALWATCH_KAFKA__INPUT_TOPIC", &self.input),
            ("VITALWATCH_KAFKA__ALERT_TOPIC", &self.alerts),
            ("VITALWATCH_KAFKA__DLQ_TOPIC", &self.dlq),
            ("VITALWATCH_KAFKA__REPARTITION_TOPIC", &self.repartition),
            ("VITALWATCH_KAFKA__STATE_TOPIC", &self.state),
            ("VITALWATCH_KAFKA__GROUP_ID", &self.group),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    pub fn committed(&self) -> Vec<i64> {
        committed(&self.client, &self.group, &self.input, self.partitions)
    }

    pub fn end_offsets(&self) -> Vec<i64> {
        end_offsets(&self.client, &self.input)
    }

    /// Waits until the group's committed offsets reach the input's log end on every
    /// partition: every message is done (alerts and dead letters acknowledged).
    pub fn wait_committed_to_end(&self, timeout: Duration) -> Vec<i64> {
        wait_for(
            timeout,
            "committed offsets reach the end of the input",
            || {
                let end = self.end_offsets();
                let committed = self.committed();
                if committed == end {
                    Ok(end)
                } else {
                    Err(format!("committed {committed:?}, end {end:?}"))
                }
            },
        )
    }
}

/// How the broker took the state topics: `"compacted"` (`cleanup.policy=compact`
/// accepted) or `"plain"` (refused, so created without it). Decided by the first state
/// topic the suite creates.
static STATE_TOPIC_KIND: OnceLock<&'static str> = OnceLock::new();

/// `"compacted"` or `"plain"`: how this run's state topics were created (`"-"` before
/// the first one).
pub fn state_topic_kind() -> &'static str {
    STATE_TOPIC_KIND.get().copied().unwrap_or("-")
}

/// Creates `name` with `partitions` as production does, compacted, and falls back to a
/// plain topic when the broker refuses `cleanup.policy=compact` (then says so once).
/// vitalwatch reads a state partition from its beginning to its end either way; without
/// compaction the restore reads every record ever written rather than the latest per
/// patient, which only costs time.
pub fn create_state_topic(client: &Client, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client.config().create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let create = |compact: bool| {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        if compact {
            topic = topic.set("cleanup.policy", "compact");
        }
        let results = rt
            .block_on(admin.create_topics(&[topic], &opts))
            .expect("CreateTopics request");
        results
            .into_iter()
            .try_for_each(|r| r.map(|_| ()).map_err(|(_, code)| code.to_string()))
    };
    let kind = match STATE_TOPIC_KIND.get().copied() {
        Some("plain") => {
            create(false).unwrap_or_else(|e| panic!("cannot create topic {name}: {e}"));
            "plain"
        }
        _ => match create(true) {
            Ok(()) => "compacted",
            Err(refused) => {
                // Only a refusal of the config falls back: the topic must not exist yet.
                assert_eq!(
                    partition_count(client, name),
                    0,
                    "{name} exists although CreateTopics failed: {refused}"
                );
                create(false).unwrap_or_else(|e| {
                    panic!("cannot create topic {name} (compacted: {refused}; plain: {e})")
                });
                println!(
                    "the broker refused cleanup.policy=compact for {name} ({refused}): state topics are plain"
                );
                "plain"
            }
        },
    };
    if STATE_TOPIC_KIND.set(kind).is_ok() {
        println!("state topics: {kind} ({name}, {partitions} partitions)");
    }
    wait_for(
        Duration::from_secs(30),
        &format!("topic {name} visible"),
        || {
            let n = partition_count(client, name);
            if n == partitions as usize {
                Ok(())
            } else {
                Err(format!("{n} partitions"))
            }
        },
    );
}
