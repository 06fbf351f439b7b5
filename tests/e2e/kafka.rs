//! The suite's topics: fresh ones per scenario on the broker `scripts/e2e.sh` started,
//! and the `VITALWATCH_*` variables that point `vitalwatch run` at them. Reading them back
//! and the rest of the broker side are the tests' shared [`crate::support::kafka`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub group: String,
    pub partitions: i32,
}

impl Topics {
    /// Creates the input (with `partitions`), alert, DLQ and repartition topics on
    /// `brokers`.
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
